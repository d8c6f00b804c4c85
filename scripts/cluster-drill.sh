#!/usr/bin/env bash
# Three RabbitMQ nodes clustered on this machine (Debian's rabbitmq-server; node names, ports
# and data directories of their own, loopback only), billpush's scheduler and two workers given
# all three addresses, a gateway that accepts everything; in the middle of the push the node the
# workers are connected to is stopped, and started again later. Ends with one line
#   cluster: accepted=N expected=N doubled=0 lost=0
# (doubled: idempotency keys the gateway accepted twice; lost: bills queued and never accepted)
# and exits non-zero unless both are 0 and accepted = expected. Every node it started is stopped
# and removed, also on failure.
#   scripts/cluster-drill.sh [N subscribers=3000]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-3000}
scripts/services.sh
declare -a workers=()
before_cleanup() {
  kill "${workers[@]}" 2>/dev/null || true
  stop_cluster
}
. scripts/drill-env.sh cluster
. scripts/rabbitmq-cluster.sh
export RUST_LOG=warn
sql() { psql -h 127.0.0.1 -U postgres -d "$db" -tAc "$1"; }
now() { date +%s.%N; }
start=$(now)
log() { printf '%6.1fs  %s\n' "$(python3 -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$(now)" "$start")" "$*"; }

start_cluster
log "cluster of ${#nodes[@]} nodes running"
export BILLPUSH_QUEUE__URL=$cluster_urls
export BILLPUSH_GATEWAY__WORKERS=2 BILLPUSH_GATEWAY__RATE_PER_SECOND=${RATE:-2000}
export BILLPUSH_BILLING__CHECK_EVERY=5s BILLPUSH_QUEUE__REQUEUE_AFTER=30s

$bin gen --subscribers "$N" --records-per-subscriber 5 --months 2026-10 --out "$work/data" >/dev/null
for kind in plans subscribers usage orders; do $bin import $kind "$work/data/$kind.csv" >/dev/null; done
$bin mock-gateway --bind "127.0.0.1:$port" --token cluster >/dev/null &
$bin schedule --month 2026-10 --as-of 2027-01-01T00:00:00+08:00 >"$work/schedule.log"
expected=$(sql "SELECT COUNT(*) FROM notifications WHERE status = 'queued'")
queue_nodes=$("$ctl" -q -n "${nodes[0]}@$host" list_queues name members --formatter json |
  python3 -c 'import json,sys; q=[x for x in json.load(sys.stdin) if x["name"]==sys.argv[1]]; print(len(q[0]["members"]) if q else 0)' "$queue")
log "queued $expected bills of 2026-10 on a quorum queue with $queue_nodes replicas"
$bin scheduler >"$work/scheduler.log" 2>&1 &
spawn_worker() { $bin worker >>"$work/worker-$1.log" 2>&1 & workers[$1]=$!; }
spawn_worker 0; spawn_worker 1
wait_for_accepted() { while [ "$(accepted)" -lt "$1" ]; do sleep 0.1; done; }

# The node the workers' consumers are connected to.
wait_for_accepted $((expected / 5))
target=""
for node in "${nodes[@]}"; do
  if "$ctl" -q -n "$node@$host" list_connections client_properties 2>/dev/null | grep -q "billpush worker"; then target=$node; break; fi
done
[ -n "$target" ] || { log "no node holds the workers' connections"; exit 1; }
wait_for_accepted $((expected * 3 / 10))
"$ctl" -q -n "$target@$host" stop_app >>"$cluster/ctl.log" 2>&1
log "stopped $target, the workers' node, at $(accepted) accepted"
wait_for_accepted $((expected * 7 / 10))
"$ctl" -q -n "$target@$host" start_app >>"$cluster/ctl.log" 2>&1
log "started $target again at $(accepted) accepted"

deadline=$(( $(date +%s) + 600 ))
until [ "$(sql "SELECT COUNT(*) FROM notifications WHERE status IN ('pending', 'queued', 'sending')")" = 0 ]; do
  [ "$(date +%s)" -lt $deadline ] || { log "still unfinished after 10 minutes"; break; }
  sleep 0.2
done
finished=$(now)
kill -TERM "${workers[@]}"; wait "${workers[@]}" 2>/dev/null || true
curl -sf "http://127.0.0.1:$port/accepted" >"$work/accepted.json"
# The scheduler daemon, as in production, also bills the other open month: every SMS owed
# counts, whichever month, and so does every flag notice.
expected=$(sql "SELECT COUNT(*) FROM notifications WHERE status NOT IN ('suppressed', 'skipped')")
never=$(sql "SELECT COUNT(*) FROM notifications WHERE status NOT IN ('accepted', 'delivered', 'suppressed', 'skipped')")
log "push finished in $(python3 -c "import sys; print(f'{float(sys.argv[1]) - float(sys.argv[2]):.1f}')" "$finished" "$start") s"
python3 - "$expected" "$never" "$work/accepted.json" <<'PY'
import collections, json, sys
expected, never = int(sys.argv[1]), int(sys.argv[2])
accepted = json.load(open(sys.argv[3]))
keys = collections.Counter(a["key"] for a in accepted)
doubled = sum(1 for c in keys.values() if c > 1)
print(f"cluster: accepted={len(keys)} expected={expected} doubled={doubled} lost={never}")
sys.exit(0 if doubled == 0 and never == 0 and len(keys) == expected else 1)
PY
