//! Sketches that declare their boards (`// @filter`), and failed links remembered
//! like successful ones — end to end with the real toolchain.

mod common;

use common::*;
use fbuild::filter::{parse_sketch, BoardFacts, BoardSpec, MemoryClass};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Write `NAME/NAME.ino` (and extra files) under `root`.
fn sketch(root: &Path, name: &str, ino: &str, extra: &[(&str, &str)]) -> PathBuf {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.ino")), ino).unwrap();
    for (file, text) in extra {
        std::fs::write(dir.join(file), text).unwrap();
    }
    dir
}

fn many(cache: &Path, cwd: &Path, out: &Path, flags: &[&str], sketches: &[PathBuf]) -> (Run, serde_json::Value) {
    let mut args: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string()];
    args.extend(flags.iter().map(|s| s.to_string()));
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let run = fbuild(cache, cwd, &argv);
    let results = read_json(&out.join("results.json"));
    (run, results)
}

fn status_of(results: &serde_json::Value) -> BTreeMap<String, String> {
    results["sketches"].as_array().unwrap().iter().map(|s| (s["name"].as_str().unwrap().to_string(), s["status"].as_str().unwrap().to_string())).collect()
}

fn unit_names(results: &serde_json::Value) -> Vec<String> {
    results["units"].as_array().unwrap().iter().map(|u| u["name"].as_str().unwrap().to_string()).collect()
}

/// A sketch of `2 * half + 486` bytes of flash.
fn flash_sketch(half: usize) -> String {
    format!("#include <avr/pgmspace.h>\nconst char a[{half}] PROGMEM = {{1}};\nconst char b[{half}] PROGMEM = {{2}};\nvolatile int i;\nvoid setup() {{}}\nvoid loop() {{ i = pgm_read_byte(&a[i]) + pgm_read_byte(&b[i]); }}\n")
}

const BODY: &str = "void setup() { pinMode(13, OUTPUT); }\nvoid loop() { digitalWrite(13, HIGH); }\n";

/// The boards of the verdict table, one of each memory class and several
/// platforms: (spec, macros its compiles see, `--memory-class`).
fn table_boards() -> Vec<BoardFacts> {
    let board = |id, fqbn, vendor, arch, mcu, ram, macros: &[&str], memory: Option<MemoryClass>| {
        let macros: Vec<(&str, &str)> = macros.iter().map(|m| (*m, "1")).collect();
        BoardFacts::new(BoardSpec { id, fqbn, vendor, arch, mcu, ram: Some(ram) }, macros, memory)
    };
    vec![
        board("attiny85", "ATTinyCore:avr:attinyx5:chip=85", "ATTinyCore", "avr", "attiny85", 512, &["__AVR__", "__AVR_ATtiny85__"], None),
        board("attiny1604", "megaTinyCore:megaavr:atxy4:chip=1604", "megaTinyCore", "megaavr", "attiny1604", 1024, &["__AVR__", "__AVR_ATtiny1604__"], None),
        board("atmega8", "MiniCore:avr:8", "MiniCore", "avr", "atmega8", 1024, &["__AVR__", "__AVR_ATmega8__"], None),
        board("uno", "arduino:avr:uno", "arduino", "avr", "atmega328p", 2048, &["__AVR__", "__AVR_ATmega328P__", "ARDUINO_AVR_UNO"], None),
        board("mega", "arduino:avr:mega:cpu=atmega2560", "arduino", "avr", "atmega2560", 8192, &["__AVR__", "__AVR_ATmega2560__", "ARDUINO_AVR_MEGA2560"], None),
        board("teensylc", "teensy:avr:teensyLC", "teensy", "avr", "mkl26z64", 8192, &["__MKL26Z64__", "TEENSYDUINO"], None),
        board("zero", "arduino:samd:arduino_zero_native", "arduino", "samd", "cortex-m0plus", 32768, &["__SAMD21G18A__", "ARDUINO_SAMD_ZERO"], None),
        board("stm32f103cb", "STMicroelectronics:stm32:GenF1:pnum=MAPLEMINI_F103CB", "STMicroelectronics", "stm32", "cortex-m3", 20480, &["STM32F1xx", "ARDUINO_MAPLEMINI_F103CB"], None),
        board("teensy41", "teensy:avr:teensy41", "teensy", "avr", "imxrt1062", 524288, &["__IMXRT1062__", "TEENSYDUINO", "ARDUINO_TEENSY41"], Some(MemoryClass::Huge)),
        board("esp32s3", "esp32:esp32:esp32s3:PSRAM=enabled", "esp32", "esp32", "esp32s3", 327680, &["ESP32", "CONFIG_IDF_TARGET_ESP32S3"], None),
    ]
}

/// Every form of the grammar and every distinct filter line of FastLED's
/// examples (FastLED/FastLED at 2026-08-22, `git grep @filter -- examples`),
/// against the boards of `table_boards`, in that order:
///
/// ```text
///   attiny85 attiny1604 atmega8 | uno mega teensylc | zero stm32f103cb | teensy41 esp32s3
///   tiny     tiny       tiny    | low low  low      | large large      | huge     huge
/// ```
///
/// `B` builds, `.` is skipped. Each verdict is what FastLED's CI decides
/// (ci/compiler/sketch_filter.py, the version with an expression tree,
/// `_expression_matches` and `_remove_unsupported_conditions`), applied to
/// fbuild's facts about the board (board.rs: a board answers to its id and FQBN,
/// its architecture and PlatformIO platform, its MCU and its compile's macros;
/// FastLED's boards answer to one name each). The rules it follows, which the
/// third column names for each row:
/// - a required memory class is ordered (tiny < low < large < huge): `memory is
///   large` admits large and huge; compared by name instead (exact) under `is
///   not`, directly under `not` (through parentheses), and as a block's exclude item;
/// - other values compare case-insensitively, without a leading `-D`, as an
///   fnmatch pattern when they hold a `*`;
/// - a one-line filter's unknown keys drop out of `and`/`or`; a `not` over a
///   group holding one is dropped too; only unknown keys: no filter;
/// - a block's items of one key are one list; a required key no board has
///   fails, an excluded one never matches;
/// - a filter FastLED cannot read is no filter: the sketch builds everywhere
///   (fbuild builds it too and warns).
///
/// The verdicts were checked by running those rules of sketch_filter.py over this
/// table. Rows marked DIFFERS are where fbuild decides otherwise on purpose
/// (docs/design.md, "Sketch filters"); FastLED's verdict is in the mark.
const VERDICTS: &[(&str, &str, &str)] = &[
    ("// @filter: (memory is large)", "......BBBB", "FastLED example: required class is ordered: large and huge boards"),
    ("// @filter: (mem is large)", "......BBBB", "FastLED example: `mem` is `memory`"),
    ("// @filter (mem is large)", "......BBBB", "FastLED example: same, without the colon"),
    ("// @filter: (platform is native)", "..........", "FastLED example: no board here is `native`: skipped everywhere"),
    ("// @filter: (platform is esp32)", ".........B", "FastLED example: platform compared by name"),
    ("/// @filter: (platform is native)", "..........", r#"FastLED example: `///` holds the marker too (`//\s*@filter` matches at the second slash)"#),
    ("/// @filter: (platform is esp32)", ".........B", "FastLED example: same"),
    ("/// @filter (platform is teensy) or (platform is due)", ".....B..B.", "FastLED example: `or` of two platforms"),
    ("// @filter: (board is not ATtiny1604)", "B.BBBBBBBB", "FastLED example: `is not` negates; names compare case-insensitively"),
    ("// @filter: (board is not stm32f103cb)", "BBBBBBB.BB", "FastLED example: `is not` on a board"),
    ("// @filter: (board is not stm32f103cb)  // Maple Mini lacks pin 5 (uses libmaple numbering)", "BBBBBBB.BB", "FastLED example: text after `//` is dropped before parsing"),
    ("// @filter: (board is not stm32f103cb)  // Maple Mini lacks pins 1-4 (uses libmaple numbering)", "BBBBBBB.BB", "FastLED example: same"),
    ("// @filter: (board is not atmega8*)", "BB.BBBBBBB", "FastLED example: `*` makes the value an fnmatch pattern"),
    ("// @filter: (platform is teensy) and (memory is large)", "........B.", "FastLED example: `and`; teensylc is low, teensy41 huge"),
    ("// @filter: (platform is teensy) and not (board is teensylc)", "........B.", "FastLED example: `not` over a board condition"),
    ("// @filter: (mem is large) and ((platform is teensy) or (platform is esp32))", "........BB", "FastLED example: parenthesised `or` under `and`"),
    ("// @filter: ((platform is teensy) and (memory is large)) or (platform is esp32)", "........BB", "FastLED example: parenthesised `and` under `or`"),
    ("// @filter: ((platform is avr) and not (board is attiny*) and not (board is atmega8*)) or (platform is teensy)", "...BBB..B.", "FastLED example: Pintest: patterns under `not`"),
    ("// @filter: (platform is teensy) and (target is Teensy40 or Teensy41)", "..........", "FastLED example: ` or ` inside a value lists alternatives; no board here has target Teensy40/41"),
    ("// @filter: (platform is rp2040)", "..........", "FastLED example: no rp2040 board here"),
    ("// @filter: (platform is nonexistent_disable)", "..........", "FastLED example: matches no board"),
    ("// @filter: (platform is esp8266)", "..........", "FastLED example: no esp8266 board here"),
    ("// @filter: (memory is large) and not (platform is stm32)", "......B.BB", "FastLED example: ordered memory, negated platform"),
    ("// @filter: (mem is large) and (platform is esp32*)", ".........B", "FastLED example: pattern on a platform"),
    ("// @filter (target is -D__AVR__) or (board is uno)", "BBBBB.....", "FastLED example: `-D` is dropped from a value; fbuild's target names include the compile's macros (board.rs)"),
    ("// @filter (platform is esp32*)", ".........B", "FastLED example: pattern"),
    ("// @filter (memory is not low)", "BBB...BBBB", "FastLED example: `is not` compares the class by name: only low boards leave"),
    ("// @filter (memory is large) and (platform is esp32s3)", "..........", "FastLED example: no board has platform esp32s3 (it is a board): skipped everywhere"),
    ("// @filter (memory is huge) and (platform is esp32)", ".........B", "FastLED example: huge only"),
    ("// @filter (memory is huge)", "........BB", "FastLED example: huge only"),
    ("// @filter (mem=large) and (plat=esp32)", ".........B", "FastLED example: `=` is `is`, `plat` is `platform`"),
    ("// @filter (mem: large) and (plat: esp32)", ".........B", "FastLED example: `:` is `is`"),
    ("// @filter (mem is large) and (plat is esp32*)", ".........B", "FastLED example: pattern"),
    ("// @filter\n// require:\n//   - board: esp32s3,esp32c6,esp32p4,teensy41,teensy40,rp2350,rp2350w,lpc845,lpc845brk,lpcxpresso845max,lpcxpresso804\n// @end-filter\n", "........BB", "FastLED example: AutoResearch block: a required key matches any listed value"),
    ("// @filter\n//   - require:\n//     - platform: esp32s3\n//     - memory: large\n//   - exclude:\n//     - platform: avr\n// @end-filter\n", "BBBBBBBBBB", "FastLED example: examples/README.md: `- require:` is no section header, so FastLED reads an empty filter; fbuild calls the block malformed and builds it too"),
    ("// @filter: (platform is avr) and not (memory is large)", "B.BBBB..B.", "form: `not` directly over a condition compares the class by name: low and tiny AVR boards build"),
    ("// @filter: (memory is not large)", "BBBBBB..BB", "form: by name: every class but large"),
    ("// @filter: (memory is not huge)", "BBBBBBBB..", "form: by name: every class but huge"),
    ("// @filter: (memory is not tiny)", "...BBBBBBB", "form: by name: every class but tiny"),
    ("// @filter: (board is uno) or not (memory is low)", "BBBB..BBBB", "form: by name under `or`"),
    ("// @filter: (not (memory is large))", "BBBBBB..BB", "form: a leading `(` lets FastLED read a `not` filter: by name"),
    ("// @filter: not ((memory is large))", "BBBBBB..BB", "DIFFERS (FastLED: BBBBBBBBBB): form: FastLED does not read a filter that starts with `not` and builds everywhere"),
    ("// @filter: not (memory is tiny)", "...BBBBBBB", "DIFFERS (FastLED: BBBBBBBBBB): form: same: FastLED builds everywhere"),
    ("// @filter: (platform is avr) and not not (memory is large)", "..........", "form: the inner `not` makes the condition by-name; the outer one flips it back: exactly large (no AVR board)"),
    ("// @filter: (platform is avr) and not ((memory is large) and (board is mega))", "B.BBBB..B.", "form: `not` over a group: the class inside stays ordered"),
    ("// @filter: (platform is avr) and not (memory is not low)", "...BBB....", "form: two negations, by name: exactly low"),
    ("// @filter: (memory is low)", "...BBBBBBB", "form: ordered: every class but tiny"),
    ("// @filter: (memory is tiny)", "BBBBBBBBBB", "form: ordered: every board"),
    ("// @filter: (memory matches large)", "......BBBB", "form: `matches` is `is`"),
    ("// @filter: (memory is l*)", "..........", "form: an ordered class compares a non-class value as text: `l*` matches no board"),
    ("// @filter: (memory is not l*)", "BBB.....BB", "form: by name a `*` value is a pattern: low and large leave"),
    ("// @filter: (memory is high)", "......BBBB", "DIFFERS (FastLED: ..........): form: FastLED no longer knows `high` and matches no board; fbuild reads its older name for large"),
    ("// @filter: (memory is big)", "BBBBBBBBBB", "DIFFERS (FastLED: ..........): form: FastLED matches no board; fbuild calls an unknown class malformed and builds everywhere"),
    ("// @filter: (board is uno or mega)", "...BB.....", "form: alternatives"),
    ("// @filter: (board is 'uno or mega')", "...BB.....", "form: quotes are stripped before the value is split at ` or `"),
    (r#"// @filter: (board is "uno") or (board is 'esp32s3')"#, "...B.....B", "form: quoted values"),
    ("// @filter: (board is UNO)", "...B......", "form: values compare case-insensitively"),
    ("// @filter: (BOARD is uno) AND NOT (PLATFORM is esp32)", "...B......", "form: keys and `and`/`or`/`not` are case-insensitive"),
    ("// @filter: (board IS uno)", "...B......", "DIFFERS (FastLED: BBBBBBBBBB): form: FastLED reads `is` in lower case only, cannot read the filter and builds everywhere"),
    ("// @filter: (board is notebook)", "..........", "DIFFERS (FastLED: BBBBBBBBBB): form: FastLED's pattern reads `is notebook` as `is not ebook` and builds everywhere; fbuild reads the board `notebook`"),
    ("// @filter: (board is attiny*) or (board is arduino:avr:*)", "BB.BB.....", "form: patterns; fbuild also answers to the FQBN (board.rs)"),
    ("// @filter: (board is esp32?3)", "..........", "form: without `*` a value is plain text: `?` is no wildcard"),
    ("// @filter: (board is esp32?3*)", ".........B", "form: with `*` the value is an fnmatch pattern: `?` is any character"),
    ("// @filter: (board is teensy[!l]*)", ".....B..B.", "form: fnmatch sets"),
    ("// @filter: (target is atmega328p) or (tgt is -D__AVR_ATmega2560__)", "...BB.....", "form: targets: the MCU, macros with `-D`"),
    ("// @filter: (plat is atmelavr)", "B.BBBB..B.", "form: PlatformIO's platform name (board.rs)"),
    ("// @filter: (color is blue)", "BBBBBBBBBB", "form: only unknown keys: FastLED reads no filter"),
    ("// @filter: (color is blue) and (memory is large)", "......BBBB", "form: an unknown key drops out of `and`"),
    ("// @filter: (color is blue) or (platform is esp32)", ".........B", "form: and out of `or`"),
    ("// @filter: (platform is avr) and not (color is blue)", "B.BBBB..B.", "form: `not` over only an unknown key drops out"),
    ("// @filter: (platform is avr) and not ((color is blue) or (memory is large))", "........B.", "form: a `not` over a group with an unknown key is dropped, the rest kept unnegated: avr and at least large (teensy41, an avr-architecture Teensy)"),
    ("// @filter: (board is uno) (board is mega)", "BBBBBBBBBB", "form: no operator between conditions: unreadable, built everywhere (fbuild warns)"),
    ("// @filter: (memory is large", "BBBBBBBBBB", "form: unclosed: unreadable, built everywhere (fbuild warns)"),
    ("// @filter: memory is large", "BBBBBBBBBB", "form: no parentheses: unreadable, built everywhere (fbuild warns)"),
    ("// @filter\n// require:\n//   - memory: large\n// exclude:\n//   - platform: esp32\n// @end-filter\n", "......BBB.", "form: block: required memory ordered, excluded platform"),
    ("// @filter\n// exclude:\n//   - memory: large\n// @end-filter\n", "BBBBBB..BB", "form: block: an excluded class compares by name"),
    ("// @filter\n// exclude:\n//   - mem: low|tiny\n// @end-filter\n", "......BBBB", "form: block: `|` separates alternatives"),
    ("// @filter\n// require:\n//   - board: uno\n//   - board: mega, esp32s3\n// @end-filter\n", "...BB....B", "form: block: items of one key are one list"),
    ("// @filter\n// require:\n//   - memory: low\n// exclude:\n//   - board: attiny*, teensy*\n// @end-filter\n", "...BB.BB.B", "form: block: pattern in exclude"),
    ("// @filter\n// require:\n//   - colour: red\n// @end-filter\n", "..........", "form: block: a required key no board has skips everywhere"),
    ("// @filter\n// exclude:\n//   - colour: red\n// @end-filter\n", "BBBBBBBBBB", "form: block: an excluded key no board has excludes nothing"),
    ("// @filter:\n// require:\n//   - platform: avr\n// @end-filter\n", "B.BBBB..B.", "form: block after `@filter:`"),
];

#[test]
fn every_filter_form_on_every_memory_class_and_platform() {
    let boards = table_boards();
    let classes: Vec<&str> = boards.iter().map(|b| b.memory.name()).collect();
    assert_eq!(classes, ["tiny", "tiny", "tiny", "low", "low", "low", "large", "large", "huge", "huge"], "the table's board order");
    let mut wrong = Vec::new();
    for (source, want, how) in VERDICTS {
        // As `select` reads it: a malformed filter is warned about and built.
        let verdict: String = boards
            .iter()
            .map(|b| match parse_sketch(source) {
                Ok(Some(f)) if !f.admits(b) => '.',
                _ => 'B',
            })
            .collect();
        if verdict != *want {
            wrong.push(format!("{source:?}: got {verdict}, want {want} ({how})"));
        }
    }
    assert!(wrong.is_empty(), "{} of {} filters decided otherwise:\n{}", wrong.len(), VERDICTS.len(), wrong.join("\n"));
}

#[test]
fn sketches_filter_themselves_out_on_uno_and_build_on_mega() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("examples");
    let cache = t.path().join("cache");
    let big_only = sketch(&root, "BigOnly", &format!("// Needs a lot of RAM.\n// @filter: (memory is large)\n{BODY}"), &[]);
    let not_uno = sketch(&root, "NotUno", "// @filter (board is not uno)\n#include <SPI.h>\nvoid setup() { SPI.begin(); }\nvoid loop() {}\n", &[]);
    let mega_target = sketch(&root, "MegaTarget", &format!("// @filter\n// require:\n//   - target: -D__AVR_ATmega2560__\n// @end-filter\n{BODY}"), &[]);
    let avr_only = sketch(&root, "AvrOnly", &format!("// @filter: (platform is atmelavr) and not (mem is tiny)\n{BODY}"), &[]);
    let broken = sketch(&root, "Broken", &format!("//\n// @filter (memory is large\n{BODY}"), &[]);
    let plain = sketch(&root, "Plain", BODY, &[]);
    // Negated, a memory class is compared by name (FastLED's CI): built on low
    // boards, left out on large ones only.
    let small_avr = sketch(&root, "SmallAvr", &format!("// @filter: (platform is avr) and not (memory is large)\n{BODY}"), &[]);
    let all = vec![big_only.clone(), not_uno.clone(), mega_target.clone(), avr_only.clone(), broken.clone(), plain.clone(), small_avr.clone()];

    // uno: three sketches say they are not for it.
    let out = t.path().join("uno");
    let (run, r) = many(&cache, t.path(), &out, &[], &all);
    assert_eq!(run.code, 0, "every sketch not skipped built: {}{}", run.stdout, run.stderr);
    let want: BTreeMap<String, String> = [("AvrOnly", "ok"), ("BigOnly", "skipped"), ("Broken", "ok"), ("MegaTarget", "skipped"), ("NotUno", "skipped"), ("Plain", "ok"), ("SmallAvr", "ok")]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(status_of(&r), want);
    let by = sketches_by_path(&r);
    let big = &by[&big_only.display().to_string()];
    let reason = big["skip_reason"].as_str().unwrap();
    assert!(reason.contains("(memory is large)") && reason.contains("line 2") && reason.contains("uno") && reason.contains("memory low"), "{reason}");
    assert!(big["firmware"].as_object().unwrap().is_empty());
    assert!(!Path::new(big["output_dir"].as_str().unwrap()).exists(), "nothing is written for a skipped sketch");
    assert!(by[&plain.display().to_string()]["skip_reason"].is_null());
    assert_eq!((r["totals"]["sketches"].as_u64(), r["totals"]["ok"].as_u64(), r["totals"]["skipped"].as_u64()), (Some(7), Some(4), Some(3)));
    assert!(!unit_names(&r).contains(&"SPI".to_string()), "a skipped sketch's library is not built: {:?}", unit_names(&r));
    assert!(run.stdout.contains("7 sketches: 4 ok, 0 failed, 3 skipped"), "{}", run.stdout);
    let warning = format!("warning: {}:2: malformed @filter", broken.join("Broken.ino").display());
    assert!(run.stderr.contains(&warning), "one warning naming file and line: {}", run.stderr);
    assert_eq!(run.stderr.matches("malformed @filter").count(), 1);
    // Results stay in argument order, skipped sketches included.
    let names: Vec<&str> = r["sketches"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["BigOnly", "NotUno", "MegaTarget", "AvrOnly", "Broken", "Plain", "SmallAvr"]);

    // mega: the board and target filters admit it; it is still a low-memory board.
    let (run, r) = many(&cache, t.path(), &t.path().join("mega"), &["--board", "mega"], &all);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let st = status_of(&r);
    assert_eq!(st["BigOnly"], "skipped");
    for name in ["NotUno", "MegaTarget", "AvrOnly", "Broken", "Plain", "SmallAvr"] {
        assert_eq!(st[name], "ok", "{name}");
    }
    assert!(unit_names(&r).contains(&"SPI".to_string()), "NotUno's library is built on mega");

    // --memory-class large: the big sketch builds on mega too, the small one not.
    let (run, r) = many(&cache, t.path(), &t.path().join("mega-large"), &["--board", "mega", "--memory-class", "large"], &all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(r["totals"]["skipped"], 1);
    assert_eq!(r["totals"]["ok"], 6);
    assert_eq!(status_of(&r)["SmallAvr"], "skipped");

    // --no-filter: everything builds on uno.
    let (run, r) = many(&cache, t.path(), &t.path().join("uno-all"), &["--no-filter"], &all);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!((r["totals"]["ok"].as_u64(), r["totals"]["skipped"].as_u64()), (Some(7), Some(0)));
    assert!(!run.stderr.contains("malformed"), "filters are not read with --no-filter");

    // A bad --memory-class is a usage error.
    let bad = fbuild(&cache, t.path(), &["compile-many", "--memory-class", "giant", plain.to_str().unwrap()]);
    assert_eq!(bad.code, 2);
    assert!(bad.stderr.contains("tiny, low, large or huge") && bad.stderr.lines().count() == 1, "{}", bad.stderr);
}

#[test]
fn every_sketch_skipped_builds_nothing() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("examples");
    let a = sketch(&root, "A", &format!("// @filter (board is mega)\n{BODY}"), &[]);
    let b = sketch(&root, "B", &format!("// @filter\n// exclude:\n//   - platform: avr\n// @end-filter\n{BODY}"), &[]);
    let out = t.path().join("out");
    let (run, r) = many(&t.path().join("cache"), t.path(), &out, &[], &[a, b]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(r["totals"]["skipped"], 2);
    assert_eq!(r["totals"]["tool_processes"], 0, "not even the core is compiled");
    assert!(r["units"].as_array().unwrap().is_empty());
    assert!(run.stdout.contains("2 sketches: 0 ok, 0 failed, 2 skipped"), "{}", run.stdout);
}

/// A folder of wrappers for the AVR tools that log each start, then run the real
/// tool: an independent count of the processes fbuild starts.
fn logging_tools(dir: &Path, log: &Path) -> String {
    std::fs::create_dir_all(dir).unwrap();
    for tool in ["avr-gcc", "avr-g++", "avr-gcc-ar", "avr-objcopy", "avr-size"] {
        let path = dir.join(tool);
        std::fs::write(&path, format!("#!/bin/sh\necho \"{tool} $*\" >> '{}'\nexec /usr/bin/{tool} \"$@\"\n", log.display())).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    format!("compiler.path={}/", dir.display())
}

fn tool_starts(log: &Path) -> usize {
    std::fs::read_to_string(log).map(|s| s.lines().count()).unwrap_or(0)
}

/// What a user reads about each sketch: status, first error, sizes, diagnostics.
fn outcome(results: &serde_json::Value, out: &Path) -> BTreeMap<String, String> {
    results["sketches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let text = format!("{} | {} | {} | {} | {}", s["status"], s["first_error"], s["flash_used"], s["ram_used"], s["diagnostics"]);
            // Errors may name files in the output folder: compare runs into other folders fairly.
            (s["name"].as_str().unwrap().to_string(), text.replace(&out.display().to_string(), "OUT"))
        })
        .collect()
}

#[test]
fn warm_run_over_failing_links_starts_no_process_and_reports_the_same() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("sk");
    let cache = t.path().join("cache");
    let log = t.path().join("tools.log");
    let prop = logging_tools(&t.path().join("bin"), &log);
    // Overflows the linker refuses (it knows the chip's RAM and flash; fbuild then
    // measures them), and one it accepts but the size check refuses: 32486 bytes
    // fit the atmega328p's 32 KiB but not the 32256 the uno's bootloader leaves.
    let ram = sketch(&root, "RamOverflow", "volatile char buf[2100];\nvoid setup() { buf[0] = 1; }\nvoid loop() { buf[buf[0]]++; }\n", &[]);
    let ram_far = sketch(&root, "RamFarOver", "volatile char a[30000];\nvolatile char b[30000];\nvolatile char c[30000];\nvoid setup() {}\nvoid loop() { a[1]++; b[1]++; c[1]++; }\n", &[]);
    let flash = sketch(&root, "FlashOverflow", &flash_sketch(20000), &[]);
    let flash_size = sketch(&root, "FlashOverSizeCheck", &flash_sketch(16000), &[]);
    let undefined = sketch(&root, "Undefined", "void missing_function();\nvoid setup() {}\nvoid loop() { missing_function(); }\n", &[]);
    let twice = sketch(&root, "Twice", "int twice();\nvoid setup() {}\nvoid loop() { twice(); }\n", &[("a.cpp", "int twice() { return 1; }\n"), ("b.cpp", "int twice() { return 2; }\n")]);
    let fine = sketch(&root, "Fine", BODY, &[]);
    let all = vec![ram.clone(), ram_far.clone(), flash.clone(), flash_size.clone(), undefined.clone(), twice.clone(), fine.clone()];
    let flags = ["--build-property", prop.as_str(), "--framework-jobs", "1", "--sketch-jobs", "2"];

    let out = t.path().join("out");
    let (run, cold) = many(&cache, t.path(), &out, &flags, &all);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(tool_starts(&log) > 0, "the wrappers see the cold run's tools");
    let st = status_of(&cold);
    assert_eq!(st.values().filter(|s| *s == "failed").count(), 6, "{st:?}");
    assert_eq!(st["Fine"], "ok");
    let by = sketches_by_path(&cold);
    let first = |p: &PathBuf| by[&p.display().to_string()]["first_error"].as_str().unwrap_or("").to_string();
    assert!(first(&ram).contains("2109 bytes of RAM"), "the linker's overflow is measured: {}", first(&ram));
    assert!(first(&ram_far).contains("90009 bytes of RAM"), "{}", first(&ram_far));
    assert!(first(&flash).contains("40486 bytes of program storage"), "{}", first(&flash));
    assert!(first(&flash_size).contains("32486 bytes of program storage"), "{}", first(&flash_size));
    assert!(first(&undefined).contains("undefined reference to `missing_function()'"), "{}", first(&undefined));
    assert!(first(&twice).contains("multiple definition of `twice()'"), "{}", first(&twice));
    let cold_outcome = outcome(&cold, &out);

    // Warm, same output folder: nothing starts, the same errors and sizes.
    std::fs::remove_file(&log).unwrap();
    let (run, warm) = many(&cache, t.path(), &out, &flags, &all);
    assert_eq!(run.code, 1);
    assert_eq!(warm["totals"]["tool_processes"], 0, "{}", run.stderr);
    assert_eq!(tool_starts(&log), 0, "no compiler, linker or size tool started: {}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(warm["totals"]["links_run"], 0);
    assert_eq!(outcome(&warm, &out), cold_outcome);
    let warm_by = sketches_by_path(&warm);
    assert_eq!(warm_by[&undefined.display().to_string()]["link"], "cached");
    let undefined_log = std::fs::read_to_string(warm_by[&undefined.display().to_string()]["log"].as_str().unwrap()).unwrap();
    assert!(undefined_log.contains("failed before with the same inputs") && undefined_log.contains("undefined reference"), "{undefined_log}");

    // Warm cache, fresh output folder: still nothing starts.
    let out2 = t.path().join("out2");
    let (run, warm2) = many(&cache, t.path(), &out2, &flags, &all);
    assert_eq!(run.code, 1);
    assert_eq!(warm2["totals"]["tool_processes"], 0);
    assert_eq!(tool_starts(&log), 0, "{}", std::fs::read_to_string(&log).unwrap_or_default());
    assert_eq!(outcome(&warm2, &out2), cold_outcome);
}

#[test]
fn changing_a_link_input_links_again() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("sk");
    let cache = t.path().join("cache");
    let ram = sketch(&root, "RamOverflow", "volatile char buf[2100];\nvoid setup() { buf[0] = 1; }\nvoid loop() { buf[buf[0]]++; }\n", &[]);
    let undefined = sketch(&root, "Undefined", "void missing_function();\nvoid setup() {}\nvoid loop() { missing_function(); }\n", &[]);
    let helper = sketch(&root, "Helper", "void helper();\nvoid setup() {}\nvoid loop() { helper(); }\n", &[]);
    let flash = sketch(&root, "FlashOverSizeCheck", &flash_sketch(16000), &[]);
    let all = vec![ram.clone(), undefined.clone(), helper.clone(), flash.clone()];
    let out = t.path().join("out");
    let (run, _) = many(&cache, t.path(), &out, &[], &all);
    assert_eq!(run.code, 1);
    let (_, warm) = many(&cache, t.path(), &out, &[], &all);
    assert_eq!(warm["totals"]["links_run"], 0);

    // Define the missing function; grow the RAM sketch by a byte; give Helper its
    // function in a new file of its own.
    std::fs::write(undefined.join("Undefined.ino"), "void missing_function() {}\nvoid setup() {}\nvoid loop() { missing_function(); }\n").unwrap();
    std::fs::write(ram.join("RamOverflow.ino"), "volatile char buf[2101];\nvoid setup() { buf[0] = 1; }\nvoid loop() { buf[buf[0]]++; }\n").unwrap();
    std::fs::write(helper.join("helper.cpp"), "void helper() {}\n").unwrap();
    let (run, r) = many(&cache, t.path(), &out, &[], &all);
    assert_eq!(run.code, 1, "the RAM sketch still does not fit");
    assert_eq!(r["totals"]["links_run"], 3, "every changed link ran again");
    let by = sketches_by_path(&r);
    assert_eq!(by[&undefined.display().to_string()]["status"], "ok");
    assert_eq!(by[&helper.display().to_string()]["status"], "ok");
    let ram_r = &by[&ram.display().to_string()];
    assert_eq!(ram_r["status"], "failed");
    assert_eq!(ram_r["ram_used"], 2110, "measured again");

    // Raising the board's flash limit lets the remembered too-big sketch through,
    // from the cache: the limit is checked again, the link is not rerun. (The RAM
    // sketch stays refused: its linker failed, whatever the limit says.)
    let (run, r) = many(&cache, t.path(), &out, &["--build-property", "upload.maximum_size=32768"], &all);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let by = sketches_by_path(&r);
    let flash_r = &by[&flash.display().to_string()];
    assert_eq!(flash_r["status"], "ok");
    assert_eq!(flash_r["flash_used"], 32486);
    assert!(Path::new(flash_r["firmware"]["hex"].as_str().unwrap()).is_file());
    assert_eq!(by[&ram.display().to_string()]["status"], "failed");
    assert_eq!(r["totals"]["links_run"], 0);
}
