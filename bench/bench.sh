#!/usr/bin/env bash
# Benchmark fbuild against arduino-builder on the 81 built-in examples for uno, and
# two simulated CI runners sharing a Redis remote cache on loopback.
# Prints TSV on stdout: case, wall seconds, ratio to cold compile-many.
#   bench/bench.sh            the timing cases
#   bench/bench.sh --memory   also peak RSS for 81 vs 810 sketches
# Every cold case starts from an empty cache and output folder.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
scripts/setup.sh >/dev/null
cargo build --release --quiet
F="$repo/target/release/fbuild"
corpus="$repo/corpus/examples"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mapfile -t sketches < <(find "$corpus" -name '*.ino' -printf '%h\n' | sort | awk -F/ '{ n=$NF; if (system("[ -f \"" $0 "/" n ".ino\" ]") == 0) print }')
export CI=true

now() { date +%s.%N; }
elapsed() { echo "$(now) - $1" | bc; }

# run NAME COMMAND...: time one case, remember its wall time.
declare -A wall
run() {
  local name="$1"; shift
  local t0; t0=$(now)
  "$@" >/dev/null 2>&1 || true
  wall[$name]=$(elapsed "$t0")
}

fresh() { rm -rf "${work:?}/${1:?}"; mkdir -p "$work/$1"; echo "$work/$1"; }

cm_default() { FBUILD_CACHE_DIR="$(fresh c1)" "$F" compile-many -q --out "$(fresh o1)" "$corpus"; }
cm_narrow() { FBUILD_CACHE_DIR="$(fresh c2)" "$F" compile-many -q --framework-jobs 1 --sketch-jobs 2 --out "$(fresh o2)" "$corpus"; }
build_loop() {
  local cache; cache="$(fresh c3)"; local out; out="$(fresh o3)"
  for s in "${sketches[@]}"; do FBUILD_CACHE_DIR="$cache" "$F" build -q --out "$out" "$s" || true; done
}
ab_one() {
  local core; core="$(fresh abcore1)"
  for s in "${sketches[@]}"; do
    local b; b="$(fresh ab1)"
    arduino-builder -compile -hardware /usr/share/arduino/hardware -hardware /usr/share/arduino-builder -tools /usr/bin \
      -fqbn arduino:avr:uno -build-path "$b" -build-cache "$core" \
      -prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__ "$s/$(basename "$s").ino" || true
  done
}
ab_xargs() {
  local core; core="$(fresh abcore2)"
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  printf '%s\n' "${sketches[@]}" | xargs -P 2 -I{} sh -c '
    b=$(mktemp -d -p "$1"); n=$(basename "$2")
    arduino-builder -compile -hardware /usr/share/arduino/hardware -hardware /usr/share/arduino-builder -tools /usr/bin \
      -fqbn arduino:avr:uno -build-path "$b" -build-cache "$3" \
      -prefs=compiler.cpp.extra_flags=-DDECIMAL_DIG=__DECIMAL_DIG__ "$2/$n.ino" >/dev/null 2>&1 || true' _ "$work" {} "$core"
}
# Warm cases reuse case a's cache (c1) and output folder (o1).
warm_same() { FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --out "$work/o1" "$corpus"; }
warm_fresh_out() { FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --out "$(fresh o4)" "$corpus"; }
edit_one() {
  FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --out "$work/o5" "$work/copy"
}
build_blink_warm() { FBUILD_CACHE_DIR="$work/c1" "$F" build -q --out "$work/o1" "$corpus/01.Basics/Blink"; }

run a_compile_many_cold cm_default
cp "$work/o1/results.json" "$work/a_results.json"
cp "$work/o1/phases.tsv" "$work/a_phases.tsv"
run b_compile_many_fj1_sj2_cold cm_narrow
run c_build_loop_cold build_loop
run d_arduino_builder_one_at_a_time ab_one
run e_arduino_builder_xargs_P2 ab_xargs
run f_compile_many_warm_nothing_changed warm_same
run g_compile_many_warm_cache_fresh_out warm_fresh_out
cp -r "$corpus" "$work/copy"
FBUILD_CACHE_DIR="$work/c1" "$F" compile-many -q --out "$work/o5" "$work/copy" >/dev/null 2>&1 || true
echo "// bench edit $(date +%s%N)" >> "$work/copy/01.Basics/Blink/Blink.ino"
run h_compile_many_after_editing_one_sketch edit_one
# i: median of five warm `fbuild build` runs of Blink.
times=()
for _ in 1 2 3 4 5; do run i_tmp build_blink_warm; times+=("${wall[i_tmp]}"); done
unset 'wall[i_tmp]'
wall[i_build_blink_warm_median_of_5]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n 3p)

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

base=${wall[a_compile_many_cold]}
printf 'case\twall_s\tratio_to_compile_many_cold\n'
for k in $(printf '%s\n' "${!wall[@]}" | sort); do
  printf '%s\t%.3f\t%.2f\n' "$k" "${wall[$k]}" "$(echo "${wall[$k]} / $base" | bc -l)"
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

if [ "${1:-}" = "--memory" ]; then
  mkdir -p "$work/many"
  for i in $(seq 0 9); do cp -r "$corpus" "$work/many/copy$i"; done
  rss() { { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null || true; } | tail -1; }
  r81=$(FBUILD_CACHE_DIR="$(fresh m1)" rss "$F" compile-many -q --out "$(fresh mo1)" "$work/many/copy0")
  r810=$(FBUILD_CACHE_DIR="$(fresh m2)" rss "$F" compile-many -q --out "$(fresh mo2)" "$work/many")
  printf '\npeak_rss_kb_81\t%s\npeak_rss_kb_810\t%s\nratio\t%.2f\n' "$r81" "$r810" "$(echo "$r810 / $r81" | bc -l)"
fi
