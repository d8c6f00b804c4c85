#!/usr/bin/env bash
# Pushes N subscribers' bills through RabbitMQ with 2 worker processes to a mock gateway that
# misbehaves (10% 503, 2% 429 with Retry-After, 1% answers past the client timeout, 1% accepted
# with the answer lost), and meanwhile: SIGKILLs a worker three times (restarting it), restarts
# RabbitMQ once, and terminates the workers' PostgreSQL connections once. Like a supervisor
# (docker-compose's restart: unless-stopped), it restarts a worker that exits by itself. As in
# production, the scheduler daemon schedules the two open months (each subscriber gets a bill
# SMS for both) and re-publishes what the broker lost.
# Then it checks that nothing was lost or doubled and exits non-zero if anything was.
#   scripts/chaos.sh [N=100000] [RATE parts/s, 0 = unlimited]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-100000}; RATE=${2:-0}
scripts/services.sh
total=$((2 * N))
declare -a workers=()
# Never leave the broker down, whatever happened.
before_cleanup() { rabbitmqctl -q start_app >/dev/null 2>&1 || true; kill "${workers[@]}" 2>/dev/null || true; }
. scripts/drill-env.sh chaos
export BILLPUSH_GATEWAY__WORKERS=2 BILLPUSH_GATEWAY__TIMEOUT_MS=1000 BILLPUSH_GATEWAY__RETRY_BASE_MS=200
export BILLPUSH_GATEWAY__MAX_ATTEMPTS=10
export BILLPUSH_BILLING__CHECK_EVERY=5s BILLPUSH_QUEUE__REQUEUE_AFTER=30s
export BILLPUSH_GATEWAY__RATE_PER_SECOND=$([ "$RATE" -gt 0 ] && echo "$RATE" || echo 100000000)
export RUST_LOG=warn
sql() { psql -h 127.0.0.1 -U postgres -d "$db" -tAc "$1"; }
now() { date +%s.%N; }
log() { printf '%6.1fs  %s\n' "$(python3 -c "import sys; print(float(sys.argv[1]) - float(sys.argv[2]))" "$(now)" "$start")" "$*"; }

python3 scripts/population.py "$work" "$N" C 137
for kind in plans subscribers usage; do $bin import $kind "$work/$kind.csv" >/dev/null; done
$bin mock-gateway --bind "127.0.0.1:$port" --token chaos --unavailable 0.10 --too-many 0.02 --slow 0.01 \
  --lost-answer 0.01 --slow-ms 2000 --seed 7 >/dev/null &
start=$(now)
spawn_worker() { $bin worker >>"$work/worker-$1.log" 2>&1 & workers[$1]=$!; }
spawn_worker 0; spawn_worker 1
$bin scheduler >>"$work/scheduler.log" 2>&1 & scheduler=$!
kills=0; own_exits=0
# Restarts a worker that exited without being told to, and counts it.
supervise() {
  for i in 0 1; do
    if ! kill -0 "${workers[$i]}" 2>/dev/null; then
      wait "${workers[$i]}" 2>/dev/null && status=0 || status=$?
      own_exits=$((own_exits + 1)); log "worker $i exited by itself (status $status): restarted"
      spawn_worker "$i"
    fi
  done
}
wait_for_accepted() {
  local target=$1
  while [ "$(accepted)" -lt "$target" ]; do supervise; sleep 0.1; done
}
kill_worker() {
  wait_for_accepted "$1"
  kill -KILL "${workers[$2]}"; wait "${workers[$2]}" 2>/dev/null || true
  kills=$((kills + 1)); log "SIGKILL worker $2 at $(accepted) accepted; restarted"
  spawn_worker "$2"
}

kill_worker $((total * 10 / 100)) 0
wait_for_accepted $((total * 25 / 100))
log "RabbitMQ stop_app at $(accepted) accepted"
rabbitmqctl -q stop_app >/dev/null; sleep 3; rabbitmqctl -q start_app >/dev/null
log "RabbitMQ start_app"
kill_worker $((total * 45 / 100)) 1
wait_for_accepted $((total * 60 / 100))
terminated=$(sql "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '$db' AND pid <> pg_backend_pid()")
log "terminated $terminated PostgreSQL connections at $(accepted) accepted"
kill_worker $((total * 75 / 100)) 0

deadline=$(( $(date +%s) + 900 ))
until [ "$(sql "SELECT COUNT(*) FROM notifications WHERE status NOT IN ('pending', 'queued', 'sending')")" -ge $total ] &&
  [ "$(sql "SELECT COUNT(*) FROM notifications WHERE status IN ('pending', 'queued', 'sending')")" = 0 ]; do
  supervise
  [ "$(date +%s)" -lt $deadline ] || { log "still unfinished after 15 minutes"; break; }
  sleep 0.2
done
in_queues() { rabbitmqctl -q list_queues name messages | awk -v q="$queue" 'index($1, q) == 1 { n += $2 } END { print n + 0 }'; }
# Stale copies (redelivered after a kill, parked for a retry) drain through the workers.
until [ "$(in_queues)" = 0 ] || [ "$(date +%s)" -ge $deadline ]; do supervise; sleep 0.5; done
finished=$(now)
log "push finished"
kill -TERM "${workers[@]}" "$scheduler"; wait "${workers[@]}" "$scheduler" 2>/dev/null || true

curl -sf "http://127.0.0.1:$port/accepted" >"$work/accepted.json"
curl -sf "http://127.0.0.1:$port/stats" >"$work/stats.json"
statuses=$(sql "SELECT month || ' ' || status || '=' || COUNT(*) FROM notifications GROUP BY month, status ORDER BY 1" | tr '\n' ' ')
# Every subscriber, for every month scheduled, has an accepted bill SMS.
unsent=$(sql "SELECT COUNT(*) FROM subscribers s, (SELECT DISTINCT month FROM notifications) m WHERE NOT EXISTS (
  SELECT 1 FROM notifications n WHERE n.subscriber_id = s.subscriber_id AND n.month = m.month AND n.status IN ('accepted', 'delivered'))")
months=$(sql "SELECT COUNT(DISTINCT month) FROM notifications")
left=$(in_queues)
invariants=$($bin verify 2>&1 | tr '\n' ' ' || true)
python3 - "$N" "$start" "$finished" "$work/accepted.json" "$work/stats.json" "$statuses" "$unsent" "$left" \
  "$kills" "$own_exits" "$terminated" "$invariants" "$work/scheduler.log" "$months" <<'PY'
import collections, json, sys
n, start, finished = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
accepted, stats = json.load(open(sys.argv[4])), json.load(open(sys.argv[5]))
statuses, unsent, left, kills, own_exits, terminated, invariants = sys.argv[6:13]
keys_twice = sum(1 for c in collections.Counter(a["key"] for a in accepted).values() if c > 1)
pairs_twice = sum(1 for c in collections.Counter((a["to"], a["text"]) for a in accepted).values() if c > 1)
months = int(sys.argv[14])
print(f"\nchaos run: {n} subscribers × {months} months, {float(finished) - start:.1f} s from the scheduler's start to drained")
requeued = sum(int(line.split("requeued=")[1].split()[0]) for line in open(sys.argv[13]) if "requeued=" in line)
print(f"faults: {kills} SIGKILLs, 1 RabbitMQ restart, {terminated} PostgreSQL connections terminated, "
      f"{own_exits} worker exits of their own; {requeued} notifications re-published by the scheduler")
print(f"gateway: {stats['requests']} requests, {stats['accepted']} accepted, "
      f"{stats['repeated_keys']} resends of an accepted key (answered 409)")
print(f"notifications: {statuses}")
checks = [
    ("subscribers with no accepted message", int(unsent), 0),
    ("idempotency keys accepted twice", keys_twice, 0),
    ("(number, text) pairs accepted twice", pairs_twice, 0),
    ("months scheduled", months, 2),
    ("messages accepted", len(accepted), months * n),
    ("messages left in the queues", int(left), 0),
]
failed = False
for name, value, expected in checks:
    ok = value == expected
    failed |= not ok
    print(f"{'ok  ' if ok else 'FAIL'} {name}: {value} (must be {expected})")
ok = invariants.strip() == "invariants hold"
failed |= not ok
print(f"{'ok  ' if ok else 'FAIL'} database invariants: {invariants.strip()}")
sys.exit(1 if failed else 0)
PY
