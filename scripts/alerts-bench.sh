#!/usr/bin/env bash
# Usage alert evaluation on PostgreSQL at size: `gen` N subscribers × K records of October,
# imported, then `billpush alerts` twice at the same time late in the period through RabbitMQ
# (no worker: the alerts raised are queued, not sent). The first evaluation raises what the
# month's usage reached; the second, the daemon's usual round, finds nothing new. Prints each
# evaluation's summary line and wall time.
#   scripts/alerts-bench.sh [N subscribers=1000000] [K records per subscriber=20]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}; K=${2:-20}
scripts/services.sh
. scripts/drill-env.sh alerts_bench
export RUST_LOG=warn
now() { date +%s.%N; }
"$bin" gen --subscribers "$N" --records-per-subscriber "$K" --months 2026-10 --out "$work/data" >/dev/null
for kind in plans subscribers usage orders; do "$bin" import $kind "$work/data/$kind.csv" >/dev/null; done
psql -h 127.0.0.1 -U postgres -d "$db" -qc "VACUUM ANALYZE"
echo "alerts bench: $N subscribers × $K records, PostgreSQL + RabbitMQ, $profile build, $(nproc) cores"
for round in first second; do
  started=$(now)
  line=$("$bin" alerts --as-of 2026-10-28T12:00:00+08:00)
  printf '%-7s %6.1f s  %s\n' "$round" "$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$started" "$(now)")" "$line"
done
