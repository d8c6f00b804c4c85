#!/usr/bin/env bash
# End-to-end drill against a real Jasmin SMS gateway (0.11.0 from PyPI, in a venv) running on
# 127.0.0.1 with this machine's RabbitMQ (a vhost of its own) and Redis, and a minimal SMPP
# SMSC (scripts/jasmin/smsc.py) that answers every message with a delivery receipt.
# In `http` mode billpush pushes N bills through RabbitMQ to Jasmin's HTTP API and Jasmin's
# receipts come back to `billpush serve`; in `smpp` mode billpush binds to Jasmin's SMPP server
# (smpps, as the drill's user) and the receipts come back as deliver_sm on its binds. Exits
# non-zero unless every bill is accepted once, in the right number of parts and encoding, and
# delivered.
#   scripts/jasmin-peer.sh [N=300] [http|smpp]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300}
MODE=${2:-http}
case "$MODE" in http|smpp) ;; *) echo "mode must be http or smpp" >&2; exit 2 ;; esac
scripts/services.sh
redis-cli -h 127.0.0.1 ping >/dev/null || { echo "Redis must run on 127.0.0.1:6379" >&2; exit 1; }
cargo build --release --quiet
bin=$PWD/target/release/billpush

venv=${JASMIN_VENV:-$HOME/.cache/billpush/jasmin-0.11.0}
if [ ! -x "$venv/bin/jasmind.py" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet jasmin==0.11.0
fi
work=$(mktemp -d)
# Jasmin's AMQP spec file ships in its source distribution only.
"$venv/bin/pip" download --quiet --no-deps --no-binary :all: -d "$work/sdist" jasmin==0.11.0
tar xzf "$work"/sdist/jasmin-0.11.0.tar.gz -C "$work" jasmin-0.11.0/misc/config/resource

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http_port=$(port); smpp_port=$(port); jcli_port=$(port); router_port=$(port); smpppb_port=$(port); smsc_port=$(port); api_port=$(port); cm_port=$(port)
vhost="billpush-jasmin-$$"; db="billpush_jasmin_$$"; queue="billpush-jasmin-$$"; redis_db=11
cleanup() {
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  rabbitmqctl -q delete_vhost "$vhost" >/dev/null 2>&1 || true
  for q in "$queue" "$queue.dead"; do rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true; done
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db" >/dev/null
  redis-cli -n $redis_db flushdb >/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
rabbitmqctl -q add_vhost "$vhost"
rabbitmqctl -q set_permissions -p "$vhost" guest ".*" ".*" ".*"
redis-cli -n $redis_db flushdb >/dev/null

mkdir -p "$work/log" "$work/store"
cat > "$work/jasmin.cfg" <<CFG
[amqp-broker]
host = 127.0.0.1
vhost = $vhost
spec = $work/jasmin-0.11.0/misc/config/resource/amqp0-9-1.xml
[redis-client]
host = 127.0.0.1
dbid = $redis_db
[http-api]
bind = 127.0.0.1
port = $http_port
[smpp-server]
bind = 127.0.0.1
port = $smpp_port
[smpp-server-pb]
bind = 127.0.0.1
port = $smpppb_port
[router]
bind = 127.0.0.1
port = $router_port
store_path = $work/store
[client-management]
bind = 127.0.0.1
port = $cm_port
store_path = $work/store
[dlr-thrower]
retry_delay = 5
max_retries = 10
[jcli]
bind = 127.0.0.1
port = $jcli_port
authentication = False
CFG
python3 scripts/jasmin/smsc.py "$smsc_port" > "$work/smsc-accepted.txt" &
LOG_PATH="$work/log" STORE_PATH="$work/store" "$venv/bin/python" "$venv/bin/jasmind.py" -c "$work/jasmin.cfg" \
  --enable-dlr-thrower --enable-dlr-lookup > "$work/log/jasmind.out" 2>&1 &
for _ in $(seq 60); do (exec 3<>"/dev/tcp/127.0.0.1/$jcli_port") 2>/dev/null && break; sleep 0.5; done
python3 scripts/jasmin/jcli.py "$jcli_port" "$smsc_port" billpush drillpw

inbound_token=$($bin token --name jasmin --role jasmin | sed -n 's/^token: //p')
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
if [ "$MODE" = smpp ]; then
  gateway_block="[gateway]
kind = \"smpp\"
idempotent = false
rate_per_second = 200
[smpp]
host = \"127.0.0.1\"
port = $smpp_port
system_id = \"billpush\"
password = \"drillpw\"
binds = 2"
else
  gateway_block="[gateway]
kind = \"jasmin\"
url = \"http://127.0.0.1:$http_port\"
username = \"billpush\"
password = \"drillpw\"
token = \"$inbound_token\"
idempotent = false
rate_per_second = 200"
fi
cat > "$work/billpush.toml" <<CFG
[database]
url = "postgres://postgres@127.0.0.1/$db"
[queue]
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
name = "$queue"
$gateway_block
[sms]
quiet_start = "00:00"
quiet_end = "00:00"
[api]
bind = "127.0.0.1:$api_port"
public_url = "http://127.0.0.1:$api_port"
tokens = [{ name = "jasmin", token_sha256 = "$(printf %s "$inbound_token" | sha256sum | cut -d' ' -f1)", role = "jasmin" }]
CFG
python3 scripts/population.py "$work" "$N" J 137
cfg=(--config "$work/billpush.toml")
for kind in plans subscribers usage; do $bin "${cfg[@]}" import $kind "$work/$kind.csv" >/dev/null; done
if [ "$MODE" = http ]; then $bin "${cfg[@]}" serve 2>"$work/log/serve.log" & fi
$bin "${cfg[@]}" run --month 2026-10 --as-of 2027-01-01T00:00:00+08:00 2>"$work/log/run.log"
for _ in $(seq 240); do
  $bin "${cfg[@]}" status --month 2026-10 | grep -q "deliveries delivered=$N\$" && break
  sleep 0.5
done
$bin "${cfg[@]}" status --month 2026-10
if ! $bin "${cfg[@]}" status --month 2026-10 | grep -q "deliveries delivered=$N\$"; then
  kept=$(mktemp -d /tmp/billpush-jasmin-logs.XXXX); cp -r "$work/log" "$work/smsc-accepted.txt" "$kept/"
  echo "FAILED: not every bill was delivered; logs kept in $kept" >&2
  exit 1
fi
# A long message reaches the SMSC as one submit_sm per part: each number must have exactly its
# bill's segments, every part in its bill's data_coding (0 GSM 7-bit, 8 UCS-2).
$bin "${cfg[@]}" export deliveries --month 2026-10 > "$work/deliveries.jsonl"
python3 - "$work/deliveries.jsonl" "$work/smsc-accepted.txt" "$N" <<'PY' || exit 1
import collections, json, sys
deliveries = [json.loads(line) for line in open(sys.argv[1])]
parts = collections.defaultdict(list)
for line in open(sys.argv[2]):
    number, coding = line.split()
    parts[number].append(int(coding))
wrong = []
for d in deliveries:
    got = parts.pop(d["msisdn"].lstrip("+"), [])
    want = [8 if d["encoding"] == "ucs2" else 0] * d["segments"]
    if got != want:
        wrong.append(f'{d["msisdn"]}: got codings {got}, expected {want}')
wrong += [f"{number}: not a bill's number" for number in parts]
if wrong or len(deliveries) != int(sys.argv[3]):
    print("FAILED:", len(deliveries), "bills;", "; ".join(wrong[:5]), file=sys.stderr)
    sys.exit(1)
ucs2 = sum(d["encoding"] == "ucs2" for d in deliveries)
print(f"{sum(d['segments'] for d in deliveries)} parts at the SMSC, {ucs2} bills in UCS-2, each in its segments")
PY
case "$MODE" in
  http) how="receipts through /api/v1/dlr/jasmin" ;;
  smpp) how="bound to Jasmin's SMPP server, receipts as deliver_sm" ;;
esac
echo "jasmin drill ($MODE): $N bills sent once each and delivered ($how)"
