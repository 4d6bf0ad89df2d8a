//! GCC diagnostics (`file:line:col: error: message`) parsed for results.json, the
//! way editors and CI bots consume arduino-cli's JSON output.

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: String,
    pub file: String,
    pub line: u32,
    pub column: Option<u32>,
    pub message: String,
}

/// Parse every `file:line[:col]: severity: message` line of compiler output.
pub fn parse(output: &str) -> Vec<Diagnostic> {
    output.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Diagnostic> {
    for severity in ["fatal error", "error", "warning", "note"] {
        let marker = format!(": {severity}: ");
        let Some(pos) = line.find(&marker) else { continue };
        let location = &line[..pos];
        let message = line[pos + marker.len()..].to_string();
        // location = file:line[:col]; the file itself may contain ':'.
        let mut parts = location.rsplitn(3, ':');
        let last = parts.next()?;
        let mid = parts.next()?;
        let (file, line_no, column) = match (mid.parse::<u32>(), last.parse::<u32>(), parts.next()) {
            (Ok(l), Ok(c), Some(f)) => (f.to_string(), l, Some(c)),
            (_, Ok(l), _) => (location[..location.len() - last.len() - 1].to_string(), l, None),
            _ => continue,
        };
        let severity = if severity == "fatal error" { "error" } else { severity };
        return Some(Diagnostic { severity: severity.to_string(), file, line: line_no, column, message });
    }
    None
}

/// Linker errors that name the cause, where `collect2: error: ld returned 1 exit
/// status` names only the outcome.
const LINKER_ERRORS: &[&str] = &["undefined reference to", "multiple definition of", "overflowed by", "not within region", "will not fit in region"];

/// The line a human should see first: the first error diagnostic, else the first
/// linker error naming its cause, else the first line that mentions an error, else
/// the last non-empty line.
pub fn first_error_line(output: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(str::trim_end).filter(|l| !l.is_empty()).collect();
    if let Some(l) = lines.iter().find(|l| parse_line(l).is_some_and(|d| d.severity == "error")) {
        return Some(l.to_string());
    }
    if let Some(i) = lines.iter().position(|l| LINKER_ERRORS.iter().any(|m| l.contains(m))) {
        // LTO links put the object on the line before: `x.o (symbol from plugin): In
        // function `f':` then `(.text+0x0): multiple definition of `f'`.
        if lines[i].starts_with('(') && i > 0 && lines[i - 1].ends_with(':') {
            return Some(format!("{} {}", lines[i - 1], lines[i]));
        }
        return Some(lines[i].to_string());
    }
    if let Some(l) = lines.iter().find(|l| l.contains("error") || l.contains("killed by signal")) {
        return Some(l.to_string());
    }
    lines.last().map(|l| l.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_error_with_column() {
        let d = parse("/s/Blink/Blink.ino:12:3: error: 'Serial1' was not declared in this scope\n");
        assert_eq!(
            d,
            vec![Diagnostic {
                severity: "error".into(),
                file: "/s/Blink/Blink.ino".into(),
                line: 12,
                column: Some(3),
                message: "'Serial1' was not declared in this scope".into()
            }]
        );
    }

    #[test]
    fn fatal_error_without_column_and_colon_in_path() {
        let d = parse("/a:b/S.ino:3: fatal error: Servo.h: No such file or directory");
        assert_eq!(d[0].file, "/a:b/S.ino");
        assert_eq!(d[0].line, 3);
        assert_eq!(d[0].column, None);
        assert_eq!(d[0].message, "Servo.h: No such file or directory");
    }

    #[test]
    fn first_error_of_a_failed_link_names_the_symbol() {
        let out = "/tmp/cc1.ltrans0.ltrans.o: In function `main':\n/s/u/u.ino:3: undefined reference to `missing()'\ncollect2: error: ld returned 1 exit status\n";
        assert_eq!(first_error_line(out).unwrap(), "/s/u/u.ino:3: undefined reference to `missing()'");
        let out = "/o/b.cpp.o (symbol from plugin): In function `twice()':\n(.text+0x0): multiple definition of `twice()'\n/o/a.cpp.o (symbol from plugin):(.text+0x0): first defined here\n";
        assert_eq!(first_error_line(out).unwrap(), "/o/b.cpp.o (symbol from plugin): In function `twice()': (.text+0x0): multiple definition of `twice()'");
    }

    #[test]
    fn first_error_prefers_errors_over_warnings() {
        let out = "In function 'x':\n/s/a.ino:1:1: warning: unused\n/s/a.ino:2:5: error: boom\n";
        assert_eq!(first_error_line(out).unwrap(), "/s/a.ino:2:5: error: boom");
    }
}
