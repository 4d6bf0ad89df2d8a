//! A board matrix (`compile-many --board A --board B ...`): the same firmware as each
//! board built alone, results that name each sketch's board, one compile database
//! for all boards, and size comparisons per board.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

fn many(cache: &Path, cwd: &Path, out: &Path, boards: &[&str], extra: &[&str], sketches: &[PathBuf]) -> Run {
    let mut args: Vec<String> = vec!["compile-many".into(), "--out".into(), out.display().to_string()];
    for b in boards {
        args.push("--board".into());
        args.push(b.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args.extend(sketches.iter().map(|p| p.display().to_string()));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    fbuild(cache, cwd, &argv)
}

/// Every firmware file but the ELF (its debug info names the output folder), by kind.
fn firmware_bytes(sketch: &Value) -> BTreeMap<String, Vec<u8>> {
    sketch["firmware"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(kind, _)| kind.as_str() != "elf")
        .map(|(kind, p)| (kind.clone(), std::fs::read(p.as_str().unwrap()).unwrap()))
        .collect()
}

#[test]
fn matrix_firmware_is_byte_identical_to_each_board_alone() {
    let t = tempfile::tempdir().unwrap();
    let sketches = vec![corpus(), library_examples()];
    let boards = ["uno", "mega", "leonardo"];
    // Separate caches: the lone builds compile everything again, nothing is fetched
    // from what the matrix stored.
    let matrix_out = t.path().join("matrix");
    let run = many(&t.path().join("cache-matrix"), t.path(), &matrix_out, &boards, &["-q"], &sketches);
    assert!(run.code == 0 || run.code == 1, "matrix run: {}", run.stderr);
    let matrix = read_json(&matrix_out.join("results.json"));
    assert_eq!(matrix["board"], "uno,mega,leonardo");
    assert_eq!(matrix["boards"].as_array().unwrap().len(), 3);
    let all = matrix["sketches"].as_array().unwrap();
    assert_eq!(all.len(), 300, "100 examples x 3 boards");

    let mut compared = 0;
    for board in boards {
        let alone_out = t.path().join(format!("alone-{board}"));
        let alone_run = many(&t.path().join("cache-alone"), t.path(), &alone_out, &[board], &["-q"], &sketches);
        assert!(alone_run.code == 0 || alone_run.code == 1, "lone {board}: {}", alone_run.stderr);
        let alone = read_json(&alone_out.join("results.json"));
        assert!(alone.get("boards").is_none(), "one board keeps the one-board layout");
        let fqbn = alone["fqbn"].as_str().unwrap();
        let alone_by_path = sketches_by_path(&alone);
        assert_eq!(alone_by_path.len(), 100);
        let of_board: Vec<&Value> = all.iter().filter(|s| s["fqbn"] == fqbn).collect();
        assert_eq!(of_board.len(), 100, "{board}: every sketch once");
        for s in of_board {
            assert_eq!(s["board"], board);
            let lone = &alone_by_path[s["path"].as_str().unwrap()];
            assert!(lone.get("board").is_none());
            assert_eq!(s["status"], lone["status"], "{board} {}", s["path"]);
            assert_eq!(s["flash_used"], lone["flash_used"], "{board} {}", s["path"]);
            assert_eq!(s["ram_used"], lone["ram_used"], "{board} {}", s["path"]);
            let (m, l) = (firmware_bytes(s), firmware_bytes(lone));
            assert_eq!(m.keys().collect::<Vec<_>>(), l.keys().collect::<Vec<_>>(), "{board} {}", s["path"]);
            for (kind, bytes) in &m {
                assert!(bytes == &l[kind], "{board} {}: {kind} differs from the lone build", s["path"]);
                compared += 1;
            }
            assert!(s["output_dir"].as_str().unwrap().starts_with(matrix_out.join(board).to_str().unwrap()));
        }
    }
    assert!(compared >= 300, "only {compared} firmware files compared");

    // One compile database for the matrix, holding every board's commands for every sketch.
    let db: Vec<Value> = serde_json::from_slice(&std::fs::read(matrix_out.join("compile_commands.json")).unwrap()).unwrap();
    let mut per_board = 0;
    for board in boards {
        let own: Vec<Value> = serde_json::from_slice(&std::fs::read(matrix_out.join(board).join("compile_commands.json")).unwrap()).unwrap();
        per_board += own.len();
        let below = matrix_out.join(board);
        let merged_of_board = db
            .iter()
            .filter(|e| e["output"].as_str().unwrap().starts_with(below.to_str().unwrap()) && e["file"].as_str().unwrap().ends_with(".ino.cpp"))
            .count();
        // Every sketch that built for this board has its merged-sketch entry (one whose
        // discovery failed has no plan to list).
        let built: Vec<&Value> = all.iter().filter(|s| s["board"] == board && s["status"] == "ok").collect();
        assert!(built.len() >= 80, "{board}: only {} sketches built", built.len());
        for s in &built {
            let dir = s["output_dir"].as_str().unwrap();
            assert!(
                db.iter().any(|e| e["file"].as_str().unwrap().ends_with(".ino.cpp") && e["output"].as_str().unwrap().starts_with(dir)),
                "{board}: no compile_commands entry for {}",
                s["path"]
            );
        }
        assert!(merged_of_board >= built.len());
    }
    assert_eq!(db.len(), per_board);

    // phases.tsv: summed rows, then one row per board.
    let phases = std::fs::read_to_string(matrix_out.join("phases.tsv")).unwrap();
    for board in boards {
        assert!(phases.lines().any(|l| l.starts_with(&format!("board:{board}\t")) && l.ends_with("\t100")), "{phases}");
    }
    assert!(phases.lines().any(|l| l.starts_with("stage2_sketches\t")), "{phases}");
}

fn write(p: &Path, s: &str) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, s).unwrap();
}

#[test]
fn results_summary_and_size_report_name_each_sketchs_board() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    // Serial1 exists on mega, not on uno: this sketch fails on one board only.
    let serial1 = t.path().join("sk/Serial1Echo/Serial1Echo.ino");
    write(&serial1, "void setup() { Serial1.begin(9600); }\nvoid loop() { Serial1.write('x'); }\n");
    let sketches = vec![example("01.Basics/Blink"), serial1.parent().unwrap().to_path_buf()];
    let out = t.path().join("out");
    let run = many(&cache, t.path(), &out, &["uno", "mega"], &[], &sketches);
    assert_eq!(run.code, 1, "a failed sketch fails the run: {}", run.stderr);
    let results = read_json(&out.join("results.json"));
    let find = |r: &Value, name: &str, board: &str| -> Value {
        r["sketches"].as_array().unwrap().iter().find(|s| s["name"] == name && s["board"] == board).cloned().unwrap()
    };
    assert_eq!(find(&results, "Serial1Echo", "uno")["status"], "failed");
    assert_eq!(find(&results, "Serial1Echo", "mega")["status"], "ok");
    assert_eq!(find(&results, "Blink", "mega")["fqbn"], "arduino:avr:mega:cpu=atmega2560");
    assert_eq!(results["totals"]["sketches"], 4);
    assert_eq!(results["totals"]["failed"], 1);
    // The summary: a row per sketch, a column per board.
    let header = run.stdout.lines().find(|l| l.starts_with("sketch")).unwrap();
    assert!(header.contains("uno") && header.contains("mega"), "{}", run.stdout);
    let row = run.stdout.lines().find(|l| l.contains("Serial1Echo") && !l.contains(" for ")).unwrap();
    assert!(row.contains("FAILED") && row.contains("ok "), "{row}");
    assert!(run.stdout.contains("Serial1Echo for uno"), "{}", run.stdout);

    // An old file where Blink on mega was 100 bytes smaller, and a sketch of mega that vanished.
    let mut old = results.clone();
    for s in old["sketches"].as_array_mut().unwrap() {
        if s["name"] == "Blink" && s["board"] == "mega" {
            s["flash_used"] = (s["flash_used"].as_u64().unwrap() - 100).into();
        }
    }
    old["sketches"].as_array_mut().unwrap().push(serde_json::json!({
        "name": "Gone", "path": "/nowhere/Gone", "board": "mega", "fqbn": "arduino:avr:mega:cpu=atmega2560", "status": "ok", "flash_used": 1000, "ram_used": 10
    }));
    let old_path = t.path().join("old.json");
    std::fs::write(&old_path, serde_json::to_vec(&old).unwrap()).unwrap();
    let md = t.path().join("sizes.md");
    let (old_arg, md_arg) = (old_path.display().to_string(), md.display().to_string());
    let run = many(&cache, t.path(), &out, &["uno", "mega"], &["--compare-to", &old_arg, "--report-md", &md_arg], &sketches);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let results = read_json(&out.join("results.json"));
    assert_eq!(find(&results, "Blink", "mega")["size_delta"]["flash"]["bytes"], 100);
    assert_eq!(find(&results, "Blink", "uno")["size_delta"]["flash"]["bytes"], 0);
    let vanished = results["size_report"]["vanished"].as_array().unwrap();
    assert_eq!(vanished.len(), 1);
    assert_eq!(vanished[0]["name"], "Gone");
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.lines().any(|l| l.contains("Blink") && l.contains("| mega |") && l.contains("+100")), "{md}");
    assert!(md.lines().any(|l| l.contains("Blink") && l.contains("| uno |") && l.contains("| 0 (0.00%) |")), "{md}");
    assert!(md.lines().any(|l| l.contains("Gone") && l.contains("| mega |") && l.contains("vanished")), "{md}");
}

#[test]
fn several_boards_where_one_is_meant_is_a_usage_error() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let blink = example("01.Basics/Blink").display().to_string();
    let build = fbuild(&cache, t.path(), &["build", "--board", "uno", "--board", "mega", &blink]);
    assert_eq!(build.code, 2, "{}", build.stderr);
    assert!(build.stderr.contains("--board is given more than once"), "{}", build.stderr);
    assert_eq!(build.stderr.trim().lines().count(), 1, "{}", build.stderr);
    let twice = many(&cache, t.path(), &t.path().join("o"), &["uno", "mega", "uno"], &[], &[example("01.Basics/Blink")]);
    assert_eq!(twice.code, 2, "{}", twice.stderr);
    assert!(twice.stderr.contains("--board uno is given twice"), "{}", twice.stderr);
}

/// A smoke run is a step after each link in the same graph, so a matrix boots every
/// board's firmware on that board's chip.
#[test]
fn smoke_run_boots_every_boards_firmware() {
    let t = tempfile::tempdir().unwrap();
    let out = t.path().join("o");
    let sketches = [example("01.Basics/Blink"), example("04.Communication/ASCIITable")];
    let run = many(&t.path().join("cache"), t.path(), &out, &["uno", "mega", "leonardo"], &["--smoke-run", "300ms"], &sketches);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("6 runs: 0 passed, 6 timeout"), "{}", run.stdout);
    let results = read_json(&out.join("results.json"));
    let all = results["sketches"].as_array().unwrap();
    assert_eq!(all.len(), 6);
    for s in all {
        let r = &s["run"];
        assert_eq!(r["status"], "timeout", "{}: {r}", s["board"]);
        let simulated = r["simulated_seconds"].as_f64().unwrap();
        assert!((0.3..0.301).contains(&simulated), "{}: {r}", s["board"]);
    }
    // ASCIITable prints its table on UART0 of the uno and mega; the leonardo's
    // Serial is USB, which the simulator does not carry, so its UART0 stays silent.
    let output = |board: &str| all.iter().find(|s| s["board"] == board && s["name"] == "ASCIITable").unwrap()["run"]["output"].as_str().unwrap().to_string();
    assert!(output("uno").contains("ASCII Table"), "{}", output("uno"));
    assert!(output("mega").contains("ASCII Table"), "{}", output("mega"));
    assert_eq!(output("leonardo"), "");
    let phases = std::fs::read_to_string(out.join("phases.tsv")).unwrap();
    assert!(phases.lines().any(|l| l.starts_with("smoke_run\t") && l.ends_with("\t6")), "{phases}");
}
