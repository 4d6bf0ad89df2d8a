//! Sketches and libraries that embed the build's time (`__TIME__`, `__DATE__`): a
//! warm build or the cache must not hand out firmware stamped at an earlier build,
//! while everything else stays warm. Real avr-gcc (which ignores SOURCE_DATE_EPOCH)
//! and the SAMD kit's arm-none-eabi-gcc 12 (which honours it).

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

/// `fbuild compile-many` with SOURCE_DATE_EPOCH set to `epoch` (or unset): every
/// sketch must build.
fn many(cache: &Path, out: &Path, epoch: Option<&str>, extra: &[String], sketches: &[PathBuf]) -> Value {
    let r = run_many(cache, out, epoch, extra, sketches);
    assert_eq!(r["totals"]["failed"], 0, "{r}");
    r
}

/// `fbuild compile-many` with SOURCE_DATE_EPOCH set to `epoch` (or unset), the exit
/// code checked against the results.
fn run_many(cache: &Path, out: &Path, epoch: Option<&str>, extra: &[String], sketches: &[PathBuf]) -> Value {
    let mut cmd = Command::new(fbuild_bin());
    cmd.arg("compile-many").arg("--out").arg(out).args(extra).args(sketches);
    cmd.current_dir(out.parent().unwrap()).env("FBUILD_CACHE_DIR", cache).env("CI", "true").env_remove("SOURCE_DATE_EPOCH");
    if let Some(e) = epoch {
        cmd.env("SOURCE_DATE_EPOCH", e);
    }
    let o = cmd.output().unwrap();
    let r = read_json(&out.join("results.json"));
    let failed = r["totals"]["failed"].as_u64().unwrap();
    assert_eq!(o.status.code(), Some(if failed > 0 { 1 } else { 0 }), "{}\n{r}", String::from_utf8_lossy(&o.stderr));
    r
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A sketch `NAME/NAME.ino` under `root` with `text`.
fn sketch(root: &Path, name: &str, text: &str) -> PathBuf {
    let dir = root.join(name);
    write(&dir.join(format!("{name}.ino")), text);
    dir
}

fn printing(what: &str) -> String {
    format!("const char stamp[] = {what};\nvoid setup() {{ Serial.begin(9600); Serial.println(stamp); }}\nvoid loop() {{}}\n")
}

/// The local date, as the compiler's `__DATE__` reads the clock.
fn today() -> String {
    String::from_utf8(Command::new("date").arg("+%F").output().unwrap().stdout).unwrap()
}

fn by_name<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["sketches"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no sketch {name}: {r}"))
}

fn unit<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["units"].as_array().unwrap().iter().find(|u| u["name"] == name).unwrap_or_else(|| panic!("no unit {name}: {r}"))
}

fn firmware(r: &Value, name: &str, kind: &str) -> Vec<u8> {
    std::fs::read(by_name(r, name)["firmware"][kind].as_str().unwrap()).unwrap()
}

fn time_dependent(r: &Value, name: &str) -> Vec<String> {
    by_name(r, name)["time_dependent"].as_array().map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect()).unwrap_or_default()
}

/// The memory image an Intel HEX file describes.
fn hex_image(hex: &[u8]) -> std::collections::BTreeMap<u32, u8> {
    let mut image = std::collections::BTreeMap::new();
    let mut base = 0u32;
    for line in std::str::from_utf8(hex).unwrap().lines().filter(|l| l.starts_with(':')) {
        let bytes: Vec<u8> = (1..line.len()).step_by(2).map(|i| u8::from_str_radix(&line[i..i + 2], 16).unwrap()).collect();
        let (len, addr, kind) = (bytes[0] as usize, u16::from_be_bytes([bytes[1], bytes[2]]) as u32, bytes[3]);
        let data = &bytes[4..4 + len];
        match kind {
            0 => {
                for (i, b) in data.iter().enumerate() {
                    image.insert(base + addr + i as u32, *b);
                }
            }
            2 => base = (u16::from_be_bytes([data[0], data[1]]) as u32) << 4,
            4 => base = (u16::from_be_bytes([data[0], data[1]]) as u32) << 16,
            _ => {}
        }
    }
    image
}

/// Where `a` and `b` (of equal length) differ.
fn differences(a: &[u8], b: &[u8]) -> Vec<usize> {
    assert_eq!(a.len(), b.len(), "the firmware changed size");
    (0..a.len()).filter(|&i| a[i] != b[i]).collect()
}

/// Every offset of `a` where a `marker` + `hh:mm:ss` string's time starts.
fn time_strings(a: &[u8], marker: &[u8]) -> Vec<usize> {
    let re = regex::bytes::Regex::new(&format!(r"{}\d\d:\d\d:\d\d", regex::escape(std::str::from_utf8(marker).unwrap()))).unwrap();
    re.find_iter(a).map(|m| m.start() + marker.len()).collect()
}

/// An .elf with the names of GCC's LTO temporary files (`/tmp/ccXXXXXX.ltrans0.o`,
/// random in every link, arduino-builder's too) in its debug information blanked.
fn without_lto_temp_names(elf: &[u8]) -> Vec<u8> {
    let re = regex::bytes::Regex::new(r"cc[A-Za-z0-9]{6}\.ltrans").unwrap();
    let mut out = elf.to_vec();
    for m in re.find_iter(elf) {
        out[m.start() + 2..m.start() + 8].fill(b'X');
    }
    out
}

/// The two builds of `name` differ, and only inside its `T=hh:mm:ss` time string: in
/// the .elf file (but for LTO's temporary names) and in the memory image of the .hex.
fn only_the_time_differs(a: &Value, b: &Value, name: &str) {
    let (elf_a, elf_b) = (without_lto_temp_names(&firmware(a, name, "elf")), without_lto_temp_names(&firmware(b, name, "elf")));
    let at = time_strings(&elf_a, b"T=");
    assert!(!at.is_empty(), "{name}.elf holds no time string");
    let diff = differences(&elf_a, &elf_b);
    assert!(!diff.is_empty(), "{name}: the second build's .elf is the first one's");
    assert!(diff.iter().all(|&d| at.iter().any(|&s| (s..s + 8).contains(&d))), "{name}.elf differs outside its time string at {diff:?} (time at {at:?})");

    let (img_a, img_b) = (hex_image(&firmware(a, name, "hex")), hex_image(&firmware(b, name, "hex")));
    assert_eq!(img_a.keys().collect::<Vec<_>>(), img_b.keys().collect::<Vec<_>>(), "{name}: the .hex covers other addresses");
    let (bytes_a, bytes_b): (Vec<u8>, Vec<u8>) = (img_a.values().copied().collect(), img_b.values().copied().collect());
    let at = time_strings(&bytes_a, b"T=");
    assert_eq!(at.len(), 1, "{name}.hex holds one time string");
    let diff = differences(&bytes_a, &bytes_b);
    assert!(!diff.is_empty() && diff.iter().all(|&d| (at[0]..at[0] + 8).contains(&d)), "{name}.hex differs at {diff:?}, its time is at {}", at[0]);
}

/// One run: a `__TIME__` sketch, a `__DATE__` sketch, a sketch of each kind of library
/// (`__DATE__` in Stamped, `__TIME__` in Ticking) and Blink. A second run a second
/// later rebuilds what embeds the second and nothing else: not one process for the
/// `__DATE__` sketch and library (the same day) or for Blink, seen by a recording
/// toolchain. SOURCE_DATE_EPOCH changes nothing with avr-gcc 5.4, which ignores it.
#[test]
fn time_units_rebuild_each_second_date_units_each_day_and_the_rest_stay_warm() {
    let t = tempfile::tempdir().unwrap();
    let (cache, log) = (t.path().join("cache"), t.path().join("tools.log"));
    let bin = recording_toolchain(&t.path().join("bin"), &log);
    let src = t.path().join("src");
    let libs = t.path().join("libs");
    write(&libs.join("Stamped/Stamped.h"), "const char *stamped_on();\n");
    write(&libs.join("Stamped/Stamped.cpp"), "#include \"Stamped.h\"\nconst char *stamped_on() { return \"D=\" __DATE__; }\n");
    write(&libs.join("Ticking/Ticking.h"), "const char *ticked_at();\n");
    write(&libs.join("Ticking/Ticking.cpp"), "#include \"Ticking.h\"\nconst char *ticked_at() { return \"T=\" __TIME__; }\n");
    let uses = |name: &str, header: &str, call: &str| {
        sketch(&src, name, &format!("#include <{header}>\nvoid setup() {{ Serial.begin(9600); Serial.println({call}()); }}\nvoid loop() {{}}\n"))
    };
    let sketches = vec![
        sketch(&src, "Clock", &printing("\"T=\" __TIME__")),
        sketch(&src, "Dated", &printing("\"D=\" __DATE__")),
        uses("UsesStamped", "Stamped.h", "stamped_on"),
        uses("UsesTicking", "Ticking.h", "ticked_at"),
        example("01.Basics/Blink"),
    ];
    let mut extra: Vec<String> = vec!["--libraries".into(), libs.display().to_string()];
    extra.extend(["--build-property".to_string(), format!("compiler.path={}/", bin.display())]);
    let day = today();
    let out = t.path().join("out");

    // Its firmware kept apart: the next run into `out` replaces it.
    let cold = cold_copy(&many(&cache, &out, None, &extra, &sketches), &t.path().join("cold"));
    assert_eq!(time_dependent(&cold, "Clock"), ["sketch"]);
    assert_eq!(time_dependent(&cold, "Dated"), ["sketch"]);
    assert_eq!(time_dependent(&cold, "UsesStamped"), ["lib:Stamped"]);
    assert_eq!(time_dependent(&cold, "UsesTicking"), ["lib:Ticking"]);
    assert!(by_name(&cold, "Blink").get("time_dependent").is_none(), "absent when nothing embeds the time");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = line_count(&log);
    let warm = cold_copy(&many(&cache, &out, None, &extra, &sketches), &t.path().join("warm"));
    if today() != day {
        report_skipped("time_units_rebuild_each_second_date_units_each_day_and_the_rest_stay_warm", "the local date changed during the test");
        return;
    }
    let started = std::fs::read_to_string(&log).unwrap().lines().skip(before).map(String::from).collect::<Vec<_>>();
    assert_eq!(warm["totals"]["tool_processes"].as_u64(), Some(started.len() as u64), "{started:#?}");
    assert!(started.iter().all(|l| l.contains("Clock") || l.contains("Ticking")), "only the __TIME__ sketch and library's work runs:\n{}", started.join("\n"));
    assert!(!started.iter().any(|l| ["Dated", "Stamped", "Blink"].iter().any(|n| l.contains(n))), "{}", started.join("\n"));
    assert_eq!((warm["totals"]["objects_compiled"].as_u64(), warm["totals"]["links_run"].as_u64()), (Some(2), Some(2)), "Clock.ino.cpp and Ticking.cpp; Clock and UsesTicking");
    for name in ["Dated", "UsesStamped", "Blink"] {
        assert_eq!((by_name(&warm, name)["link"].as_str(), by_name(&warm, name)["objects_compiled"].as_u64()), (Some("up_to_date"), Some(0)), "{name}");
        assert_eq!(firmware(&warm, name, "hex"), firmware(&cold, name, "hex"), "{name}");
    }
    assert_eq!(by_name(&warm, "Clock")["discover_runs"], 0, "discovery answers do not follow the clock");
    assert_eq!(unit(&warm, "Stamped")["up_to_date"], true);
    assert_eq!(unit(&warm, "Ticking")["objects_compiled"], 1);
    assert_eq!(by_name(&warm, "UsesTicking")["objects_compiled"], 0, "its own source names no time macro");
    only_the_time_differs(&cold, &warm, "Clock");
    only_the_time_differs(&cold, &warm, "UsesTicking");

    // Another checkout (a fresh output folder) on the warm cache, SOURCE_DATE_EPOCH set:
    // avr-gcc 5.4 reads the clock anyway, so the day's objects come from the cache and
    // the second's are built again.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let fresh = many(&cache, &t.path().join("out2"), Some("1700000000"), &extra, &sketches);
    if today() != day {
        return;
    }
    for name in ["Dated", "UsesStamped", "Blink"] {
        assert_eq!((by_name(&fresh, name)["link"].as_str(), by_name(&fresh, name)["objects_compiled"].as_u64()), (Some("cached"), Some(0)), "{name}");
    }
    assert_eq!(by_name(&fresh, "Clock")["objects_compiled"], 1);
    assert_eq!(by_name(&fresh, "Clock")["link"], "linked");
    only_the_time_differs(&warm, &fresh, "Clock");
    let date = by_name(&fresh, "Dated");
    let hex = hex_image(&std::fs::read(date["firmware"]["hex"].as_str().unwrap()).unwrap()).into_values().collect::<Vec<u8>>();
    assert!(!hex.windows(11).any(|w| w == b"Nov 14 2023"), "avr-gcc 5.4 does not read SOURCE_DATE_EPOCH");
}

/// The first run's firmware files, kept apart: later runs into the same output
/// folder replace them. Returns a result whose firmware paths point at the copies.
fn cold_copy(r: &Value, dir: &Path) -> Value {
    let mut r = r.clone();
    for s in r["sketches"].as_array_mut().unwrap() {
        let name = s["name"].as_str().unwrap().to_string();
        for (kind, path) in s["firmware"].as_object_mut().unwrap() {
            let to = dir.join(format!("{name}.{kind}"));
            std::fs::create_dir_all(dir).unwrap();
            std::fs::copy(path.as_str().unwrap(), &to).unwrap();
            *path = Value::String(to.display().to_string());
        }
    }
    r
}

/// arm-none-eabi-gcc 12 expands `__DATE__` and `__TIME__` from SOURCE_DATE_EPOCH: with
/// it set, a later build (a second later, in another output folder) reuses the
/// objects and the link; without it, the clock decides again.
#[test]
fn source_date_epoch_on_gcc_12_makes_time_sketches_reusable() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let clock = sketch(&t.path().join("src"), "EpochClock", &printing("\"T=\" __TIME__ \" D=\" __DATE__"));
    let mut extra = vec!["--board".to_string(), "arduino:samd:arduino_zero_native".into()];
    extra.extend(samd_kit_args());
    // GCC refuses a value that is not a number; the error is not remembered, since
    // the value is no input of the failure's key.
    let refused = run_many(&cache, &t.path().join("out0"), Some("soon"), &extra, std::slice::from_ref(&clock));
    let error = by_name(&refused, "EpochClock")["first_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("SOURCE_DATE_EPOCH"), "{refused}");
    let epoch = Some("1700000000"); // 2023-11-14 22:13:20 UTC
    let first = many(&cache, &t.path().join("out1"), epoch, &extra, std::slice::from_ref(&clock));
    assert_eq!(time_dependent(&first, "EpochClock"), ["sketch"]);
    let bin = firmware(&first, "EpochClock", "bin");
    assert!(bin.windows(24).any(|w| w == b"T=22:13:20 D=Nov 14 2023"), "the compiler read SOURCE_DATE_EPOCH");

    std::thread::sleep(std::time::Duration::from_millis(1100));
    let second = many(&cache, &t.path().join("out2"), epoch, &extra, std::slice::from_ref(&clock));
    assert_eq!(second["totals"]["objects_compiled"], 0, "{second}");
    assert_eq!(by_name(&second, "EpochClock")["link"], "cached");
    assert_eq!(firmware(&second, "EpochClock", "bin"), bin);

    // Unset: keyed by the clock again, and built with today's date.
    let unset = many(&cache, &t.path().join("out3"), None, &extra, std::slice::from_ref(&clock));
    assert_eq!(by_name(&unset, "EpochClock")["objects_compiled"], 1);
    assert!(!firmware(&unset, "EpochClock", "bin").windows(24).any(|w| w == b"T=22:13:20 D=Nov 14 2023"));
}
