# Sourced by the drills (bench, chaos, push-drill) from the project root: the binary built (with
# TARGETS, more of cargo build's target options) and copied to a scratch directory, a fresh
# PostgreSQL database and broker queue prefix, a free port for the mock gateway, billpush's
# environment pointing at them, and their removal on exit. A drill may define before_cleanup()
# to add to the cleanup.
#   . scripts/drill-env.sh NAME [TARGETS…]
# The release build by default. DRILL_PROFILE=dev runs on the debug build instead: the test
# suite's small runs use the build its tests have just made, since they check what happens, not
# how fast, and a release build of its own took the suite longer than everything else together.
drill=$1; shift
profile=${DRILL_PROFILE:-release}
cargo build --profile "$profile" --quiet --bin billpush "$@"
built=target/$([ "$profile" = dev ] && echo debug || echo "$profile")
work=$(mktemp -d)
# A copy, so that a rebuild while the drill runs does not change what it runs.
cp "$built/billpush" "$work/"; bin=$work/billpush
db="billpush_${drill}_$$"; queue="billpush-${drill}-$$"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cleanup() {
  if declare -F before_cleanup >/dev/null; then before_cleanup; fi
  kill $(jobs -p) 2>/dev/null || true; wait 2>/dev/null || true
  psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null
  for q in $(rabbitmqctl -q list_queues name 2>/dev/null | grep "^$queue" || true); do
    rabbitmqctl -q delete_queue "$q" >/dev/null 2>&1 || true
  done
  rm -rf "$work"
}
trap cleanup EXIT
psql -h 127.0.0.1 -U postgres -qc "CREATE DATABASE $db"
export BILLPUSH_DATABASE__URL="postgres://postgres@127.0.0.1/$db"
export BILLPUSH_QUEUE__URL="amqp://guest:guest@127.0.0.1:5672/%2f" BILLPUSH_QUEUE__NAME="$queue"
export BILLPUSH_GATEWAY__KIND=http BILLPUSH_GATEWAY__URL="http://127.0.0.1:$port" BILLPUSH_GATEWAY__TOKEN=$drill
export BILLPUSH_SMS__QUIET_START=00:00 BILLPUSH_SMS__QUIET_END=00:00
# Messages the mock gateway has accepted, cut out of its /stats by sed: a Python start-up per
# poll took a tenth of the two cores away from the push being measured.
accepted() { curl -sf "http://127.0.0.1:$port/stats" | sed -n 's/.*"accepted":\([0-9]*\).*/\1/p'; }
