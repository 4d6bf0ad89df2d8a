//! Issue 11: firmware built by fbuild, run in the real simavr (`fbuild run`,
//! `compile-many --smoke-run`). Every firmware here is built from source by the
//! real avr-gcc; nothing is faked.

mod common;

use std::path::{Path, PathBuf};

use common::*;

/// A sketch folder written into `root`.
fn sketch(root: &Path, name: &str, source: &str) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.ino")), source).unwrap();
    dir
}

const HALT: &str = r#"#include <avr/sleep.h>
void setup() {
  Serial.begin(115200);
  Serial.println("hello");
  Serial.flush();
  cli();
  sleep_enable();
  sleep_cpu();
}
void loop() {}
"#;

const SILENT: &str = "void setup() {}\nvoid loop() {}\n";

const JUMP_OUTSIDE_FLASH: &str = r#"void setup() {
  Serial.begin(115200);
  Serial.println("jumping");
  Serial.flush();
  // Word address 0x7ff0 is byte 0xffe0: past the end of the uno's 32 KiB flash.
  void (*nowhere)(void) = (void (*)(void))0x7ff0;
  nowhere();
}
void loop() {}
"#;

const STACK_OVERFLOW: &str = r#"volatile uint8_t sink;
void dive(uint16_t depth) {
  volatile uint8_t frame[16];
  frame[0] = depth;
  sink = frame[0];
  dive(depth + 1);
  sink++;
}
void setup() {
  Serial.begin(115200);
  Serial.println("diving");
  Serial.flush();
  dive(0);
}
void loop() {}
"#;

const BAD_OPCODE: &str = r#"void setup() {
  Serial.begin(115200);
  Serial.println("bad opcode next");
  Serial.flush();
  asm volatile(".word 0x0001");  // no AVR instruction is encoded 0x0001
}
void loop() {}
"#;

fn run_args<'a>(out: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["run", "--out", out];
    v.extend_from_slice(extra);
    v
}

/// What ASCIITable prints, computed here from the sketch's own rules.
fn ascii_table() -> String {
    let mut s = String::from("ASCII Table ~ Character Map\r\n");
    for b in 33u8..=126 {
        s.push_str(&format!("{}, dec: {b}, hex: {b:X}, oct: {b:o}, bin: {b:b}\r\n", b as char));
    }
    s
}

#[test]
fn ascii_table_prints_the_whole_table_the_same_every_time() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out").display().to_string();
    let sk = example("04.Communication/ASCIITable").display().to_string();
    // About 4.2 KB at 9600 baud: the whole table needs about 4.4 s of simulated time.
    let run = fbuild(&t.path().join("cache"), t.path(), &run_args(&out, &["--timeout", "6s", &sk]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, ascii_table());
    assert!(run.stderr.contains("run: timeout after 6.000 s simulated"), "{}", run.stderr);

    // Simulated time: two runs at once (competing for the CPU) print the same bytes
    // in the same simulated time, and a shorter run prints a prefix of them.
    let twice: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..2)
            .map(|_| s.spawn(|| fbuild(&t.path().join("cache"), t.path(), &run_args(&out, &["--timeout", "1500ms", &sk]))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(twice[0].stdout, twice[1].stdout);
    assert!(twice[0].stdout.len() > 1000, "{}", twice[0].stdout);
    assert!(ascii_table().starts_with(&twice[0].stdout));
}

#[test]
fn serial_event_echoes_input_and_stops_once_expectations_match() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out").display().to_string();
    let input = t.path().join("input.txt");
    std::fs::write(&input, "hello world\nsecond line\n").unwrap();
    let input = input.display().to_string();
    let sk = example("04.Communication/SerialEvent").display().to_string();
    let run = fbuild(
        &t.path().join("cache"),
        t.path(),
        &run_args(&out, &["--timeout", "5s", "--input", &input, "--expect", "hello world", "--expect", r"second line\n", &sk]),
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // SerialEvent prints each line it received, newline included, then println's CR LF.
    assert_eq!(run.stdout, "hello world\n\r\nsecond line\n");
    let verdict = run.stderr.lines().find(|l| l.starts_with("run: ")).unwrap();
    assert!(verdict.starts_with("run: passed after 0.0"), "stopped long before the 5 s budget: {verdict}");

    // An expectation that never matches: exit 1 with the pattern named.
    let run = fbuild(&t.path().join("cache"), t.path(), &run_args(&out, &["--timeout", "300ms", "--input", &input, "--expect", "goodbye", &sk]));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("run: failed after 0.300 s simulated") && run.stderr.contains("no output matched /goodbye/"), "{}", run.stderr);
}

#[test]
fn a_sketch_that_halts_is_halted_with_its_output() {
    let t = tempfile::tempdir().unwrap();
    let sk = sketch(t.path(), "Halt", HALT).display().to_string();
    let out = t.path().join("out").display().to_string();
    let run = fbuild(&t.path().join("cache"), t.path(), &run_args(&out, &["--timeout", "5s", &sk]));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stdout, "hello\r\n");
    assert!(run.stderr.contains("run: halted") && run.stderr.contains("slept with interrupts off"), "{}", run.stderr);
}

#[test]
fn a_silent_loop_times_out_after_the_simulated_duration() {
    let t = tempfile::tempdir().unwrap();
    let sk = sketch(t.path(), "Silent", SILENT).display().to_string();
    let out = t.path().join("out").display().to_string();
    let run = fbuild(&t.path().join("cache"), t.path(), &run_args(&out, &["--timeout", "250ms", &sk]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "");
    assert!(run.stderr.contains("run: timeout after 0.250 s simulated"), "{}", run.stderr);
}

#[test]
fn code_that_jumps_outside_flash_crashes() {
    let t = tempfile::tempdir().unwrap();
    let sk = sketch(t.path(), "Jump", JUMP_OUTSIDE_FLASH).display().to_string();
    let out = t.path().join("out").display().to_string();
    let run = fbuild(&t.path().join("cache"), t.path(), &run_args(&out, &["--timeout", "5s", &sk]));
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(run.stdout, "jumping\r\n");
    assert!(run.stderr.contains("run: crashed") && run.stderr.contains("jumped outside flash: PC=0x0ffe0"), "{}", run.stderr);
}

#[test]
fn smoke_run_records_each_outcome_in_results() {
    let t = tempfile::tempdir().unwrap();
    let sketches = [
        sketch(t.path(), "Halt", HALT),
        sketch(t.path(), "Silent", SILENT),
        sketch(t.path(), "Jump", JUMP_OUTSIDE_FLASH),
        sketch(t.path(), "Stack", STACK_OVERFLOW),
        sketch(t.path(), "BadOpcode", BAD_OPCODE),
        sketch(t.path(), "Broken", "void setup() { nonsense(); }\nvoid loop() {}\n"),
    ];
    let out = t.path().join("out");
    let mut args: Vec<String> = ["compile-many", "--out", &out.display().to_string(), "--smoke-run", "200ms"].map(String::from).to_vec();
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&t.path().join("cache"), t.path(), &argv);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stdout.contains("5 runs: 0 passed, 1 timeout, 0 failed, 3 crashed, 1 halted"), "{}", run.stdout);
    let results = read_json(&out.join("results.json"));
    let by = sketches_by_path(&results);
    let run_of = |p: &PathBuf| by[&p.display().to_string()]["run"].clone();
    let halt = run_of(&sketches[0]);
    assert_eq!(halt["status"], "halted");
    assert_eq!(halt["output"], "hello\r\n");
    assert_eq!(halt["output_bytes"], 7);
    let silent = run_of(&sketches[1]);
    assert_eq!(silent["status"], "timeout");
    let simulated = silent["simulated_seconds"].as_f64().unwrap();
    assert!((0.2..0.201).contains(&simulated), "{silent}");
    assert!(silent.get("reason").is_none(), "no reason for a clean timeout: {silent}");
    let jump = run_of(&sketches[2]);
    assert_eq!(jump["status"], "crashed");
    assert!(jump["reason"].as_str().unwrap().contains("jumped outside flash"), "{jump}");
    let stack = run_of(&sketches[3]);
    assert_eq!(stack["status"], "crashed");
    assert!(stack["reason"].as_str().unwrap().contains("stack overflow"), "{stack}");
    let bad = run_of(&sketches[4]);
    assert_eq!(bad["status"], "crashed");
    assert!(bad["reason"].as_str().unwrap().contains("Invalid Opcode"), "{bad}");
    assert_eq!(bad["output"], "bad opcode next\r\n");
    // A sketch that did not build has nothing to run.
    let broken = &by[&sketches[5].display().to_string()];
    assert_eq!(broken["status"], "failed");
    assert!(broken.get("run").is_none());
    let phases = std::fs::read_to_string(out.join("phases.tsv")).unwrap();
    assert!(phases.lines().any(|l| l.starts_with("smoke_run\t") && l.ends_with("\t5")), "{phases}");
}

#[test]
fn smoke_run_expectations_pass_or_fail_each_firmware() {
    let t = tempfile::tempdir().unwrap();
    let sketches = [sketch(t.path(), "Halt", HALT), example("04.Communication/ASCIITable")];
    let out = t.path().join("out");
    let args: Vec<String> = ["compile-many", "--out", &out.display().to_string(), "--smoke-run", "1s", "--expect", "ASCII Table"]
        .map(String::from)
        .into_iter()
        .chain(sketches.iter().map(|p| p.display().to_string()))
        .collect();
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&t.path().join("cache"), t.path(), &argv);
    assert_eq!(run.code, 1, "Halt never prints the table: {}", run.stderr);
    let by = sketches_by_path(&read_json(&out.join("results.json")));
    let table = &by[&sketches[1].display().to_string()]["run"];
    assert_eq!(table["status"], "passed");
    assert!(table["simulated_seconds"].as_f64().unwrap() < 0.1, "stops once matched: {table}");
    let halt = &by[&sketches[0].display().to_string()]["run"];
    assert_eq!(halt["status"], "halted");
    assert!(halt["reason"].as_str().unwrap().contains("never matched /ASCII Table/"), "{halt}");
}

#[test]
fn smoke_run_over_the_hundred_examples() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("out");
    let args: Vec<String> = vec![
        "compile-many".into(),
        "--out".into(),
        out.display().to_string(),
        "--smoke-run".into(),
        "1s".into(),
        corpus().display().to_string(),
        library_examples().display().to_string(),
    ];
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&t.path().join("cache"), t.path(), &argv);
    // 13 of the 100 cannot build on uno (no Serial1, libraries not installed).
    assert_eq!(run.code, 1, "{}", run.stderr);
    let results = read_json(&out.join("results.json"));
    let sketches = results["sketches"].as_array().unwrap();
    assert_eq!(sketches.len(), 100);
    let mut runs = 0;
    for s in sketches {
        match s["status"].as_str().unwrap() {
            "ok" => {
                runs += 1;
                let r = &s["run"];
                // None of the examples crashes or halts in its first second.
                assert_eq!(r["status"], "timeout", "{}: {r}", s["path"]);
                // The budget, give or take the last instruction's cycles.
                let simulated = r["simulated_seconds"].as_f64().unwrap();
                assert!((1.0..1.001).contains(&simulated), "{}: {r}", s["path"]);
                assert!(r["output"].as_str().unwrap().len() <= 4096 * 3);
            }
            _ => assert!(s.get("run").is_none()),
        }
    }
    assert_eq!(runs, 87);
    assert!(run.stdout.contains("87 runs: 0 passed, 87 timeout"), "{}", run.stdout);
    let ascii = sketches.iter().find(|s| s["name"] == "ASCIITable").unwrap();
    assert!(ascii["run"]["output"].as_str().unwrap().starts_with("ASCII Table ~ Character Map\r\n!, dec: 33"));
}

#[test]
fn bad_run_input_is_a_usage_error() {
    let t = tempfile::tempdir().unwrap();
    let sk = sketch(t.path(), "Silent", SILENT).display().to_string();
    let out = t.path().join("out").display().to_string();
    let cache = t.path().join("cache");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--build-property", "build.mcu=atmega4809", &sk], "simavr does not model atmega4809 (board uno); it models: "),
        (vec!["--expect", "(unclosed", &sk], "not a valid regular expression"),
        (vec!["--timeout", "soon", &sk], "write a duration like 2s"),
        (vec!["--timeout", "0s", &sk], "longer than zero"),
        (vec!["--input", "/nonexistent/input.txt", &sk], "--input /nonexistent/input.txt"),
    ];
    for (extra, message) in cases {
        let run = fbuild(&cache, t.path(), &run_args(&out, &extra));
        assert_eq!(run.code, 2, "{extra:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
        assert!(run.stderr.contains(message), "{extra:?}: {}", run.stderr);
    }
    // The MCU list names what simavr can run.
    let run = fbuild(&cache, t.path(), &run_args(&out, &["--build-property", "build.mcu=atmega4809", &sk]));
    assert!(run.stderr.contains(" atmega328p ") && run.stderr.contains(" atmega2560 "), "{}", run.stderr);
    // --expect belongs to --smoke-run in compile-many.
    let run = fbuild(&cache, t.path(), &["compile-many", "--out", &out, "--expect", "x", &sk]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--smoke-run"), "{}", run.stderr);
}

/// The wall-clock guard, driven through the child subcommand with a stall window
/// far shorter than one 10 ms slice of simulation takes: the watchdog then sees
/// no simulated progress and must stop the run with its reason.
#[test]
fn the_wall_clock_guard_stops_a_run_without_progress() {
    let t = tempfile::tempdir().unwrap();
    let sk = sketch(t.path(), "Silent", SILENT);
    let out = t.path().join("out");
    let build = fbuild(&t.path().join("cache"), t.path(), &["build", "--out", &out.display().to_string(), &sk.display().to_string()]);
    assert_eq!(build.code, 0, "{}", build.stderr);
    let hex = build.stdout.lines().find_map(|l| l.strip_prefix("Firmware: ")).unwrap().to_string();
    let o = std::process::Command::new(fbuild_bin())
        .args(["emulator-child", "--mcu", "atmega328p", "--frequency", "16000000", "--hex", &hex])
        .args(["--cycles", "1600000000", "--stall-seconds", "0.000001"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    let outcome: serde_json::Value = serde_json::from_str(stderr.trim()).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(outcome["status"], "failed");
    assert!(outcome["reason"].as_str().unwrap().contains("no simulated progress"), "{outcome}");
    assert!(outcome["cycles"].as_u64().unwrap() < 1_600_000_000);
}

/// `fbuild run PROJECT -e ENV` builds that env as `fbuild build` does and runs its
/// firmware; `monitor_speed` and `upload_port` are read (noted under --verbose), a project
/// with several default envs needs `-e`, and a monitor_speed that is no number is exit 2.
#[test]
fn run_takes_a_platformio_project_env() {
    let t = tempfile::tempdir().unwrap();
    let project = t.path().join("hello");
    std::fs::create_dir_all(project.join("src")).unwrap();
    let env = |name: &str, board: &str| format!("[env:{name}]\nplatform = atmelavr\nframework = arduino\nboard = {board}\nmonitor_speed = 115200\nupload_port = /dev/ttyACM0\nbuild_flags = -DGREETING='\"hello from {name}\"'\n");
    std::fs::write(project.join("platformio.ini"), format!("{}{}", env("uno", "uno"), env("mega", "megaatmega2560"))).unwrap();
    std::fs::write(project.join("src/main.cpp"), "#include <Arduino.h>\nvoid setup() { Serial.begin(115200); Serial.println(GREETING); }\nvoid loop() {}\n").unwrap();
    let cache = t.path().join("cache");
    let out = t.path().join("out").display().to_string();
    let p = project.display().to_string();
    let r = fbuild(&cache, t.path(), &run_args(&out, &["-v", "-e", "mega", "--expect", "hello from mega", &p]));
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.starts_with("hello from mega"), "{}", r.stdout);
    assert!(r.stderr.contains("monitor_speed 115200") && r.stderr.contains("upload_port /dev/ttyACM0 is not used"), "{}", r.stderr);
    let r = fbuild(&cache, t.path(), &run_args(&out, &[&p]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("builds uno, mega; name one with -e") && r.stderr.trim().lines().count() == 1, "{}", r.stderr);
    std::fs::write(project.join("platformio.ini"), env("uno", "uno").replace("115200", "fast")).unwrap();
    let r = fbuild(&cache, t.path(), &run_args(&out, &[&p]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("monitor_speed = `fast`; give the baud rate as a number"), "{}", r.stderr);
}
