//! What fbuild prints: closed pipes, aligned tables, --json, the end-of-run summary,
//! and size reports against an earlier results.json. Real binary, real toolchain.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Run fbuild with stdout a pipe whose reader is already gone: every write to it
/// fails, so this is the `| head` case without the race of head exiting.
fn run_into_closed_pipe(cache: &Path, cwd: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let o = Command::new(fbuild_bin())
        .args(args)
        .current_dir(cwd)
        .env("FBUILD_CACHE_DIR", cache)
        .env("CI", "true")
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    (o.status, String::from_utf8_lossy(&o.stderr).into_owned())
}

fn assert_ended_by_the_pipe(what: &str, status: std::process::ExitStatus, stderr: &str) {
    assert!(!stderr.contains("panicked"), "{what}: panicked on a closed pipe:\n{stderr}");
    assert!(!stderr.contains("Broken pipe"), "{what}: complained about the pipe:\n{stderr}");
    assert!(
        status.signal() == Some(libc::SIGPIPE) || status.code() == Some(141),
        "{what}: expected the pipe's status (SIGPIPE / 141), got {status:?}\n{stderr}"
    );
}

#[test]
fn a_closed_pipe_ends_each_command_quietly_with_the_pipes_status() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let (status, err) = run_into_closed_pipe(&cache, t.path(), &["boards"]);
    assert_ended_by_the_pipe("boards", status, &err);
    let (status, err) = run_into_closed_pipe(&cache, t.path(), &["cache", "stats"]);
    assert_ended_by_the_pipe("cache stats", status, &err);

    let out = t.path().join("out");
    let blink = example("01.Basics/Blink");
    let (status, err) = run_into_closed_pipe(&cache, t.path(), &["compile-many", "--out", out.to_str().unwrap(), blink.to_str().unwrap()]);
    assert_ended_by_the_pipe("compile-many", status, &err);
    // The build itself finished before the summary met the closed pipe.
    assert_eq!(read_json(&out.join("results.json"))["totals"]["ok"], 1);

    // And through a real shell pipeline: head gets its line, nobody complains.
    let o = Command::new("bash")
        .args(["-c", &format!("'{}' boards | head -1", fbuild_bin().display())])
        .env("FBUILD_CACHE_DIR", &cache)
        .output()
        .unwrap();
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("id "), "{:?}", o);
    assert!(o.stderr.is_empty(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A platform with a board id and FQBN longer than any column width guessed in advance.
fn long_named_hardware(root: &Path) -> PathBuf {
    let hw = root.join("hw");
    let arch = hw.join("averyveryverylongvendorname").join("avr");
    std::fs::create_dir_all(&arch).unwrap();
    std::fs::copy("/usr/share/arduino/hardware/arduino/avr/platform.txt", arch.join("platform.txt")).unwrap();
    std::fs::write(
        arch.join("boards.txt"),
        "an_uncommonly_long_board_identifier.name=Long Board\n\
         an_uncommonly_long_board_identifier.build.mcu=atmega328p\n\
         an_uncommonly_long_board_identifier.upload.maximum_size=32256\n\
         an_uncommonly_long_board_identifier.upload.maximum_data_size=2048\n",
    )
    .unwrap();
    hw
}

#[test]
fn boards_align_for_every_id_and_json_lists_the_same_boards() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let hw = long_named_hardware(t.path());
    let table = fbuild(&cache, t.path(), &["boards", "--hardware", hw.to_str().unwrap()]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    let lines: Vec<&str> = table.stdout.lines().collect();
    // Each column starts where its header starts, on every line (ids and FQBNs have no spaces).
    let header = lines[0];
    let col = |name: &str| header.find(name).unwrap();
    let (fqbn_at, mcu_at, name_at) = (col("fqbn"), col("mcu"), col("name"));
    for l in &lines[1..] {
        let starts: Vec<usize> = l.match_indices(|c: char| c != ' ').filter(|(i, _)| *i == 0 || l.as_bytes()[i - 1] == b' ').map(|(i, _)| i).collect();
        assert_eq!(starts[1], fqbn_at, "fqbn column misaligned:\n{header}\n{l}");
        assert_eq!(starts[2], mcu_at, "mcu column misaligned:\n{header}\n{l}");
        assert_eq!(starts[6], name_at, "name column misaligned:\n{header}\n{l}");
        assert!(!l.ends_with(' '));
    }
    assert!(lines.iter().any(|l| l.starts_with("an_uncommonly_long_board_identifier ")));

    let json = fbuild(&cache, t.path(), &["boards", "--json", "--hardware", hw.to_str().unwrap()]);
    assert_eq!(json.code, 0);
    let boards: Value = serde_json::from_str(&json.stdout).expect("boards --json prints JSON only");
    let boards = boards.as_array().unwrap();
    assert_eq!(boards.len(), lines.len() - 1, "one JSON entry per table row");
    let uno = boards.iter().find(|b| b["fqbn"] == "arduino:avr:uno").unwrap();
    assert_eq!((uno["id"].as_str(), uno["mcu"].as_str(), uno["max_flash"].as_u64(), uno["max_ram"].as_u64()), (Some("uno"), Some("atmega328p"), Some(32256), Some(2048)));
    assert!(boards.iter().any(|b| b["fqbn"] == "averyveryverylongvendorname:avr:an_uncommonly_long_board_identifier"));
}

#[test]
fn cache_stats_table_agrees_with_its_json() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    let out = t.path().join("out");
    let blink = example("01.Basics/Blink");
    for _ in 0..2 {
        // Second run: a fresh output folder, so everything comes from the cache.
        let _ = std::fs::remove_dir_all(&out);
        let r = fbuild(&cache, t.path(), &["compile-many", "-q", "--out", out.to_str().unwrap(), blink.to_str().unwrap()]);
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let json: Value = serde_json::from_str(&fbuild(&cache, t.path(), &["cache", "stats", "--json"]).stdout).unwrap();
    let table = fbuild(&cache, t.path(), &["cache", "stats"]);
    assert_eq!(table.code, 0);
    assert!(table.stdout.starts_with(&format!("cache    {}\nentries  {} (", cache.display(), json["entries"])), "{}", table.stdout);
    let row = |kind: &str| -> Vec<u64> {
        let l = table.stdout.lines().find(|l| l.split_whitespace().next() == Some(kind)).unwrap_or_else(|| panic!("no row {kind}:\n{}", table.stdout));
        l.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect()
    };
    let sum = |run: &str, what: &str| json[run]["namespaces"].as_object().unwrap().values().map(|v| v[what].as_u64().unwrap()).sum::<u64>();
    assert_eq!(row("all"), vec![sum("last_run", "hits"), sum("last_run", "misses"), sum("total", "hits"), sum("total", "misses")]);
    assert!(sum("last_run", "hits") > 0, "the second run hit the cache");
    for (kind, v) in json["total"]["namespaces"].as_object().unwrap() {
        let last = &json["last_run"]["namespaces"][kind];
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        assert_eq!(row(kind), vec![n(&last["hits"]), n(&last["misses"]), n(&v["hits"]), n(&v["misses"])], "{kind}");
    }
}

fn copy_examples(root: &Path, names: &[&str]) {
    for n in names {
        copy_dir(&example(&format!("01.Basics/{n}")), &root.join(n));
    }
}

#[test]
fn summary_is_a_table_and_json_puts_only_results_on_stdout() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    copy_examples(t.path(), &["Blink"]);
    copy_dir(&example("04.Communication/MultiSerial"), &t.path().join("MultiSerial"));
    let r = fbuild(&cache, t.path(), &["compile-many", "--out", "out", "Blink", "MultiSerial"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines[0].split_whitespace().collect::<Vec<_>>(), ["sketch", "status", "flash", "ram", "seconds"], "{}", r.stdout);
    let row = |name: &str| lines.iter().find(|l| l.starts_with(name)).unwrap().split_whitespace().collect::<Vec<_>>();
    let blink = row("Blink ");
    assert_eq!(&blink[..5], ["Blink", "ok", "930/32256", "(2%)", "0%"], "{}", r.stdout);
    assert!(blink[5].parse::<f64>().is_ok());
    assert_eq!(&row("MultiSerial ")[..4], ["MultiSerial", "failed", "-", "-"]);
    // Failures with their first error, paths relative to the working directory.
    assert!(r.stdout.contains("Failed sketches:\n  MultiSerial\n    MultiSerial/MultiSerial.ino:28:3: error:"), "{}", r.stdout);
    assert!(r.stdout.contains("    log: out/MultiSerial-"), "{}", r.stdout);
    assert!(r.stdout.contains("results: out/results.json"), "{}", r.stdout);

    let j = fbuild(&cache, t.path(), &["compile-many", "--json", "--out", "out", "Blink", "MultiSerial"]);
    assert_eq!(j.code, 1);
    let printed: Value = serde_json::from_str(&j.stdout).expect("stdout is exactly one JSON document");
    assert_eq!(printed, read_json(&t.path().join("out/results.json")));
    assert_eq!(printed["sketches"][0]["flash_used"], 930);
    assert!(j.stderr.contains("Failed sketches:"), "the summary moves to stderr: {}", j.stderr);

    let b = fbuild(&cache, t.path(), &["build", "--json", "--out", "out", "Blink"]);
    assert_eq!(b.code, 0, "{}", b.stderr);
    let printed: Value = serde_json::from_str(&b.stdout).expect("build --json prints JSON only");
    assert_eq!(printed["sketches"][0]["status"], "ok");
}

fn sketch<'a>(results: &'a Value, name: &str) -> &'a Value {
    results["sketches"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn size_report_against_the_results_of_an_edited_sketch() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    copy_examples(t.path(), &["Blink", "Fade", "AnalogReadSerial", "BareMinimum"]);
    let old = fbuild(&cache, t.path(), &["compile-many", "-q", "--out", "out", "--results", "old.json", "Blink", "Fade", "AnalogReadSerial"]);
    assert_eq!(old.code, 0, "{}", old.stderr);
    let old_json = read_json(&t.path().join("old.json"));

    // Blink grows (Serial pulls in code and a buffer), Fade stays, AnalogReadSerial
    // goes, BareMinimum comes.
    let ino = t.path().join("Blink/Blink.ino");
    let text = std::fs::read_to_string(&ino).unwrap().replace("delay(1000);", "delay(1000); Serial.begin(9600); Serial.println(millis());");
    std::fs::write(&ino, text).unwrap();
    let r = fbuild(
        &cache,
        t.path(),
        &["compile-many", "--out", "out", "--compare-to", "old.json", "--report-md", "sizes.md", "Blink", "Fade", "BareMinimum"],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    let new_json = read_json(&t.path().join("out/results.json"));

    let blink = sketch(&new_json, "Blink");
    let d = &blink["size_delta"];
    assert_eq!(d["change"], "compared");
    for (mem, max) in [("flash", 32256i64), ("ram", 2048)] {
        let was = sketch(&old_json, "Blink")[format!("{mem}_used")].as_i64().unwrap();
        let now = blink[format!("{mem}_used")].as_i64().unwrap();
        assert!(now > was, "{mem} grew: {was} -> {now}");
        assert_eq!(d[mem]["old"], was);
        assert_eq!(d[mem]["new"], now);
        assert_eq!(d[mem]["bytes"], now - was);
        let pct = ((now - was) as f64 * 100.0 / max as f64 * 100.0).round() / 100.0;
        assert_eq!(d[mem]["percent"].as_f64().unwrap(), pct);
    }
    let fade = &sketch(&new_json, "Fade")["size_delta"];
    assert_eq!((fade["change"].as_str(), fade["flash"]["bytes"].as_i64(), fade["ram"]["bytes"].as_i64()), (Some("compared"), Some(0), Some(0)));
    assert_eq!(sketch(&new_json, "BareMinimum")["size_delta"]["change"], "new");
    let vanished = new_json["size_report"]["vanished"].as_array().unwrap();
    assert_eq!(vanished.len(), 1);
    assert_eq!(vanished[0]["name"], "AnalogReadSerial");
    assert!(r.stdout.contains("Vanished since old.json:\n  AnalogReadSerial"), "{}", r.stdout);

    // The Markdown: largest change first, then unchanged, new, vanished.
    let md = std::fs::read_to_string(t.path().join("sizes.md")).unwrap();
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| Sketch")).collect();
    let first_cells: Vec<&str> = rows.iter().map(|r| r.split('|').nth(1).unwrap().trim()).collect();
    assert_eq!(first_cells, ["Blink", "Fade", "BareMinimum", "AnalogReadSerial"], "{md}");
    let fb = d["flash"]["bytes"].as_i64().unwrap();
    assert!(rows[0].contains(&format!("| +{fb} (+{:.2}%) |", d["flash"]["percent"].as_f64().unwrap())), "{md}");
    assert!(rows[1].contains("| 0 (0.00%) |"), "{md}");
    assert!(rows[2].contains("| new |") && rows[3].contains("| vanished |"), "{md}");
    assert!(md.contains("1 changed, 1 unchanged, 1 new, 1 vanished"), "{md}");
}

#[test]
fn bad_size_report_arguments_fail_before_building() {
    let t = tempfile::tempdir().unwrap();
    let cache = t.path().join("cache");
    copy_examples(t.path(), &["Blink"]);
    std::fs::write(t.path().join("broken.json"), "{ not json").unwrap();
    for (args, says) in [
        (vec!["--compare-to", "missing.json"], "--compare-to missing.json"),
        (vec!["--compare-to", "broken.json"], "not JSON"),
        (vec!["--report-md", "x.md"], "--compare-to"),
    ] {
        let mut argv = vec!["compile-many", "--out", "out"];
        argv.extend(args);
        argv.push("Blink");
        let r = fbuild(&cache, t.path(), &argv);
        assert_eq!(r.code, 2, "{argv:?}: {}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {}", r.stderr);
        assert!(r.stderr.contains(says), "{argv:?}: {}", r.stderr);
        assert!(!t.path().join("out/results.json").exists(), "nothing was built");
    }
}
