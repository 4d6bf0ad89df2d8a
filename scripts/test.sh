#!/usr/bin/env bash
# Run every test: installs what the tests need (idempotent), then the unit and
# integration tests against the real avr-gcc, Arduino core and arduino-builder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# Release mode: the integration tests build ~400 real sketches; a debug fbuild
# would only slow them down. Two test threads: the machine has two cores and
# several tests run builds in parallel themselves.
status=0
cargo test --release -- --test-threads 2 2>&1 | tee "$log" || status=$?
# One closing line over every test binary, for humans and CI alike.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
