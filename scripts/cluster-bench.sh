#!/usr/bin/env bash
# Push throughput through one RabbitMQ node beside a three-node cluster (scripts/rabbitmq-
# cluster.sh) in the same run: one month's bills, scheduled from the same imported data (a copy
# of the database per target), pushed by two workers to the mock gateway accepting everything
# at full speed. Prints a line per target: notifications, parts, seconds, per second.
#   scripts/cluster-bench.sh [N subscribers=100000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}; W=2; month=2026-10
scripts/services.sh
declare -a copies=()
before_cleanup() {
  pkill -TERM -f "^$bin (worker|mock-gateway)" 2>/dev/null || true
  stop_cluster
  for copy in "${copies[@]}"; do psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $copy WITH (FORCE)" >/dev/null; done
}
. scripts/drill-env.sh cluster_bench
. scripts/rabbitmq-cluster.sh
start_cluster
export RUST_LOG=warn BILLPUSH_GATEWAY__WORKERS=$W BILLPUSH_GATEWAY__RATE_PER_SECOND=100000000
now() { date +%s.%N; }

"$bin" gen --subscribers "$N" --records-per-subscriber 5 --months $month --out "$work/data" >/dev/null
for kind in plans subscribers usage orders; do "$bin" import $kind "$work/data/$kind.csv" >/dev/null; done

echo "cluster bench: $N subscribers, $W workers, mock gateway unlimited, $profile build, $(nproc) cores"
printf '%-26s %13s %9s %8s %10s %10s\n' target notifications parts seconds "notif/s" "parts/s"
for target in one-node cluster; do
  copy="${db}_$target"; copy=${copy//-/_}; copies+=("$copy")
  psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $copy TEMPLATE $db"
  sql() { psql -h 127.0.0.1 -U postgres -d "$copy" -tAc "$1"; }
  (
    export BILLPUSH_DATABASE__URL="postgres://postgres@127.0.0.1/$copy" BILLPUSH_QUEUE__NAME="$queue-$target"
    if [ $target = cluster ]; then export BILLPUSH_QUEUE__URL=$cluster_urls; fi
    "$bin" schedule --month $month --as-of 2027-01-01T00:00:00+08:00 >/dev/null
    expected=$(sql "SELECT COUNT(*) FROM notifications WHERE status = 'queued'")
    parts=$(sql "SELECT SUM(segments) FROM notifications WHERE status = 'queued'")
    "$bin" mock-gateway --bind "127.0.0.1:$port" --token cluster_bench >/dev/null 2>&1 &
    until curl -sf "http://127.0.0.1:$port/stats" >/dev/null; do sleep 0.1; done
    started=$(now)
    for _ in $(seq $W); do "$bin" worker >/dev/null 2>>"$work/worker-$target.log" & done
    until [ "$(accepted)" -ge "$expected" ]; do sleep 0.2; done
    until [ "$(sql "SELECT COUNT(*) FROM notifications WHERE status = 'accepted'")" -ge "$expected" ]; do sleep 0.05; done
    # The push ends at the last outcome's own timestamp, not at the poll that saw it.
    last=$(sql "SELECT MAX(updated_at) FROM notifications WHERE status = 'accepted'")
    pkill -TERM -f "^$bin worker" || true
    pkill -TERM -f "^$bin mock-gateway" || true
    wait
    python3 - "$target" "$expected" "$parts" "$started" "$last" "${#nodes[@]}" <<'PY'
import sys
target, expected, parts, started, last, nodes = sys.argv[1:]
label = "one node (5672)" if target == "one-node" else f"cluster of {nodes} nodes"
seconds = int(last) / 1e6 - float(started)
print(f"{label:<26} {int(expected):>13,} {int(parts):>9,} {seconds:>8.1f} {int(expected) / seconds:>10,.0f} {int(parts) / seconds:>10,.0f}")
PY
  )
done
