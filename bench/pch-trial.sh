#!/usr/bin/env bash
# The precompiled-header trial (issue 9): does a GCC precompiled header (.gch) for a
# heavy library's headers make fbuild's sketch compiles cheaper, with the same firmware?
# (Answer on avr-gcc 5.4: no; on arm-none-eabi-gcc 12 fbuild uses one for Arduino.h;
# see "Precompiled headers" in docs/design.md.)
#
# fbuild builds the examples of some libraries in ../shared/libraries for uno; then, for
# every sketch that built, its merged `.ino.cpp` is recompiled with the exact command
# fbuild ran (compile_commands.json), in these variants:
#   reference          the command as is (its .hex must equal fbuild's: the replay is exact)
#   reference+pch      the same with a .gch built with the same flags: GCC refuses it,
#                      because this avr-gcc's -g is stabs (not timed)
#   dwarf              -g spelled -gdwarf-2, no .gch (what a PCH needs, on its own)
#   dwarf+arduino-pch  -gdwarf-2 and a .gch of <Arduino.h> (the merged file's first
#                      include), found first on an extra -I folder
#   dwarf+lib-pch      -gdwarf-2 and a .gch of "Arduino.h + the library's headers",
#                      given with -include; the sketch's own #includes then hit guards
# Each .gch is built once per library with its first sketch's flags (`-x c++-header`).
# Debian's cc1plus is a PIE and a .gch holds its addresses, so .gch builds and the
# compiles that use one run under `setarch -R` (no address randomisation).
# Every variant is linked with fbuild's link command (build.log) and objcopied; its .hex
# is compared byte for byte with fbuild's (which the differential tests hold equal to
# arduino-builder's), and .elf sizes are summed. A -H run checks whether GCC used the
# .gch (`! NAME.gch`). Compiles are timed one at a time, the variants interleaved per
# sketch so load drift hits them alike: wall and CPU (user+sys) seconds, median of the
# repetitions; "amortised" adds the library's one .gch build to its sketches' compiles,
# and the last table sets the saving against each sketch's compile + link + objcopy.
#
#   bench/pch-trial.sh [--reps N] [--fbuild BIN] [LIB=HEADER,HEADER...]...
# Default: ArduinoJson=ArduinoJson.h Adafruit_SSD1306=SPI.h,Wire.h,Adafruit_GFX.h,
# Adafruit_SSD1306.h SD=SD.h, 3 repetitions. Prints TSV on stdout; exits 1 when the
# measurement is broken (the reference replay's .hex differs from fbuild's, or a
# -gdwarf-2 PCH variant did not use its .gch). Keep the machine's other load in mind:
# wall times move with it, CPU seconds much less.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
cd "$repo"
reps=3 F=""
specs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --reps) reps="$2"; shift ;;
    --fbuild) F="$2"; shift ;;
    *=*) specs+=("$1") ;;
    *) echo "pch-trial: unknown argument $1 (see the comment at the top of bench/pch-trial.sh)" >&2; exit 2 ;;
  esac
  shift
done
[ ${#specs[@]} -gt 0 ] || specs=(ArduinoJson=ArduinoJson.h Adafruit_SSD1306=SPI.h,Wire.h,Adafruit_GFX.h,Adafruit_SSD1306.h SD=SD.h)
scripts/setup.sh >/dev/null
if [ -z "$F" ]; then
  cargo build --release --quiet
  F="$repo/target/release/fbuild"
fi
# The shared corpus beside the clone, as CI lays it out; $FBUILD_SHARED_LIBRARIES or
# /work/shared otherwise (as tests/common does).
libs="${FBUILD_SHARED_LIBRARIES:-$repo/../shared/libraries}"
[ -d "$libs" ] || libs=/work/shared/libraries
libs="$(cd "$libs" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

dirs=()
for s in "${specs[@]}"; do dirs+=("$libs/${s%%=*}/examples"); done
FBUILD_CACHE_DIR="$work/cache" "$F" compile-many -q --board uno --libraries "$libs" \
  --framework-jobs 1 --sketch-jobs 2 --out "$work/ref" "${dirs[@]}" >"$work/ref.log" 2>&1 || true
[ -f "$work/ref/results.json" ] || { cat "$work/ref.log" >&2; echo "pch-trial: fbuild made no results.json" >&2; exit 1; }


# Not exec: the EXIT trap must still remove $work. Its status is the script's (set -e).
python3 - "$work" "$reps" "$libs" "${specs[@]}" <<'PY'
import json, os, shlex, statistics, subprocess, sys, time

work, reps, libs, specs = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4:]
ref = os.path.join(work, "ref")
results = json.load(open(os.path.join(ref, "results.json")))
cdb = json.load(open(os.path.join(ref, "compile_commands.json")))
headers_of = {spec.split("=")[0]: spec.split("=")[1].split(",") for spec in specs}
# Debian's cc1plus is a PIE: a .gch is valid only in a process mapped at the address
# that wrote it, so PCH variants build and use it with address randomisation off.
no_aslr = ["setarch", os.uname().machine, "-R"]
DWARF = "-gdwarf-2"

def run(args):
    """Run a tool to completion; return (wall s, cpu s of the child, stderr text)."""
    t0 = time.monotonic()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read().decode(errors="replace")
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    if status != 0:
        sys.exit(f"pch-trial: command failed: {shlex.join(args)}\n{err}")
    return wall, ru.ru_utime + ru.ru_stime, err

def swap(args, old, new):
    return [new if a == old else a for a in args]

# Every sketch that built: its merged-file compile, link and hex commands, from fbuild.
sketches = []
for s in results["sketches"]:
    lib = next((l for l in headers_of if s["path"].startswith(f"{libs}/{l}/")), None)
    if s["status"] != "ok" or lib is None:
        continue
    merged = os.path.join(s["output_dir"], "sketch", s["name"] + ".ino.cpp")
    compile_ = next(e["arguments"] for e in cdb if e["file"] == merged)
    elf = os.path.join(s["output_dir"], s["name"] + ".ino.elf")
    logged = [shlex.split(l) for l in open(s["log"]) if l.startswith("/")]
    link = next(l for l in logged if "-o" in l and l[l.index("-o") + 1] == elf)
    hexcmd = next(l for l in logged if "-R" in l and l[-1].endswith(".ino.hex"))
    sketches.append(dict(name=s["name"], lib=lib, compile=compile_, src=merged,
                         obj=compile_[compile_.index("-o") + 1], elf=elf, link=link,
                         hexcmd=hexcmd, hex=hexcmd[-1]))
if not sketches:
    sys.exit("pch-trial: no sketch built; see fbuild's results.json")
libs_used = sorted({s["lib"] for s in sketches})

# A variant: how the debug flag is spelled, which .gch (none, "arduino", "lib"), and
# whether it is timed. "reference+pch" only shows that GCC refuses a .gch under -g.
VARIANTS = {
    "reference": ("-g", None, True),
    "reference+pch": ("-g", "lib", False),
    "dwarf": (DWARF, None, True),
    "dwarf+arduino-pch": (DWARF, "arduino", True),
    "dwarf+lib-pch": (DWARF, "lib", True),
}

def flags(sk, debug):
    return swap(sk["compile"], "-g", debug)

def gch_header(lib, kind):
    return ["Arduino.h"] + headers_of[lib]

def gch_paths(lib, kind, debug):
    """(header text file, folder the .gch sits in, .gch). The header stays beside its
    .gch: GCC opens it for a second #include of the same name (ArduinoJson includes
    <Arduino.h> again) or when it rejects the .gch."""
    d = os.path.join(work, "pch", f"{kind}{debug}", lib, "inc")
    name = "Arduino.h" if kind == "arduino" else "fbuild-pch.h"
    return os.path.join(d, name), d, os.path.join(d, name + ".gch")

def gch_build(lib, kind, debug):
    """The command that precompiles the header with the flags of the library's first sketch."""
    sk = next(s for s in sketches if s["lib"] == lib)
    text, inc, gch = gch_paths(lib, kind, debug)
    os.makedirs(inc, exist_ok=True)
    with open(text, "w") as f:
        if kind == "arduino":  # the stand-in for <Arduino.h>, ahead of the core's on the path
            f.write("#include_next <Arduino.h>\n")
        else:
            f.write("".join(f"#include <{h}>\n" for h in gch_header(lib, kind)))
    args = [a for a in flags(sk, debug) if a not in ("-c", "-MMD")]
    at = args.index(sk["src"])
    return no_aslr + args[:at] + ["-x", "c++-header", text, "-o", gch]

def compile_cmd(sk, variant, obj):
    debug, kind, _ = VARIANTS[variant]
    args = swap(flags(sk, debug), sk["obj"], obj)
    if kind is None:
        return args
    text, inc, _ = gch_paths(sk["lib"], kind, debug)
    if kind == "arduino":  # found before the core's Arduino.h on the include path
        at = next(i for i, a in enumerate(args) if a.startswith("-I"))
        extra = ["-I" + inc]
    else:  # the sketch's own includes of these headers then hit their guards
        at = args.index(sk["src"])
        extra = ["-include", text]
    return no_aslr + args[:at] + extra + args[at:]

def var_dir(v):
    """Each variant's objects and firmware, in folders whose paths have one length: the
    object's path is written into the .elf's debug information."""
    return os.path.join(work, "var", str(list(VARIANTS).index(v)))

gchs = sorted({(lib, v[1], v[0]) for lib in libs_used for v in VARIANTS.values() if v[1]})
gch_times = {g: [] for g in gchs}
times = {(s["name"], v): [] for s in sketches for v in VARIANTS if VARIANTS[v][2]}
for rep in range(reps):
    for g in gchs:
        gch_times[g].append(run(gch_build(*g))[:2])
    for sk in sketches:
        for v in VARIANTS:
            o = os.path.join(var_dir(v), sk["name"] + ".o")
            os.makedirs(os.path.dirname(o), exist_ok=True)
            if VARIANTS[v][2]:
                times[(sk["name"], v)].append(run(compile_cmd(sk, v, o))[:2])

# Firmware: each variant's object linked and objcopied exactly as fbuild did; a -H run
# shows whether GCC used the .gch ("! FILE.gch") or rejected it ("x FILE.gch").
broken = 0
differs = 0
elf_bytes = {}
print("# firmware: library, sketch, variant, .gch used (-H), .hex vs fbuild's, reference .elf bytes, variant .elf bytes")
for sk in sketches:
    ref_hex = open(sk["hex"], "rb").read()
    replay_elf = os.path.join(var_dir("reference"), sk["name"] + ".elf")
    for v, (debug, kind, _) in VARIANTS.items():
        o = os.path.join(var_dir(v), sk["name"] + ".o")
        trace = run(compile_cmd(sk, v, o) + ["-H"])[2].splitlines()
        used = "-" if kind is None else ("yes" if any(l.startswith("! ") for l in trace) else "no")
        elf = os.path.join(var_dir(v), sk["name"] + ".elf")
        hx = elf[:-4] + ".hex"
        linked = run(swap(swap(sk["link"], sk["obj"], o), sk["elf"], elf))
        hexed = run(swap(swap(sk["hexcmd"], sk["elf"], elf), sk["hex"], hx))
        if v == "reference":
            sk["link_s"] = [linked[i] + hexed[i] for i in (0, 1)]
        same = open(hx, "rb").read() == ref_hex
        if v == "reference" and not same:
            broken += 1  # the replay itself is not fbuild's build
        if used == "no" and debug == DWARF:
            broken += 1  # a PCH variant that did not use its .gch measures nothing
        differs += 0 if same or v == "reference" else 1
        elf_bytes[v] = elf_bytes.get(v, 0) + os.path.getsize(elf)
        print("\t".join(map(str, [sk["lib"], sk["name"], v, used, "identical" if same else "DIFFERS",
                                  os.path.getsize(replay_elf), os.path.getsize(elf)])))

med = lambda xs, i: statistics.median(x[i] for x in xs)
timed = [v for v in VARIANTS if VARIANTS[v][2]]
print(f"\n# merged-sketch compile, median of {reps} (wall/cpu s): library, sketch, " + ", ".join(timed))
for sk in sketches:
    print("\t".join([sk["lib"], sk["name"]] + [f"{med(times[(sk['name'], v)], 0):.3f}/{med(times[(sk['name'], v)], 1):.3f}" for v in timed]))
print("\n# per library and variant: sketches, .gch build (wall/cpu s, MB), compiles, compiles + one .gch build, ratio to reference")
total = {v: [0.0, 0.0] for v in timed}
for lib in libs_used:
    mine = [s for s in sketches if s["lib"] == lib]
    base = [sum(med(times[(s["name"], "reference")], i) for s in mine) for i in (0, 1)]
    for v in timed:
        debug, kind, _ = VARIANTS[v]
        g = [med(gch_times[(lib, kind, debug)], i) for i in (0, 1)] if kind else [0.0, 0.0]
        mb = os.path.getsize(gch_paths(lib, kind, debug)[2]) / 1e6 if kind else 0.0
        t = [sum(med(times[(s["name"], v)], i) for s in mine) for i in (0, 1)]
        a = [t[i] + g[i] for i in (0, 1)]
        total[v] = [total[v][i] + a[i] for i in (0, 1)]
        print(f"{lib}\t{v}\t{len(mine)}\tgch {g[0]:.2f}/{g[1]:.2f} {mb:.1f}MB\tcompiles {t[0]:.2f}/{t[1]:.2f}"
              f"\tamortised {a[0]:.2f}/{a[1]:.2f}\tratio {a[0] / base[0]:.2f}/{a[1] / base[1]:.2f}")
print(f"\n# all {len(sketches)} sketches, compiles + .gch builds (wall/cpu s), ratio to reference, and the")
print("# change in each sketch's own stage-2 work (merged-sketch compile + link + objcopy, linked once)")
stage2 = [sum(med(times[(s["name"], "reference")], i) + s["link_s"][i] for s in sketches) for i in (0, 1)]
for v in timed:
    saved = [total["reference"][i] - total[v][i] for i in (0, 1)]
    print(f"total\t{v}\t{total[v][0]:.2f}/{total[v][1]:.2f}\tratio {total[v][0] / total['reference'][0]:.2f}/{total[v][1] / total['reference'][1]:.2f}"
          f"\tstage2 {stage2[0]:.2f}/{stage2[1]:.2f} s, saved {100 * saved[0] / stage2[0]:+.1f}%/{100 * saved[1] / stage2[1]:+.1f}%")
print("\n# .elf bytes over all sketches, change from the reference replay (.hex compared above)")
for v in VARIANTS:
    print(f"elf\t{v}\t{elf_bytes[v]}\t{100 * (elf_bytes[v] / elf_bytes['reference'] - 1):+.2f}%")
print(f"firmware_checked\t{len(sketches) * len(VARIANTS)}\thex_differs\t{differs}\tbroken_measurements\t{broken}")
sys.exit(1 if broken else 0)
PY
