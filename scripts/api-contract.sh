#!/usr/bin/env bash
# Checks the served API against its own OpenAPI document with schemathesis (from PyPI): the
# demo's data behind `billpush serve`, then generated requests with each role's token. Fails on
# any 5xx and on any answer that does not match the schema documented for its status.
#   scripts/api-contract.sh [EXAMPLES]     (default 25 per operation and token)
# DRILL_PROFILE=dev uses the debug build the test suite has just made.
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-25}
profile=${DRILL_PROFILE:-release}
cargo build --profile "$profile" --quiet --bin billpush
bin=$PWD/target/$([ "$profile" = dev ] && echo debug || echo "$profile")/billpush

venv=target/schemathesis
if [ ! -x "$venv/bin/st" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "schemathesis==4.32.5"
fi

work=$(mktemp -d)
cleanup() { kill "$(cat "$work/pid" 2>/dev/null)" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cd "$work"
"$bin" demo >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
entries=""
declare -A tokens
for role in regulator operator gateway jasmin; do
  minted=$("$bin" token --name "$role" --role "$role")
  tokens[$role]=$(sed -n 's/^token: //p' <<<"$minted")
  entries+="$(sed -n 's/^config: //p' <<<"$minted"), "
done
cat > billpush.toml <<CFG
[sms]
quiet_start = "00:00"
quiet_end = "00:00"
[api]
bind = "127.0.0.1:$port"
tokens = [${entries%, }]
CFG
"$bin" --config billpush.toml serve > serve.log 2>&1 &
echo $! > pid
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done

failed=0
for role in regulator operator gateway jasmin; do
  echo "api contract: role $role"
  if ! "$OLDPWD/$venv/bin/st" run "http://127.0.0.1:$port/api/v1/openapi.json" \
      --header "Authorization: Bearer ${tokens[$role]}" \
      --checks not_a_server_error,response_schema_conformance \
      --max-examples "$examples" --seed 1 --workers 2 --request-timeout 10 \
      --suppress-health-check all --phases examples,fuzzing > "st-$role.log" 2>&1; then
    failed=1
    tail -n 60 "st-$role.log"
  fi
  grep -E "passed|failed" "st-$role.log" | tail -n 3 || true
  [ -n "${API_CONTRACT_KEEP:-}" ] && cp "st-$role.log" "$API_CONTRACT_KEEP/"
done
[ "$failed" = 0 ] || { echo "api contract: failures (see above)"; exit 1; }
echo "api contract: every role's generated requests answered without a server error and as documented"
