#!/usr/bin/env bash
# Run every test: installs what the tests need (idempotent), then the unit and
# integration tests against the real avr-gcc, Arduino core and arduino-builder.
# Closes with one line over every test binary: `tests: N passed, N failed, N skipped`
# (scripts/cargo-tests.sh says how binaries that fail to build or die are counted).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
if ! cargo build --release --quiet; then
  echo "problem: fbuild does not compile, so no test ran"
  echo "tests: 0 passed, 1 failed, 0 skipped"
  exit 1
fi
# Release mode: the integration tests build ~400 real sketches; a debug fbuild
# would only slow them down. Two test threads: the machine has two cores and
# several tests run builds in parallel themselves.
exec scripts/cargo-tests.sh --release -- --test-threads 2
