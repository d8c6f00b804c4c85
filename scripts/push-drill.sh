#!/usr/bin/env bash
# Pushes N subscribers' bills through RabbitMQ with W worker processes to the mock gateway
# and prints the throughput and the busiest second the gateway saw.
#   scripts/push-drill.sh [N=10000] [RATE parts/s, 0 = unlimited] [W=2]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-10000}; RATE=${2:-0}; W=${3:-2}
scripts/services.sh
. scripts/drill-env.sh drill
export BILLPUSH_GATEWAY__WORKERS=$W
if [ "$RATE" -gt 0 ]; then export BILLPUSH_GATEWAY__RATE_PER_SECOND=$RATE; else export BILLPUSH_GATEWAY__RATE_PER_SECOND=100000000; fi

python3 scripts/population.py "$work" "$N" D 139
for kind in plans subscribers usage; do $bin import $kind "$work/$kind.csv" >/dev/null; done
$bin mock-gateway --bind "127.0.0.1:$port" --token drill >/dev/null &
start=$(date +%s.%N)
$bin schedule --month 2026-10 --as-of 2027-01-01T00:00:00+08:00 >/dev/null
scheduled=$(date +%s.%N)
for _ in $(seq "$W"); do $bin worker 2>/dev/null & done
until $bin status --month 2026-10 | grep -q "deliveries accepted=$N\$"; do sleep 0.2; done
done_at=$(date +%s.%N)
stats=$(curl -s "http://127.0.0.1:$port/stats")
python3 - "$N" "$start" "$scheduled" "$done_at" "$stats" "$RATE" "$W" <<'PY'
import json, sys
n, start, scheduled, done, stats, rate, w = int(sys.argv[1]), *map(float, sys.argv[2:5]), json.loads(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
print(f"subscribers {n}, workers {w}, rate limit {'none' if rate == 0 else f'{rate} parts/s'}")
print(f"schedule (build + queue) {scheduled - start:.2f} s  ({n / (scheduled - start):.0f} bills/s)")
print(f"push after scheduling     {done - scheduled:.2f} s  ({n / (done - scheduled):.0f} SMS/s)")
print(f"end to end                {done - start:.2f} s  ({n / (done - start):.0f} SMS/s)")
print(f"gateway: accepted {stats['accepted']}, repeated keys {stats['repeated_keys']}, busiest second {stats['max_parts_per_second']} parts")
PY
