#!/usr/bin/env bash
# Run every test: installs what the tests need (idempotent), then the unit and
# integration tests against the real avr-gcc, Arduino core and arduino-builder.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo build --release --quiet
# Release mode: the integration tests build ~300 real sketches; a debug fbuild
# would only slow them down. Two test threads: the machine has two cores and
# several tests run builds in parallel themselves.
cargo test --release -- --test-threads 2
