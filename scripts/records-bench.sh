#!/usr/bin/env bash
# Records at size on PostgreSQL (docs/contract.md §11): a delivery log of 10 months × N
# subscribers' bills, then the regulator's lookup of one number through the API (p50/p99), a
# month's report, a month's CSV export, and the purge of the oldest month.
#   scripts/records-bench.sh [N subscribers=1400000]
# Data: `gen --subscribers N --records-per-subscriber 1` imported, October 2026 built and pushed
# by `run` (sink gateway), then the October notifications copied by SQL into January to
# September under new ids, each with two status events (queued, delivered): 10 × N
# notifications in ten monthly partitions.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1400000}
scripts/services.sh
. scripts/drill-env.sh records
export BILLPUSH_QUEUE__URL=memory:// BILLPUSH_GATEWAY__KIND=sink BILLPUSH_GATEWAY__OUTBOX=$work/outbox.jsonl
export BILLPUSH_GATEWAY__RATE_PER_SECOND=100000000 RUST_LOG=warn
sql() { psql -h 127.0.0.1 -U postgres -d "$db" -qAt -v ON_ERROR_STOP=1 "$@"; }
seconds() { local started=$1; python3 -c "import sys,time; print(round(time.time() - float(sys.argv[1]), 2))" "$started"; }

echo "records bench: $N subscribers, 10 months, $profile build" >&2
"$bin" gen --subscribers "$N" --records-per-subscriber 1 --months 2026-10 --out "$work/data" >/dev/null
"$bin" import plans "$work/data/plans.csv" >/dev/null
"$bin" import subscribers "$work/data/subscribers.csv" >/dev/null
"$bin" import usage "$work/data/usage.csv" >/dev/null
"$bin" run --month 2026-10 --as-of 2026-11-05T00:00:00+08:00 >/dev/null
started=$(date +%s.%N)
for m in 01 02 03 04 05 06 07 08 09; do
  sql -c "CREATE TABLE notifications_p2026_$m PARTITION OF notifications FOR VALUES IN ('2026-$m') WITH (fillfactor = 60);
          CREATE TABLE notification_events_p2026_$m PARTITION OF notification_events FOR VALUES IN ('2026-$m');
          INSERT INTO notifications (id, subscriber_id, month, kind, msisdn, status, reason, attempts, segments,
              encoding, text, gateway_message_id, created_at, updated_at, sender)
          SELECT id || '-$m', subscriber_id, '2026-$m', kind, msisdn, status, reason, attempts, segments, encoding,
              text, gateway_message_id || '-$m', created_at, updated_at, sender
          FROM notifications WHERE month = '2026-10';
          INSERT INTO notification_events (notification_id, month, status, at)
          SELECT id, month, s, updated_at FROM notifications_p2026_$m, unnest(ARRAY['queued', 'delivered']) AS s"
done
sql -c "VACUUM ANALYZE"
notifications=$(sql -c "SELECT COUNT(*) FROM notifications"); events=$(sql -c "SELECT COUNT(*) FROM notification_events")
echo "data: $notifications notifications, $events events, made in $(seconds "$started") s;" \
  "database $(sql -c "SELECT pg_size_pretty(pg_database_size(current_database()))")" >&2

# Lookup by number through the API: 1,000 numbers drawn at random, one request each.
minted=$("$bin" token --name bench --role regulator)
token=$(sed -n 's/^token: //p' <<<"$minted")
printf '[api]\ntokens = [%s]\n' "$(sed -n 's/^config: //p' <<<"$minted")" >"$work/config.toml"
api_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
BILLPUSH_CONFIG=$work/config.toml "$bin" serve --bind "127.0.0.1:$api_port" >"$work/serve.log" 2>&1 &
sql -c "SELECT msisdn FROM subscribers ORDER BY random() LIMIT 1000" >"$work/numbers"
python3 - "$api_port" "$token" "$work/numbers" <<'PY'
import json, sys, time, urllib.parse, urllib.request
port, token, numbers = sys.argv[1], sys.argv[2], open(sys.argv[3]).read().split()
base = f"http://127.0.0.1:{port}"
for _ in range(100):  # until the server answers
    try:
        urllib.request.urlopen(f"{base}/healthz", timeout=1); break
    except Exception:
        time.sleep(0.1)
took, found = [], 0
for number in numbers:
    request = urllib.request.Request(f"{base}/api/v1/deliveries?msisdn={urllib.parse.quote(number)}&limit=50",
                                     headers={"Authorization": f"Bearer {token}"})
    started = time.perf_counter()
    body = json.load(urllib.request.urlopen(request))
    took.append(time.perf_counter() - started)
    found += len(body["items"])
took.sort()
print(f"lookup by number: {len(took)} requests, {found} deliveries found; "
      f"p50 {took[len(took) // 2] * 1000:.1f} ms, p99 {took[int(len(took) * 0.99)] * 1000:.1f} ms, max {took[-1] * 1000:.1f} ms")
PY
kill %1 2>/dev/null || true

started=$(date +%s.%N)
"$bin" report --month 2026-10 --as-of 2026-11-20T00:00:00+08:00 >"$work/report.json"
echo "report 2026-10: $(seconds "$started") s ($(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['total']['subscribers_billed'])" "$work/report.json") subscribers billed)"

started=$(date +%s.%N)
"$bin" export deliveries --month 2026-10 --format csv --out "$work/deliveries.csv"
took=$(seconds "$started"); rows=$(($(wc -l <"$work/deliveries.csv") - 1))
echo "export deliveries 2026-10 (CSV): $rows rows in $took s, $(python3 -c "print(round($rows / $took))") rows/s"

# January 2026 ends 2026-01-31T16:00Z; 183 days later only January is past retention.
started=$(date +%s.%N)
"$bin" purge --as-of 2026-08-10T00:00:00Z >"$work/purge.out"
echo "purge of one month: $(seconds "$started") s: $(tr '\n' ' ' <"$work/purge.out")"
