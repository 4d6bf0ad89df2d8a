#!/usr/bin/env bash
# Run every test binary of the cargo project in the current folder, one target at a
# time, and close with one honest line: `tests: N passed, N failed, N skipped`.
#   scripts/cargo-tests.sh [CARGO ARGS...] [-- TEST ARGS...]   e.g. --release -- --test-threads 2
#
# Why one target at a time: `cargo test` stops at the first binary that fails to
# compile or fails (without --no-fail-fast), and then the counts say nothing about
# the binaries that never ran. Here:
# - a target that does not compile counts as 1 failed, and is named;
# - a binary that dies mid-run (abort, signal) counts every test it listed but never
#   reported as failed, and is named;
# - #[ignore]d tests, and tests that print `fbuild-test-skipped: NAME: why` because
#   this machine cannot run them, count as skipped, not passed;
# - no test at all is a failure, never "0 passed, 0 failed".
# Targets: `--lib` when src/lib.rs exists, and every tests/*.rs.
set -uo pipefail
cargo_args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do cargo_args+=("$1"); shift; done
[ "${1:-}" = "--" ] && shift
test_args=("$@")

targets=()
[ -f src/lib.rs ] && targets+=("lib")
for f in tests/*.rs; do
  [ -f "$f" ] && targets+=("$(basename "$f" .rs)")
done

log="$(mktemp)"
trap 'rm -f "$log"' EXIT
passed=0 failed=0 skipped=0
problems=()
for t in "${targets[@]}"; do
  if [ "$t" = lib ]; then sel=(--lib); name="src/lib.rs"; else sel=(--test "$t"); name="tests/$t.rs"; fi
  cargo test "${cargo_args[@]}" "${sel[@]}" -- "${test_args[@]}" >"$log" 2>&1
  status=$?
  cat "$log"
  running=$(grep -m1 -E '^ +Running ' "$log" || true)
  result=$(grep -E '^test result: ' "$log" | tail -1 || true)
  markers=$(grep -o 'fbuild-test-skipped: ' "$log" | wc -l)
  if [ -z "$running" ]; then
    failed=$((failed + 1))
    problems+=("$name did not compile (cargo exit $status): counted as 1 failed")
    continue
  fi
  if [ -n "$result" ]; then
    p=$(sed -E 's/.* ([0-9]+) passed.*/\1/' <<<"$result")
    f=$(sed -E 's/.* ([0-9]+) failed.*/\1/' <<<"$result")
    i=$(sed -E 's/.* ([0-9]+) ignored.*/\1/' <<<"$result")
  else
    # The binary died before its summary: whatever it listed and never reported
    # did not pass.
    bin=$(sed -E 's/.*\((.*)\)$/\1/' <<<"$running")
    listed=$("$bin" --list 2>/dev/null | grep -c ': test$' || true)
    p=$(grep -cE '^test .* \.\.\. ok$' "$log" || true)
    f=$(grep -cE '^test .* \.\.\. FAILED$' "$log" || true)
    i=$(grep -cE '^test .* \.\.\. ignored' "$log" || true)
    unrun=$((listed - p - f - i))
    [ "$unrun" -lt 0 ] && unrun=0
    problems+=("$name died before finishing (cargo exit $status): $unrun of its $listed tests never reported, counted as failed")
    f=$((f + unrun))
  fi
  passed=$((passed + p - markers))
  failed=$((failed + f))
  skipped=$((skipped + i + markers))
  if [ "$status" -ne 0 ] && [ "$f" -eq 0 ]; then
    failed=$((failed + 1))
    problems+=("$name: cargo exit $status with no failed test: counted as 1 failed")
  fi
done

for p in "${problems[@]}"; do echo "problem: $p"; done
if [ $((passed + failed)) -eq 0 ]; then
  echo "problem: no test ran"
  failed=1
fi
echo "tests: $passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
