//! Issue 5, bad input: every unusable request ends with exit 2 and exactly one
//! `error:` line naming the problem and the fix; sketch-level failures are per-sketch
//! results; odd-but-valid sketches (Latin-1 sources, non-ASCII paths, symlinks,
//! duplicate folder names) build.

mod support_faults;

use std::path::Path;

use support_faults::*;
use tempfile::TempDir;

struct Env {
    tmp: TempDir,
}

impl Env {
    fn new() -> Env {
        Env { tmp: tempfile::tempdir().unwrap() }
    }
    fn path(&self) -> &Path {
        self.tmp.path()
    }
    fn cache(&self) -> std::path::PathBuf {
        self.path().join("cache")
    }
    fn out(&self) -> std::path::PathBuf {
        self.path().join("out")
    }
    /// `fbuild <sub> --out OUT` with this test's own cache.
    fn cmd(&self, sub: &str) -> std::process::Command {
        let mut c = fbuild(&self.cache());
        c.arg(sub).arg("--out").arg(self.out());
        c
    }
    fn results(&self) -> std::path::PathBuf {
        self.out().join("results.json")
    }
}

fn blink() -> std::path::PathBuf {
    corpus_sketch("01.Basics/Blink")
}

// ---------------------------------------------------------------- sketches that are not

#[test]
fn missing_path_is_usage_error() {
    let e = Env::new();
    let missing = e.path().join("NoSuchSketch");
    let mut c = e.cmd("build");
    c.arg(&missing);
    let r = run(c);
    assert_usage_error(&r, &["NoSuchSketch", "does not exist"]);

    let mut c = e.cmd("compile-many");
    c.arg(&missing);
    let r = run(c);
    assert_usage_error(&r, &["NoSuchSketch"]);
    assert_no_success_claim(&e.results());
}

#[test]
fn plain_file_is_not_a_sketch() {
    let e = Env::new();
    let notes = e.path().join("notes.txt");
    std::fs::write(&notes, "remember the milk\n").unwrap();
    for sub in ["build", "compile-many"] {
        let mut c = e.cmd(sub);
        c.arg(&notes);
        let r = run(c);
        assert_usage_error(&r, &["notes.txt", "not a sketch"]);
    }
    assert_no_success_claim(&e.results());
}

#[test]
fn empty_folder_is_usage_error() {
    let e = Env::new();
    let empty = e.path().join("Empty");
    std::fs::create_dir(&empty).unwrap();
    let mut c = e.cmd("build");
    c.arg(&empty);
    let r = run(c);
    assert_usage_error(&r, &["Empty", ".ino"]);

    let mut c = e.cmd("compile-many");
    c.arg(&empty);
    let r = run(c);
    assert_usage_error(&r, &["Empty"]);
    assert_no_success_claim(&e.results());
}

#[test]
fn main_ino_named_differently_from_folder_is_usage_error() {
    let e = Env::new();
    let dir = e.path().join("Misnamed");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("Other.ino"), BARE).unwrap();
    let mut c = e.cmd("build");
    c.arg(&dir);
    let r = run(c);
    // Names the folder, the expected main file, and what was found instead.
    assert_usage_error(&r, &["Misnamed", "Misnamed.ino", "Other.ino"]);
}

#[test]
fn folder_missing_main_ino_but_holding_other_sources_is_usage_error() {
    let e = Env::new();
    let dir = e.path().join("OnlyCpp");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("helper.cpp"), "int helper() { return 1; }\n").unwrap();
    let mut c = e.cmd("build");
    c.arg(&dir);
    let r = run(c);
    assert_usage_error(&r, &["OnlyCpp"]);
}

#[test]
fn folder_without_any_sketch_below_is_usage_error() {
    let e = Env::new();
    let tree = e.path().join("NoSketchesHere");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("a/b/README.md"), "# nothing to build\n").unwrap();
    std::fs::write(tree.join("a/notes.txt"), "nope\n").unwrap();
    let mut c = e.cmd("compile-many");
    c.arg(&tree);
    let r = run(c);
    assert_usage_error(&r, &["NoSketchesHere"]);
    assert_no_success_claim(&e.results());
}

// ---------------------------------------------------------------- boards and platforms

#[test]
fn unknown_board_lists_closest_ids() {
    let e = Env::new();
    let mut c = e.cmd("build");
    c.args(["--board", "unoo"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["unoo", "uno"]);
    let line = r.stderr.trim();
    assert!(line.contains("arduino:avr:uno"), "closest ids should include arduino:avr:uno\n{}", r.describe());
}

#[test]
fn ambiguous_short_board_id_names_every_match() {
    let e = Env::new();
    let hw1 = e.path().join("hw1");
    let hw2 = e.path().join("hw2");
    fake_platform(&hw1, "acme");
    fake_platform(&hw2, "zeta");
    let mut c = e.cmd("build");
    c.arg("--hardware").arg(&hw1).arg("--hardware").arg(&hw2).args(["--board", "uno"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["ambiguous", "acme:avr:uno", "zeta:avr:uno"]);

    // The fully qualified name resolves it (the fake platform really works).
    let mut c = e.cmd("build");
    c.arg("--hardware").arg(&hw1).arg("--hardware").arg(&hw2).args(["--board", "zeta:avr:uno"]).arg(blink());
    let r = run(c);
    assert_eq!(r.code, Some(0), "an FQBN into the fake platform should build\n{}", r.describe());
}

#[test]
fn unknown_menu_option_lists_valid_options() {
    let e = Env::new();
    let mut c = e.cmd("build");
    c.args(["--board", "arduino:avr:nano:cpu=nope"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["cpu", "nope", "atmega328"]);

    let mut c = e.cmd("build");
    c.args(["--board", "arduino:avr:nano:flavour=vanilla"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["flavour", "cpu"]);
}

#[test]
fn platform_without_combine_recipe_is_usage_error() {
    let e = Env::new();
    let hw = e.path().join("hw");
    let dir = fake_platform(&hw, "broke");
    let txt = std::fs::read_to_string(dir.join("platform.txt")).unwrap();
    assert!(txt.contains("recipe.c.combine.pattern"));
    let cut: String = txt.lines().filter(|l| !l.starts_with("recipe.c.combine.pattern")).map(|l| format!("{l}\n")).collect();
    std::fs::write(dir.join("platform.txt"), cut).unwrap();
    let mut c = e.cmd("build");
    c.arg("--hardware").arg(&hw).args(["--board", "broke:avr:uno"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["recipe.c.combine.pattern", "platform.txt"]);
}

#[test]
fn malformed_boards_txt_line_names_file_and_line() {
    let e = Env::new();
    let hw = e.path().join("hw");
    let dir = fake_platform(&hw, "bad");
    let boards = dir.join("boards.txt");
    let mut txt = std::fs::read_to_string(&boards).unwrap();
    if !txt.ends_with('\n') {
        txt.push('\n');
    }
    // Put the bad line in the middle of the file, after a known number of lines.
    let lines: Vec<&str> = txt.lines().collect();
    let at = 40;
    let mut new = String::new();
    for l in &lines[..at] {
        new.push_str(l);
        new.push('\n');
    }
    new.push_str("this line has no equals sign\n");
    for l in &lines[at..] {
        new.push_str(l);
        new.push('\n');
    }
    std::fs::write(&boards, new).unwrap();
    let mut c = e.cmd("build");
    c.arg("--hardware").arg(&hw).args(["--board", "bad:avr:uno"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["boards.txt:41", "this line has no equals sign"]);
}

#[test]
fn compiler_not_installed_names_debian_package() {
    let e = Env::new();
    let mut c = e.cmd("build");
    c.args(["--build-property", "compiler.path=/nonexistent/"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["/nonexistent/", "gcc-avr"]);

    let mut c = e.cmd("compile-many");
    c.args(["--build-property", "compiler.path=/nonexistent/"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["/nonexistent/", "gcc-avr"]);
    assert_no_success_claim(&e.results());
}

// ---------------------------------------------------------------- flags

#[test]
fn zero_framework_jobs_is_usage_error() {
    let e = Env::new();
    let mut c = e.cmd("compile-many");
    c.args(["--framework-jobs", "0"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["--framework-jobs", "0"]);
    assert_no_success_claim(&e.results());
}

#[test]
fn negative_sketch_jobs_is_usage_error() {
    let e = Env::new();
    let mut c = e.cmd("compile-many");
    c.args(["--sketch-jobs", "-1"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["--sketch-jobs", "-1"]);
    assert_no_success_claim(&e.results());
}

#[test]
fn build_property_without_equals_is_usage_error() {
    let e = Env::new();
    for sub in ["build", "compile-many"] {
        let mut c = e.cmd(sub);
        c.args(["--build-property", "compiler.cpp.extra_flags"]).arg(blink());
        let r = run(c);
        assert_usage_error(&r, &["--build-property", "key=value"]);
    }
    assert_no_success_claim(&e.results());
}

#[test]
fn unwritable_results_path_fails_before_building() {
    let e = Env::new();
    let mut c = e.cmd("compile-many");
    c.args(["--results", "/proc/forbidden/results.json"]).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["/proc/forbidden/results.json"]);

    // A path "under" a regular file cannot be written even by root.
    let file = e.path().join("plainfile");
    std::fs::write(&file, "x").unwrap();
    let under = file.join("results.json");
    let mut c = e.cmd("compile-many");
    c.arg("--results").arg(&under).arg(blink());
    let r = run(c);
    assert_usage_error(&r, &["plainfile/results.json"]);
    // Fails up front: no sketch was built into the out folder.
    assert!(!e.out().exists() || std::fs::read_dir(e.out()).unwrap().next().is_none(), "built before checking --results");
}

// ---------------------------------------------------------------- per-sketch failures

#[test]
fn syntax_error_fails_only_that_sketch_pointing_at_its_ino_line() {
    let e = Env::new();
    let src = e.path().join("src");
    let good1 = write_sketch(&src, "GoodOne", BLINKY);
    let bad = write_sketch(&src, "Broken", "void setup() {\n  pinMode(13, OUTPUT);\n}\n\nvoid loop() {\n  int x = ;\n}\n");
    let good2 = write_sketch(&src, "GoodTwo", BARE);
    let mut c = e.cmd("compile-many");
    c.arg(&good1).arg(&bad).arg(&good2);
    let r = run(c);
    assert_eq!(r.code, Some(1), "one failed sketch means exit 1\n{}", r.describe());
    assert!(!r.stderr.contains("panicked"), "{}", r.describe());
    let v = results(&e.results());
    assert_eq!(v["sketches"].as_array().unwrap().len(), 3);
    for g in ["GoodOne", "GoodTwo"] {
        let s = sketch_result(&v, g);
        assert_eq!(s["status"], "ok", "{g} should build: {s:#}");
        assert!(firmware(s, "hex", e.path()).is_file());
    }
    let s = sketch_result(&v, "Broken");
    assert_eq!(s["status"], "failed");
    let first = s["first_error"].as_str().expect("first_error set");
    assert!(first.contains("Broken.ino:6"), "first_error should point at Broken.ino line 6: {first}");
    assert!(!first.contains(".ino.cpp"), "first_error should name the user's .ino, not the merged .cpp: {first}");
    let d = s["diagnostics"].as_array().expect("diagnostics");
    let err = d.iter().find(|d| d["severity"] == "error").unwrap_or_else(|| panic!("an error diagnostic: {s:#}"));
    assert!(err["file"].as_str().unwrap().ends_with("Broken/Broken.ino"), "{err:#}");
    assert_eq!(err["line"], 6, "{err:#}");
    assert!(s["firmware"].as_object().is_none_or(|m| m.is_empty()), "a failed sketch lists no firmware: {s:#}");
}

/// used > allowed and allowed must both be in the first error.
fn assert_names_used_and_allowed(s: &serde_json::Value, max: u64) {
    assert_eq!(s["status"], "failed", "{s:#}");
    let first = s["first_error"].as_str().unwrap_or_else(|| panic!("first_error set: {s:#}"));
    let n = numbers(first);
    assert!(n.contains(&max), "first_error should name the allowed {max} bytes: {first:?}");
    assert!(n.iter().any(|&x| x > max), "first_error should name the bytes used (> {max}): {first:?}");
    assert!(first.contains("bytes"), "first_error should speak of bytes: {first:?}");
}

#[test]
fn too_big_for_flash_names_used_and_allowed_bytes() {
    // 31000 bytes of PROGMEM plus Serial: links (below the 32 KiB region) but is
    // over uno's 32256-byte maximum, so fbuild's own size check must fail it.
    let e = Env::new();
    let src = e.path().join("src");
    let code = "#include <avr/pgmspace.h>\nconst uint8_t big[31000] PROGMEM = {1};\nvoid setup() { Serial.begin(9600); }\nvoid loop() {\n  for (unsigned i = 0; i < sizeof(big); i++) Serial.write(pgm_read_byte(&big[i]));\n}\n";
    let sk = write_sketch(&src, "BigFlash", code);
    let ok = write_sketch(&src, "Small", BARE);
    let mut c = e.cmd("compile-many");
    c.arg(&sk).arg(&ok);
    let r = run(c);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    let v = results(&e.results());
    let s = sketch_result(&v, "BigFlash");
    assert_names_used_and_allowed(s, 32256);
    assert!(s["flash_used"].as_u64().unwrap_or(0) > 32256, "{s:#}");
    assert_eq!(sketch_result(&v, "Small")["status"], "ok");
}

#[test]
fn far_too_big_for_flash_linker_overflow_names_used_and_allowed_bytes() {
    // 32000 bytes of PROGMEM: the linker itself refuses it ("region `text' overflowed").
    let e = Env::new();
    let src = e.path().join("src");
    let code = "#include <avr/pgmspace.h>\nconst uint8_t big[32000] PROGMEM = {1};\nvoid setup() { Serial.begin(9600); }\nvoid loop() {\n  for (unsigned i = 0; i < sizeof(big); i++) Serial.write(pgm_read_byte(&big[i]));\n}\n";
    let sk = write_sketch(&src, "HugeFlash", code);
    let mut c = e.cmd("compile-many");
    c.arg(&sk);
    let r = run(c);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    let v = results(&e.results());
    assert_names_used_and_allowed(sketch_result(&v, "HugeFlash"), 32256);
}

#[test]
fn too_big_for_ram_names_used_and_allowed_bytes() {
    let e = Env::new();
    let src = e.path().join("src");
    let code = "volatile uint8_t buf[3000];\nvoid setup() {\n}\nvoid loop() {\n  for (int i = 0; i < 3000; i++) buf[i]++;\n}\n";
    let sk = write_sketch(&src, "BigRam", code);
    let mut c = e.cmd("compile-many");
    c.arg(&sk);
    let r = run(c);
    assert_eq!(r.code, Some(1), "{}", r.describe());
    let v = results(&e.results());
    assert_names_used_and_allowed(sketch_result(&v, "BigRam"), 2048);
}

// ---------------------------------------------------------------- odd but valid

#[test]
fn latin1_source_builds_and_keeps_the_original_byte() {
    let e = Env::new();
    let src = e.path().join("src");
    // "café" in Latin-1: 0xE9 is not valid UTF-8 on its own.
    let mut code = b"const char msg[] = \"caf\xe9 cr\xe8me\";\n".to_vec();
    code.extend_from_slice(b"// comment with a Latin-1 letter: \xfc\nvoid setup() { Serial.begin(9600); }\nvoid loop() { Serial.println(msg); }\n");
    assert!(std::str::from_utf8(&code).is_err());
    let sk = write_sketch(&src, "Latin", &code);
    let mut c = e.cmd("compile-many");
    c.arg(&sk);
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let v = results(&e.results());
    let s = sketch_result(&v, "Latin");
    assert_eq!(s["status"], "ok");
    let hex = std::fs::read_to_string(firmware(s, "hex", e.path())).unwrap();
    let image = hex_bytes(&hex);
    assert!(contains(&image, b"caf\xe9 cr\xe8me"), "firmware must hold the original Latin-1 bytes");
}

#[test]
fn path_with_spaces_and_non_ascii_letters_builds() {
    let e = Env::new();
    let parent = e.path().join("my sketches – été");
    let odd = write_sketch(&parent, "Ünïcode Skétch", BLINKY);
    let plain = write_sketch(&e.path().join("plain"), "Plain", BLINKY);
    let mut c = e.cmd("compile-many");
    c.arg(&odd).arg(&plain);
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let v = results(&e.results());
    let s = sketch_result(&v, "Ünïcode Skétch");
    assert_eq!(s["status"], "ok", "{s:#}");
    assert_eq!(s["name"], "Ünïcode Skétch");
    let a = std::fs::read(firmware(s, "hex", e.path())).unwrap();
    let b = std::fs::read(firmware(sketch_result(&v, "Plain"), "hex", e.path())).unwrap();
    assert!(a == b, "the same code must give the same firmware whatever its folder is called");

    // `build` of it too.
    let mut c = e.cmd("build");
    c.arg(&odd);
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.describe());
}

#[test]
fn sketch_reached_through_symlink_builds() {
    let e = Env::new();
    let real = write_sketch(&e.path().join("real"), "Linked", BLINKY);
    let links = e.path().join("links");
    std::fs::create_dir(&links).unwrap();
    // A symlinked sketch folder, a symlinked parent, and a symlinked main .ino.
    std::os::unix::fs::symlink(&real, links.join("Linked")).unwrap();
    std::os::unix::fs::symlink(e.path().join("real"), links.join("realdir")).unwrap();
    let ino_dir = e.path().join("inolink").join("ViaIno");
    std::fs::create_dir_all(&ino_dir).unwrap();
    std::os::unix::fs::symlink(real.join("Linked.ino"), ino_dir.join("ViaIno.ino")).unwrap();

    for target in [links.join("Linked"), links.join("realdir").join("Linked").join("Linked.ino"), ino_dir.clone()] {
        let mut c = e.cmd("build");
        c.arg(&target);
        let r = run(c);
        assert_eq!(r.code, Some(0), "{} should build\n{}", target.display(), r.describe());
        assert!(r.stdout.contains("Firmware:"), "{}", r.describe());
    }
    // And through compile-many with a symlinked folder holding sketches.
    let mut c = e.cmd("compile-many");
    c.arg(links.join("realdir"));
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let v = results(&e.results());
    assert_eq!(v["sketches"].as_array().unwrap().len(), 1, "{v:#}");
}

#[test]
fn same_folder_name_in_two_places_builds_into_two_output_folders() {
    let e = Env::new();
    let a = write_sketch(&e.path().join("one"), "Same", BLINKY);
    let b = write_sketch(&e.path().join("two"), "Same", BARE);
    let mut c = e.cmd("compile-many");
    c.arg(&a).arg(&b);
    let r = run(c);
    assert_eq!(r.code, Some(0), "{}", r.describe());
    let v = results(&e.results());
    let sa = sketch_result(&v, "one/Same");
    let sb = sketch_result(&v, "two/Same");
    assert_eq!(sa["status"], "ok");
    assert_eq!(sb["status"], "ok");
    assert_ne!(sa["output_dir"], sb["output_dir"], "two sketches share an output folder");
    let ha = std::fs::read(firmware(sa, "hex", e.path())).unwrap();
    let hb = std::fs::read(firmware(sb, "hex", e.path())).unwrap();
    assert!(ha != hb, "different code, same firmware: one sketch overwrote the other");

    // Each matches what a build of it alone gives: its own cache and output folder,
    // so the firmware is compiled and linked again, not a copy of the entry above.
    for (dir, hex) in [(&a, &ha), (&b, &hb)] {
        let alone = TempDir::new().unwrap();
        let out = alone.path().join("out");
        let mut c = fbuild(&alone.path().join("cache"));
        c.arg("compile-many").arg("--out").arg(&out).arg(dir);
        let r = run(c);
        assert_eq!(r.code, Some(0), "{}", r.describe());
        let v = results(&out.join("results.json"));
        let s = &v["sketches"][0];
        assert_eq!(s["status"], "ok");
        assert_eq!(v["cache"]["hits"], 0, "built alone means from nothing: {}", v["cache"]);
        assert!(v["totals"]["links_run"].as_u64() == Some(1), "{}", v["totals"]);
        assert!(&std::fs::read(firmware(s, "hex", &out)).unwrap() == hex, "{} differs when built alone", dir.display());
    }
}
