//! A small C/C++ lexer: just enough to find `#include`s and file-scope function
//! definitions in unpreprocessed sketch code. Comments vanish (they count as
//! space), string and character literals are single tokens, and preprocessor
//! directives are single tokens spanning their continuation lines.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// Identifier or keyword (any non-ASCII letter counts as a letter).
    Word,
    Number,
    /// String or character literal, with its quotes.
    Literal,
    /// One punctuation character, or `::`.
    Punct,
    /// A whole preprocessor line, comments removed, continuations joined.
    Directive,
}

#[derive(Debug, Clone)]
pub struct Token {
    pub kind: Kind,
    pub text: String,
    /// 1-based line of the token's first character.
    pub line: usize,
    /// Whitespace or a comment came right before this token.
    pub space_before: bool,
}

impl Token {
    pub fn is(&self, s: &str) -> bool {
        self.text == s && self.kind != Kind::Literal
    }
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
}

/// Length of a backslash-newline at `i` (2, or 3 with CRLF; sketches edited on
/// Windows have CRLF endings), else 0.
fn continuation(chars: &[char], i: usize) -> usize {
    match (chars.get(i), chars.get(i + 1), chars.get(i + 2)) {
        (Some('\\'), Some('\n'), _) => 2,
        (Some('\\'), Some('\r'), Some('\n')) => 3,
        _ => 0,
    }
}

pub fn tokenize(src: &str) -> Vec<Token> {
    let chars: Vec<char> = src.chars().collect();
    let n = chars.len();
    let mut i = 0;
    let mut line = 1;
    let mut at_line_start = true;
    let mut space = false;
    let mut out = Vec::new();
    let peek = |i: usize| -> char { if i < n { chars[i] } else { '\0' } };
    while i < n {
        let c = chars[i];
        // Backslash-newline joins lines everywhere.
        let cont = continuation(&chars, i);
        if cont > 0 {
            i += cont;
            line += 1;
            continue;
        }
        if c == '\n' {
            line += 1;
            i += 1;
            at_line_start = true;
            space = true;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            space = true;
            continue;
        }
        if c == '/' && peek(i + 1) == '/' {
            while i < n && chars[i] != '\n' {
                let cont = continuation(&chars, i);
                if cont > 0 {
                    line += 1;
                    i += cont;
                } else {
                    i += 1;
                }
            }
            space = true;
            continue;
        }
        if c == '/' && peek(i + 1) == '*' {
            i += 2;
            while i < n && !(chars[i] == '*' && peek(i + 1) == '/') {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i = (i + 2).min(n);
            space = true;
            continue;
        }
        let start_line = line;
        if c == '#' && at_line_start {
            let (text, next, lines) = read_directive(&chars, i);
            out.push(Token { kind: Kind::Directive, text, line: start_line, space_before: true });
            line += lines;
            i = next;
            space = true;
            continue;
        }
        at_line_start = false;
        let space_before = std::mem::take(&mut space);
        // Raw string literal: R"delim( ... )delim", optionally prefixed u8/u/U/L.
        if let Some(len) = raw_prefix_len(&chars, i) {
            let mut j = i + len + 1;
            let mut delim = String::new();
            while j < n && chars[j] != '(' && delim.len() < 16 {
                delim.push(chars[j]);
                j += 1;
            }
            let close: Vec<char> = format!("){delim}\"").chars().collect();
            j += 1;
            while j < n && !chars[j..].starts_with(&close) {
                if chars[j] == '\n' {
                    line += 1;
                }
                j += 1;
            }
            j = (j + close.len()).min(n);
            out.push(Token { kind: Kind::Literal, text: chars[i..j].iter().collect(), line: start_line, space_before });
            i = j;
            continue;
        }
        if c == '"' || c == '\'' {
            let mut j = i + 1;
            while j < n && chars[j] != c && chars[j] != '\n' {
                let cont = continuation(&chars, j);
                if cont > 0 {
                    line += 1;
                    j += cont;
                } else if chars[j] == '\\' {
                    j += 2;
                } else {
                    j += 1;
                }
            }
            j = (j + 1).min(n);
            out.push(Token { kind: Kind::Literal, text: chars[i..j].iter().collect(), line: start_line, space_before });
            i = j;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && peek(i + 1).is_ascii_digit()) {
            let mut j = i;
            while j < n && (is_word_char(chars[j]) || chars[j] == '.' || (chars[j] == '\'' && is_word_char(peek(j + 1)))) {
                j += 1;
            }
            out.push(Token { kind: Kind::Number, text: chars[i..j].iter().collect(), line: start_line, space_before });
            i = j;
            continue;
        }
        if is_word_char(c) {
            let mut j = i;
            while j < n && is_word_char(chars[j]) {
                j += 1;
            }
            // An encoding prefix glued to a literal (u8"x", L'c') stays one literal.
            let word: String = chars[i..j].iter().collect();
            if matches!(word.as_str(), "u8" | "u" | "U" | "L") && (peek(j) == '"' || peek(j) == '\'') {
                space = space_before;
                i = j;
                continue;
            }
            out.push(Token { kind: Kind::Word, text: word, line: start_line, space_before });
            i = j;
            continue;
        }
        if c == ':' && peek(i + 1) == ':' {
            out.push(Token { kind: Kind::Punct, text: "::".into(), line: start_line, space_before });
            i += 2;
            continue;
        }
        out.push(Token { kind: Kind::Punct, text: c.to_string(), line: start_line, space_before });
        i += 1;
    }
    out
}

/// Length of `R`, `u8R`, `uR`, `UR` or `LR` at `i` when a raw string's quote follows.
fn raw_prefix_len(chars: &[char], i: usize) -> Option<usize> {
    let len = match (chars.get(i), chars.get(i + 1), chars.get(i + 2)) {
        (Some('R'), _, _) => 1,
        (Some('u'), Some('8'), Some('R')) => 3,
        (Some('u' | 'U' | 'L'), Some('R'), _) => 2,
        _ => return None,
    };
    (chars.get(i + len) == Some(&'"')).then_some(len)
}

/// Read a directive from `#` to the end of its (possibly continued) line.
/// Returns its text without comments, the index after it, and the newlines consumed.
fn read_directive(chars: &[char], mut i: usize) -> (String, usize, usize) {
    let n = chars.len();
    let mut text = String::new();
    let mut lines = 0;
    while i < n && chars[i] != '\n' {
        let c = chars[i];
        let cont = continuation(chars, i);
        if cont > 0 {
            text.push(' ');
            lines += 1;
            i += cont;
            continue;
        }
        if c == '/' && i + 1 < n && chars[i + 1] == '/' {
            while i < n && chars[i] != '\n' {
                i += 1;
            }
            break;
        }
        if c == '/' && i + 1 < n && chars[i + 1] == '*' {
            i += 2;
            while i < n && !(chars[i] == '*' && i + 1 < n && chars[i + 1] == '/') {
                if chars[i] == '\n' {
                    lines += 1;
                }
                i += 1;
            }
            i = (i + 2).min(n);
            text.push(' ');
            continue;
        }
        if c == '"' || (c == '<' && text.trim_start_matches('#').trim().starts_with("include")) {
            // Keep quoted/bracketed include names intact (they may hold "//").
            let close = if c == '"' { '"' } else { '>' };
            text.push(c);
            i += 1;
            while i < n && chars[i] != close && chars[i] != '\n' {
                text.push(chars[i]);
                i += 1;
            }
            if i < n && chars[i] == close {
                text.push(close);
                i += 1;
            }
            continue;
        }
        text.push(c);
        i += 1;
    }
    (text.trim().to_string(), i, lines)
}

/// A directive's name and the rest: `# if defined(X)` -> ("if", "defined(X)").
pub fn directive_parts(text: &str) -> (&str, &str) {
    let body = text.trim_start_matches('#').trim_start();
    let end = body.find(|c: char| !c.is_ascii_alphanumeric() && c != '_').unwrap_or(body.len());
    (&body[..end], body[end..].trim())
}

/// Conditional-compilation state: which `#if` branches are certainly dead. Without
/// macros only `#if 0` (and the `#else` of `#if 1`) are; with `Macros`, any condition
/// they decide. Anything undecided counts as live.
#[derive(Debug, Default, Clone)]
pub struct Conditionals {
    /// Per open `#if`: the directive lines seen so far, and whether the branch is dead.
    pub frames: Vec<Frame>,
    /// How many frames are dead: keeps `dead()` O(1) under deep nesting.
    dead_frames: usize,
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub directives: Vec<String>,
    pub dead: bool,
    /// An earlier branch of this `#if` is certainly taken: the rest are dead.
    taken: bool,
}

fn literal_condition(expr: &str) -> Option<bool> {
    match expr.trim_start_matches('(').trim_end_matches(')').trim() {
        "0" | "false" => Some(false),
        "1" | "true" => Some(true),
        _ => None,
    }
}

impl Conditionals {
    /// Feed a directive; returns true when it was a conditional one.
    pub fn apply(&mut self, text: &str) -> bool {
        self.apply_with(text, None)
    }

    pub fn apply_with(&mut self, text: &str, macros: Option<&crate::cpp::macros::Macros>) -> bool {
        let (name, rest) = directive_parts(text);
        let eval = |expr: &str| literal_condition(expr).or_else(|| macros.and_then(|m| m.eval(expr)));
        let name_defined = |n: &str| macros.and_then(|m| m.defined(n.split_whitespace().next().unwrap_or("")));
        let value = match name {
            "if" | "elif" => eval(rest),
            "ifdef" => name_defined(rest),
            "ifndef" => name_defined(rest).map(|d| !d),
            "else" => Some(true),
            "endif" => {
                if self.frames.pop().is_some_and(|f| f.dead) {
                    self.dead_frames -= 1;
                }
                return true;
            }
            _ => return false,
        };
        if matches!(name, "if" | "ifdef" | "ifndef") {
            self.frames.push(Frame { directives: vec![text.to_string()], dead: value == Some(false), taken: value == Some(true) });
            self.dead_frames += usize::from(value == Some(false));
        } else if let Some(f) = self.frames.last_mut() {
            let was_dead = f.dead;
            f.directives.push(text.to_string());
            f.dead = f.taken || value == Some(false);
            f.taken |= value == Some(true);
            self.dead_frames = self.dead_frames + usize::from(f.dead) - usize::from(was_dead);
        }
        true
    }

    pub fn dead(&self) -> bool {
        self.dead_frames > 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(src: &str) -> Vec<String> {
        tokenize(src).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn comments_vanish_and_literals_stay_whole() {
        assert_eq!(texts("a /* ) { */ b // }\n\"x)\" 'c'"), vec!["a", "b", "\"x)\"", "'c'"]);
    }

    #[test]
    fn directives_are_single_tokens_with_continuations() {
        let t = tokenize("#define F(x) \\\n  void x() {}\nint y;\n");
        assert_eq!(t[0].kind, Kind::Directive);
        assert_eq!(t[0].text, "#define F(x)    void x() {}");
        assert_eq!(t[1].text, "int");
        assert_eq!(t[1].line, 3);
    }

    #[test]
    fn include_names_keep_slashes() {
        let t = tokenize("#include \"a//b.h\" // c\n");
        assert_eq!(t[0].text, "#include \"a//b.h\"");
    }

    #[test]
    fn raw_strings_and_digit_separators() {
        assert_eq!(texts("R\"x( ) { )x\" 1'000 u8\"s\""), vec!["R\"x( ) { )x\"", "1'000", "\"s\""]);
    }

    #[test]
    fn crlf_continuations_and_prefixed_raw_strings() {
        let t = tokenize("#define A \\\r\n  1\r\nint x; // c \\\r\n hidden\r\nLR\"(})\" u8R\"d()d\" y");
        assert_eq!(t[0].text, "#define A    1");
        let rest: Vec<&str> = t[1..].iter().map(|t| t.text.as_str()).collect();
        assert_eq!(rest, vec!["int", "x", ";", "LR\"(})\"", "u8R\"d()d\"", "y"]);
        assert_eq!(t[1].line, 3);
        assert_eq!(t[6].line, 5);
    }

    #[test]
    fn unterminated_things_do_not_panic() {
        for s in ["\"abc", "/* never", "R\"(", "'", "#include <", "\\", "a\\\n", "\u{fffd}\u{fffd}{"] {
            let _ = tokenize(s);
        }
    }

    #[test]
    fn conditionals_track_constant_branches() {
        let mut c = Conditionals::default();
        c.apply("#if 0");
        assert!(c.dead());
        c.apply("#else");
        assert!(!c.dead());
        c.apply("#endif");
        c.apply("#if 1");
        assert!(!c.dead());
        c.apply("#else");
        assert!(c.dead());
        c.apply("#endif");
        c.apply("#ifdef X");
        assert!(!c.dead());
        c.apply("#if 0");
        c.apply("#elif defined(Y)");
        assert!(!c.dead());
    }

    #[test]
    fn conditionals_with_macros_decide_certain_branches() {
        let m = crate::cpp::macros::Macros::from_args(&["-DARDUINO_ARCH_AVR".into()]);
        let mut c = Conditionals::default();
        c.apply_with("#if defined(ARDUINO_ARCH_SAMD)", Some(&m));
        assert!(c.dead());
        c.apply_with("#elif defined(ARDUINO_ARCH_AVR)", Some(&m));
        assert!(!c.dead());
        c.apply_with("#else", Some(&m));
        assert!(c.dead(), "an earlier branch is certainly taken");
        c.apply_with("#endif", Some(&m));
        c.apply_with("#ifdef USER_OPTION", Some(&m));
        assert!(!c.dead());
        c.apply_with("#else", Some(&m));
        assert!(!c.dead(), "unknown: both branches stay live");
        c.apply_with("#endif", Some(&m));
        c.apply_with("#ifndef ESP32", Some(&m));
        assert!(!c.dead());
        c.apply_with("#else", Some(&m));
        assert!(c.dead());
    }
}
