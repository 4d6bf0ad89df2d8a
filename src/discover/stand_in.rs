//! One discovery run for many sketches: a sketch is preprocessed for discovery in
//! `-fdirectives-only` mode, where only directives are evaluated and the text between
//! them is left alone, so which headers the run opens (and where it stops) depends on
//! the sketch's directives alone, and on none after its last `#include`. Library
//! examples differ in their code and mostly share their first lines (`#include
//! <Arduino.h>`, the library's header): a stand-in source holding only those
//! directives has the same `-H` trace as the sketch, and sketches whose stand-ins are
//! byte-identical share one remembered run (`preprocess.rs` keys a run by the source's
//! bytes, not its name).
//!
//! A sketch gets no stand-in, and is preprocessed itself, whenever the two could read
//! differently: a quoted `#include` that names a file beside the sketch (it would be
//! looked for beside the stand-in), a computed `#include`, a directive that asks where
//! or when it is (`__FILE__`, `__LINE__`, `__COUNTER__`, `__has_include`...), or text
//! whose lexing GCC and `cpp::lex` could disagree on across lines (raw strings, digit
//! separators, `'` in a directive, `%:` digraphs).

use std::path::Path;

use crate::cpp::lex::{directive_parts, tokenize, Kind};

/// Names whose value in a directive depends on the file or the moment, not the text.
const PLACE_DEPENDENT: &[&str] = &[
    "__FILE__",
    "__BASE_FILE__",
    "__LINE__",
    "__COUNTER__",
    "__INCLUDE_LEVEL__",
    "__DATE__",
    "__TIME__",
    "__TIMESTAMP__",
    "__has_include",
    "__has_include_next",
];

/// The stand-in for a merged sketch whose build folder is `dir`: its directives up to
/// the last `#include`, `#line` left out, then an `#endif` for each conditional still
/// open there. None when the sketch must be preprocessed itself (see the module
/// comment).
pub fn stand_in(text: &str, dir: &Path) -> Option<String> {
    if text.contains("%:") {
        return None;
    }
    let mut kept: Vec<String> = Vec::new();
    let mut last_include = None;
    for token in tokenize(text) {
        match token.kind {
            Kind::Literal if is_raw(&token.text) => return None,
            Kind::Number if token.text.contains('\'') => return None,
            Kind::Directive => {
                let (name, rest) = directive_parts(&token.text);
                if name == "line" {
                    continue;
                }
                if token.text.contains('\'') || mentions_place(&token.text) {
                    return None;
                }
                if matches!(name, "include" | "include_next" | "import") {
                    let quoted = rest.strip_prefix('"').and_then(|r| r.split_once('"')).map(|(n, _)| n);
                    match quoted {
                        Some(n) if dir.join(n).exists() => return None,
                        Some(_) => {}
                        None if rest.starts_with('<') && rest.contains('>') => {}
                        None => return None,
                    }
                    last_include = Some(kept.len());
                }
                kept.push(token.text);
            }
            _ => {}
        }
    }
    let kept = &kept[..last_include.map_or(0, |i| i + 1)];
    let mut out = String::new();
    let mut open = 0usize;
    for d in kept {
        match directive_parts(d).0 {
            "if" | "ifdef" | "ifndef" => open += 1,
            "endif" => open = open.saturating_sub(1),
            _ => {}
        }
        out.push_str(d);
        out.push('\n');
    }
    for _ in 0..open {
        out.push_str("#endif\n");
    }
    Some(out)
}

fn is_raw(literal: &str) -> bool {
    ["R\"", "u8R\"", "uR\"", "UR\"", "LR\""].iter().any(|p| literal.starts_with(p))
}

fn mentions_place(directive: &str) -> bool {
    let words = directive.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    words.into_iter().any(|w| PLACE_DEPENDENT.contains(&w))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(text: &str) -> Option<String> {
        stand_in(text, Path::new("/nonexistent-fbuild-dir"))
    }

    #[test]
    fn code_and_what_follows_the_last_include_are_left_out() {
        let a = "#include <Arduino.h>\n#line 1 \"/s/A.ino\"\n#include <Lib.h> // the library\n#define PIN 3\nvoid setup() {}\n#ifdef X\nint y;\n#endif\n";
        let b = "#include <Arduino.h>\n#line 1 \"/s/B.ino\"\n/* another\n example */\n#include <Lib.h>\nint other;\n#define PIN 5\n";
        assert_eq!(of(a).as_deref(), Some("#include <Arduino.h>\n#include <Lib.h>\n"));
        assert_eq!(of(a), of(b), "two examples of one library share a stand-in");
    }

    #[test]
    fn what_comes_before_an_include_stays_and_open_conditionals_close() {
        let s = "#define LIB_OPTION 1\n#include <Lib.h>\n#ifdef __AVR__\n#include <avr/power.h>\n#define MORE\n#endif\n";
        assert_eq!(of(s).as_deref(), Some("#define LIB_OPTION 1\n#include <Lib.h>\n#ifdef __AVR__\n#include <avr/power.h>\n#endif\n"));
        let s = "#if A\n#include <a.h>\n#else\n#include <b.h>\n#endif\n";
        assert_eq!(of(s).as_deref(), Some("#if A\n#include <a.h>\n#else\n#include <b.h>\n#endif\n"));
        assert_eq!(of("#ifdef X\n#include <x.h>\nint a;\n#endif\n").as_deref(), Some("#ifdef X\n#include <x.h>\n#endif\n"));
    }

    #[test]
    fn a_sketch_that_could_read_differently_keeps_its_own_run() {
        assert_eq!(of("#define H <x.h>\n#include H\n"), None, "computed include");
        assert_eq!(of("#if __LINE__ > 3\n#include <x.h>\n#endif\n"), None);
        assert_eq!(of("#if __has_include(<x.h>)\n#include <x.h>\n#endif\n"), None);
        assert_eq!(of("const char* s = R\"(\n#include <x.h>\n)\";\n"), None, "raw string");
        assert_eq!(of("int n = 1'000;\n#include <x.h>\n"), None, "digit separator");
        assert_eq!(of("%:include <x.h>\n"), None, "digraph");
        assert_eq!(of("#define Q '/'\n#include <x.h>\n"), None);
        assert_eq!(of("int a;\n").as_deref(), Some(""), "no include: nothing decides anything");
    }

    #[test]
    fn a_quoted_include_beside_the_sketch_keeps_its_own_run() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("config.h"), "").unwrap();
        assert_eq!(stand_in("#include \"config.h\"\n", t.path()), None);
        assert_eq!(stand_in("#include \"Lib.h\"\n", t.path()).as_deref(), Some("#include \"Lib.h\"\n"));
    }
}
