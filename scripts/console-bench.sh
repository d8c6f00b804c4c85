#!/usr/bin/env bash
# Times the console's pages (docs/contract.md §10) on a PostgreSQL database that holds a pushed
# month: `billpush serve` on it, signed in as an operator, each page asked N times one after
# another, and the delivery search by number for N different subscribers (typed without +86).
# Prints p50, p95 and the slowest answer per page, in milliseconds.
#   scripts/console-bench.sh DATABASE_URL MONTH [N=40]
# BILLPUSH_BIN picks the binary (default: the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
url=$1; month=$2; n=${3:-40}
bin=${BILLPUSH_BIN:-$PWD/target/release/billpush}
work=$(mktemp -d)
cleanup() { kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
minted=$("$bin" token --name console-bench --role operator)
token=$(sed -n 's/^token: //p' <<<"$minted")
cat > "$work/billpush.toml" <<CFG
[database]
url = "$url"
[sms]
quiet_start = "00:00"
quiet_end = "00:00"
[api]
bind = "127.0.0.1:$port"
tokens = [$(sed -n 's/^config: //p' <<<"$minted")]
CFG
"$bin" --config "$work/billpush.toml" serve >"$work/serve.log" 2>&1 &
echo $! >"$work/pid"
base=http://127.0.0.1:$port
for _ in $(seq 1 300); do curl -fs "$base/healthz" >/dev/null && break; sleep 0.1; done
cookie=$(curl -s -D - -o /dev/null --data-urlencode "token=$token" "$base/console/login" |
  sed -n 's/^[Ss]et-[Cc]ookie: \(billpush_session=[^;]*\).*/\1/p')
[ -n "$cookie" ] || { echo "could not sign in" >&2; cat "$work/serve.log" >&2; exit 1; }
time_page() { # NAME URL: one line "NAME status seconds"
  curl -s -o /dev/null -H "Cookie: $cookie" -w "$1 %{http_code} %{time_total}\n" "$2"
}
subscriber=$(psql "$url" -tAc "SELECT subscriber_id FROM bills WHERE month = '$month' ORDER BY subscriber_id LIMIT 1")
for _ in $(seq 1 "$n"); do
  time_page overview "$base/console/months/$month"
  time_page deliveries "$base/console/deliveries?month=$month"
  time_page flags "$base/console/flags?month=$month"
  time_page disputes "$base/console/disputes?month=$month"
  time_page spam "$base/console/spam?month=$month"
  time_page subscriber "$base/console/subscribers/$subscriber"
  time_page audit "$base/console/audit"
done >"$work/times"
psql "$url" -tAc "SELECT substr(msisdn, 4) FROM subscribers WHERE msisdn LIKE '+86%' ORDER BY md5(subscriber_id) LIMIT $n" |
  while read -r number; do time_page search "$base/console/deliveries?msisdn=$number"; done >>"$work/times"
python3 - "$work/times" <<'PY'
import sys, collections
times = collections.defaultdict(list)
for line in open(sys.argv[1]):
    name, status, seconds = line.split()
    if status != "200":
        sys.exit(f"{name}: answered {status}")
    times[name].append(float(seconds) * 1000)
print(f"{'page':<12}{'n':>5}{'p50 ms':>10}{'p95 ms':>10}{'max ms':>10}")
for name, ms in times.items():
    ms.sort()
    p = lambda q: ms[min(len(ms) - 1, int(q * len(ms)))]
    print(f"{name:<12}{len(ms):>5}{p(0.5):>10.1f}{p(0.95):>10.1f}{ms[-1]:>10.1f}")
PY
