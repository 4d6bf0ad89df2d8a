//! Sources that include nothing on this board, answered without a run.
//!
//! Libraries ship a source per platform, each wrapped whole in a guard such as
//! `#if defined(ARDUINO_ARCH_ESP32)`. Where that guard is false, the preprocessor
//! reads no header at all: the run goes through, with an empty trace. That is
//! decided here when the file's directives are only `#if`/`#ifdef`/`#ifndef`/
//! `#elif` on `defined` names, `#else`, `#endif`, `#define`, `#undef` and
//! `#pragma once` outside the dead branches, and nothing else is live (no code, no
//! `#include`). Which names are defined at the top of the file is the compiler's
//! own answer for the very command (`-dM` on an empty input), so the decision is
//! GCC's; anything else (a macro value, `__has_include`, a built-in like
//! `__FILE__`) leaves the file to a real run.

use std::collections::HashSet;

use crate::cpp::lex::{directive_parts, tokenize, Kind};

/// Names GCC treats as defined although `-dM` does not list them.
const BUILT_IN: &[&str] = &["__FILE__", "__LINE__", "__DATE__", "__TIME__", "__TIMESTAMP__", "__COUNTER__", "__INCLUDE_LEVEL__", "__BASE_FILE__", "_Pragma", "__VA_ARGS__"];

/// One open conditional group.
struct Group {
    /// The group sits in a live region (else everything in it is skipped).
    outer_live: bool,
    /// A branch of the group has been taken.
    taken: bool,
    /// The current branch is live.
    live: bool,
}

/// True when the preprocessor, starting with `defined` names, reads no header
/// for this file; false when that cannot be shown.
pub fn includes_nothing(text: &str, defined: &HashSet<String>) -> bool {
    let mut defined = defined.clone();
    let mut groups: Vec<Group> = Vec::new();
    let mut directive_lines = HashSet::new();
    for tok in tokenize(text) {
        let live = groups.last().is_none_or(|g| g.live);
        if tok.kind != Kind::Directive {
            if live {
                return false;
            }
            continue;
        }
        directive_lines.insert(tok.line);
        let (name, rest) = directive_parts(&tok.text);
        match name {
            "if" | "ifdef" | "ifndef" => {
                if !live {
                    groups.push(Group { outer_live: false, taken: true, live: false });
                    continue;
                }
                let Some(cond) = condition(name, rest, &defined) else { return false };
                groups.push(Group { outer_live: true, taken: cond, live: cond });
            }
            "elif" => {
                let Some(g) = groups.last_mut() else { return false };
                if !g.outer_live {
                    continue;
                }
                if g.taken {
                    g.live = false;
                    continue;
                }
                let Some(cond) = condition("if", rest, &defined) else { return false };
                g.live = cond;
                g.taken = cond;
            }
            "else" => {
                let Some(g) = groups.last_mut() else { return false };
                if g.outer_live {
                    g.live = !g.taken;
                    g.taken = true;
                }
            }
            "endif" => {
                if groups.pop().is_none() {
                    return false;
                }
            }
            _ if !live => {}
            "define" | "undef" => {
                let Some(id) = identifier(rest) else { return false };
                if name == "define" {
                    defined.insert(id.to_string());
                } else {
                    defined.remove(id);
                }
            }
            "pragma" if rest == "once" => {}
            // #include, #error, #line, other pragmas (push_macro), ...: a real run.
            _ => return false,
        }
    }
    // The lexer must have seen every line GCC could take for a directive (nothing
    // hidden in what it took for a literal or a comment).
    let looks_like_directive = text.lines().enumerate().filter(|(_, l)| l.trim_start().starts_with('#')).all(|(i, _)| directive_lines.contains(&(i + 1)));
    groups.is_empty() && looks_like_directive
}

/// `#ifdef X`, `#ifndef X`, or `#if` over `[!]defined(X)` / `[!]defined X` terms
/// joined by only `||` or only `&&`. None for anything else.
fn condition(kind: &str, rest: &str, defined: &HashSet<String>) -> Option<bool> {
    let is_defined = |id: &str| -> Option<bool> {
        if BUILT_IN.contains(&id) || id.starts_with("__has_") {
            return None;
        }
        Some(defined.contains(id))
    };
    match kind {
        "ifdef" => return is_defined(identifier(rest)?),
        "ifndef" => return is_defined(identifier(rest)?).map(|d| !d),
        _ => {}
    }
    let (terms, any): (Vec<&str>, bool) = if rest.contains("&&") {
        if rest.contains("||") {
            return None;
        }
        (rest.split("&&").collect(), false)
    } else {
        (rest.split("||").collect(), true)
    };
    let mut values = Vec::new();
    for term in terms {
        let mut t = term.trim();
        let negated = t.starts_with('!');
        if negated {
            t = t[1..].trim_start();
        }
        let t = t.strip_prefix("defined")?.trim();
        let id = match t.strip_prefix('(') {
            Some(inner) => inner.strip_suffix(')')?.trim(),
            None => t,
        };
        if identifier(id)? != id {
            return None;
        }
        values.push(is_defined(id)? != negated);
    }
    Some(if any { values.iter().any(|v| *v) } else { values.iter().all(|v| *v) })
}

/// The identifier `text` starts with.
fn identifier(text: &str) -> Option<&str> {
    let end = text.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(text.len());
    let id = &text[..end];
    (!id.is_empty() && !id.starts_with(|c: char| c.is_ascii_digit())).then_some(id)
}

/// The names a `gcc -dM -E` listing defines.
pub fn defined_names(listing: &str) -> HashSet<String> {
    listing.lines().filter_map(|l| l.strip_prefix("#define ")).filter_map(identifier).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn avr() -> HashSet<String> {
        defined_names("#define __AVR__ 1\n#define ARDUINO_ARCH_AVR 1\n#define F_CPU 16000000L\n#define __FOO(x) x\n")
    }

    #[test]
    fn a_source_wrapped_in_another_platforms_guard_includes_nothing() {
        let esp32 = "// comment\n#if defined(ARDUINO_ARCH_ESP32)\n#include <Arduino.h>\nint x = 1;\n#if defined __has_include\n#endif\n#endif // ESP32\n";
        assert!(includes_nothing(esp32, &avr()));
        let k210 = "#if defined(K210) \n#define KENDRYTE_K210 1\n#endif\n\n#if defined(KENDRYTE_K210)\n#include \"sysctl.h\"\n#endif\n";
        assert!(includes_nothing(k210, &avr()));
        assert!(includes_nothing("#ifndef __AVR__\n#include <x.h>\n#elif defined(NOPE) || defined NOPE2\n#include <y.h>\n#endif\n", &avr()));
    }

    #[test]
    fn anything_live_or_undecided_needs_a_run() {
        assert!(!includes_nothing("#if defined(ARDUINO_ARCH_AVR)\n#include <Arduino.h>\n#endif\n", &avr()), "the guard is true here");
        assert!(!includes_nothing("#include <Arduino.h>\n", &avr()));
        assert!(!includes_nothing("int x;\n", &avr()), "live code");
        assert!(!includes_nothing("#if F_CPU > 8000000\n#include <a.h>\n#endif\n", &avr()), "a value, not a name");
        assert!(!includes_nothing("#if defined(__has_include)\n#include <a.h>\n#endif\n", &avr()), "GCC defines it without listing it");
        assert!(!includes_nothing("#ifdef __FILE__\n#include <a.h>\n#endif\n", &avr()));
        assert!(!includes_nothing("#define WANT\n#ifdef WANT\n#include <a.h>\n#endif\n", &avr()), "defined in the file");
        assert!(!includes_nothing("#undef __AVR__\n#ifndef __AVR__\n#include <a.h>\n#endif\n", &avr()), "undefined in the file");
        assert!(!includes_nothing("#if defined(A) || defined(B) && defined(C)\n#endif\n", &avr()), "mixed operators");
        assert!(!includes_nothing("#ifdef NOPE\n", &avr()), "unterminated");
        assert!(!includes_nothing("#pragma push_macro(\"X\")\n", &avr()));
        assert!(!includes_nothing("/*\n#endif\n*/\n", &avr()), "a line that looks like a directive the lexer skipped");
    }
}
