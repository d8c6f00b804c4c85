#!/usr/bin/env bash
# Import and build rates of one or more billpush binaries on the same generated data, on
# PostgreSQL, each binary in a fresh database, one after the other: for comparing two builds
# (before and after a schema change, say). Per binary: `import usage` rows/s (its wall time) and
# the build's bills/s (billing_runs.billed_at − started_at of `run`, bills and flags written).
#   scripts/import-build-bench.sh N_SUBSCRIBERS RECORDS_PER_SUBSCRIBER BIN [BIN…]
set -euo pipefail
cd "$(dirname "$0")/.."
N=$1; K=$2; shift 2
scripts/services.sh
work=$(mktemp -d); db="billpush_import_build_$$"
cleanup() { psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# Each binary on its built-in defaults (and the environment below), not this tree's
# config/default.toml, which an older binary may not know all of.
cd "$work"
"$1" gen --subscribers "$N" --records-per-subscriber "$K" --months 2026-10 --out "$work/data" >/dev/null
rows=$(($(wc -l <"$work/data/usage.csv") - 1))
export BILLPUSH_DATABASE__URL="postgres://postgres@127.0.0.1/$db" BILLPUSH_QUEUE__URL=memory://
export BILLPUSH_GATEWAY__KIND=sink BILLPUSH_GATEWAY__OUTBOX=$work/outbox.jsonl BILLPUSH_GATEWAY__RATE_PER_SECOND=100000000
export BILLPUSH_SMS__QUIET_START=00:00 BILLPUSH_SMS__QUIET_END=00:00 RUST_LOG=warn
for bin in "$@"; do
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" -c "CREATE DATABASE $db"
  "$bin" import plans "$work/data/plans.csv" >/dev/null
  "$bin" import subscribers "$work/data/subscribers.csv" >/dev/null
  started=$(date +%s.%N)
  "$bin" import usage "$work/data/usage.csv" >/dev/null
  import=$(python3 -c "import sys,time; print(time.time() - float(sys.argv[1]))" "$started")
  "$bin" run --month 2026-10 --as-of 2026-11-05T00:00:00+08:00 >/dev/null
  read -r build bills < <(psql -h 127.0.0.1 -U postgres -d "$db" -qAt -F ' ' -c \
    "SELECT (MIN(billed_at) - MIN(started_at)) / 1e6, (SELECT COUNT(*) FROM bills) FROM billing_runs")
  python3 -c "
import sys
rows, imp, build, bills = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
print(f'{sys.argv[1]}: import usage {rows} rows in {imp:.1f} s, {rows / imp:,.0f} rows/s; build {bills} bills in {build:.1f} s, {bills / build:,.0f} bills/s')
" "$bin" "$rows" "$import" "$build" "$bills"
  rm -f "$work/outbox.jsonl"
done
