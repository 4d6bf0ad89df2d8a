//! `#include` scanning without a preprocessor: the headers a file names in live
//! code (not in comments, strings, or `#if 0` blocks), in order of appearance.

use crate::cpp::lex::{directive_parts, tokenize, Conditionals, Kind};

/// Header names of live `#include` directives, first occurrence kept, without the
/// `<>`/`""` delimiters. `#include MACRO` cannot be resolved and is skipped.
pub fn scan_includes(source: &str) -> Vec<String> {
    scan_includes_with(source, None)
}

/// As `scan_includes`, skipping branches that `macros` decide are not taken.
pub fn scan_includes_with(source: &str, macros: Option<&crate::cpp::macros::Macros>) -> Vec<String> {
    let mut cond = Conditionals::default();
    let mut out: Vec<String> = Vec::new();
    for tok in tokenize(source).into_iter().filter(|t| t.kind == Kind::Directive) {
        if cond.apply_with(&tok.text, macros) || cond.dead() {
            continue;
        }
        let (name, rest) = directive_parts(&tok.text);
        if name != "include" && name != "include_next" {
            continue;
        }
        let header = match rest.chars().next() {
            Some('<') => rest[1..].split('>').next(),
            Some('"') => rest[1..].split('"').next(),
            _ => None,
        };
        if let Some(h) = header.map(str::trim).filter(|h| !h.is_empty() && !out.iter().any(|o| o == h)) {
            out.push(h.to_string());
        }
    }
    out
}

/// The same for raw file bytes: non-UTF-8 text is decoded lossily (header names
/// are ASCII in practice).
pub fn scan_includes_bytes(bytes: &[u8]) -> Vec<String> {
    scan_includes(&String::from_utf8_lossy(bytes))
}

pub fn scan_includes_bytes_with(bytes: &[u8], macros: Option<&crate::cpp::macros::Macros>) -> Vec<String> {
    scan_includes_with(&String::from_utf8_lossy(bytes), macros)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_both_forms_in_order_once() {
        let src = "#include <SPI.h>\n#  include \"utility/twi.h\"\n#include <SPI.h>\n";
        assert_eq!(scan_includes(src), vec!["SPI.h", "utility/twi.h"]);
    }

    #[test]
    fn skips_comments_and_strings() {
        let src = "// #include <A.h>\n/*\n#include <B.h>\n*/\nconst char *s = \"#include <C.h>\";\n#include <D.h> // trailing\n";
        assert_eq!(scan_includes(src), vec!["D.h"]);
    }

    #[test]
    fn skips_if_0_blocks_nested_and_keeps_their_else() {
        let src = "#if 0\n#include <A.h>\n#ifdef X\n#include <B.h>\n#endif\n#else\n#include <C.h>\n#endif\n\
                   #if 1\n#include <D.h>\n#else\n#include <E.h>\n#endif\n\
                   #if 0\n#include <F.h>\n#elif defined(Y)\n#include <G.h>\n#endif\n\
                   #ifdef __AVR__\n#include <H.h>\n#endif\n";
        assert_eq!(scan_includes(src), vec!["C.h", "D.h", "G.h", "H.h"]);
    }

    #[test]
    fn continuation_lines_and_macros() {
        let src = "#include \\\n  <Wire.h>\n#include HEADER_MACRO\n#define X \\\n #include <Nope.h>\n";
        assert_eq!(scan_includes(src), vec!["Wire.h"]);
    }

    #[test]
    fn platform_conditionals_with_macros() {
        let m = crate::cpp::macros::Macros::from_args(&["-DARDUINO_ARCH_AVR".into()]);
        let src = "#if defined(ARDUINO_ARCH_SAMD)\n#include <SamdOnly.h>\n#elif defined(ARDUINO_ARCH_AVR)\n#include <AvrOnly.h>\n#endif\n#ifdef USER_FLAG\n#include <Maybe.h>\n#endif\n";
        assert_eq!(scan_includes_with(src, Some(&m)), vec!["AvrOnly.h", "Maybe.h"]);
        assert_eq!(scan_includes(src), vec!["SamdOnly.h", "AvrOnly.h", "Maybe.h"], "without macros: the superset");
    }

    #[test]
    fn raw_strings_char_literals_and_crlf() {
        let src = "const char *p = R\"x(\n#include <Raw.h>\n)x\";\nchar q = '\"';\n#include <A.h>\r\n#include \\\r\n  <B.h>\r\n// comment \\\r\n#include <C.h>\r\n";
        assert_eq!(scan_includes(src), vec!["A.h", "B.h"]);
    }

    #[test]
    fn comment_between_hash_and_include_and_include_next() {
        let src = "#/* x */include <A.h>\n  #  include_next <B.h>\n#include<C.h>\n#include \"d//e.h\" /* x */\n";
        assert_eq!(scan_includes(src), vec!["A.h", "B.h", "C.h", "d//e.h"]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in ["#include", "#include <", "#include \"", "#if 0", "#endif\n#endif\n#else", "/*", "\"", "R\"(", "#include <\u{fffd}>", "\\", "#\\\r\n"] {
            let _ = scan_includes(s);
        }
        assert_eq!(scan_includes_bytes(b"\xff\xfe#include <X.h>\n#include <\xe9.h>\n"), vec!["\u{fffd}.h"]);
    }

    #[test]
    fn non_utf8_bytes() {
        assert_eq!(scan_includes_bytes(b"const char *s = \"\xe9\";\n#include <EEPROM.h>\n"), vec!["EEPROM.h"]);
    }
}
