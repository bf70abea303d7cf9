#!/usr/bin/env bash
# Short fuzzing run for CI: every cargo-fuzz target for a few seconds each,
# starting from the committed seed corpus (copied, so the checkout stays
# clean). Exits non-zero on any crash, panic or failed invariant; the
# failing input is kept under fuzz/artifacts/<target>/ and replays with
#   cargo +nightly fuzz run -s none <target> fuzz/artifacts/<target>/<file>
# Usage: fuzz/run-ci.sh [seconds per target, default 25]
set -euo pipefail
cd "$(dirname "$0")"
SECONDS_PER_TARGET="${1:-${FUZZ_SECONDS:-25}}"

if ! command -v cargo-fuzz >/dev/null; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# All our code is safe Rust: no sanitizer, for speed.
cargo +nightly fuzz build -s none
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for target in $(cargo +nightly fuzz list); do
  mkdir -p "$work/$target"
  seeds=()
  [ -d "corpus/$target" ] && seeds=("corpus/$target")
  echo "fuzzing $target for ${SECONDS_PER_TARGET}s"
  status=0
  cargo +nightly fuzz run -s none "$target" "$work/$target" "${seeds[@]}" -- \
    -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 >"$work/$target.log" 2>&1 \
    || status=$?
  # The progress lines are long; show the summary, and everything on failure.
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$work/$target.log"
    echo "fuzz target $target failed (exit $status)"
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$work/$target.log" || true
done
