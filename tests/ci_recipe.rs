//! docs/ci.md works as written: its shell steps, pulled out of the page, run on two
//! simulated runners at different paths (two shards each), sharing the cache through
//! a tarball and then through Redis; the second runner compiles and links nothing and
//! gets a size report against the first. The GitHub Actions workflow's `build` and
//! `merge` steps must be those same shell steps.

mod common;
mod servers;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// The page's shell steps: each fenced block after a `<!-- recipe: NAME -->` line.
fn recipe() -> (BTreeMap<String, String>, String) {
    let page = std::fs::read_to_string(repo().join("docs/ci.md")).unwrap();
    let mut steps = BTreeMap::new();
    let mut lines = page.lines();
    while let Some(line) = lines.next() {
        if let Some(name) = line.strip_prefix("<!-- recipe: ").and_then(|l| l.strip_suffix(" -->")) {
            assert_eq!(lines.next(), Some("```sh"), "the block after recipe {name}");
            let body: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            steps.insert(name.to_string(), body.join("\n") + "\n");
        }
    }
    let start = page.find("```yaml\n").expect("a yaml block") + 8;
    let workflow = page[start..][..page[start..].find("\n```").unwrap()].to_string();
    (steps, workflow)
}

/// The body of the workflow's `run: |` step named `name`, unindented.
fn workflow_step(workflow: &str, name: &str) -> String {
    let lines: Vec<&str> = workflow.lines().collect();
    let at = lines.iter().position(|l| l.trim() == format!("- name: {name}")).unwrap_or_else(|| panic!("step {name}"));
    let run = (at..lines.len()).find(|&i| lines[i].trim() == "run: |").unwrap();
    let indent = lines[run + 1].len() - lines[run + 1].trim_start().len();
    let body: Vec<&str> = lines[run + 1..].iter().take_while(|l| l.len() > indent && l[..indent].trim().is_empty()).map(|l| &l[indent..]).collect();
    body.join("\n") + "\n"
}

#[test]
fn the_workflow_runs_the_shell_steps_as_written() {
    let (steps, workflow) = recipe();
    for name in ["install", "restore", "build", "save", "merge"] {
        assert!(steps.contains_key(name), "docs/ci.md has no recipe step {name}");
    }
    let build = workflow_step(&workflow, "build");
    assert!(build.ends_with(&steps["build"]), "the workflow's build step:\n{build}\nis not the shell build step:\n{}", steps["build"]);
    assert_eq!(workflow_step(&workflow, "merge"), steps["merge"]);
    assert_eq!(workflow_step(&workflow, "install"), steps["install"]);
}

/// A library's checkout: five built-in examples under `examples/`.
fn checkout(root: &Path) {
    for e in ["01.Basics/Blink", "01.Basics/Fade", "02.Digital/Button", "03.Analog/AnalogInput", "04.Communication/ASCIITable"] {
        copy_dir(&example(e), &root.join("examples").join(e));
    }
}

/// One recipe step run by sh in `dir` with the recipe's variables; fbuild on PATH.
fn step(dir: &Path, script: &str, vars: &[(&str, String)]) -> (i32, String) {
    let bin = fbuild_bin().parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut cmd = Command::new("sh");
    cmd.arg("-e").arg("-c").arg(script).current_dir(dir).env("PATH", path).env("CI", "true").env("BOARD", "arduino:avr:uno").env("SKETCHES", "examples").env("SHARDS", "2");
    cmd.env_remove("FBUILD_REMOTE_CACHE").env_remove("FBUILD_BASE_DIR").env_remove("FBUILD_CACHE_DIR");
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.code().unwrap_or(-1), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// A runner: a fresh checkout at `root/checkout`, its own cache folder, each shard
/// restored, built and saved in turn, then the merge in a folder of the shards' files.
fn runner(root: &Path, shared: &[(&str, String)], baseline: Option<&Path>) -> Vec<Value> {
    let (steps, _) = recipe();
    let work = root.join("checkout");
    checkout(&work);
    let mut shards = Vec::new();
    for shard in 1..=2 {
        // Each shard on its own runner: a fresh cache folder every time.
        let mut vars: Vec<(&str, String)> = vec![("SHARD", shard.to_string()), ("FBUILD_CACHE_DIR", root.join(format!("cache-{shard}")).display().to_string())];
        vars.extend(shared.iter().map(|(k, v)| (*k, v.replace("{shard}", &shard.to_string()))));
        if let Some(b) = baseline {
            vars.push(("BASELINE", b.display().to_string()));
        }
        for name in ["restore", "build", "save"] {
            let (code, out) = step(&work, &steps[name], &vars);
            assert_eq!(code, 0, "step {name} of shard {shard}: {out}");
        }
        shards.push(read_json(&work.join(format!("results-{shard}.json"))));
    }
    let (code, out) = step(&work, &steps["merge"], &[]);
    assert_eq!(code, 0, "merge: {out}");
    let all = read_json(&work.join("results.json"));
    assert_eq!(all["totals"]["sketches"], 5, "{}", all["totals"]);
    assert_eq!(all["totals"]["ok"], 5);
    shards.push(all);
    shards
}

fn compiled_nothing(shards: &[Value]) {
    for r in &shards[..2] {
        assert_eq!(r["totals"]["objects_compiled"], 0, "{}", r["totals"]);
        assert_eq!(r["totals"]["links_run"], 0, "{}", r["totals"]);
    }
    assert!(shards[0]["totals"]["sketches"].as_u64().unwrap() > 0 && shards[1]["totals"]["sketches"].as_u64().unwrap() > 0, "both shards built sketches");
}

#[test]
fn a_second_runner_at_another_path_compiles_nothing_through_a_tarball() {
    let t = tempfile::tempdir().unwrap();
    let store = t.path().join("tarballs");
    std::fs::create_dir_all(&store).unwrap();
    let tarball = vec![("CACHE_TARBALL", store.join("fbuild-cache-shard{shard}.tar").display().to_string())];
    let first = runner(&t.path().join("runner-one"), &tarball, None);
    assert!(first[0]["totals"]["objects_compiled"].as_u64().unwrap() > 0);
    assert!(store.join("fbuild-cache-shard1.tar").is_file() && store.join("fbuild-cache-shard2.tar").is_file());
    // The first runner's results are the baseline of the second's size report.
    let baseline = t.path().join("baseline");
    std::fs::create_dir_all(&baseline).unwrap();
    for k in 1..=2 {
        std::fs::copy(t.path().join(format!("runner-one/checkout/results-{k}.json")), baseline.join(format!("results-{k}.json"))).unwrap();
    }
    let second = runner(&t.path().join("elsewhere/runner-two"), &tarball, Some(&baseline));
    compiled_nothing(&second);
    assert_eq!(ok_hexes(&second[2]).values().collect::<Vec<_>>(), ok_hexes(&first[2]).values().collect::<Vec<_>>(), "the same firmware");
    let report = std::fs::read_to_string(t.path().join("elsewhere/runner-two/checkout/size-report.md")).unwrap();
    assert!(report.contains("### Memory usage change") && report.contains("0 changed, "), "{report}");
    assert!(!report.contains("vanished |"), "each shard compares with its own shard: {report}");
}

#[test]
fn a_second_runner_at_another_path_compiles_nothing_through_redis() {
    let t = tempfile::tempdir().unwrap();
    let redis = servers::redis(&t.path().join("redis"), &[]);
    let remote = vec![("FBUILD_REMOTE_CACHE", format!("redis://127.0.0.1:{}", redis.port))];
    let first = runner(&t.path().join("a"), &remote, None);
    assert!(first[0]["totals"]["objects_compiled"].as_u64().unwrap() > 0);
    let second = runner(&t.path().join("b/deeper"), &remote, None);
    compiled_nothing(&second);
    assert!(second[2]["cache"]["remote"]["hits"].as_u64().unwrap() > 0, "{}", second[2]["cache"]);
}
