#!/usr/bin/env bash
# Fuzzes every input reader (CSV rows and whole files, numbers, replies, SMS segmentation) with
# many generated cases per target, each bounded in time. A failure prints the smallest input
# that breaks it (proptest shrinks it) and the script exits non-zero.
#   scripts/fuzz.sh [CASES=20000] [SECONDS per target=120]
set -euo pipefail
cd "$(dirname "$0")/.."
CASES=${1:-20000}; LIMIT=${2:-120}
targets=(
  csv_rows_of_every_kind_parse_or_reject_without_panicking
  usage_rows_that_parse_keep_the_contract
  arbitrary_files_import_or_are_refused_without_panicking
  numbers_normalise_to_themselves_or_are_refused
  any_reply_text_parses_without_panicking
  any_text_segments_into_parts_that_reassemble_within_their_limits
)
cargo test --release --locked --test fuzz --no-run --quiet
failed=0
for target in "${targets[@]}"; do
  start=$(date +%s.%N)
  set +e
  PROPTEST_CASES=$CASES timeout "$LIMIT" cargo test --release --locked --quiet --test fuzz -- --exact "$target" >/tmp/fuzz.$$.log 2>&1
  status=$?
  set -e
  took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.1f}')" "$start" "$(date +%s.%N)")
  case $status in
    0) echo "ok       $target: $CASES cases in ${took}s" ;;
    124) echo "ok       $target: stopped at the ${LIMIT}s bound with no failure" ;;
    *) echo "FAILED   $target"; cat /tmp/fuzz.$$.log; failed=1 ;;
  esac
done
rm -f /tmp/fuzz.$$.log
exit $failed
