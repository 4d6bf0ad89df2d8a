//! Arduino-style prototype generation, in-process: the merged `.ino` code gets a
//! forward declaration for every function it defines at file scope and does not
//! already declare, so functions can be called before they are defined.
//!
//! Where arduino-cli runs ctags over preprocessed code, we parse the unpreprocessed
//! text with `cpp_lex`. Consequences, chosen deliberately:
//! - a function defined under `#if`/`#ifdef`/`#else` gets its prototype wrapped in
//!   the same chain of directives, so it is declared exactly when it is defined;
//! - default arguments are dropped from the prototype (repeating them in the
//!   definition would be an error; the definition keeps them);
//! - `ISR(vector) {`-style macro definitions (a name with no return type) and
//!   qualified `Class::method` definitions get no prototype.

use std::collections::HashSet;

use crate::cpp_lex::{directive_parts, tokenize, Conditionals, Kind, Token};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prototype {
    /// `void setup();`
    pub text: String,
    /// The `.ino` file and line of the definition (from `#line` directives).
    pub file: String,
    pub line: usize,
    /// Directive lines to replay around the prototype (`#ifdef X`, `#else`).
    pub conditions: Vec<String>,
}

/// Where prototypes go and which ones.
#[derive(Debug)]
struct Plan {
    /// 1-based line of the merged text before which the prototypes go.
    insert_line: usize,
    prototypes: Vec<Prototype>,
}

const NOT_FUNCTION_NAMES: &[&str] = &[
    "if", "while", "for", "switch", "return", "sizeof", "alignof", "decltype", "catch", "defined", "operator",
];
const TYPE_INTRODUCERS: &[&str] = &["struct", "class", "union", "enum", "namespace", "typedef", "using"];

/// Maps merged-text lines to the user's files through `#line` directives.
#[derive(Default)]
struct LineMap {
    /// (merged line where the mapping starts, original line there, file)
    marks: Vec<(usize, usize, String)>,
}

impl LineMap {
    fn note(&mut self, directive: &Token) {
        let (name, rest) = directive_parts(&directive.text);
        if name != "line" {
            return;
        }
        let mut parts = rest.splitn(2, char::is_whitespace);
        let Some(n) = parts.next().and_then(|n| n.parse::<usize>().ok()) else { return };
        let file = parts.next().map(|f| f.trim().trim_matches('"').to_string());
        let file = file.or_else(|| self.marks.last().map(|m| m.2.clone())).unwrap_or_default();
        self.marks.push((directive.line + 1, n, file));
    }

    fn map(&self, merged_line: usize) -> (String, usize) {
        match self.marks.iter().rev().find(|m| m.0 <= merged_line) {
            Some((start, orig, file)) => (file.clone(), orig + (merged_line - start)),
            None => (String::new(), merged_line),
        }
    }
}

/// The prototypes `add_prototypes` would insert (for tests and tools).
pub fn find_prototypes(merged: &str) -> Vec<Prototype> {
    plan(merged).map(|p| p.prototypes).unwrap_or_default()
}

/// Insert prototypes before the first function definition, each preceded by a
/// `#line` pointing at its definition, then a `#line` to resume the user's numbering.
pub fn add_prototypes(merged: &str) -> String {
    let Some(plan) = plan(merged) else { return merged.to_string() };
    if plan.prototypes.is_empty() {
        return merged.to_string();
    }
    let mut map = LineMap::default();
    for t in tokenize(merged).iter().filter(|t| t.kind == Kind::Directive && t.line < plan.insert_line) {
        map.note(t);
    }
    let mut out = String::with_capacity(merged.len() + 64 * plan.prototypes.len());
    let mut lines = merged.split_inclusive('\n');
    for _ in 1..plan.insert_line {
        match lines.next() {
            Some(l) => out.push_str(l),
            None => break,
        }
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for p in &plan.prototypes {
        for c in &p.conditions {
            out.push_str(c);
            out.push('\n');
        }
        out.push_str(&format!("#line {} \"{}\"\n{}\n", p.line, p.file, p.text));
        // One #endif per open #if (conditions hold #if/#elif/#else lines).
        let opened = p.conditions.iter().filter(|c| directive_parts(c).0.starts_with("if")).count();
        for _ in 0..opened {
            out.push_str("#endif\n");
        }
    }
    let (file, line) = map.map(plan.insert_line);
    out.push_str(&format!("#line {line} \"{file}\"\n"));
    for l in lines {
        out.push_str(l);
    }
    out
}

/// A file-scope statement or definition head being collected.
struct Pending<'a> {
    tokens: Vec<&'a Token>,
    /// Conditionals open when the statement started.
    conditions: Vec<String>,
    /// Merged line of the outermost open `#if` when it started, if any.
    outer_if_line: Option<usize>,
}

/// What the directives seen so far say: line mapping, open conditionals, and the
/// merged line of each open `#if` (to move insertion above a user's block).
#[derive(Default)]
struct DirectiveState {
    map: LineMap,
    cond: Conditionals,
    if_lines: Vec<usize>,
}

impl DirectiveState {
    fn apply(&mut self, t: &Token) {
        self.map.note(t);
        if self.cond.apply(&t.text) {
            match directive_parts(&t.text).0 {
                "if" | "ifdef" | "ifndef" => self.if_lines.push(t.line),
                "endif" => {
                    self.if_lines.pop();
                }
                _ => {}
            }
        }
    }
}

fn plan(merged: &str) -> Option<Plan> {
    let tokens = tokenize(merged);
    let mut state = DirectiveState::default();
    let mut declared: HashSet<String> = HashSet::new();
    let mut defined: Vec<(String, Prototype, usize)> = Vec::new();
    let mut pending = Pending { tokens: Vec::new(), conditions: Vec::new(), outer_if_line: None };
    let mut i = 0;
    while i < tokens.len() {
        let t = &tokens[i];
        if t.kind == Kind::Directive {
            state.apply(t);
            i += 1;
            continue;
        }
        if state.cond.dead() {
            i += 1;
            continue;
        }
        if pending.tokens.is_empty() {
            pending.conditions = state.cond.frames.iter().flat_map(|f| f.directives.iter().cloned()).collect();
            pending.outer_if_line = state.if_lines.first().copied();
        }
        if t.is(";") {
            if let Some(name) = declared_function_name(&pending.tokens) {
                declared.insert(name);
            }
            pending.tokens.clear();
            i += 1;
            continue;
        }
        if t.is("}") {
            // Closing an `extern "C" {` block (or a stray brace): a boundary.
            pending.tokens.clear();
            i += 1;
            continue;
        }
        if t.is("{") {
            let head = std::mem::take(&mut pending.tokens);
            if head.len() == 2 && head[0].is("extern") && head[1].kind == Kind::Literal {
                // `extern "C" {`: its contents are still file scope.
                i += 1;
                continue;
            }
            if let Some((name, text)) = function_definition(&head) {
                let first = head[0];
                let (file, line) = state.map.map(first.line);
                let start_line = pending.outer_if_line.unwrap_or(first.line).min(first.line);
                defined.push((name, Prototype { text, file, line, conditions: pending.conditions.clone() }, start_line));
            }
            // Skip the body (function, class, initializer): nothing inside is file scope.
            i = skip_block(&tokens, i, &mut state);
            continue;
        }
        pending.tokens.push(t);
        i += 1;
    }
    let first_definition_line = defined.iter().map(|d| d.2).min()?;
    let mut seen: HashSet<(String, Vec<String>)> = HashSet::new();
    let prototypes = defined
        .into_iter()
        .filter(|(name, _, _)| !declared.contains(name))
        .filter(|(_, p, _)| seen.insert((p.text.clone(), p.conditions.clone())))
        .map(|(_, p, _)| p)
        .collect();
    Some(Plan { insert_line: first_definition_line, prototypes })
}

/// Index after the `}` matching the `{` at `open`; directives inside still update state.
fn skip_block(tokens: &[Token], open: usize, state: &mut DirectiveState) -> usize {
    let mut depth = 0usize;
    for (i, t) in tokens.iter().enumerate().skip(open) {
        if t.kind == Kind::Directive {
            state.apply(t);
        } else if !state.cond.dead() {
            if t.is("{") {
                depth += 1;
            } else if t.is("}") {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
        }
    }
    tokens.len()
}

/// Index of the `)` matching the `(` at `open` within `toks`.
fn matching_paren(toks: &[&Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        if t.is("(") {
            depth += 1;
        } else if t.is(")") {
            depth -= 1;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

/// The declarator's name and its parameter list `(`: the identifier before the
/// first top-level `(`, or — for a function returning a function pointer,
/// `void (*name(int))(int)` — the identifier before the first `(` inside it.
fn declarator(toks: &[&Token]) -> Option<(usize, usize)> {
    let mut angle = 0i32;
    let mut first_paren = None;
    for (j, t) in toks.iter().enumerate() {
        if t.is("<") {
            angle += 1;
        } else if t.is(">") {
            angle -= 1;
        } else if t.is("(") && angle <= 0 {
            first_paren = Some(j);
            break;
        } else if t.is("=") && angle <= 0 {
            return None; // an initialiser: a variable
        }
    }
    let p = first_paren?;
    if toks.get(p + 1).is_some_and(|t| t.is("*") || t.is("&")) {
        // Function-pointer (or reference) declarator: the real name is inside.
        let close = matching_paren(toks, p)?;
        let inner = &toks[p + 1..close];
        let q = inner.iter().position(|t| t.is("("))?;
        let name = q.checked_sub(1)?;
        return (inner[name].kind == Kind::Word).then_some((p + 1 + name, p + 1 + q));
    }
    let name = p.checked_sub(1)?;
    (toks[name].kind == Kind::Word).then_some((name, p))
}

/// If the tokens before a file-scope `{` start a function definition, its name and
/// prototype text.
fn function_definition(head: &[&Token]) -> Option<(String, String)> {
    let first = head.first()?;
    if TYPE_INTRODUCERS.iter().any(|w| first.is(w)) || head.iter().any(|t| t.is("=")) && !head.iter().any(|t| t.is("(")) {
        return None;
    }
    // `template <...> struct X {` and friends.
    if head.iter().any(|t| TYPE_INTRODUCERS[..4].iter().any(|w| t.is(w))) && !head.iter().any(|t| t.is("(")) {
        return None;
    }
    let (name_at, paren_at) = declarator(head)?;
    let name = &head[name_at];
    if NOT_FUNCTION_NAMES.contains(&name.text.as_str()) {
        return None;
    }
    if name_at > 0 && head[name_at - 1].is("::") || name.text.starts_with('~') {
        return None; // Class::method or a destructor: declared in its class
    }
    // A name with nothing before it is a macro call (`ISR(TIMER1_COMPA_vect) {`).
    let before_name = if head[..name_at].last().is_some_and(|t| t.is("(")) { &head[..name_at - 2] } else { &head[..name_at] };
    if before_name.iter().filter(|t| !t.is("*") && !t.is("&")).count() == 0 {
        return None;
    }
    let params_close = matching_paren(head, paren_at)?;
    // What may follow the parameter list: more declarator parts, qualifiers, attributes.
    let mut j = params_close + 1;
    while j < head.len() {
        let t = head[j];
        if t.is(")") || t.is("(") || t.kind == Kind::Word || t.is("&") || t.is("-") || t.is(">") || t.is("::") || t.is("*") || t.is(",") || t.is("<") || t.kind == Kind::Number {
            if t.is(",") && !inside_parens(head, params_close + 1, j) {
                return None; // `int a(1), b(2)`: variables
            }
            j += 1;
            continue;
        }
        if t.is(":") {
            return None; // constructor initialiser list or bit-field
        }
        return None;
    }
    let text = prototype_text(head, paren_at, params_close);
    Some((name.text.clone(), format!("{text};")))
}

fn inside_parens(toks: &[&Token], from: usize, at: usize) -> bool {
    let mut depth = 0i32;
    for t in &toks[from..at] {
        if t.is("(") {
            depth += 1;
        } else if t.is(")") {
            depth -= 1;
        }
    }
    depth > 0
}

/// Join tokens with the source's spacing collapsed, dropping default arguments
/// from the parameter list that opens at `params_open`.
fn prototype_text(head: &[&Token], params_open: usize, params_close: usize) -> String {
    let mut out = String::new();
    let mut j = 0;
    while j < head.len() {
        let t = head[j];
        if j > params_open && j < params_close && t.is("=") && param_depth(head, params_open, j) == 1 {
            // Skip the default value up to the next `,` or `)` at parameter depth.
            let mut depth = 0i32;
            while j < params_close {
                let u = head[j];
                if u.is("(") || u.is("[") || u.is("{") {
                    depth += 1;
                } else if u.is(")") || u.is("]") || u.is("}") {
                    depth -= 1;
                } else if u.is(",") && depth == 0 {
                    break;
                }
                j += 1;
            }
            continue;
        }
        let glue = !out.is_empty() && (t.space_before || (is_wordy(t) && out.chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_')));
        if glue && !out.ends_with(' ') {
            out.push(' ');
        }
        out.push_str(&t.text);
        j += 1;
    }
    out.replace(" ,", ",").replace(" )", ")")
}

fn is_wordy(t: &Token) -> bool {
    matches!(t.kind, Kind::Word | Kind::Number)
}

fn param_depth(head: &[&Token], open: usize, at: usize) -> i32 {
    let mut depth = 0;
    for t in &head[open..at] {
        if t.is("(") {
            depth += 1;
        } else if t.is(")") {
            depth -= 1;
        }
    }
    depth
}

/// A file-scope declaration `type name(params);` declares `name` (variables with
/// an initialiser or a plain type statement do not count).
fn declared_function_name(stmt: &[&Token]) -> Option<String> {
    let first = stmt.first()?;
    if TYPE_INTRODUCERS.iter().any(|w| first.is(w)) {
        return None;
    }
    let (name_at, _) = declarator(stmt)?;
    if name_at == 0 || NOT_FUNCTION_NAMES.contains(&stmt[name_at].text.as_str()) {
        return None;
    }
    Some(stmt[name_at].text.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn protos(src: &str) -> Vec<String> {
        find_prototypes(src).into_iter().map(|p| p.text).collect()
    }

    const BLINK: &str = "#include <Arduino.h>\n#line 1 \"/s/Blink/Blink.ino\"\n/*\n  Blink\n*/\n\n// the setup function\nvoid setup() {\n  pinMode(13, OUTPUT);\n}\n\nvoid loop() {\n  delay(1000);\n}\n";

    #[test]
    fn blink_exact_output() {
        let want = "#include <Arduino.h>\n#line 1 \"/s/Blink/Blink.ino\"\n/*\n  Blink\n*/\n\n// the setup function\n\
                    #line 6 \"/s/Blink/Blink.ino\"\nvoid setup();\n#line 10 \"/s/Blink/Blink.ino\"\nvoid loop();\n#line 6 \"/s/Blink/Blink.ino\"\n\
                    void setup() {\n  pinMode(13, OUTPUT);\n}\n\nvoid loop() {\n  delay(1000);\n}\n";
        assert_eq!(add_prototypes(BLINK), want);
    }

    #[test]
    fn no_functions_means_unchanged() {
        let src = "#include <Arduino.h>\nint x = 3;\nstruct S { int a; } s;\n";
        assert_eq!(add_prototypes(src), src);
    }

    #[test]
    fn function_pointer_return_and_pointer_variable() {
        let src = "int (*fp)(int) = nullptr;\nvoid (*getHandler(int which))(int) {\n  return 0;\n}\n";
        assert_eq!(protos(src), vec!["void (*getHandler(int which))(int);"]);
    }

    #[test]
    fn default_arguments_are_dropped() {
        let src = "void f(int a = 3, const char *s = \")\", int b = max(1, 2)) {}\n";
        assert_eq!(protos(src), vec!["void f(int a, const char *s, int b);"]);
    }

    #[test]
    fn templates_keep_their_header() {
        let src = "template <typename T> T twice(T x) { return x + x; }\n";
        assert_eq!(protos(src), vec!["template <typename T> T twice(T x);"]);
    }

    #[test]
    fn multi_line_signature_with_comments() {
        let src = "unsigned long\nmeasure(int pin, /* the pin ) { */\n        int samples) // count\n{\n  return 0;\n}\n";
        assert_eq!(protos(src), vec!["unsigned long measure(int pin, int samples);"]);
        let p = &find_prototypes(src)[0];
        assert_eq!(p.line, 1);
    }

    #[test]
    fn already_declared_functions_are_skipped() {
        let src = "void later(int);\nvoid setup() { later(1); }\nvoid later(int x) {}\n";
        assert_eq!(protos(src), vec!["void setup();"]);
    }

    #[test]
    fn braces_and_parens_in_strings_and_comments() {
        let src = "const char *s = \"{ ( }\";\n// void fake() {\nchar c = '{';\nvoid real() { if (s[0] == '}') {} }\n";
        assert_eq!(protos(src), vec!["void real();"]);
    }

    #[test]
    fn classes_structs_namespaces_and_methods() {
        let src = "class Foo {\npublic:\n  void bar() {}\n  int baz(int x) { return x; }\n};\nvoid Foo::qux() {}\nnamespace N { void inner() {} }\nstruct P { int a; } pt = {1};\nint arr[] = {1, 2};\nFoo f{};\nvoid top() {}\n";
        assert_eq!(protos(src), vec!["void top();"]);
    }

    #[test]
    fn isr_macro_gets_no_prototype() {
        let src = "ISR(TIMER1_COMPA_vect) {\n  x++;\n}\nSIGNAL(INT0_vect) {}\nvoid ok() {}\n";
        assert_eq!(protos(src), vec!["void ok();"]);
    }

    #[test]
    fn functions_inside_conditionals_are_wrapped() {
        let src = "#line 1 \"/s/C/C.ino\"\nvoid setup() {}\n#ifdef FAST\nvoid go() {}\n#else\nvoid go(int speed) {}\n#endif\n#if 0\nvoid never() {}\n#endif\n";
        let p = find_prototypes(src);
        let texts: Vec<&str> = p.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(texts, vec!["void setup();", "void go();", "void go(int speed);"]);
        assert_eq!(p[1].conditions, vec!["#ifdef FAST"]);
        assert_eq!(p[2].conditions, vec!["#ifdef FAST", "#else"]);
        let out = add_prototypes(src);
        assert!(out.contains("#ifdef FAST\n#else\n#line 5 \"/s/C/C.ino\"\nvoid go(int speed);\n#endif\n"), "{out}");
    }

    #[test]
    fn first_definition_inside_if_moves_insertion_above_it() {
        let src = "#line 1 \"/s/D/D.ino\"\n#ifdef A\nvoid a() {}\n#endif\nvoid b() {}\n";
        let out = add_prototypes(src);
        assert!(out.starts_with("#line 1 \"/s/D/D.ino\"\n#ifdef A\n#line 2 \"/s/D/D.ino\"\nvoid a();\n#endif\n#line 4 \"/s/D/D.ino\"\nvoid b();\n#line 1 \"/s/D/D.ino\"\n#ifdef A\nvoid a() {}"), "{out}");
    }

    #[test]
    fn two_ino_files_each_keep_their_file() {
        let src = "#include <Arduino.h>\n#line 1 \"/s/M/M.ino\"\nvoid setup() { helper(); }\nvoid loop() {}\n#line 1 \"/s/M/tab.ino\"\n\nint helper() { return 1; }\n";
        let p = find_prototypes(src);
        assert_eq!(p[2].text, "int helper();");
        assert_eq!((p[2].file.as_str(), p[2].line), ("/s/M/tab.ino", 2));
        assert_eq!((p[0].file.as_str(), p[0].line), ("/s/M/M.ino", 1));
    }

    #[test]
    fn non_ascii_names() {
        let src = "void grüße(int n) {}\nvoid 日本() {}\n";
        assert_eq!(protos(src), vec!["void grüße(int n);", "void 日本();"]);
    }

    #[test]
    fn references_pointers_statics_and_qualifiers() {
        let src = "static inline const char *name(uint8_t &x) { return 0; }\nString& ref(String &s) { return s; }\nint noex() noexcept { return 1; }\n";
        assert_eq!(protos(src), vec!["static inline const char *name(uint8_t &x);", "String& ref(String &s);", "int noex() noexcept;"]);
    }

    #[test]
    fn extern_c_block_is_file_scope() {
        let src = "extern \"C\" {\nvoid c_func() {}\n}\nvoid after() {}\n";
        assert_eq!(protos(src), vec!["void c_func();", "void after();"]);
    }

    #[test]
    fn macro_that_defines_a_function_is_not_code() {
        let src = "#define MAKE(x) void x() {}\nvoid real() {}\n";
        assert_eq!(protos(src), vec!["void real();"]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in ["{{{{", "}}}}", "void f(", "void f() {", "((((", "#if\n#else\n#endif\n#endif", "int (*)(", "\u{fffd}(\u{fffd}) {", "template <> {", "a::b() {}", "(*x)() {}"] {
            let _ = add_prototypes(s);
        }
    }
}
