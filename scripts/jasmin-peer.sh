#!/usr/bin/env bash
# End-to-end drill against a real Jasmin SMS gateway (0.11.0 from PyPI, in a venv) running on
# 127.0.0.1 with this machine's RabbitMQ (a vhost of its own) and Redis, and a minimal SMPP
# SMSC (scripts/jasmin/smsc.py) that answers every message with a delivery receipt.
# billpush pushes N bills through RabbitMQ to Jasmin's HTTP API; Jasmin's receipts come back
# to `billpush serve`. Exits non-zero unless every bill is accepted once and delivered.
#   scripts/jasmin-peer.sh [N=300]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-300}
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
cat > "$work/billpush.toml" <<CFG
[database]
url = "postgres://postgres@127.0.0.1/$db"
[queue]
url = "amqp://guest:guest@127.0.0.1:5672/%2f"
name = "$queue"
[gateway]
kind = "jasmin"
url = "http://127.0.0.1:$http_port"
username = "billpush"
password = "drillpw"
token = "$inbound_token"
idempotent = false
rate_per_second = 200
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
$bin "${cfg[@]}" serve 2>"$work/log/serve.log" &
$bin "${cfg[@]}" run --month 2026-10 --as-of 2027-01-01T00:00:00+08:00
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
# A long message reaches the SMSC as one submit_sm per part; count numbers, not parts.
numbers=$(sort -u "$work/smsc-accepted.txt" | wc -l)
parts=$(wc -l < "$work/smsc-accepted.txt")
expected_parts=$($bin "${cfg[@]}" export deliveries --month 2026-10 | python3 -c 'import json,sys; print(sum(json.loads(l)["segments"] for l in sys.stdin))')
if [ "$numbers" -ne "$N" ] || [ "$parts" -ne "$expected_parts" ]; then
  echo "FAILED: the SMSC got $parts parts for $numbers numbers; expected $expected_parts parts for $N" >&2
  exit 1
fi
echo "jasmin drill: $N bills sent once each ($parts parts at the SMSC) and delivered (receipts through /api/v1/dlr/jasmin)"
