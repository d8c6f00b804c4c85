#!/usr/bin/env bash
# End-to-end benchmark on PostgreSQL + RabbitMQ with the mock gateway accepting everything at full
# speed, next to the raw limits of this machine measured in the same run, then the embedded
# default (SQLite, in-process queue, sink gateway) on the same data. Prints one table: per stage
# its throughput, wall time, peak RSS of the billpush process(es), the raw baseline and the ratio.
#   scripts/bench.sh [N subscribers=1000000] [K records per subscriber=20]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}; K=${2:-20}; W=2
scripts/services.sh
. scripts/drill-env.sh bench --example raw_limits
cp "$built/examples/raw_limits" "$work/"; raw=$work/raw_limits; month=2026-10
results=$work/results
record() { echo "$1 $2" >>"$results"; }
now() { date +%s.%N; }
# Runs a billpush command under /usr/bin/time; records its wall time and peak RSS as STAGE.
timed() {
  local stage=$1; shift
  local started; started=$(now)
  /usr/bin/time -f "%M" -o "$work/rss.$stage" "$@" >"$work/out.$stage" 2>"$work/err.$stage" ||
    { cat "$work/err.$stage" >&2; exit 1; }
  record "$stage.seconds" "$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$started" "$(now)")"
  record "$stage.rss_kb" "$(tail -n 1 "$work/rss.$stage")"
}
psql_time() { # seconds the statements given take together, by psql's own \timing
  local statements=(); for statement in "$@"; do statements+=(-c "$statement"); done
  psql -h 127.0.0.1 -U postgres -d "$db" -q -o /dev/null -c '\timing on' "${statements[@]}" 2>&1 |
    awk '/^Time:/ { s += $2 } END { print s / 1000 }'
}

echo "bench: $N subscribers × $K records, PostgreSQL + RabbitMQ, $W workers, mock gateway, $profile build" >&2
timed gen "$bin" gen --subscribers "$N" --records-per-subscriber "$K" --months $month --out "$work/data"
usage_rows=$(($(wc -l <"$work/data/usage.csv") - 1)); record usage.rows "$usage_rows"

export BILLPUSH_GATEWAY__WORKERS=$W BILLPUSH_GATEWAY__RATE_PER_SECOND=100000000 RUST_LOG=warn
"$bin" import plans "$work/data/plans.csv" >/dev/null
timed import_subscribers "$bin" import subscribers "$work/data/subscribers.csv"
timed import_usage "$bin" import usage "$work/data/usage.csv"
timed import_orders "$bin" import orders "$work/data/orders.csv"

# Raw ingest: COPY of the same file into a table of the same shape and keys.
psql -h 127.0.0.1 -U postgres -d "$db" -qc "CREATE TABLE raw_usage (record_id TEXT COLLATE \"C\" PRIMARY KEY,
  subscriber_id TEXT COLLATE \"C\" NOT NULL, occurred_at TIMESTAMPTZ NOT NULL, category TEXT COLLATE \"C\" NOT NULL,
  quantity BIGINT NOT NULL, amount_fen BIGINT NOT NULL, service_code TEXT COLLATE \"C\" NOT NULL,
  description TEXT COLLATE \"C\" NOT NULL); CREATE INDEX ON raw_usage (subscriber_id, occurred_at)"
record raw_copy.seconds "$(psql_time "\\copy raw_usage FROM '$work/data/usage.csv' WITH (FORMAT csv, HEADER true, FORCE_NOT_NULL (service_code, description))")"
psql -h 127.0.0.1 -U postgres -d "$db" -q -c "DROP TABLE raw_usage" -c "VACUUM ANALYZE"
# Raw aggregation: the bare GROUP BY a bill needs, with nothing written.
record raw_group_by.seconds "$(psql_time "SELECT subscriber_id, category, SUM(amount_fen), COUNT(*) FROM usage_records GROUP BY subscriber_id, category")"

timed schedule "$bin" schedule --month $month --as-of 2027-01-01T00:00:00+08:00
# A build writes every bill with its flags, then renders and writes every notification.
record build.seconds "$(psql -h 127.0.0.1 -U postgres -d "$db" -tAc "SELECT (billed_at - started_at) / 1e6 FROM billing_runs")"
record render.seconds "$(psql -h 127.0.0.1 -U postgres -d "$db" -tAc "SELECT (finished_at - billed_at) / 1e6 FROM billing_runs")"
record notifications "$(psql -h 127.0.0.1 -U postgres -d "$db" -tAc "SELECT COUNT(*) FROM notifications WHERE status = 'queued'")"
record bills "$(psql -h 127.0.0.1 -U postgres -d "$db" -tAc "SELECT COUNT(*) FROM bills")"
# Raw write: what each pass wrote (bills and flags; notifications and their first statuses), by
# COPY into empty tables of the same shape, keys and indexes (`LIKE … INCLUDING ALL`; foreign
# keys are not copied, which only makes the baseline faster; a partitioned table's keys are its
# partitions'). Generated columns are left out, and the copy computes them again as the build
# did.
raw_write() { # STAGE TABLE…
  local stage=$1; shift
  local columns=()
  for t in "$@"; do
    columns+=("$(psql -h 127.0.0.1 -U postgres -d "$db" -tAc "SELECT string_agg(column_name, ', ' ORDER BY ordinal_position)
      FROM information_schema.columns WHERE table_name = '$t' AND is_generated = 'NEVER'")")
    where=""; [ $t = notification_events ] && where="WHERE status <> 'queued'"
    psql -h 127.0.0.1 -U postgres -d "$db" -qc "CREATE TABLE raw_$t (LIKE $t INCLUDING ALL)" \
      -c "\\copy (SELECT ${columns[-1]} FROM $t $where) TO '$work/raw_$t.copy'"
  done
  local copies=() i=0
  for t in "$@"; do copies+=("\\copy raw_$t (${columns[$i]}) FROM '$work/raw_$t.copy'"); i=$((i + 1)); done
  record "$stage.seconds" "$(psql_time "${copies[@]}")"
  for t in "$@"; do psql -h 127.0.0.1 -U postgres -d "$db" -qc "DROP TABLE raw_$t"; rm "$work/raw_$t.copy"; done
}
raw_write raw_write bills charge_flags
raw_write raw_write_notifications notifications notification_events

/usr/bin/time -f "%M" -o "$work/rss.mock" "$bin" mock-gateway --bind "127.0.0.1:$port" --token bench >/dev/null 2>&1 &
until curl -sf "http://127.0.0.1:$port/stats" >/dev/null; do sleep 0.1; done
started=$(now)
for i in $(seq "$W"); do
  /usr/bin/time -f "%M" -o "$work/rss.worker$i" "$bin" worker >/dev/null 2>"$work/err.worker$i" &
done
expected=$(grep '^notifications ' "$results" | cut -d' ' -f2)
# Watch the gateway's own count, which costs the database nothing, then wait for the last
# outcomes to be written. The push ends at the last outcome's own timestamp, not at the poll
# that saw it: a poll every 0.2 s would add 0.1 s on average, a seventh of a 10k push.
until [ "$(accepted)" -ge "$expected" ]; do
  sleep 0.2
done
until [ "$(psql -h 127.0.0.1 -U postgres -d "$db" -tAc "SELECT COUNT(*) FROM notifications WHERE status = 'accepted'")" -ge "$expected" ]; do
  sleep 0.05
done
last_accepted=$(psql -h 127.0.0.1 -U postgres -d "$db" -tAc "SELECT MAX(updated_at) FROM notifications WHERE status = 'accepted'")
record push.seconds "$(python3 -c "import sys; print(int(sys.argv[2]) / 1e6 - float(sys.argv[1]))" "$started" "$last_accepted")"
pkill -TERM -f "^$bin worker" || true
for i in $(seq "$W"); do while [ ! -s "$work/rss.worker$i" ]; do sleep 0.1; done; done
record push.rss_kb "$(cat "$work"/rss.worker* | sort -n | tail -n 1)"

# Raw limits of the broker and the gateway, same message size and concurrency.
record raw_broker "$("$raw" broker --messages "$(( (expected + 99) / 100 > 2000 ? (expected + 99) / 100 : 2000 ))")"
gateway_requests=$(( expected < 200000 ? (expected > 20000 ? expected : 20000) : 200000 ))
record raw_gateway "$("$raw" gateway --url "http://127.0.0.1:$port" --token bench --requests "$gateway_requests" --concurrency $((32 * W)))"
pkill -TERM -f "^$bin mock-gateway --bind 127.0.0.1:$port" || true

# The console's pages on the pushed month (docs/contract.md §10), statistics up to date as
# autovacuum would leave them.
psql -h 127.0.0.1 -U postgres -d "$db" -qc "ANALYZE"
BILLPUSH_BIN=$bin scripts/console-bench.sh "$BILLPUSH_DATABASE__URL" $month 20 >"$work/console.txt"

# The embedded default on the same data: SQLite, in-process queue, sink gateway.
mkdir -p "$work/embedded"
(
  cd "$work/embedded"
  unset BILLPUSH_QUEUE__URL BILLPUSH_GATEWAY__KIND BILLPUSH_GATEWAY__URL BILLPUSH_GATEWAY__RATE_PER_SECOND
  export BILLPUSH_DATABASE__URL="sqlite://$work/embedded/billpush.db"
  export BILLPUSH_GATEWAY__RATE_PER_SECOND=100000000 BILLPUSH_GATEWAY__OUTBOX="$work/embedded/outbox.jsonl"
  "$bin" import plans "$work/data/plans.csv" >/dev/null
  timed embedded_import_subscribers "$bin" import subscribers "$work/data/subscribers.csv"
  timed embedded_import_usage "$bin" import usage "$work/data/usage.csv"
  timed embedded_import_orders "$bin" import orders "$work/data/orders.csv"
  timed embedded_run "$bin" run --month $month --as-of 2027-01-01T00:00:00+08:00
)
record embedded.sent "$(wc -l <"$work/embedded/outbox.jsonl")"

python3 - "$N" "$K" "$results" <<'PY'
import json, sys
n, k = int(sys.argv[1]), int(sys.argv[2])
r = {}
for line in open(sys.argv[3]):
    key, value = line.rstrip("\n").split(" ", 1)
    r[key] = value
f = lambda key: float(r[key])
rss = lambda key: f"{int(r[key]) / 1024:.0f} MB" if key in r else "-"
broker, gateway = json.loads(r["raw_broker"]), json.loads(r["raw_gateway"])
rows, sms, sent = int(r["usage.rows"]), int(r["notifications"]), int(r["embedded.sent"])
raw_copy = rows / f("raw_copy.seconds")
raw_group = n / f("raw_group_by.seconds")
bills = int(r["bills"])
raw_write = bills / f("raw_write.seconds")
raw_write_notifications = bills / f("raw_write_notifications.seconds")
raw_push = min(broker["consume_ack_multiple_100_per_s"] * 100, gateway["requests_per_s"])
raw_queue = broker["publish_per_s"] * 100
stages = [
    ("gen (CSV files)", f"{rows / f('gen.seconds'):,.0f} rows/s", f("gen.seconds"), rss("gen.rss_kb"), "", ""),
    ("import subscribers", f"{n / f('import_subscribers.seconds'):,.0f} rows/s", f("import_subscribers.seconds"), rss("import_subscribers.rss_kb"), "", ""),
    ("import usage", f"{rows / f('import_usage.seconds'):,.0f} rows/s", f("import_usage.seconds"), rss("import_usage.rss_kb"),
     f"COPY {raw_copy:,.0f} rows/s", f"{rows / f('import_usage.seconds') / raw_copy:.0%}"),
    ("build (bills + flags)", f"{n / f('build.seconds'):,.0f} bills/s", f("build.seconds"), rss("schedule.rss_kb"),
     f"GROUP BY {raw_group:,.0f} subs/s", f"{n / f('build.seconds') / raw_group:.0%}"),
    ("build, against writing its output", f"{bills / f('build.seconds'):,.0f} bills/s", f("build.seconds"), "",
     f"COPY of its rows {raw_write:,.0f} bills/s", f"{bills / f('build.seconds') / raw_write:.0%}"),
    ("render (SMS text + notifications)", f"{bills / f('render.seconds'):,.0f} msgs/s", f("render.seconds"), "",
     f"COPY of its rows {raw_write_notifications:,.0f} msgs/s", f"{bills / f('render.seconds') / raw_write_notifications:.0%}"),
    # Pages are queued as they are rendered: the two overlap, so they are timed together.
    ("schedule (build, render + queue)", f"{sms / f('schedule.seconds'):,.0f} msgs/s", f("schedule.seconds"), rss("schedule.rss_kb"),
     f"publish {raw_queue:,.0f} ids/s", f"{sms / f('schedule.seconds') / raw_queue:.0%}"),
    ("push (RabbitMQ → gateway)", f"{sms / f('push.seconds'):,.0f} SMS/s", f("push.seconds"), rss("push.rss_kb") + " each",
     f"min(broker, gateway) {raw_push:,.0f}/s", f"{sms / f('push.seconds') / raw_push:.0%}"),
    ("end to end (build → last accepted)", f"{sms / (f('schedule.seconds') + f('push.seconds')):,.0f} SMS/s",
     f("schedule.seconds") + f("push.seconds"), "", "", ""),
    ("embedded import usage (SQLite)", f"{rows / f('embedded_import_usage.seconds'):,.0f} rows/s", f("embedded_import_usage.seconds"), rss("embedded_import_usage.rss_kb"), "", ""),
    ("embedded run (build → sink)", f"{sent / f('embedded_run.seconds'):,.0f} SMS/s", f("embedded_run.seconds"), rss("embedded_run.rss_kb"), "", ""),
]
print(f"\n{n:,} subscribers × {k} records ({rows:,} usage rows), {sms:,} bill SMS")
print(f"{'stage':36} {'throughput':>18} {'wall':>9} {'peak RSS':>12}  {'raw baseline':>30} {'ratio':>6}")
for name, rate, seconds, mem, base, ratio in stages:
    print(f"{name:36} {rate:>18} {seconds:>8.1f}s {mem:>12}  {base:>30} {ratio:>6}")
print(f"raw broker: publish {broker['publish_per_s']:,.0f} msg/s, consume ack-each {broker['consume_ack_each_per_s']:,.0f} msg/s, "
      f"ack-multiple {broker['consume_ack_multiple_100_per_s']:,.0f} msg/s ({broker['payload_bytes']} B, 100 ids each); "
      f"raw gateway: {gateway['requests_per_s']:,.0f} req/s (64 in flight)")
print(f"build's floor: the bare GROUP BY {f('raw_group_by.seconds'):.1f} s, then COPY of the rows the build writes "
      f"{f('raw_write.seconds'):.1f} s ({bills:,} bills and their flags); the build took {f('build.seconds'):.1f} s, "
      f"then rendering {f('render.seconds'):.1f} s (COPY of its notifications and first statuses {f('raw_write_notifications.seconds'):.1f} s)")
print(f"per subscriber: import {f('import_usage.seconds') / n * 1e6:.1f} µs, build {f('build.seconds') / n * 1e6:.1f} µs, "
      f"render {f('render.seconds') / n * 1e6:.1f} µs, "
      f"push {f('push.seconds') / sms * 1e6:.1f} µs, embedded run {f('embedded_run.seconds') / sent * 1e6:.1f} µs")
PY
cat "$work/console.txt"
