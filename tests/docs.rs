//! The docs agree with the binary: every command and long flag that `fbuild --help` (and
//! each command's `--help`) lists is in docs/reference/cli.md, each flag in a table row
//! under that command's heading, the README's set-up commands are executable files, and relative links in the
//! docs lead somewhere. Real binary; no toolchain needed.

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{fbuild_bin, repo};

/// One `--help` page: the command path (`[]` for fbuild itself, `["cache", "stats"]`),
/// its long flags and its subcommands.
#[derive(Debug)]
struct HelpPage {
    command: Vec<String>,
    flags: Vec<String>,
}

impl HelpPage {
    /// The heading its section must have in cli.md: `fbuild`, `fbuild cache stats`.
    fn heading(&self) -> String {
        std::iter::once("fbuild").chain(self.command.iter().map(String::as_str)).collect::<Vec<_>>().join(" ")
    }
}

fn help_text(command: &[String]) -> String {
    let out = Command::new(fbuild_bin()).args(command).arg("--help").output().unwrap();
    assert!(out.status.success(), "fbuild {} --help failed: {}", command.join(" "), String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The entries of one clap section (`Commands:`, `Options:`): lines indented a little
/// (wrapped descriptions are indented far more), up to the next blank line.
fn section_entries<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    let mut lines = help.lines().skip_while(|l| l.trim_end() != title);
    if lines.next().is_none() {
        return Vec::new();
    }
    lines.take_while(|l| !l.trim().is_empty()).filter(|l| l.len() - l.trim_start().len() <= 6).map(str::trim).collect()
}

/// Every help page, fbuild's own and each (sub)command's, depth first.
fn help_pages() -> Vec<HelpPage> {
    let mut pages = Vec::new();
    let mut todo: Vec<Vec<String>> = vec![Vec::new()];
    while let Some(command) = todo.pop() {
        let help = help_text(&command);
        let flags = section_entries(&help, "Options:")
            .iter()
            .filter_map(|entry| entry.split([' ', ',']).find(|w| w.starts_with("--")))
            .filter(|f| *f != "--help")
            .map(String::from)
            .collect();
        for entry in section_entries(&help, "Commands:") {
            let name = entry.split_whitespace().next().unwrap_or_default();
            // clap's own `help` command is not one of fbuild's.
            if name != "help" {
                todo.push(command.iter().cloned().chain([name.to_string()]).collect());
            }
        }
        pages.push(HelpPage { command, flags });
    }
    pages
}

/// A Markdown heading: level, text without backticks.
fn heading(line: &str) -> Option<(usize, String)> {
    let level = line.chars().take_while(|&c| c == '#').count();
    let text = line[level..].strip_prefix(' ')?;
    (level > 0).then(|| (level, text.replace('`', "").trim().to_string()))
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to `-`.
fn anchor(text: &str) -> String {
    text.to_lowercase().chars().filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_').map(|c| if c == ' ' { '-' } else { c }).collect()
}

/// A Markdown file's sections: (heading text, anchor, the text below it down to the
/// next heading of the same or a higher level, subsections included).
fn sections(doc: &str) -> Vec<(String, String, String)> {
    let lines: Vec<&str> = doc.lines().collect();
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    let mut in_code = false;
    let headings: Vec<(usize, usize, String)> = lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            if l.starts_with("```") {
                in_code = !in_code;
            }
            if in_code {
                return None;
            }
            heading(l).map(|(level, text)| (i, level, text))
        })
        .collect();
    for (n, (i, level, text)) in headings.iter().enumerate() {
        let end = headings[n + 1..].iter().find(|(_, l, _)| l <= level).map(|(j, _, _)| *j).unwrap_or(lines.len());
        // GitHub numbers repeated anchors: `cache`, `cache-1`.
        let base = anchor(text);
        let repeats = seen.iter().filter(|a| **a == base).count();
        seen.push(base.clone());
        let id = if repeats == 0 { base } else { format!("{base}-{repeats}") };
        out.push((text.clone(), id, lines[i + 1..end].join("\n")));
    }
    out
}

/// Does `text` name `flag` (`--out`, not a part of `--outside` or `x--out`)?
fn names_flag(text: &str, flag: &str) -> bool {
    text.match_indices(flag).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + flag.len()..].chars().next();
        !before.is_some_and(|c| c.is_alphanumeric() || c == '-') && !after.is_some_and(|c| c.is_alphanumeric() || c == '-')
    })
}

/// Same-file anchors a section links to (`[build options](#build-options)`).
fn local_links(text: &str) -> Vec<String> {
    text.match_indices("](#").map(|(at, _)| text[at + 3..].split(')').next().unwrap_or_default().to_string()).collect()
}

/// What cli.md lacks: a heading per command, and each command's long flags in a table
/// row under it (or under a section of this file that its section links to).
fn missing_from_reference(doc: &str, pages: &[HelpPage]) -> Vec<String> {
    let sections = sections(doc);
    let mut problems = Vec::new();
    for page in pages {
        let want = page.heading();
        let Some((_, _, body)) = sections.iter().find(|(text, _, _)| *text == want) else {
            problems.push(format!("no heading `{want}`"));
            continue;
        };
        let linked: Vec<&str> = local_links(body)
            .iter()
            .filter_map(|a| sections.iter().find(|(_, id, _)| id == a).map(|(_, _, b)| b.as_str()))
            .collect();
        // A flag is documented by a table row of its own (a usage line does not say what it does).
        let rows: Vec<&str> = std::iter::once(body.as_str()).chain(linked.iter().copied()).flat_map(str::lines).filter(|l| l.starts_with('|')).collect();
        for flag in &page.flags {
            if !rows.iter().any(|row| names_flag(row, flag)) {
                problems.push(format!("{want}: {flag}"));
            }
        }
    }
    problems
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cli_reference() -> String {
    read(&repo().join("docs/reference/cli.md"))
}

#[test]
fn every_command_and_flag_of_help_is_in_the_cli_reference() {
    let pages = help_pages();
    let names: Vec<String> = pages.iter().map(HelpPage::heading).collect();
    // The walk found the commands: a broken parser must not pass by finding nothing.
    for expected in ["fbuild", "fbuild build", "fbuild compile-many", "fbuild cache stats"] {
        assert!(names.iter().any(|n| n == expected), "help walk missed {expected}: {names:?}");
    }
    let many = pages.iter().find(|p| p.heading() == "fbuild compile-many").unwrap();
    assert!(many.flags.iter().any(|f| f == "--sketch-jobs") && many.flags.iter().any(|f| f == "--board"), "{:?}", many.flags);
    let problems = missing_from_reference(&cli_reference(), &pages);
    assert!(problems.is_empty(), "docs/reference/cli.md lacks what --help lists (add a heading per command, each flag under it):\n  {}", problems.join("\n  "));
}

#[test]
fn the_check_finds_a_flag_or_command_taken_out_of_the_reference() {
    let pages = help_pages();
    let doc = cli_reference();
    let many = pages.iter().find(|p| p.heading() == "fbuild compile-many").unwrap();
    let build = pages.iter().find(|p| p.heading() == "fbuild build").unwrap();
    // A flag only compile-many has, written nowhere else in the file once taken out.
    let flag = many.flags.iter().find(|f| !build.flags.contains(f)).expect("compile-many has flags of its own");
    // Compared with what the file lacks as it is, so this test says only whether the check works.
    let before = missing_from_reference(&doc, &pages);
    let newly_missing = |changed: &str| -> Vec<String> {
        missing_from_reference(changed, &pages).into_iter().filter(|p| !before.contains(p)).collect()
    };
    let without_flag = doc.replace(flag.as_str(), "--taken-out");
    assert!(!names_flag(&without_flag, flag));
    assert_eq!(newly_missing(&without_flag), [format!("fbuild compile-many: {flag}")]);

    let without_heading = doc.replace("## fbuild merge-results", "## merging results");
    assert_eq!(newly_missing(&without_heading), ["no heading `fbuild merge-results`"]);
}

#[test]
fn the_readme_set_up_commands_are_executable_scripts() {
    let readme = read(&repo().join("README.md"));
    let (_, _, setup) = sections(&readme).into_iter().find(|(text, _, _)| text.starts_with("Set-up")).expect("README has a Set-up section");
    // Its commands are its indented code lines.
    let commands: Vec<&str> = setup.lines().filter(|l| l.starts_with("    ") && !l.trim().is_empty()).map(str::trim).collect();
    assert_eq!(commands, ["scripts/run.sh", "scripts/test.sh"]);
    for c in commands {
        let path = repo().join(c);
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("README set-up command {c}: {e}"));
        assert!(meta.is_file() && meta.permissions().mode() & 0o111 != 0, "README set-up command {c} is not an executable file");
    }
}

#[test]
fn relative_links_in_the_docs_lead_to_files_and_headings_that_exist() {
    let mut docs: Vec<PathBuf> = vec![repo().join("README.md")];
    for dir in ["docs", "docs/reference"] {
        let mut md: Vec<PathBuf> = std::fs::read_dir(repo().join(dir)).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "md")).collect();
        md.sort();
        docs.extend(md);
    }
    let mut broken = BTreeSet::new();
    for doc in &docs {
        let text = read(doc);
        for (at, _) in text.match_indices("](") {
            let target = text[at + 2..].split(')').next().unwrap_or_default();
            if target.contains("://") || target.is_empty() {
                continue;
            }
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let file = if file.is_empty() { doc.clone() } else { doc.parent().unwrap().join(file) };
            let name = format!("{}: {target}", doc.strip_prefix(repo()).unwrap().display());
            if !file.exists() {
                broken.insert(name);
            } else if !fragment.is_empty() && !sections(&read(&file)).iter().any(|(_, id, _)| id == fragment) {
                broken.insert(name);
            }
        }
    }
    assert!(broken.is_empty(), "links to nothing:\n  {}", broken.into_iter().collect::<Vec<_>>().join("\n  "));
}
