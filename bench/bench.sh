#!/usr/bin/env bash
# Benchmark fbuild against arduino-builder on the 81 built-in examples for uno,
# simavr smoke runs of the 100 examples, and two simulated CI runners sharing a Redis
# remote cache on loopback.
# Prints TSV on stdout: case, wall seconds, ratio to cold compile-many, exit status,
# sketches built, and the check of both. A case is timed only if it built what it
# should: its exit status must match its results, and it must build as many sketches
# as arduino-builder does (a broken build is fast; it must not pass as a fast time).
# Any broken case makes the script exit 1, after the table.
#   bench/bench.sh            the timing cases
#   bench/bench.sh --memory   also peak RSS for 81 vs 810 sketches, and for
#                             1 board vs a 3-board matrix of the 100 examples
#   bench/bench.sh --deploy   the time from `fbuild deploy` to the first monitored byte on
#                             the virtual board (fbuild board-sim), cold and warm
#   --corpus DIR              another set of sketches (default: corpus/examples)
#   --fbuild BIN              time this fbuild binary instead of building one
#   bench/bench.sh --samd     the SAMD cases only (Arduino Zero, the shared SAMD kit)
#   bench/bench.sh --arm      the ARM kits only: Raspberry Pi Pico (arduino-pico) and Blue
#                             Pill (STM32duino) on 01.Basics..05.Control (or --corpus DIR);
#                             `--arm pico` or `--arm bluepill` for one (Blue Pill's
#                             reference pass takes most of an hour); wall and CPU seconds
#   bench/bench.sh --distributed  cold builds through distcc with 2 and 4 simulated
#                             helpers (distccd on 127.0.0.1) vs local, for SAMD and for
#                             AVR (whose -flto compiles distcc declines): wall and CPU
#                             seconds, and the jobs each daemon's log shows
#   bench/bench.sh --third-party  the 86 examples of ../shared/libraries on uno only
#   bench/bench.sh --kits avr the AVR platform kits of ../shared/platforms: ATtiny85
#                             (ATTinyCore) and Nano Every (megaAVR, avr-gcc 7.3 from
#                             setup.sh) on 01.Basics-05.Control and the 86 library examples
#   bench/bench.sh --platformio   the 100 examples as PlatformIO projects for uno: fbuild
#                             build PROJECT one after the other, fbuild compile-many over
#                             all of them, vs pio run on each (the
#                             offline PlatformIO of ../shared/platformio), cold and warm
#   bench/bench.sh --heavy    a generated heavy-header library (bench/heavy_corpus.py,
#                             2,325 headers behind one umbrella, 40 examples) with
#                             ../shared/libraries on uno: cold with
#                             --framework-jobs 1 --sketch-jobs 2 and with defaults, the
#                             floor, warm; then warm time at 500, 2,000 and 5,000
#                             headers (FBUILD_HEAVY_HEADERS, _SIZES, _EXAMPLES change
#                             them); with --memory also peak RSS against the built-in
#                             examples'
# Every cold case starts from an empty cache and output folder.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
memory="" deploy="" distributed="" samd="" arm="" third_party="" platformio="" kits="" heavy="" corpus="$repo/corpus/examples" F=""
while [ $# -gt 0 ]; do
  case "$1" in
    --memory) memory=1 ;;
    --samd) samd=1 ;;
    --deploy) deploy=1 ;;
    --arm) arm="pico bluepill"
      case "${2:-}" in pico|bluepill) arm="$2"; shift ;; esac ;;
    --distributed) distributed=1 ;;
    --third-party) third_party=1 ;;
    --platformio) platformio=1 ;;
    --kits) kits="$2"; shift ;;
    --heavy) heavy=1 ;;
    --corpus) corpus="$(cd "$2" && pwd)"; shift ;;
    --fbuild) F="$2"; shift ;;
    *) echo "bench: unknown argument $1 (see the comment at the top of bench/bench.sh)" >&2; exit 2 ;;
  esac
  shift
done
scripts/setup.sh >/dev/null
if [ -z "$F" ]; then
  cargo build --release --quiet
  F="$repo/target/release/fbuild"
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if [ -n "$arm" ] && [ "$corpus" = "$repo/corpus/examples" ]; then
  # The classic API's examples, which both ARM cores build (as tests/kits_arm.rs).
  mkdir -p "$work/arm-corpus"
  for g in 01.Basics 02.Digital 03.Analog 04.Communication 05.Control; do ln -s "$corpus/$g" "$work/arm-corpus/$g"; done
  corpus="$work/arm-corpus"
fi
mapfile -t sketches < <(find -L "$corpus" -name '*.ino' -printf '%h\n' | sort | awk -F/ '{ n=$NF; if (system("[ -f \"" $0 "/" n ".ino\" ]") == 0) print }')
export CI=true

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# run NAME COMMAND...: time one case, remember its wall time and exit status. Its
# output goes to $work/NAME.log, shown when the case is broken.
# Also its CPU seconds (user+sys, children included), which the load does not change.
declare -A wall status built cpu
run() {
  local name="$1"; shift
  local t0; t0=$(now)
  local rc=0
  local TIMEFORMAT='%U %S'
  { time { "$@" >"$work/$name.log" 2>&1 || rc=$?; }; } 2>"$work/$name.time"
  wall[$name]=$(elapsed "$t0")
  cpu[$name]=$(awk '{ print $1 + $2 }' "$work/$name.time")
  status[$name]=$rc
}

# ratio_table BASE HEADER: every timed case, its wall time and its ratio to case BASE.
ratio_table() {
  local base=${wall[$1]}
  printf 'case\twall_s\t%s\n' "$2"
  for k in $(printf '%s\n' "${!wall[@]}" | sort); do
    printf '%s\t%.3f\t%.2f\n' "$k" "${wall[$k]}" "$(echo "${wall[$k]} / $base" | bc -l)"
  done
}

# ok_of RESULTS: sketches built, from a compile-many results.json (-1 when missing).
ok_of() {
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['ok'])" "$1" 2>/dev/null || echo -1
}
failed_of() {
  python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['failed'])" "$1" 2>/dev/null || echo -1
}
# compile_many_case NAME OUT: compile-many exits 1 exactly when a sketch failed.
compile_many_case() {
  if [ ! -f "$2/results.json" ]; then
    built[$1]=0
    status[$1]="${status[$1]}, no results.json"
    return
  fi
  built[$1]=$(ok_of "$2/results.json")
  local want=0
  [ "$(failed_of "$2/results.json")" -gt 0 ] && want=1
  [ "${status[$1]}" = "$want" ] || status[$1]="${status[$1]}, expected $want"
}

fresh() { rm -rf "${work:?}/${1:?}"; mkdir -p "$work/$1"; echo "$work/$1"; }

cm_default() { FBUILD_CACHE_DIR="$(fresh c1)" "$F" compile-many -q --out "$(fresh o1)" "$corpus"; }
cm_narrow() { FBUILD_CACHE_DIR="$(fresh c2)" "$F" compile-many -q --framework-jobs 1 --sketch-jobs 2 --out "$(fresh o2)" "$corpus"; }
build_loop() {
  local cache; cache="$(fresh c3)"; local out; out="$(fresh o3)"
  local n=0
  for s in "${sketches[@]}"; do
    if FBUILD_CACHE_DIR="$cache" "$F" build -q --out "$out" "$s"; then n=$((n + 1)); fi
  done
  echo "$n" > "$work/built_c"
}
ab_one() {
  local core; core="$(fresh abcore1)"
  local n=0
  for s in "${sketches[@]}"; do
    local b; b="$(fresh ab1)"
    arduino-builder -compile -hardware /usr/share/arduino/hardware -hardware /usr/share/arduino-builder -tools /usr/bin \
      -fqbn arduino:avr:uno -build-path "$b" -build-cache "$core" \
      -prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__ "$s/$(basename "$s").ino" && n=$((n + 1))
  done
  echo "$n" > "$work/built_d"
}
ab_xargs() {
  local core; core="$(fresh abcore2)"
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  : > "$work/built_e_list"
  printf '%s\n' "${sketches[@]}" | xargs -P 2 -I{} sh -c '
    b=$(mktemp -d -p "$1"); n=$(basename "$2")
    if arduino-builder -compile -hardware /usr/share/arduino/hardware -hardware /usr/share/arduino-builder -tools /usr/bin \
      -fqbn arduino:avr:uno -build-path "$b" -build-cache "$3" \
      -prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__ "$2/$n.ino" >/dev/null 2>&1; then echo "$2" >> "$1/built_e_list"; fi' _ "$work" {} "$core"
  wc -l < "$work/built_e_list" > "$work/built_e"
}
# Warm cases reuse case a's cache (c1) and output folder (o1).
warm_same() { FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --out "$work/o1" "$corpus"; }
warm_fresh_out() { FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --out "$(fresh o4)" "$corpus"; }
edit_one() {
  FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --out "$work/o5" "$work/copy"
}
build_first_warm() { FBUILD_CACHE_DIR="$work/c1" "$F" build -q --out "$work/o1" "${sketches[0]}"; }

# --deploy: from `fbuild deploy` to the first byte its monitor prints (--expect .), with
# real avrdude and the real bootloader on fbuild board-sim: cold (empty cache: build,
# upload, reset, bootloader wait) and warm (nothing to build). The board is the Nano
# with its old bootloader: Debian's Uno optiboot image overruns the flash.
if [ -n "$deploy" ]; then
  board=arduino:avr:nano:cpu=atmega328old
  "$F" board-sim --board "$board" >"$work/sim.port" 2>"$work/sim.log" &
  sim=$!
  trap 'kill $sim 2>/dev/null; wait $sim 2>/dev/null; rm -rf "$work"' EXIT
  for _ in $(seq 50); do [ -s "$work/sim.port" ] && break; sleep 0.1; done
  port=$(head -1 "$work/sim.port")
  printf 'case\twall_s_to_first_byte\n'
  for c in cold warm; do
    if [ "$c" = cold ]; then rm -rf "$work/cache" "$work/out"; fi
    t0=$(now)
    if ! FBUILD_CACHE_DIR="$work/cache" "$F" deploy --board "$board" --port "$port" --out "$work/out" \
        --monitor --expect . --timeout 60s "$repo/corpus/examples/04.Communication/ASCIITable" >"$work/deploy-$c.log" 2>&1; then
      echo "bench: deploy $c failed:" >&2; cat "$work/deploy-$c.log" "$work/sim.log" >&2; exit 1
    fi
    printf 'deploy_%s\t%.3f\n' "$c" "$(elapsed "$t0")"
  done
  exit 0
fi

# --distributed: N distccd helpers on loopback (2 job slots each, as a small runner
# has), DISTCC_HOSTS naming only them; every case cold. Prints a TSV row per case:
# wall and CPU seconds (user+sys of fbuild and its children, not the daemons), the
# compiles fbuild ran, and the jobs each daemon logged (COMPILE_OK). Then exits.
if [ -n "$distributed" ]; then
  kit="${FBUILD_SAMD_KIT:-$repo/../shared/platforms/samd}"
  samd_args=(--board arduino:samd:arduino_zero_native --hardware "$kit/hardware"
    --build-property runtime.tools.arm-none-eabi-gcc-7-2017q4.path=/usr
    --build-property "runtime.tools.CMSIS-4.5.0.path=$kit/tools/CMSIS-4.5.0"
    --build-property "runtime.tools.CMSIS-Atmel-1.2.0.path=$kit/tools/CMSIS-Atmel-1.2.0")
  daemons=()
  stop_daemons() { for p in "${daemons[@]}"; do kill "$p" 2>/dev/null || true; done; daemons=(); }
  trap 'stop_daemons; rm -rf "$work"' EXIT
  # start_helpers N: N distccd on free ports; sets DISTCC_HOSTS and $helper_logs.
  start_helpers() {
    stop_daemons; helper_logs=(); local hosts=""
    for i in $(seq 1 "$1"); do
      local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
      local d; d="$(fresh "helper$1-$i")"; chmod 777 "$d"; chmod 755 "$work"
      distccd --daemon --no-detach --listen 127.0.0.1 --allow 127.0.0.1 --port "$port" --jobs 2 \
        --log-file="$d/distccd.log" --log-level=info --enable-tcp-insecure & daemons+=($!)
      helper_logs+=("$d/distccd.log"); hosts="$hosts 127.0.0.1:$port/2"
    done
    export DISTCC_HOSTS="$hosts" DISTCC_DIR="$(fresh distcc-state)"
    sleep 1
  }
  # dist_case NAME ARCH HELPERS: one cold build; HELPERS 0 is the local build.
  dist_case() {
    local name="$1" arch="$2" n="$3" extra=() launcher=()
    [ "$arch" = samd ] && extra=("${samd_args[@]}")
    if [ "$n" -gt 0 ]; then start_helpers "$n"; launcher=(--compiler-launcher distcc --sketch-jobs $((2 * n + 2)) --framework-jobs $((2 * n + 2))); fi
    local rc=0
    FBUILD_CACHE_DIR="$(fresh "dc-$name")" /usr/bin/time -f '%e %U %S' -o "$work/$name.time" \
      "$F" compile-many -q --out "$(fresh "do-$name")" "${extra[@]}" "${launcher[@]}" "$corpus" >"$work/$name.log" 2>&1 || rc=$?
    sleep 1
    local jobs="-"
    if [ "$n" -gt 0 ]; then jobs=""; for l in "${helper_logs[@]}"; do jobs="$jobs$(grep -c COMPILE_OK "$l" || true),"; done; jobs="${jobs%,}"; fi
    read -r e u s < "$work/$name.time"
    local compiled; compiled=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['objects_compiled'])" "$work/do-$name/results.json" 2>/dev/null || echo "?")
    local note; note=$(grep -o 'distcc declined.*' "$work/$name.log" || true)
    printf '%s\t%s\t%.2f\t%s\t%s\t%s\t%s\n' "$name" "$e" "$(echo "$u + $s" | bc)" "$rc" "$compiled" "$jobs" "$note"
  }
  printf 'case\twall_s\tcpu_s\texit\tcompiled\tjobs_per_helper\tnote\n'
  for arch in samd avr; do
    dist_case "${arch}_local_cold" "$arch" 0
    dist_case "${arch}_distcc_2_helpers_cold" "$arch" 2
    dist_case "${arch}_distcc_4_helpers_cold" "$arch" 4
  done
  stop_daemons
  exit 0
fi

# --samd: the same corpus for Arduino's SAMD core (the shared kit, or $FBUILD_SAMD_KIT),
# compile-many cold and warm against arduino-builder one sketch at a time; then exit.
if [ -n "$samd" ]; then
  kit="${FBUILD_SAMD_KIT:-$repo/../shared/platforms/samd}"
  fqbn=arduino:samd:arduino_zero_native
  props=(runtime.tools.arm-none-eabi-gcc-7-2017q4.path=/usr "runtime.tools.CMSIS-4.5.0.path=$kit/tools/CMSIS-4.5.0"
    "runtime.tools.CMSIS-Atmel-1.2.0.path=$kit/tools/CMSIS-Atmel-1.2.0")
  fb_props=(); ab_props=()
  for p in "${props[@]}"; do fb_props+=(--build-property "$p"); ab_props+=("-prefs=$p"); done
  samd_cm() { FBUILD_CACHE_DIR="$work/$1" "$F" compile-many -q --board "$fqbn" --hardware "$kit/hardware" "${fb_props[@]}" --out "$work/$2" "$corpus"; }
  samd_cold() { fresh sc >/dev/null; fresh so >/dev/null; samd_cm sc so; }
  samd_warm() { samd_cm sc so; }
  samd_ab_one() {
    local core; core="$(fresh sabcore)"
    for s in "${sketches[@]}"; do
      arduino-builder -compile -hardware "$kit/hardware" -hardware /usr/share/arduino-builder -tools /usr/bin \
        -fqbn "$fqbn" -build-path "$(fresh sab)" -build-cache "$core" "${ab_props[@]}" "$s/$(basename "$s").ino" || true
    done
  }
  run s_samd_compile_many_cold samd_cold
  run s_samd_arduino_builder_one_at_a_time samd_ab_one
  run s_samd_compile_many_warm_nothing_changed samd_warm
  ratio_table s_samd_compile_many_cold ratio_to_compile_many_cold
  python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['totals']; print(f\"\nsamd_warm_ok\t{t['ok']}/{t['sketches']}\nsamd_warm_tool_processes\t{t['tool_processes']}\")" "$work/so/results.json"
  exit 0
fi

# --kits avr: per board, compile-many cold, arduino-builder one sketch at a time on the
# same sketches (flags from each kit's README), and compile-many warm; checks that both
# built the same number of sketches and that the warm run started no process; then exit.
if [ -n "$kits" ]; then
  [ "$kits" = avr ] || { echo "bench: --kits takes avr (the ARM kits are not benched here)" >&2; exit 2; }
  shared="$repo/../shared"; [ -d "$shared/platforms" ] || shared=/work/shared  # as tests/common finds shared/
  libs="$(cd "$shared/libraries" && pwd)"
  avr73="$(cat "${XDG_CACHE_HOME:-$HOME/.cache}/fbuild-tools/pymcu-avr-7.3.0.post3/.complete")"
  sketch_dirs() { find "$@" -name '*.ino' -printf '%h\n' | sort -u | awk -F/ '{ n=$NF; if (system("[ -f \"" $0 "/" n ".ino\" ]") == 0) print }'; }
  mapfile -t ks < <(sketch_dirs "$corpus"/0[1-5].*; sketch_dirs "$libs")
  # board | fbuild FQBN | arduino-builder FQBN (every menu spelled out) | kit | avr-gcc root
  boards=(
    "attiny85|ATTinyCore:avr:attinyx5|ATTinyCore:avr:attinyx5:LTO=enable,TimerClockSource=default,chip=85,clock=8internal,eesave=aenable,bod=disable,millis=enabled|$shared/platforms/attiny|/usr"
    "nona4809|arduino:megaavr:nona4809|arduino:megaavr:nona4809:mode=on|$shared/platforms/megaavr|$avr73"
  )
  kit_cm() { FBUILD_CACHE_DIR="$work/kc_$kb" "$F" compile-many -q --board "$kf" --hardware "$kk/hardware" \
    --build-property "runtime.tools.avr-gcc.path=$kr" --libraries "$libs" --out "$work/ko_$kb" "${ks[@]}"; }
  kit_cold() { fresh "kc_$kb" >/dev/null; fresh "ko_$kb" >/dev/null; kit_cm; }
  kit_ab_one() {
    local core; core="$(fresh "kabcore_$kb")" n=0
    # compiler.path too: Debian's platform.keys.rewrite.txt would turn it into /usr/bin/.
    local extra=(); [ "$kr" = /usr ] || extra=("-prefs=compiler.path=$kr/bin/")
    for s in "${ks[@]}"; do
      arduino-builder -compile -hardware "$kk/hardware" -hardware /usr/share/arduino-builder -tools /usr/bin -libraries "$libs" \
        -fqbn "$ka" -build-path "$(fresh kab)" -build-cache "$core" "-prefs=runtime.tools.avr-gcc.path=$kr" "${extra[@]}" \
        "$s/$(basename "$s").ino" >/dev/null 2>&1 && n=$((n + 1))
    done
    echo "$n" > "$work/kab_built_$kb"
  }
  broken=0
  for b in "${boards[@]}"; do
    IFS='|' read -r kb kf ka kk kr <<<"$b"
    run "v_${kb}_compile_many_cold" kit_cold
    compile_many_case "v_${kb}_compile_many_cold" "$work/ko_$kb"
    run "v_${kb}_arduino_builder_one_at_a_time" kit_ab_one
    run "v_${kb}_compile_many_warm_nothing_changed" kit_cm
    compile_many_case "v_${kb}_compile_many_warm_nothing_changed" "$work/ko_$kb"
  done
  printf 'case\twall_s\texit\n'
  for k in $(printf '%s\n' "${!wall[@]}" | sort); do printf '%s\t%.3f\t%s\n' "$k" "${wall[$k]}" "${status[$k]}"; done
  for b in "${boards[@]}"; do
    IFS='|' read -r kb _ <<<"$b"
    ab=$(cat "$work/kab_built_$kb")
    cold=${built[v_${kb}_compile_many_cold]} warm=${built[v_${kb}_compile_many_warm_nothing_changed]}
    procs=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['tool_processes'])" "$work/ko_$kb/results.json" 2>/dev/null || echo -1)
    printf '\n%s_sketches\t%s\n%s_built_fbuild_cold_warm_arduino_builder\t%s %s %s\n' "$kb" "${#ks[@]}" "$kb" "$cold" "$warm" "$ab"
    printf '%s_arduino_builder_over_cold\t%.2f\n' "$kb" "$(echo "${wall[v_${kb}_arduino_builder_one_at_a_time]} / ${wall[v_${kb}_compile_many_cold]}" | bc -l)"
    printf '%s_arduino_builder_over_warm\t%.1f\n%s_warm_tool_processes\t%s\n' "$kb" "$(echo "${wall[v_${kb}_arduino_builder_one_at_a_time]} / ${wall[v_${kb}_compile_many_warm_nothing_changed]}" | bc -l)" "$kb" "$procs"
    for k in "v_${kb}_compile_many_cold" "v_${kb}_compile_many_warm_nothing_changed"; do
      case "${status[$k]}" in 0|1) ;; *) echo "bench: case $k is broken (exit ${status[$k]})" >&2; tail -5 "$work/$k.log" >&2; broken=$((broken + 1)) ;; esac
    done
    if [ "$cold" != "$ab" ] || [ "$warm" != "$ab" ] || [ "$ab" -le 0 ]; then
      echo "bench: $kb: fbuild built $cold cold and $warm warm, arduino-builder $ab: the times mean nothing" >&2; broken=$((broken + 1))
    fi
    [ "$procs" = 0 ] || { echo "bench: $kb: the warm run started $procs processes, not 0" >&2; broken=$((broken + 1)); }
  done
  [ "$broken" -eq 0 ] || exit 1
  exit 0
fi

# --arm: one board of each ARM kit (their READMEs give the flags), compile-many cold and
# warm against arduino-builder one sketch at a time on the same sketches; both must build
# as many, and the warm run must start no process. picotool is built once, as the tests
# build it (~/.cache/fbuild-tools). Then exit.
if [ -n "$arm" ]; then
  shared="$repo/../shared"; [ -d "$shared" ] || shared=/work/shared
  pico="$shared/platforms/rp2040" stm="$shared/platforms/stm32"
  key=$(cd "$pico/tools" && find picotool-src build-picotool.sh -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)
  picotool="${XDG_CACHE_HOME:-$HOME/.cache}/fbuild-tools/picotool-sha-$key"
  bash "$pico/tools/build-picotool.sh" "$picotool" >/dev/null
  for board in $arm; do
    case $board in
      pico) kit=$pico fqbn=rp2040:rp2040:rpipico
        ab_fqbn=rp2040:rp2040:rpipico:flash=2097152_0,freq=133,opt=Small,rtti=Disabled,stackprotect=Disabled,exceptions=Disabled,dbgport=Disabled,dbglvl=None,usbstack=picosdk,ipbtstack=ipv4only,uploadmethod=default
        props=(runtime.tools.pqt-gcc.path=/usr runtime.tools.pqt-python3.path=/usr/bin "runtime.tools.pqt-picotool.path=$picotool")
        ab_extra=() ;;
      bluepill) kit=$stm fqbn=STMicroelectronics:stm32:GenF1:pnum=BLUEPILL_F103C8
        ab_fqbn=STMicroelectronics:stm32:GenF1:pnum=BLUEPILL_F103C8,upload_method=swdMethod,xserial=generic,usb=none,xusb=FS,opt=osstd,dbg=none,rtlib=nano
        props=(runtime.tools.xpack-arm-none-eabi-gcc-12.2.1-1.2.path=/usr "runtime.tools.CMSIS-5.9.0.path=$stm/tools/CMSIS-5.9.0")
        ab_extra=('-prefs=compiler.optimization_flags={compiler.optimization_flags.release}') ;;
    esac
    fb_props=(); ab_props=()
    for p in "${props[@]}"; do fb_props+=(--build-property "$p"); ab_props+=("-prefs=$p"); done
    arm_cm() { FBUILD_CACHE_DIR="$work/c_$board" "$F" compile-many -q --board "$fqbn" --hardware "$kit/hardware" "${fb_props[@]}" --out "$work/o_$board" "$corpus"; }
    arm_cold() { fresh "c_$board" >/dev/null; fresh "o_$board" >/dev/null; arm_cm; }
    arm_ab_one() {
      local core; core="$(fresh "abcore_$board")"
      local n=0
      for s in "${sketches[@]}"; do
        arduino-builder -compile -hardware "$kit/hardware" -hardware /usr/share/arduino-builder -tools /usr/bin \
          -fqbn "$ab_fqbn" -build-path "$(fresh ab)" -build-cache "$core" "${ab_props[@]}" "${ab_extra[@]}" "$s/$(basename "$s").ino" && n=$((n + 1))
      done
      echo "$n" > "$work/built_ab_$board"
    }
    run "arm_${board}_compile_many_cold" arm_cold
    compile_many_case "arm_${board}_compile_many_cold" "$work/o_$board"
    run "arm_${board}_arduino_builder_one_at_a_time" arm_ab_one
    built[arm_${board}_arduino_builder_one_at_a_time]=$(cat "$work/built_ab_$board" 2>/dev/null || echo -1)
    run "arm_${board}_compile_many_warm_nothing_changed" arm_cm
    compile_many_case "arm_${board}_compile_many_warm_nothing_changed" "$work/o_$board"
    warm_processes=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['tool_processes'])" "$work/o_$board/results.json")
    [ "$warm_processes" = 0 ] || status[arm_${board}_compile_many_warm_nothing_changed]="${status[arm_${board}_compile_many_warm_nothing_changed]}, $warm_processes processes"
    cold=${wall[arm_${board}_compile_many_cold]} ab=${wall[arm_${board}_arduino_builder_one_at_a_time]}
    printf 'arm_%s_speedup_cold\t%.2f\narm_%s_speedup_warm\t%.2f\n' "$board" "$(echo "$ab / $cold" | bc -l)" "$board" "$(echo "$ab / ${wall[arm_${board}_compile_many_warm_nothing_changed]}" | bc -l)" >> "$work/arm_speedups"
    printf 'arm_%s_speedup_cold_cpu\t%.2f\n' "$board" "$(echo "${cpu[arm_${board}_arduino_builder_one_at_a_time]} / ${cpu[arm_${board}_compile_many_cold]}" | bc -l)" >> "$work/arm_speedups"
  done
  broken=0
  printf 'case\twall_s\tcpu_s\tstatus\tbuilt\n'
  for k in $(printf '%s\n' "${!wall[@]}" | sort); do
    printf '%s\t%.3f\t%.2f\t%s\t%s\n' "$k" "${wall[$k]}" "${cpu[$k]}" "${status[$k]}" "${built[$k]:-}"
    case "${status[$k]}" in 0|1) ;; *) broken=1 ;; esac
  done
  cat "$work/arm_speedups"
  printf 'load_average_at_end\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  for board in $arm; do
    if [ "${built[arm_${board}_compile_many_cold]}" != "${built[arm_${board}_arduino_builder_one_at_a_time]}" ]; then
      echo "arm_$board: compile-many built ${built[arm_${board}_compile_many_cold]}, arduino-builder ${built[arm_${board}_arduino_builder_one_at_a_time]}" >&2
      broken=1
    fi
  done
  exit $broken
fi

# --platformio: every example of corpus/ as a PlatformIO project (src/NAME.ino) for uno.
# PlatformIO has no batch mode, so each side builds the projects one after the other:
# fbuild with one cache for all, pio run each in its own folder (its .pio kept for warm).
# Checks that both built the same projects and count identical firmware; then exit.
if [ -n "$platformio" ]; then
  pio_dir="${XDG_CACHE_HOME:-$HOME/.cache}/fbuild-platformio"
  kit="$repo/../shared/platformio"; [ -d "$kit" ] || kit=/work/shared/platformio  # as tests/common finds shared/
  bash "$kit/setup.sh" "$pio_dir" >/dev/null
  mapfile -t all < <(find "$repo/corpus/" -name '*.ino' -printf '%h\n' | sort -u | awk -F/ '{ n=$NF; if (system("[ -f \"" $0 "/" n ".ino\" ]") == 0) print }')
  mkdir -p "$work/pp"
  for s in "${all[@]}"; do
    p="$work/pp/$(basename "$s")"; mkdir -p "$p/src"; cp -r "$s/." "$p/src/"
    printf '[platformio]\nextra_configs = %s/offline.ini\n[env:uno]\nboard = uno\nframework = arduino\n' "$pio_dir" > "$p/platformio.ini"
  done
  pp_fbuild() { for p in "$work/pp"/*/; do FBUILD_CACHE_DIR="$work/pc" "$F" build "$p" -q --out "$p/fb" >"$p/fb.log" 2>&1 || true; done; }
  pp_fbuild_cold() { fresh pc >/dev/null; rm -rf "$work"/pp/*/fb; pp_fbuild; }
  # compile-many over all the project folders: one stage 1 for every env, sketches in parallel.
  pp_cm() { FBUILD_CACHE_DIR="$work/pmc" "$F" compile-many -q --out "$work/pm" "$work"/pp/*/ >"$work/pm.log" 2>&1; }
  pp_cm_cold() { fresh pmc >/dev/null; rm -rf "$work/pm"; pp_cm; }
  pp_pio() { for p in "$work/pp"/*/; do (cd "$p" && PLATFORMIO_CORE_DIR="$pio_dir/core" "$pio_dir/venv/bin/pio" run -s >"$p/pio.log" 2>&1) || true; done; }
  pp_pio_cold() { rm -rf "$work"/pp/*/.pio; pp_pio; }
  run p_fbuild_build_each_cold pp_fbuild_cold
  run p_fbuild_build_each_warm_nothing_changed pp_fbuild
  run p_fbuild_compile_many_cold pp_cm_cold
  run p_fbuild_compile_many_warm_nothing_changed pp_cm
  run p_pio_run_each_cold pp_pio_cold
  run p_pio_run_each_warm pp_pio
  ratio_table p_fbuild_build_each_cold ratio_to_fbuild_cold
  n=0 fb_ok=0 pio_ok=0 same=0 mismatch=0 cm_same=0 cm_mismatch=0
  for p in "$work/pp"/*/; do
    n=$((n + 1))
    hex=$(find "$p/fb" -name '*.ino.hex' ! -name '*with_bootloader*' 2>/dev/null | head -1)
    ref="$p/.pio/build/uno/firmware.hex"
    [ -n "$hex" ] && fb_ok=$((fb_ok + 1))
    [ -f "$ref" ] && pio_ok=$((pio_ok + 1))
    if [ -n "$hex" ] && [ -f "$ref" ]; then
      if cmp -s "$hex" "$ref"; then same=$((same + 1)); else mismatch=$((mismatch + 1)); fi
    elif [ -n "$hex" ] || [ -f "$ref" ]; then mismatch=$((mismatch + 1)); fi
    cm=$(find "$work/pm/projects/$(basename "$p")/uno" -name '*.ino.hex' ! -name '*with_bootloader*' 2>/dev/null | head -1)
    if [ -n "$cm" ] && [ -f "$ref" ]; then
      if cmp -s "$cm" "$ref"; then cm_same=$((cm_same + 1)); else cm_mismatch=$((cm_mismatch + 1)); fi
    elif [ -n "$cm" ] || [ -f "$ref" ]; then cm_mismatch=$((cm_mismatch + 1)); fi
  done
  printf '\nplatformio_projects\t%s\nfbuild_built\t%s\npio_built\t%s\nidentical_firmware\t%s\ndiffering_or_one_sided\t%s\n' "$n" "$fb_ok" "$pio_ok" "$same" "$mismatch"
  printf 'pio_cold_over_fbuild_cold\t%.1f\nfbuild_warm_per_project_s\t%.3f\n' \
    "$(echo "${wall[p_pio_run_each_cold]} / ${wall[p_fbuild_build_each_cold]}" | bc -l)" "$(echo "${wall[p_fbuild_build_each_warm_nothing_changed]} / $n" | bc -l)"
  printf 'compile_many_identical_firmware\t%s\ncompile_many_differing_or_one_sided\t%s\n' "$cm_same" "$cm_mismatch"
  printf 'pio_cold_over_compile_many_cold\t%.1f\ncompile_many_warm_s\t%.3f\n' \
    "$(echo "${wall[p_pio_run_each_cold]} / ${wall[p_fbuild_compile_many_cold]}" | bc -l)" "${wall[p_fbuild_compile_many_warm_nothing_changed]}"
  [ "$cm_mismatch" -eq 0 ] || { echo "bench: compile-many and pio run disagree on $cm_mismatch project(s)" >&2; exit 1; }
  [ "$mismatch" -eq 0 ] && [ "$fb_ok" -gt 0 ] || { echo "bench: fbuild and pio run disagree on $mismatch project(s)" >&2; exit 1; }
  exit 0
fi

# --heavy: the generated heavy-header library (see the comment at the top); then exit.
# Every case must build what the cold run built, and a warm run must start no
# process: anything else is a broken case and exits 1 after saying which.
if [ -n "$heavy" ]; then
  libs="${FBUILD_SHARED_LIBRARIES:-$repo/../shared/libraries}"
  [ -d "$libs" ] || libs=/work/shared/libraries
  libs="$(cd "$libs" && pwd)"
  examples="${FBUILD_HEAVY_EXAMPLES:-40}"
  # gen DIR HEADERS: the library under DIR, its examples listed in DIR.list.
  gen() {
    rm -rf "$1"; python3 "$repo/bench/heavy_corpus.py" "$1" --headers "$2" --examples "$examples" --seed 1
    find "$1/HeavyLED/examples" -name '*.ino' -printf '%h\n' | sort > "$1.list"
  }
  # hv CACHE OUT DIR [FLAGS...]: compile-many over DIR's examples, with ../shared/libraries.
  hv() {
    local cache="$1" out="$2" dir="$3"; shift 3
    mapfile -t hs < "$dir.list"
    FBUILD_CACHE_DIR="$cache" "$F" compile-many -q --libraries "$dir" --libraries "$libs" "$@" --out "$out" "${hs[@]}"
  }
  hv_narrow_cold() { fresh hc1 >/dev/null; hv "$work/hc1" "$(fresh ho1)" "$work/hv" --framework-jobs 1 --sketch-jobs 2; }
  hv_default_cold() { fresh hc2 >/dev/null; hv "$work/hc2" "$(fresh ho2)" "$work/hv"; }
  hv_warm() { hv "$work/hc1" "$work/ho1" "$work/hv" --framework-jobs 1 --sketch-jobs 2; }
  builtin_cold() { FBUILD_CACHE_DIR="$(fresh hmc)" "$F" compile-many -q --out "$(fresh hmo)" "$corpus"; }
  builtin_warm() { FBUILD_CACHE_DIR="$work/hmc" "$F" compile-many -q --out "$work/hmo" "$corpus"; }
  # timed NAME COMMAND...: wall and CPU (user+sys) seconds and peak RSS of one case.
  declare -A cpu rss
  # The cases are shell functions: /usr/bin/time runs them in a bash that has them.
  export F work libs examples corpus
  export -f fresh hv hv_narrow_cold hv_default_cold hv_warm builtin_cold builtin_warm
  timed() {
    local name="$1"; shift
    run "$name" /usr/bin/time -f '%e %U %S %M' -o "$work/$name.time" bash -c '"$@"' _ "$@"
    read -r _ u s m < <(tail -1 "$work/$name.time")
    cpu[$name]=$(echo "$u + $s" | bc); rss[$name]=$m
  }
  # check NAME OUT WANT_OK WANT_PROCESSES: the case built WANT_OK sketches (and, when
  # WANT_PROCESSES is a number, started that many tools), or it is broken.
  broken=0
  check() {
    local ok procs
    ok=$(ok_of "$2/results.json")
    procs=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['tool_processes'])" "$2/results.json" 2>/dev/null || echo -1)
    if [ "${status[$1]}" -gt 1 ] || [ "$ok" != "$3" ] || { [ -n "${4:-}" ] && [ "$procs" != "${4:-}" ]; }; then
      echo "bench: case $1 is BROKEN (exit ${status[$1]}, built $ok of $3, tool processes $procs${4:+, want ${4:-}}); its output:" >&2
      tail -5 "$work/$1.log" >&2; broken=$((broken + 1))
    fi
  }
  gen "$work/hv" "${FBUILD_HEAVY_HEADERS:-2325}"
  printf 'heavy_headers\t%s\nheavy_examples\t%s\n' "$(find "$work/hv/HeavyLED/src" -name '*.h' | wc -l)" "$examples"
  fresh hfc >/dev/null
  hv "$work/hfc" "$(fresh hfo)" "$work/hv" -v --framework-jobs 1 --sketch-jobs 2 2>"$work/hfloor.cmds" >/dev/null || true
  want=$(ok_of "$work/hfo/results.json")
  [ "$want" -gt 0 ] || { echo "bench: the heavy corpus built nothing; its output:" >&2; tail -5 "$work/hfloor.cmds" >&2; exit 1; }
  grep -E '^"?/[^ ]*/(avr|arm-none-eabi)-[a-z+-]+"? ' "$work/hfloor.cmds" | grep -v -e ' -E ' -e '"-E"' > "$work/hfloor.sh" || true
  timed h_heavy_cold_fj1_sj2 hv_narrow_cold; check h_heavy_cold_fj1_sj2 "$work/ho1" "$want"
  timed h_heavy_cold_default hv_default_cold; check h_heavy_cold_default "$work/ho2" "$want"
  timed h_heavy_floor_sequential bash "$work/hfloor.sh"
  timed h_heavy_warm_nothing_changed hv_warm; check h_heavy_warm_nothing_changed "$work/ho1" "$want" 0
  printf 'case\twall_s\tcpu_s\tpeak_rss_kb\n'
  for k in h_heavy_cold_fj1_sj2 h_heavy_cold_default h_heavy_floor_sequential h_heavy_warm_nothing_changed; do
    printf '%s\t%.3f\t%.2f\t%s\n' "$k" "${wall[$k]}" "${cpu[$k]}" "${rss[$k]}"
  done
  cores=$(nproc)
  printf 'heavy_ok\t%s\nheavy_floor_commands\t%s\nheavy_floor_per_core_s\t%.2f\n' "$want" "$(wc -l < "$work/hfloor.sh")" "$(echo "${wall[h_heavy_floor_sequential]} / $cores" | bc -l)"
  printf 'heavy_cold_fj1_sj2_over_floor_per_core\t%.2f\n' "$(echo "${wall[h_heavy_cold_fj1_sj2]} * $cores / ${wall[h_heavy_floor_sequential]}" | bc -l)"
  printf 'heavy_cold_default_over_floor_per_core\t%.2f\n' "$(echo "${wall[h_heavy_cold_default]} * $cores / ${wall[h_heavy_floor_sequential]}" | bc -l)"
  # Scaling: the same examples over 500, 2,000 and 5,000 headers; warm wall and CPU
  # (median of three) must not grow with the headers.
  printf '\nheaders\tsketches_built\twarm_wall_s\twarm_cpu_s\twarm_tool_processes\n'
  for n in ${FBUILD_HEAVY_SIZES:-500 2000 5000}; do
    gen "$work/hs$n" "$n"
    fresh hsc$n >/dev/null
    hv "$work/hsc$n" "$(fresh hso$n)" "$work/hs$n" --framework-jobs 1 --sketch-jobs 2 >/dev/null 2>&1 || true
    ok=$(ok_of "$work/hso$n/results.json")
    ws=() cs=()
    for _ in 1 2 3; do
      timed hs_tmp hv "$work/hsc$n" "$work/hso$n" "$work/hs$n" --framework-jobs 1 --sketch-jobs 2
      check hs_tmp "$work/hso$n" "$ok" 0
      ws+=("${wall[hs_tmp]}"); cs+=("${cpu[hs_tmp]}")
    done
    [ "$ok" -gt 0 ] || { echo "bench: the $n-header corpus built nothing" >&2; broken=$((broken + 1)); }
    printf '%s\t%s\t%.3f\t%.2f\t0\n' "$n" "$ok" "$(printf '%s\n' "${ws[@]}" | sort -n | sed -n 2p)" "$(printf '%s\n' "${cs[@]}" | sort -n | sed -n 2p)"
  done
  if [ -n "$memory" ]; then
    # Peak RSS against the built-in examples' cold and warm runs (target: at most 1.5x).
    timed b_builtin_cold builtin_cold
    timed b_builtin_warm builtin_warm
    printf '\npeak_rss_kb_builtin_cold\t%s\npeak_rss_kb_heavy_cold\t%s\nheavy_over_builtin_cold\t%.2f\n' "${rss[b_builtin_cold]}" "${rss[h_heavy_cold_fj1_sj2]}" "$(echo "${rss[h_heavy_cold_fj1_sj2]} / ${rss[b_builtin_cold]}" | bc -l)"
    printf 'peak_rss_kb_builtin_warm\t%s\npeak_rss_kb_heavy_warm\t%s\nheavy_over_builtin_warm\t%.2f\n' "${rss[b_builtin_warm]}" "${rss[h_heavy_warm_nothing_changed]}" "$(echo "${rss[h_heavy_warm_nothing_changed]} / ${rss[b_builtin_warm]}" | bc -l)"
  fi
  if [ "$broken" -gt 0 ]; then
    echo "bench: $broken heavy case(s) broken: their times mean nothing" >&2
    exit 1
  fi
  exit 0
fi

# --third-party: the examples of the 14 real libraries in ../shared/libraries on uno,
# as a library's CI runs them (--framework-jobs 1 --sketch-jobs 2): cold, warm, the
# floor (the same tool commands replayed by hand), and arduino-builder one sketch at
# a time; discovery's share of stage 2; then exit.
if [ -n "$third_party" ]; then
  # ../shared beside the clone, as CI lays it out; else the machine's /work/shared.
  libs="${FBUILD_SHARED_LIBRARIES:-$repo/../shared/libraries}"
  [ -d "$libs" ] || libs=/work/shared/libraries
  libs="$(cd "$libs" && pwd)"
  mapfile -t tp < <(find "$libs" -name '*.ino' -printf '%h\n' | sort -u | awk -F/ '{ n=$NF; if (system("[ -f \"" $0 "/" n ".ino\" ]") == 0) print }')
  tp_cm() { FBUILD_CACHE_DIR="$work/tc" "$F" compile-many -q --libraries "$libs" --framework-jobs 1 --sketch-jobs 2 --out "$work/$1" "${tp[@]}"; }
  tp_cold() { fresh tc >/dev/null; fresh to >/dev/null; tp_cm to; }
  tp_warm() { tp_cm to; }
  tp_warm_fresh() { fresh tw >/dev/null; tp_cm tw; }
  tp_ab_one() {
    local core; core="$(fresh tabcore)"
    for s in "${tp[@]}"; do
      arduino-builder -compile -hardware /usr/share/arduino/hardware -hardware /usr/share/arduino-builder -tools /usr/bin \
        -libraries "$libs" -fqbn arduino:avr:uno -build-path "$(fresh tab)" -build-cache "$core" \
        -prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__ "$s/$(basename "$s").ino" >/dev/null 2>&1 || true
    done
  }
  # The floor: every compile, archive, link, objcopy and size command of a cold run
  # (as -v prints them; discovery's -E runs left out) replayed one after the other
  # by a shell, in the order fbuild started them; divided by the cores it is the best
  # a perfect scheduler could do.
  tp_floor() { bash "$work/floor.sh"; }
  fresh tfc >/dev/null
  FBUILD_CACHE_DIR="$work/tfc" "$F" compile-many -v --libraries "$libs" --framework-jobs 1 --sketch-jobs 2 --out "$(fresh tfo)" "${tp[@]}" 2>"$work/floor.cmds" >/dev/null || true
  grep -E '^"?/[^ ]*/(avr|arm-none-eabi)-[a-z+-]+"? ' "$work/floor.cmds" | grep -v -e ' -E ' -e '"-E"' > "$work/floor.sh" || true
  run t_third_party_cold tp_cold
  cp "$work/to/phases.tsv" "$work/t_cold_phases.tsv"
  run t_third_party_floor_sequential tp_floor
  run t_third_party_warm_nothing_changed tp_warm
  run t_third_party_warm_fresh_out tp_warm_fresh
  run t_third_party_arduino_builder_one_at_a_time tp_ab_one
  for k in t_third_party_cold t_third_party_warm_nothing_changed t_third_party_warm_fresh_out; do
    if [ "${status[$k]}" -gt 1 ]; then echo "bench: case $k is broken (exit ${status[$k]})" >&2; tail -5 "$work/$k.log" >&2; exit 1; fi
  done
  ratio_table t_third_party_cold ratio_to_compile_many_cold
  python3 - "$work/t_cold_phases.tsv" "$work/to/results.json" "$work/tw/results.json" <<'PY'
import json, sys
phases = {l.split("\t")[0]: float(l.split("\t")[1]) for l in open(sys.argv[1]).read().splitlines()[1:]}
cold, warm = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
ok = cold["totals"]["ok"]
assert ok == warm["totals"]["ok"] and ok > 0, "the warm run must build what the cold one built"
print(f"\nthird_party_ok\t{ok}/{cold['totals']['sketches']}")
print(f"third_party_cold_discover_s\t{phases['discover']:.2f}")
print(f"third_party_cold_stage2_s\t{phases['stage2_sketches']:.2f}")
print(f"third_party_cold_discover_share_of_stage2\t{phases['discover'] / phases['stage2_sketches']:.2f}")
print(f"third_party_warm_fresh_out_tool_processes\t{warm['totals']['tool_processes']}")
PY
  cores=$(nproc)
  floor_cmds=$(wc -l < "$work/floor.sh")
  printf 'third_party_floor_commands\t%s\n' "$floor_cmds"
  printf 'third_party_floor_per_core_s\t%.2f\n' "$(echo "${wall[t_third_party_floor_sequential]} / $cores" | bc -l)"
  printf 'third_party_cold_over_floor_per_core\t%.2f\n' "$(echo "${wall[t_third_party_cold]} * $cores / ${wall[t_third_party_floor_sequential]}" | bc -l)"
  printf 'third_party_arduino_builder_over_cold\t%.2f\n' "$(echo "${wall[t_third_party_arduino_builder_one_at_a_time]} / ${wall[t_third_party_cold]}" | bc -l)"
  exit 0
fi

run a_compile_many_cold cm_default
compile_many_case a_compile_many_cold "$work/o1"
cp "$work/o1/results.json" "$work/a_results.json" 2>/dev/null || echo '{"sketches": []}' > "$work/a_results.json"
cp "$work/o1/phases.tsv" "$work/a_phases.tsv" 2>/dev/null || printf 'phase\tseconds\tcount\nstage2_sketches\t0\t0\n' > "$work/a_phases.tsv"
run b_compile_many_fj1_sj2_cold cm_narrow
compile_many_case b_compile_many_fj1_sj2_cold "$work/o2"
run c_build_loop_cold build_loop
built[c_build_loop_cold]=$(cat "$work/built_c")
run d_arduino_builder_one_at_a_time ab_one
built[d_arduino_builder_one_at_a_time]=$(cat "$work/built_d")
run e_arduino_builder_xargs_P2 ab_xargs
built[e_arduino_builder_xargs_P2]=$(cat "$work/built_e")
run f_compile_many_warm_nothing_changed warm_same
compile_many_case f_compile_many_warm_nothing_changed "$work/o1"
run g_compile_many_warm_cache_fresh_out warm_fresh_out
compile_many_case g_compile_many_warm_cache_fresh_out "$work/o4"
cp -r "$corpus" "$work/copy"
FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --out "$work/o5" "$work/copy" >/dev/null 2>&1 || true
edited="$(find "$work/copy" -name '*.ino' | sort | head -1)"
echo "// bench edit $(date +%s%N)" >> "$edited"
run h_compile_many_after_editing_one_sketch edit_one
compile_many_case h_compile_many_after_editing_one_sketch "$work/o5"
# i: median of five warm `fbuild build` runs of the first sketch; each must succeed.
times=()
i_status=0
for _ in 1 2 3 4 5; do
  run i_tmp build_first_warm
  times+=("${wall[i_tmp]}")
  [ "${status[i_tmp]}" = 0 ] || i_status="${status[i_tmp]}"
done
unset 'wall[i_tmp]' 'status[i_tmp]'
wall[i_build_warm_median_of_5]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)
status[i_build_warm_median_of_5]=$i_status
built[i_build_warm_median_of_5]=$([ "$i_status" = 0 ] && echo 1 || echo 0)

# Checks: every case exited as it should, and built what arduino-builder built
# (case i builds one sketch). arduino-builder must have built something at all.
want=${built[d_arduino_builder_one_at_a_time]}
broken=0
base=${wall[a_compile_many_cold]}
printf 'case\twall_s\tratio_to_compile_many_cold\texit\tbuilt\tcheck\n'
for k in $(printf '%s\n' "${!wall[@]}" | sort); do
  expect=$want
  [ "$k" = i_build_warm_median_of_5 ] && expect=1
  check=ok
  case "${status[$k]}" in
    0|1) ;;
    *) check="BROKEN: exit ${status[$k]}" ;;
  esac
  if [ "$check" = ok ] && { [ "$want" -le 0 ] || [ "${built[$k]}" != "$expect" ]; }; then
    check="BROKEN: built ${built[$k]}, arduino-builder built $want"
  fi
  if [ "$check" != ok ]; then
    broken=$((broken + 1))
    { echo "bench: case $k is broken ($check); its output:"; tail -5 "$work/$k.log" 2>/dev/null; } >&2
  fi
  printf '%s\t%.3f\t%.2f\t%s\t%s\t%s\n' "$k" "${wall[$k]}" "$(echo "${wall[$k]} / $base" | bc -l)" "${status[$k]%%,*}" "${built[$k]}" "$check"
done
if [ "$broken" -gt 0 ]; then
  echo "bench: $broken case(s) broken: their times mean nothing" >&2
  exit 1
fi


# j, k: two CI runners sharing a Redis on loopback. Runner 1 fills it (cold); runner
# 2 starts cold too (empty local cache, fresh output folder) but with the remote.
rport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
redis-server --bind 127.0.0.1 --port "$rport" --save "" --appendonly no --daemonize no >"$work/redis.log" 2>&1 &
redis_pid=$!
trap 'kill "$redis_pid" 2>/dev/null || true; rm -rf "$work"' EXIT
until redis-cli -p "$rport" ping >/dev/null 2>&1; do sleep 0.05; done
R="redis://127.0.0.1:$rport"
runner1() { FBUILD_CACHE_DIR="$(fresh r1c)" "$F" compile-many -q --remote-cache "$R" --out "$(fresh r1o)" "$corpus"; }
runner2() { FBUILD_CACHE_DIR="$(fresh r2c)" "$F" compile-many -q --remote-cache "$R" --out "$(fresh r2o)" "$corpus"; }
run j_runner1_cold_filling_remote runner1
run k_runner2_cold_with_remote runner2
# Overhead of a configured remote on fully local warm runs (every lookup hits locally):
# median of five, with and without --remote-cache, same-folder and fresh-folder runs.
warm_same_remote() { FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --remote-cache "$R" --out "$work/o1" "$corpus"; }
warm_fresh_remote() { FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --remote-cache "$R" --out "$(fresh o6)" "$corpus"; }
# Without and with alternate, so a burst of load from elsewhere hits both sides alike.
paired_median5() {
  local a="$1" fa="$2" b="$3" fb="$4" ta=() tb=()
  for _ in 1 2 3 4 5; do
    run m_tmp "$fa"; ta+=("${wall[m_tmp]}")
    run m_tmp "$fb"; tb+=("${wall[m_tmp]}")
  done
  unset 'wall[m_tmp]'
  wall[$a]=$(printf '%s\n' "${ta[@]}" | sort -n | sed -n 3p)
  wall[$b]=$(printf '%s\n' "${tb[@]}" | sort -n | sed -n 3p)
}
paired_median5 l_warm_nothing_changed_median warm_same m_warm_nothing_changed_remote_median warm_same_remote
paired_median5 n_warm_fresh_out_median warm_fresh_out o_warm_fresh_out_remote_median warm_fresh_remote

for k in j_runner1_cold_filling_remote k_runner2_cold_with_remote; do
  # Exit 1 is normal here: some examples cannot build on uno.
  if [ "${status[$k]}" -gt 1 ]; then
    echo "bench: case $k is broken (exit ${status[$k]}); its output:" >&2; tail -5 "$work/$k.log" >&2; exit 1
  fi
done
printf '\nremote_overhead_warm_nothing_changed\t%.3f\n' "$(echo "${wall[m_warm_nothing_changed_remote_median]} / ${wall[l_warm_nothing_changed_median]}" | bc -l)"
printf 'remote_overhead_warm_fresh_out\t%.3f\n' "$(echo "${wall[o_warm_fresh_out_remote_median]} / ${wall[n_warm_fresh_out_median]}" | bc -l)"
printf 'runner2_with_remote_vs_cold_alone\t%.3f\n' "$(echo "${wall[k_runner2_cold_with_remote]} / $base" | bc -l)"

# Stage-2 efficiency of case a: wall vs (sum of per-sketch stage-2 time / sketch jobs).
python3 - "$work" <<'PY'
import json, os, sys
work_dir = sys.argv[1]
r = json.load(open(os.path.join(work_dir, "a_results.json")))
phases = {}
for line in open(os.path.join(work_dir, "a_phases.tsv")).read().splitlines()[1:]:
    name, secs, _ = line.split("\t")
    phases[name] = float(secs)
jobs = os.cpu_count() or 1
work = sum(s["stage2_seconds"] for s in r["sketches"]) / jobs
print("\nstage2_wall_s\tsum_sketch_stage2_s_over_jobs\tratio")
print(f"{phases['stage2_sketches']:.3f}\t{work:.3f}\t{phases['stage2_sketches'] / work:.3f}")
PY

# Processes started by a no-change run (as case f), counted by the tool itself and by strace.
warm_same >/dev/null 2>&1 || true
procs=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['totals']['tool_processes'])" "$work/o1/results.json")
printf '\nno_change_run_tool_processes\t%s\n' "$procs"
if command -v strace >/dev/null 2>&1; then
  FBUILD_CACHE_DIR="$work/c1" strace -f -e trace=execve -o "$work/strace.txt" "$F" compile-many -q --out "$work/o1" "$corpus" >/dev/null 2>&1 || true
  printf 'no_change_run_execve_of_avr_tools\t%s\n' "$(grep -c 'execve("[^"]*avr-' "$work/strace.txt" || true)"
fi

# Smoke run: every firmware of the 100 examples (81 built-in, 19 library) booted in
# simavr for 1 s of simulated time, two at a time; reuses case a's cache.
smoke_out="$(fresh smoke)"
FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --sketch-jobs 2 --smoke-run 1s --out "$smoke_out" \
  "$corpus" "$repo/corpus/library-examples" >/dev/null 2>&1 || true
python3 - "$smoke_out" <<'PY'
import json, os, sys
out = sys.argv[1]
r = json.load(open(os.path.join(out, "results.json")))
runs = [s["run"] for s in r["sketches"] if "run" in s]
phases = {l.split("\t")[0]: float(l.split("\t")[1]) for l in open(os.path.join(out, "phases.tsv")).read().splitlines()[1:]}
simulated = sum(x["simulated_seconds"] for x in runs)
wall = phases.get("smoke_run", 0.0)
print(f"\nsmoke_run_1s_runs\t{len(runs)}")
print(f"smoke_run_1s_simulated_s\t{simulated:.1f}")
print(f"smoke_run_1s_wall_s\t{wall:.2f}")
print(f"smoke_run_1s_simulated_s_per_wall_s\t{simulated / wall if wall else 0:.2f}")
PY

if [ -n "$memory" ]; then
  mkdir -p "$work/many"
  for i in $(seq 0 9); do cp -r "$corpus" "$work/many/copy$i"; done
  rss() { { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null || true; } | tail -1; }
  r81=$(FBUILD_CACHE_DIR="$(fresh m1)" rss "$F" compile-many -q --out "$(fresh mo1)" "$work/many/copy0")
  r810=$(FBUILD_CACHE_DIR="$(fresh m2)" rss "$F" compile-many -q --out "$(fresh mo2)" "$work/many")
  printf '\npeak_rss_kb_81\t%s\npeak_rss_kb_810\t%s\nratio\t%.2f\n' "$r81" "$r810" "$(echo "$r810 / $r81" | bc -l)"
  # A board matrix builds the boards one after the other: 3 boards x 100 sketches
  # should peak near one board's 100 (the target is at most 1.5x).
  hundred=("$repo/corpus/examples" "$repo/corpus/library-examples")
  r1b=$(FBUILD_CACHE_DIR="$(fresh m3)" rss "$F" compile-many -q --out "$(fresh mo3)" --board uno "${hundred[@]}")
  r3b=$(FBUILD_CACHE_DIR="$(fresh m4)" rss "$F" compile-many -q --out "$(fresh mo4)" --board uno --board mega --board leonardo "${hundred[@]}")
  printf 'peak_rss_kb_1_board_100\t%s\npeak_rss_kb_3_boards_100\t%s\nmatrix_ratio\t%.2f\n' "$r1b" "$r3b" "$(echo "$r3b / $r1b" | bc -l)"
fi
