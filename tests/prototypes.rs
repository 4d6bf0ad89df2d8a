//! Generated prototypes against arduino-builder's: sketches whose first function sits
//! inside `#if` blocks (with includes before it, in `#else` branches, nested), and
//! `inline`/`static`/template functions. The merged `sketch/NAME.ino.cpp` must equal
//! the reference's line for line (prototype position, text, `#line`s), the same
//! sketches must build, and their firmware must be byte-identical.

mod common;

use common::*;
use std::path::{Path, PathBuf};

/// The fixture sketches, tests/fixtures/prototypes/NAME/NAME.ino, sorted.
fn fixtures() -> Vec<PathBuf> {
    sketch_dirs(&repo().join("tests/fixtures/prototypes"))
}

/// The sketch's merged `.ino.cpp` in a build folder, each `#line N "PATH"` cut to
/// the file name: reference builds are shared by content between checkouts, so the
/// same file may be named from another folder.
fn merged_lines(build: &Path, name: &str) -> Vec<String> {
    let path = build.join("sketch").join(format!("{name}.ino.cpp"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| match l.strip_prefix("#line ").and_then(|r| r.split_once(' ')) {
            Some((n, file)) => format!("#line {n} {}", file.trim_matches('"').rsplit('/').next().unwrap_or("")),
            None => l.to_string(),
        })
        .collect()
}

#[test]
fn prototype_fixtures_on_uno_match_arduino_builder() {
    let sketches = fixtures();
    assert_eq!(sketches.len(), 9, "fixtures: {sketches:?}");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let mut args = vec!["compile-many".to_string(), "--board".into(), "uno".into(), "--out".into(), out.display().to_string()];
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(&tmp.path().join("cache"), tmp.path(), &argv);
    assert_eq!(run.code, 1, "two fixtures fail with either builder: {}", run.stderr);
    let results = read_json(&out.join("results.json"));
    let by_path = sketches_by_path(&results);
    let references = reference_builds("arduino:avr:uno", &sketches);
    let mut mismatches = Vec::new();
    let mut built = Vec::new();
    for (sketch, reference) in sketches.iter().zip(&references) {
        let name = sketch.file_name().unwrap().to_string_lossy().into_owned();
        let r = &by_path[&sketch.display().to_string()];
        let (ours, theirs) = (merged_lines(Path::new(r["output_dir"].as_str().unwrap()), &name), merged_lines(&reference.dir, &name));
        if ours != theirs {
            let at = ours.iter().zip(&theirs).take_while(|(a, b)| a == b).count();
            mismatches.push(format!("{name}: merged .ino.cpp line {}: fbuild {:?}, arduino-builder {:?}", at + 1, ours.get(at), theirs.get(at)));
        }
        let ok = r["status"] == "ok";
        if ok != reference.ok {
            mismatches.push(format!("{name}: fbuild {} / arduino-builder ok={}: {}", r["status"], reference.ok, r["first_error"]));
            continue;
        }
        if !ok {
            // Both fail on the sketch's own code, at a line of the sketch.
            let first = r["first_error"].as_str().unwrap_or("");
            assert!(first.contains(&format!("{name}.ino:")) && first.contains("error"), "{name}: {first}");
            continue;
        }
        built.push(name.clone());
        for ext in ["hex", "eep"] {
            let ours = std::fs::read(r["firmware"][ext].as_str().unwrap_or_else(|| panic!("{name}: no .{ext}"))).unwrap();
            if ours != std::fs::read(reference.dir.join(format!("{name}.ino.{ext}"))).unwrap() {
                mismatches.push(format!("{name}: .{ext} differs from arduino-builder's"));
            }
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));
    // ReturnTypeAbove and TemplateTwoLines fail with arduino-builder too (its
    // prototypes split a definition / name a template parameter out of scope).
    assert_eq!(built, ["ClosedBefore", "ElseBranch", "IfDefinedAnd", "IfdefAvr", "Modifiers", "Nested", "Quirks"]);
}

/// The prototype arduino-builder 1.3.25 makes from one line of ctags output (its
/// `ctags_parser.go`, restated): `static ` when the tag's code line holds it, then
/// `returntype name signature;`, or for a template the code line up to its `{`; none
/// when the prototype (spaces aside) is not in the code line, or has a default.
fn reference_prototype(tag: &str) -> Option<String> {
    let code = tag.split_once("/^")?.1.split_once("$/;")?.0;
    let field = |f: &str| tag.split('\t').find_map(|p| p.strip_prefix(f)).unwrap_or("");
    if field("kind:") != "function" || ["class:", "struct:", "namespace:"].iter().any(|f| !field(f).is_empty()) {
        return None;
    }
    let name = tag.split('\t').next()?;
    let core = format!("{} {name}{}", field("returntype:"), field("signature:"));
    let squeeze = |s: &str| s.replace([' ', '\t'], "");
    let text = if core.starts_with("template") {
        format!("{};", code.split('{').next().unwrap_or(code))
    } else if squeeze(code).contains(&squeeze(&core)) {
        format!("{}{core};", if code.contains("static ") { "static " } else { "" })
    } else {
        return None;
    };
    (!text.contains('=')).then_some(text)
}

#[test]
fn prototype_text_matches_what_arduino_builder_makes_of_ctags_tags() {
    let Ok(version) = std::process::Command::new("arduino-ctags").arg("--version").output() else {
        report_skipped("prototype_text_matches_what_arduino_builder_makes_of_ctags_tags", "arduino-ctags (a dependency of arduino-builder) is not installed");
        return;
    };
    assert!(version.status.success());
    // One definition per line or two: the return-type spellings ctags writes its own
    // way, specifiers it leaves out, and definitions arduino-builder keeps no
    // prototype for.
    let source = "const char *a1() { return 0; }\nconst char* a2() { return 0; }\nchar ** a3() { return 0; }\n\
        const char * const a4() { return 0; }\nEEPROMClass &b1() { }\nString & b2(String &s) { }\nint& b3() { }\n\
        unsigned   long  c1(int   x,  char *p) { }\ninline int d1() {}\nstatic inline int d2() {}\ninline static int d3() {}\n\
        volatile uint8_t *f1() {}\nuint8_t const * f2() {}\nstatic const uint8_t * const f3() {}\nstd::vector<int> g1() {}\n\
        unsigned long\nh1(int a) {}\nvoid __attribute__((noinline)) i1() {}\n__attribute__((weak)) void i2() {}\n\
        struct Point i3() {}\nint const & j1() {}\nvoid k1(int a[], int (*cb)(int)) {}\nconstexpr int l1() { return 1; }\n\
        uint8_t m1(uint8_t*p,const char * q) {}\nsigned char n1() {}\nsize_t n2(byte b, word w) {}\nenum E n3() {}\n\
        SECTION(\".x\") void n4() {}\n[[nodiscard]] int n5() {}\nvoid n6(int a=3) {}\nshort n7(double d, float f) {}\n\
        template <typename T> T t1(T a) { return a; }\ntemplate <class T>\nT t2(T a) { return a; }\n\
        int s1() { static int x; return x; }\nvoid IRAM_ATTR s2() {}\nMYMACRO void s3() {}\nvirtual void s4() {}\n";
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("defs.cpp");
    std::fs::write(&file, source).unwrap();
    let o = std::process::Command::new("arduino-ctags")
        .args(["-u", "--language-force=c++", "-f", "-", "--c++-kinds=svpf", "--fields=KSTtzns", "--line-directives"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let want: Vec<String> = String::from_utf8_lossy(&o.stdout).lines().filter_map(reference_prototype).collect();
    let ours: Vec<String> = fbuild::arduino::prototypes::find_prototypes(source).into_iter().map(|p| p.text).collect();
    assert_eq!(ours, want);
    assert!(want.len() >= 30, "most definitions keep a prototype: {want:?}");
}
