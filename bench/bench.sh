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
#   --corpus DIR              another set of sketches (default: corpus/examples)
#   --fbuild BIN              time this fbuild binary instead of building one
#   bench/bench.sh --samd     the SAMD cases only (Arduino Zero, the shared SAMD kit)
#   bench/bench.sh --distributed  cold builds through distcc with 2 and 4 simulated
#                             helpers (distccd on 127.0.0.1) vs local, for SAMD and for
#                             AVR (whose -flto compiles distcc declines): wall and CPU
#                             seconds, and the jobs each daemon's log shows
#   bench/bench.sh --third-party  the 86 examples of ../shared/libraries on uno only
#   bench/bench.sh --platformio   the 100 examples as PlatformIO projects for uno: fbuild
#                             build PROJECT one after the other, fbuild compile-many over
#                             all of them, vs pio run on each (the
#                             offline PlatformIO of ../shared/platformio), cold and warm
# Every cold case starts from an empty cache and output folder.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
memory="" distributed="" samd="" third_party="" platformio="" corpus="$repo/corpus/examples" F=""
while [ $# -gt 0 ]; do
  case "$1" in
    --memory) memory=1 ;;
    --samd) samd=1 ;;
    --distributed) distributed=1 ;;
    --third-party) third_party=1 ;;
    --platformio) platformio=1 ;;
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
mapfile -t sketches < <(find "$corpus" -name '*.ino' -printf '%h\n' | sort | awk -F/ '{ n=$NF; if (system("[ -f \"" $0 "/" n ".ino\" ]") == 0) print }')
export CI=true

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# run NAME COMMAND...: time one case, remember its wall time and exit status. Its
# output goes to $work/NAME.log, shown when the case is broken.
declare -A wall status built
run() {
  local name="$1"; shift
  local t0; t0=$(now)
  local rc=0
  "$@" >"$work/$name.log" 2>&1 || rc=$?
  wall[$name]=$(elapsed "$t0")
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
