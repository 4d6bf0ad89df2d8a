//! Arduino-style prototype generation, in-process: the merged `.ino` code gets a
//! forward declaration for every function it defines at file scope and does not
//! already declare, so functions can be called before they are defined.
//!
//! arduino-builder runs ctags over the preprocessed sketch; we parse the
//! unpreprocessed text with `cpp::lex`, deciding `#if`s with the board's macros, and
//! follow its rules (docs/design.md, "Prototypes"):
//! - the prototypes go right before the first definition in a live branch, even
//!   inside an `#if` (after that block's includes); a condition the macros leave open
//!   is taken as true there, and prototypes under such conditions are wrapped in
//!   their directives; a signature that itself straddles a directive gets none;
//! - brace counting follows the first live branch of an undecided `#if`, so
//!   `#ifdef X` / `void f(int a) {` / `#else` / `void f(long a) {` / `#endif` works;
//! - the text is ctags' (return type without `inline`, `static ` from the name's
//!   line, a template's line up to its `{`), and a prototype not on the name's line is
//!   dropped, as arduino-builder drops it;
//! - a function with default arguments gets no prototype, as arduino-builder's ctags
//!   pass gives none (so the same sketches compile, and fail, as with the reference);
//! - functions in an `extern "C" {` block get `extern "C"` prototypes (a C++
//!   prototype would give them conflicting linkage);
//! - `ISR(vector) {`-style macro definitions (a name with no return type),
//!   qualified `Class::method` definitions and operators get no prototype;
//! - a function counts as declared when any file-scope declaration names it
//!   (by name, not by full signature).

use std::collections::HashSet;

use crate::cpp::lex::{directive_parts, tokenize, Conditionals, Kind, Token};
use crate::cpp::macros::Macros;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prototype {
    /// `void setup();`
    pub text: String,
    /// The `.ino` file and line of the definition (from `#line` directives; the
    /// file is empty when no `#line` precedes it).
    pub file: String,
    pub line: usize,
    /// Directive lines to replay around the prototype (`#ifdef X`, `#else`).
    pub conditions: Vec<String>,
}

/// Where prototypes go and which ones.
#[derive(Default)]
struct Plan {
    /// 1-based line of the merged text before which the prototypes go.
    insert_line: usize,
    prototypes: Vec<Prototype>,
    map: LineMap,
}

const NOT_FUNCTION_NAMES: &[&str] = &[
    "if", "while", "for", "switch", "return", "sizeof", "alignof", "decltype", "catch", "defined", "operator",
    "static_assert", "asm", "__asm__",
];
/// Statements starting with these never define a function.
const NON_FUNCTION_INTRODUCERS: &[&str] = &["namespace", "typedef", "using", "friend"];
/// Words whose parenthesised argument is part of the specifiers, not the declarator.
const PAREN_SPECIFIERS: &[&str] = &["__attribute__", "__attribute", "__declspec", "alignas", "_Alignas", "decltype", "__typeof__", "typeof"];
/// Words that may follow a parameter list and belong to the declarator.
const TRAILING_QUALIFIERS: &[&str] = &["const", "volatile", "noexcept", "throw", "override", "final", "__attribute__", "__attribute"];

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

fn line_directive(file: &str, line: usize) -> String {
    if file.is_empty() {
        format!("#line {line}\n")
    } else {
        format!("#line {line} \"{file}\"\n")
    }
}

/// The prototypes `add_prototypes` would insert (for tests and tools).
pub fn find_prototypes(merged: &str) -> Vec<Prototype> {
    plan(merged, None).prototypes
}

/// `add_prototypes_for` with no board: only literal conditions are decided.
pub fn add_prototypes(merged: &str) -> String {
    add_prototypes_for(merged, None)
}

/// Insert prototypes before the first function definition, each preceded by a
/// `#line` pointing at its definition, then a `#line` to resume the user's numbering.
/// `macros` (the board's) decide which `#if` branches are live, as the preprocessor
/// run before arduino-builder's ctags does. Text without functions needing
/// prototypes comes back unchanged.
pub fn add_prototypes_for(merged: &str, macros: Option<&Macros>) -> String {
    let plan = plan(merged, macros);
    if plan.prototypes.is_empty() {
        return merged.to_string();
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
        out.push_str(&line_directive(&p.file, p.line));
        out.push_str(&p.text);
        out.push('\n');
        // One #endif per open #if (conditions hold #if/#elif/#else lines).
        for _ in p.conditions.iter().filter(|c| directive_parts(c).0.starts_with("if")) {
            out.push_str("#endif\n");
        }
    }
    let (file, line) = plan.map.map(plan.insert_line);
    out.push_str(&line_directive(&file, line));
    for l in lines {
        out.push_str(l);
    }
    out
}

/// A file-scope statement or definition head being collected.
#[derive(Default)]
struct Pending<'a> {
    tokens: Vec<&'a Token>,
    /// `Scanner::cond_id()` when the statement started.
    cond_id: (usize, u64),
    /// Tokens came from different conditional branches: no sound prototype.
    mixed: bool,
    /// Open parentheses: a `{` inside them (`int b = {}`) is no body.
    parens: usize,
}

/// One open `#if` as brace counting sees it.
struct BraceFrame {
    depth_at_if: usize,
    /// Depth at the end of the first live branch, once an `#elif`/`#else` ends it.
    depth_after_first: Option<usize>,
    /// Numbers this `#if` apart from every other one.
    instance: u64,
    /// Every condition of this `#if` so far was decided (by the board's macros, the
    /// sketch's own `#define`s or a literal): the live branch is known, as the
    /// preprocessor that arduino-builder runs before ctags knows it.
    decided: bool,
}

#[derive(Default)]
struct Scanner {
    map: LineMap,
    cond: Conditionals,
    frames: Vec<BraceFrame>,
    /// Brace depth inside bodies being skipped (0 = file scope).
    depth: usize,
    /// A fresh id per open `#if` frame, renewed at each of its `#elif`/`#else`:
    /// equal (depth, top id) means equal open conditions, without comparing them.
    frame_ids: Vec<u64>,
    next_id: u64,
    /// The board's macros plus the sketch's own `#define`s; None: only literal
    /// conditions (`#if 0`) are decided.
    macros: Option<Macros>,
    /// Names the sketch `#undef`s or redefines: conditions naming them stay undecided.
    uncertain: HashSet<String>,
}

impl Scanner {
    fn directive(&mut self, t: &Token) {
        let live_before = !self.cond.dead();
        if live_before {
            self.map.note(t);
            self.note_definition(t);
        }
        let (kind, rest) = directive_parts(&t.text);
        let known = self.evaluate(kind, rest);
        let macros = self.macros.as_ref().filter(|_| known.is_some());
        if !self.cond.apply_with(&t.text, macros) {
            return;
        }
        self.next_id += 1;
        match kind {
            "if" | "ifdef" | "ifndef" => {
                self.frames.push(BraceFrame { depth_at_if: self.depth, depth_after_first: None, instance: self.next_id, decided: known.is_some() });
                self.frame_ids.push(self.next_id);
            }
            "elif" | "else" => {
                if let Some(f) = self.frames.last_mut() {
                    if live_before {
                        f.depth_after_first.get_or_insert(self.depth);
                    }
                    self.depth = f.depth_at_if;
                    f.decided &= known.is_some();
                }
                if let Some(id) = self.frame_ids.last_mut() {
                    *id = self.next_id;
                }
            }
            _ => {
                // #endif: continue with the first live branch's braces.
                if let Some(d) = self.frames.pop().and_then(|f| f.depth_after_first) {
                    self.depth = d;
                }
                self.frame_ids.pop();
            }
        }
    }

    /// The value of a conditional directive's condition, when it is certain.
    fn evaluate(&self, kind: &str, rest: &str) -> Option<bool> {
        let literal = || match rest.trim_start_matches('(').trim_end_matches(')').trim() {
            "0" | "false" => Some(false),
            "1" | "true" => Some(true),
            _ => None,
        };
        if kind == "else" {
            return Some(true);
        }
        if !matches!(kind, "if" | "elif" | "ifdef" | "ifndef") {
            return None;
        }
        if let Some(v) = literal() {
            return Some(v);
        }
        let m = self.macros.as_ref()?;
        if !self.uncertain.is_empty() && tokenize(rest).iter().any(|w| w.kind == Kind::Word && self.uncertain.contains(&w.text)) {
            return None;
        }
        let name = rest.split_whitespace().next().unwrap_or("");
        match kind {
            "ifdef" => m.defined(name),
            "ifndef" => m.defined(name).map(|d| !d),
            _ => m.eval(rest),
        }
    }

    /// Follow the sketch's own `#define`/`#undef` lines in live code.
    fn note_definition(&mut self, t: &Token) {
        let Some(m) = self.macros.as_mut() else { return };
        let (kind, rest) = directive_parts(&t.text);
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
        let (name, value) = (&rest[..end], rest[end..].trim());
        match kind {
            // A plain new macro is known from here on; anything else (a function-like
            // macro, a redefinition, an #undef) makes conditions on it undecided.
            "define" if m.defined(name) != Some(true) && !rest[end..].starts_with('(') => m.add_definitions(&format!("#define {name} {value}")),
            "define" | "undef" => {
                self.uncertain.insert(name.to_string());
            }
            _ => {}
        }
    }

    fn cond_id(&self) -> (usize, u64) {
        (self.frame_ids.len(), self.frame_ids.last().copied().unwrap_or(0))
    }

    /// The open `#if`s, outermost first.
    fn path(&self) -> Vec<OpenIf> {
        self.cond
            .frames
            .iter()
            .zip(&self.frames)
            .zip(&self.frame_ids)
            .map(|((f, b), &branch)| OpenIf { instance: b.instance, branch, directives: if b.decided { Vec::new() } else { f.directives.clone() } })
            .collect()
    }
}

/// An `#if` open around a definition, in the branch it is in.
#[derive(Clone, PartialEq)]
struct OpenIf {
    instance: u64,
    branch: u64,
    /// Its directives to replay (none when the board's macros decide it).
    directives: Vec<String>,
}

struct Definition {
    name: String,
    /// The `#if`s around it.
    path: Vec<OpenIf>,
    /// None for a function with default arguments: it gets no prototype.
    proto: Option<Prototype>,
    /// Merged line before which its prototype could go.
    insert_line: usize,
}

fn plan(merged: &str, macros: Option<&Macros>) -> Plan {
    let tokens = tokenize(merged);
    let lines: Vec<&str> = merged.split('\n').collect();
    let mut sc = Scanner { macros: macros.cloned(), ..Scanner::default() };
    let mut declared: HashSet<String> = HashSet::new();
    let mut defined: Vec<Definition> = Vec::new();
    let mut pending = Pending::default();
    // Open file-scope `extern "..." {` blocks: true for "C" linkage.
    let mut extern_blocks: Vec<bool> = Vec::new();
    for t in &tokens {
        if t.kind == Kind::Directive {
            sc.directive(t);
            continue;
        }
        if sc.cond.dead() {
            continue;
        }
        if sc.depth > 0 {
            if t.is("{") {
                sc.depth += 1;
            } else if t.is("}") {
                sc.depth -= 1;
            }
            continue;
        }
        if pending.tokens.is_empty() {
            pending.cond_id = sc.cond_id();
            pending.mixed = false;
            pending.parens = 0;
        } else {
            pending.mixed |= sc.cond_id() != pending.cond_id;
        }
        if pending.parens > 0 && !t.is(";") {
            if t.is("(") {
                pending.parens += 1;
            } else if t.is(")") {
                pending.parens -= 1;
            }
            pending.tokens.push(t);
        } else if t.is(";") {
            if let Some(name) = declared_function_name(&pending.tokens).filter(|_| !pending.mixed) {
                declared.insert(name);
            }
            pending.tokens.clear();
        } else if t.is("}") {
            // Closes an `extern "C" {` block (or is stray).
            extern_blocks.pop();
            pending.tokens.clear();
        } else if t.is("{") {
            let head = std::mem::take(&mut pending.tokens);
            if matches!(head[..], [ext, lit] if ext.is("extern") && lit.kind == Kind::Literal) {
                // Its contents are still file scope.
                extern_blocks.push(head[1].text == "\"C\"");
                continue;
            }
            let extern_c = extern_blocks.last() == Some(&true);
            if let Some((name, text, first_line)) = function_definition(&head, extern_c, &lines).filter(|_| !pending.mixed) {
                let (file, line) = sc.map.map(first_line);
                // Not mixed: the conditions now are those the head started under.
                let proto = text.map(|text| Prototype { text, file, line, conditions: Vec::new() });
                defined.push(Definition { name, path: sc.path(), proto, insert_line: first_line });
            }
            // Skip the body (function, class, namespace, initialiser).
            sc.depth = 1;
        } else {
            pending.parens += usize::from(t.is("("));
            pending.tokens.push(t);
        }
    }
    // The prototypes go right before the first definition the build compiles, even
    // inside an `#if` (after that block's includes), as arduino-builder puts them
    // before ctags' first function. A condition the board's macros leave open is
    // taken as true there.
    let Some(first) = defined.iter().min_by_key(|d| d.insert_line) else {
        return Plan { insert_line: 1, prototypes: Vec::new(), map: sc.map };
    };
    let (insert_line, at) = (first.insert_line, first.path.clone());
    let mut seen: HashSet<(String, Vec<String>)> = HashSet::new();
    let prototypes = defined
        .into_iter()
        .filter(|d| !declared.contains(&d.name))
        .filter_map(|d| {
            // The `#if`s open at the insertion point are in force there; a definition
            // in another branch of one of them cannot be compiled with it.
            let shared = d.path.iter().zip(&at).take_while(|(a, b)| a == b).count();
            if matches!((d.path.get(shared), at.get(shared)), (Some(a), Some(b)) if a.instance == b.instance) {
                return None;
            }
            let mut p = d.proto?;
            p.conditions = d.path[shared..].iter().flat_map(|f| f.directives.iter().cloned()).collect();
            Some(p)
        })
        .filter(|p| seen.insert((p.text.clone(), p.conditions.clone())))
        .collect();
    Plan { insert_line, prototypes, map: sc.map }
}

/// Index of the `)` matching the `(` at `open` within `toks`.
fn matching_paren(toks: &[&Token], open: usize) -> Option<usize> {
    let mut depth = 0usize;
    for (j, t) in toks.iter().enumerate().skip(open) {
        if t.is("(") {
            depth += 1;
        } else if t.is(")") {
            depth = depth.checked_sub(1)?;
            if depth == 0 {
                return Some(j);
            }
        }
    }
    None
}

/// Macro-looking word: upper case, digits and `_` only.
fn is_macro_name(t: &Token) -> bool {
    t.kind == Kind::Word && t.text.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') && t.text.chars().any(|c| c.is_ascii_uppercase())
}

/// Drop leading `MACRO(args)` calls that end their line: without a `;` they are
/// statements of their own (`BLYNK_ATTACH(x)` then `void setup() {`).
fn strip_macro_statements<'a, 'b>(mut toks: &'b [&'a Token]) -> &'b [&'a Token] {
    while toks.len() > 2 && is_macro_name(toks[0]) && toks[1].is("(") {
        match matching_paren(toks, 1) {
            Some(close) if toks.get(close + 1).is_some_and(|next| next.line > toks[close].line) => toks = &toks[close + 1..],
            _ => break,
        }
    }
    toks
}

/// Where a declaration's name is.
struct Declarator {
    name: usize,
    /// The `(` opening its parameter list.
    params: usize,
    /// Words before the name outside attribute/macro prefixes (0: `ISR(x) {`).
    type_words: usize,
    /// The name is inside parentheses: a function returning a function pointer.
    nested: bool,
}

/// Find the declarator: the identifier before the first top-level `(` that is not
/// an attribute or a macro prefix, or — for a function returning a function
/// pointer, `void (*name(int))(int)` — the identifier before the first `(` inside.
fn declarator(toks: &[&Token]) -> Option<Declarator> {
    let (mut angle, mut square) = (0i32, 0i32);
    let mut type_words = 0usize;
    let mut j = 0;
    let p = loop {
        let t = toks.get(j)?;
        if t.is("[") {
            square += 1;
        } else if t.is("]") {
            square -= 1;
        } else if square > 0 {
        } else if t.is("<") {
            angle += 1;
        } else if t.is(">") {
            angle -= 1;
        } else if t.is("=") && angle <= 0 {
            return None; // an initialiser: a variable
        } else if t.is("(") && angle <= 0 {
            let prev = j.checked_sub(1).map(|k| toks[k]);
            let close = matching_paren(toks, j);
            let is_prefix = prev.is_some_and(|w| {
                w.kind == Kind::Word
                    && (PAREN_SPECIFIERS.contains(&w.text.as_str())
                        || is_macro_name(w) && close.and_then(|c| toks.get(c + 1)).is_some_and(|n| n.kind == Kind::Word && !TRAILING_QUALIFIERS.contains(&n.text.as_str())))
            });
            if !is_prefix {
                break j;
            }
            type_words = type_words.saturating_sub(1); // the prefix's own name
            j = close? + 1;
            continue;
        } else if t.kind == Kind::Word {
            type_words += 1;
        }
        j += 1;
    };
    if toks.get(p + 1).is_some_and(|t| t.is("*") || t.is("&")) {
        // Function-pointer (or reference) declarator: the real name is inside.
        let close = matching_paren(toks, p)?;
        let inner = &toks[p + 1..close];
        let q = inner.iter().position(|t| t.is("("))?;
        let name = q.checked_sub(1)?;
        return (inner[name].kind == Kind::Word).then_some(Declarator { name: p + 1 + name, params: p + 1 + q, type_words, nested: true });
    }
    let name = p.checked_sub(1)?;
    (toks[name].kind == Kind::Word).then(|| Declarator { name, params: p, type_words: type_words.saturating_sub(1), nested: false })
}

/// If the tokens before a file-scope `{` start a function definition: its name,
/// prototype text (none for a function with default arguments) and the merged line
/// where the declaration starts.
fn function_definition(head: &[&Token], extern_c: bool, lines: &[&str]) -> Option<(String, Option<String>, usize)> {
    let mut head = strip_macro_statements(head);
    if head.last().is_some_and(|t| t.is("try")) {
        head = &head[..head.len() - 1]; // function-try-block
    }
    let first = head.first()?;
    if NON_FUNCTION_INTRODUCERS.iter().any(|w| first.is(w)) {
        return None;
    }
    let d = declarator(head)?;
    let name = head[d.name];
    if d.type_words == 0 || NOT_FUNCTION_NAMES.contains(&name.text.as_str()) {
        return None; // `ISR(TIMER1_COMPA_vect) {`: a macro that defines a function
    }
    if d.name > 0 && (head[d.name - 1].is("::") || head[d.name - 1].is("~")) {
        return None; // Class::method or a destructor: declared in its class
    }
    let params_close = matching_paren(head, d.params)?;
    // What may follow the parameter list: the rest of a function-pointer
    // declarator, qualifiers, attributes, a trailing return type.
    let mut depth = 0i32;
    for t in &head[params_close + 1..] {
        match t.text.as_str() {
            _ if t.kind == Kind::Literal => {}
            "(" | "[" => depth += 1,
            ")" | "]" => depth -= 1,
            // `int a(1), b(2)`: variables; `:` starts an initialiser list.
            "," if depth <= 0 => return None,
            ":" | "=" | ";" => return None,
            _ => {}
        }
    }
    let c_linkage = extern_c || matches!(head, [e, l, ..] if e.is("extern") && l.text == "\"C\"");
    let Some((text, line)) = ctags_prototype(head, &d, params_close, c_linkage, lines) else {
        // ctags would give a prototype the code does not contain: arduino-builder
        // drops it, but the definition still places the prototypes (at its name).
        return Some((name.text.clone(), None, name.line));
    };
    if has_default_argument(head, d.params, params_close) {
        // A definition all the same: prototypes still go above it.
        return Some((name.text.clone(), None, line));
    }
    Some((name.text.clone(), Some(text), line))
}

/// Words ctags' C++ parser knows as keywords: in a return type each is followed by
/// a space, while names and `*`/`&` are written with none (`const char *`,
/// `EEPROMClass&`, `uint8_tconst *`).
const CTAGS_KEYWORDS: &[&str] = &[
    "auto", "bool", "char", "class", "const", "constexpr", "double", "enum", "explicit", "float", "friend", "int", "long", "mutable", "register", "short",
    "signed", "struct", "template", "union", "unsigned", "virtual", "void", "volatile", "wchar_t",
];
/// Specifiers ctags leaves out of a return type, dropping what it collected before
/// them (`const static int` gives `int`); arduino-builder adds back only `static`.
const CTAGS_RESETS: &[&str] = &["static", "inline", "__inline", "__inline__", "extern", "typename"];

/// The return type as ctags writes it in its `returntype:` field: specifiers,
/// attributes and macro calls left out, template arguments dropped (`std::vector`).
fn ctags_return_type(toks: &[&Token]) -> String {
    let mut out = String::new();
    let mut j = 0;
    while let Some(t) = toks.get(j) {
        j += 1;
        if t.kind == Kind::Literal {
            continue; // extern "C"
        }
        if CTAGS_RESETS.contains(&t.text.as_str()) {
            out.clear();
            continue;
        }
        let group = |open: &str, close: &str| {
            let mut depth = 0i32;
            let mut k = j - 1;
            while let Some(u) = toks.get(k) {
                depth += i32::from(u.is(open)) - i32::from(u.is(close));
                k += 1;
                if depth <= 0 {
                    break;
                }
            }
            k
        };
        if t.is("<") {
            j = group("<", ">");
        } else if t.is("[") {
            j = group("[", "]"); // [[attributes]]
        } else if toks.get(j).is_some_and(|n| n.is("(")) && t.kind == Kind::Word {
            j = group_after(toks, j); // __attribute__((..)), SECTION(".x")
        } else {
            out.push_str(&t.text);
            if t.kind == Kind::Word && CTAGS_KEYWORDS.contains(&t.text.as_str()) {
                out.push(' ');
            }
        }
    }
    out.trim_end().to_string()
}

/// Index after the parenthesised group that opens at `open`.
fn group_after(toks: &[&Token], open: usize) -> usize {
    matching_paren(toks, open).map_or(toks.len(), |c| c + 1)
}

/// The prototype arduino-builder makes from ctags' tag for this definition, and the
/// merged line its `#line` names, or None when it drops the tag because the
/// prototype does not occur in the code:
/// - `template` functions: the source line of the name, up to its `{`, and `;`;
/// - others: `static ` when that line holds `static `, then ctags' return type,
///   the name and the parameter list (so `inline` goes);
/// - the line is the name's (ctags' line for the tag).
fn ctags_prototype(head: &[&Token], d: &Declarator, params_close: usize, extern_c: bool, lines: &[&str]) -> Option<(String, usize)> {
    let name = head[d.name];
    let name_line = lines.get(name.line - 1).map_or("", |l| l.trim_end_matches('\r'));
    if d.nested {
        // A function returning a function pointer: ctags has no tag for it; ours
        // keeps the declaration as written.
        let mut text = prototype_text(head);
        if extern_c && !head[0].is("extern") {
            text.insert_str(0, "extern \"C\" ");
        }
        text.push(';');
        return Some((text, head[0].line));
    }
    let return_type = ctags_return_type(&head[..d.name]);
    if return_type.starts_with("template") {
        let code = match name_line.find('{') {
            Some(b) => &name_line[..b],
            None => &name_line[..name_line.rfind(')').map_or(name_line.len(), |c| c + 1)],
        };
        return Some((format!("{code};"), name.line));
    }
    let core = format!("{return_type} {}{}", name.text, prototype_text(&head[d.params..=params_close]));
    // arduino-builder keeps a prototype only when its text (spaces and tabs aside)
    // is in the code: the name's whole line as written, or when it has no `)`, that
    // line and the next ones up to its `)`, comments removed. A return type on an
    // earlier line is not in it.
    let squeeze = |s: &str| s.chars().filter(|c| *c != ' ' && *c != '\t').collect::<String>();
    let mut code = squeeze(name_line);
    if !code.contains(')') {
        let params_end = head[params_close].line;
        code = head.iter().filter(|t| t.line >= name.line && t.line <= params_end).map(|t| squeeze(&t.text)).collect();
    }
    if !code.contains(&squeeze(&core)) {
        return None;
    }
    let mut text = String::new();
    if extern_c {
        text.push_str("extern \"C\" ");
    }
    if name_line.contains("static ") {
        text.push_str("static ");
    }
    text.push_str(&core);
    let trailing = &head[params_close + 1..];
    if !trailing.is_empty() {
        text.push(' ');
        text.push_str(&prototype_text(trailing));
    }
    text.push(';');
    Some((text, name.line))
}

/// A `=` directly inside the parameter list `params_open..=params_close`.
fn has_default_argument(head: &[&Token], params_open: usize, params_close: usize) -> bool {
    let mut depth = 0i32;
    head[params_open..=params_close].iter().any(|t| {
        if t.is("(") || t.is("[") || t.is("{") {
            depth += 1;
        } else if t.is(")") || t.is("]") || t.is("}") {
            depth -= 1;
        }
        depth == 1 && t.is("=")
    })
}

/// Join tokens with the source's spacing collapsed to single spaces.
fn prototype_text(head: &[&Token]) -> String {
    let mut out = String::new();
    for t in head {
        let after_word = out.chars().last().is_some_and(|c| c.is_alphanumeric() || c == '_');
        let space = !out.is_empty()
            && (t.space_before || (matches!(t.kind, Kind::Word | Kind::Number) && after_word))
            && !(t.is(",") || t.is(")"))
            && !out.ends_with('(');
        if space {
            out.push(' ');
        }
        out.push_str(&t.text);
    }
    out
}

/// A file-scope declaration `type name(params);` declares `name` (variables with
/// an initialiser or a plain type statement do not count).
fn declared_function_name(stmt: &[&Token]) -> Option<String> {
    let stmt = strip_macro_statements(stmt);
    let first = stmt.first()?;
    if NON_FUNCTION_INTRODUCERS.iter().any(|w| first.is(w)) {
        return None;
    }
    let d = declarator(stmt)?;
    if d.type_words == 0 || NOT_FUNCTION_NAMES.contains(&stmt[d.name].text.as_str()) {
        return None;
    }
    Some(stmt[d.name].text.clone())
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
    fn functions_with_default_arguments_get_no_prototype_as_with_the_reference() {
        let src = "void f(int a = 3, const char *s = \")\", int b = max(1, 2)) {}\nvoid g(int a, int (*cb)(int) = nullptr) {}\nvoid h(int a) {}\n";
        assert_eq!(protos(src), vec!["void h(int a);"]);
    }

    #[test]
    fn templates_keep_their_line_up_to_the_brace() {
        // As arduino-builder writes them: the name's line cut at `{`, space and all;
        // a `template` line above the name is not part of it.
        let src = "template <typename T> T twice(T x) { return x + x; }\ntemplate <class T>\nT half(T x) { return x / 2; }\n";
        assert_eq!(protos(src), vec!["template <typename T> T twice(T x) ;", "T half(T x) ;"]);
    }

    #[test]
    fn parameters_over_several_lines_with_comments() {
        let src = "unsigned long measure(int pin, // the pin\n        int samples) // count\n{\n  return 0;\n}\n";
        assert_eq!(protos(src), vec!["unsigned long measure(int pin, int samples);"]);
        let p = &find_prototypes(src)[0];
        assert_eq!(p.line, 1);
    }

    #[test]
    fn a_return_type_above_the_name_gives_no_prototype_but_places_them() {
        // ctags' line is the name's and its code does not hold the return type:
        // arduino-builder drops the prototype and inserts the others at that line.
        let src = "#line 1 \"/s/R/R.ino\"\nstatic unsigned long\nmeasure(int pin) {\n  return 0;\n}\nvoid later() {}\n";
        let want = "#line 1 \"/s/R/R.ino\"\nstatic unsigned long\n#line 5 \"/s/R/R.ino\"\nvoid later();\n#line 2 \"/s/R/R.ino\"\nmeasure(int pin) {\n  return 0;\n}\nvoid later() {}\n";
        assert_eq!(add_prototypes(src), want);
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
    fn first_definition_inside_an_undecided_if_places_them_inside_it() {
        // Taken as true, as the block's own includes must come first.
        let src = "#line 1 \"/s/D/D.ino\"\n#ifdef A\n#include <A.h>\nvoid a() {}\n#endif\nvoid b() {}\n";
        let want = "#line 1 \"/s/D/D.ino\"\n#ifdef A\n#include <A.h>\n#line 3 \"/s/D/D.ino\"\nvoid a();\n#line 5 \"/s/D/D.ino\"\nvoid b();\n#line 3 \"/s/D/D.ino\"\nvoid a() {}\n#endif\nvoid b() {}\n";
        assert_eq!(add_prototypes(src), want);
    }

    fn avr() -> Macros {
        Macros::from_args(&["-DARDUINO_ARCH_AVR".into(), "-D__AVR__".into(), "-DARDUINO=10600".into()])
    }

    #[test]
    fn board_macros_decide_which_branch_places_the_prototypes() {
        let src = "#line 1 \"/s/E/E.ino\"\n#if defined(ARDUINO_ARCH_SAMD)\n#include <S.h>\nint s() {}\n#else\n#include <A.h>\nint a() {}\n#endif\nvoid setup() {}\n";
        let want = "#line 1 \"/s/E/E.ino\"\n#if defined(ARDUINO_ARCH_SAMD)\n#include <S.h>\nint s() {}\n#else\n#include <A.h>\n\
                    #line 6 \"/s/E/E.ino\"\nint a();\n#line 8 \"/s/E/E.ino\"\nvoid setup();\n#line 6 \"/s/E/E.ino\"\nint a() {}\n#endif\nvoid setup() {}\n";
        assert_eq!(add_prototypes_for(src, Some(&avr())), want);
        // Decided conditions are in force, not replayed; undecided ones still are.
        let src = "void setup() {}\n#if ARDUINO >= 100 && defined(__AVR__)\nvoid a() {}\n#ifdef OWN\nvoid own() {}\n#endif\n#endif\n";
        let p = plan(src, Some(&avr())).prototypes;
        let got: Vec<(&str, &[String])> = p.iter().map(|p| (p.text.as_str(), &p.conditions[..])).collect();
        assert_eq!(got, vec![("void setup();", &[][..]), ("void a();", &[][..]), ("void own();", &["#ifdef OWN".to_string()][..])]);
    }

    #[test]
    fn the_sketchs_own_defines_decide_and_undefs_undecide() {
        let src = "#define USE_A\n#ifdef USE_A\nvoid a() {}\n#else\nvoid b() {}\n#endif\n#undef USE_A\n#ifdef USE_A\nvoid c() {}\n#endif\n";
        let p = plan(src, Some(&avr())).prototypes;
        let got: Vec<(&str, usize)> = p.iter().map(|p| (p.text.as_str(), p.conditions.len())).collect();
        assert_eq!(got, vec![("void a();", 0), ("void c();", 1)]);
    }

    #[test]
    fn braces_follow_the_live_branch_when_the_first_is_dead() {
        let src = "#if defined(ARDUINO_ARCH_SAMD)\nvoid f(long a) {\n#else\nvoid f(int a) {\n#endif\n  a++;\n}\nvoid g() {}\n";
        assert_eq!(plan(src, Some(&avr())).prototypes.iter().map(|p| p.text.as_str()).collect::<Vec<_>>(), vec!["void f(int a);", "void g();"]);
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
        let src = "static inline const char *name(uint8_t &x) { return 0; }\nString &ref(String &s) { return s; }\nint noex() noexcept { return 1; }\ninline int in() { return 2; }\n";
        assert_eq!(protos(src), vec!["static const char * name(uint8_t &x);", "String& ref(String &s);", "int noex() noexcept;", "int in();"]);
    }

    #[test]
    fn extern_c_block_is_file_scope_with_c_linkage() {
        let src = "extern \"C\" {\nvoid c_func() {}\nvoid c_decl(int);\n}\nextern \"C\" int one() { return 1; }\nvoid after() {}\nvoid c_decl(int) {}\n";
        assert_eq!(protos(src), vec!["extern \"C\" void c_func();", "extern \"C\" int one();", "void after();"]);
    }

    #[test]
    fn macro_that_defines_a_function_is_not_code() {
        let src = "#define MAKE(x) void x() {}\nvoid real() {}\n";
        assert_eq!(protos(src), vec!["void real();"]);
    }

    #[test]
    fn multi_line_signature_exact_output() {
        let src = "#line 1 \"/s/M/M.ino\"\n// note\nstatic unsigned long measure(int pin,\n        int samples) {\n  return 0;\n}\n";
        let want = "#line 1 \"/s/M/M.ino\"\n// note\n#line 2 \"/s/M/M.ino\"\nstatic unsigned long measure(int pin, int samples);\n#line 2 \"/s/M/M.ino\"\nstatic unsigned long measure(int pin,\n        int samples) {\n  return 0;\n}\n";
        assert_eq!(add_prototypes(src), want);
    }

    #[test]
    fn two_ino_files_exact_output() {
        let src = "#include <Arduino.h>\n#line 1 \"/s/M/M.ino\"\nint x;\nvoid setup() { helper(); }\nvoid loop() {}\n#line 1 \"/s/M/tab.ino\"\n\nint helper() { return 1; }\n";
        let want = "#include <Arduino.h>\n#line 1 \"/s/M/M.ino\"\nint x;\n\
                    #line 2 \"/s/M/M.ino\"\nvoid setup();\n#line 3 \"/s/M/M.ino\"\nvoid loop();\n#line 2 \"/s/M/tab.ino\"\nint helper();\n\
                    #line 2 \"/s/M/M.ino\"\nvoid setup() { helper(); }\nvoid loop() {}\n#line 1 \"/s/M/tab.ino\"\n\nint helper() { return 1; }\n";
        assert_eq!(add_prototypes(src), want);
    }

    #[test]
    fn if_else_branches_that_each_open_the_body() {
        let src = "#ifdef WIDE\nvoid f(long a) {\n#else\nvoid f(int a) {\n#endif\n  a++;\n}\nvoid g() {}\n";
        let p = find_prototypes(src);
        let got: Vec<(&str, &[String])> = p.iter().map(|p| (p.text.as_str(), &p.conditions[..])).collect();
        // The prototypes go inside the first branch: the other's definition is not
        // compiled with them.
        assert_eq!(got, vec![("void f(long a);", &[][..]), ("void g();", &[][..])]);
    }

    #[test]
    fn signature_straddling_a_conditional_gets_no_prototype() {
        let src = "void f(\n#ifdef X\n  int a\n#else\n  long a\n#endif\n) {}\nvoid g(\n#if 0\n  int old,\n#endif\n  int a) {}\n";
        assert_eq!(protos(src), vec!["void g(int a);"]);
    }

    #[test]
    fn identical_definitions_in_branches_are_declared_per_branch() {
        let src = "void setup() {}\n#if defined(A)\nvoid f() {}\n#elif defined(B)\nvoid f() {}\n#else\nvoid f() {}\nvoid f() {}\n#endif\n";
        let p = find_prototypes(src);
        assert_eq!(p.len(), 4);
        assert_eq!(p[3].conditions, vec!["#if defined(A)", "#elif defined(B)", "#else"]);
    }

    #[test]
    fn attributes_and_macro_prefixes() {
        let src = "__attribute__((weak)) void w() {}\n[[nodiscard]] int n() { return 0; }\nSECTION(\".x\") void s() {}\nREGISTER(thing)\nvoid after_macro() {}\nvoid IRAM_ATTR isr_handler() {}\n";
        assert_eq!(
            protos(src),
            vec!["void w();", "int n();", "void s();", "void after_macro();", "void IRAM_ATTR isr_handler();"]
        );
        assert_eq!(find_prototypes(src)[3].line, 5);
    }

    #[test]
    fn c_style_struct_returns_and_trailing_return_types() {
        let src = "struct Point { int x, y; };\nstruct Point make(int x) { struct Point p = {x, 0}; return p; }\nauto twice(int x) -> int { return 2 * x; }\n";
        assert_eq!(protos(src), vec!["struct Point make(int x);", "auto twice(int x) -> int;"]);
    }

    #[test]
    fn variables_lambdas_and_function_pointer_tables() {
        let src = "auto cb = [](int x) { return x; };\nvoid (*table[])(int) = { a, b };\nServo s(9);\nFoo a(1), b{2};\nint v = f(1) {};\nenum class E : uint8_t { A, B };\nvoid real() {}\n";
        assert_eq!(protos(src), vec!["void real();"]);
    }

    #[test]
    fn prototypes_go_above_a_first_function_that_has_default_arguments() {
        // As arduino-builder writes OneWire's DS2408_Switch example.
        let src = "#line 1 \"/s/D/D.ino\"\nint x;\nvoid p(int n=0) {}\nvoid setup() {}\n";
        let want = "#line 1 \"/s/D/D.ino\"\nint x;\n#line 3 \"/s/D/D.ino\"\nvoid setup();\n#line 2 \"/s/D/D.ino\"\nvoid p(int n=0) {}\nvoid setup() {}\n";
        assert_eq!(add_prototypes(src), want);
    }

    #[test]
    fn a_comparison_inside_a_default_is_still_a_default() {
        let src = "void f(std::pair<int, int> p = std::pair<int, int>(1, 2), int c = (1 > 0)) {}\nvoid k(bool b) { b = (1 == 2); }\n";
        assert_eq!(protos(src), vec!["void k(bool b);"]);
    }

    #[test]
    fn line_directives_in_dead_code_and_missing_files() {
        let src = "int x;\nvoid f() {}\n";
        assert_eq!(add_prototypes(src), "int x;\n#line 2\nvoid f();\n#line 2\nvoid f() {}\n");
        let src = "#line 1 \"/s/a.ino\"\n#if 0\n#line 50 \"/s/b.ino\"\n#endif\nvoid f() {}\n";
        assert_eq!(find_prototypes(src)[0].file, "/s/a.ino");
        assert_eq!(find_prototypes(src)[0].line, 4);
    }

    #[test]
    fn crlf_line_endings_and_continued_defines() {
        let src = "#line 1 \"/s/w.ino\"\r\n#define MAKE(x) \\\r\n  void x() {}\r\nvoid setup() {\r\n}\r\n";
        assert_eq!(add_prototypes(src), "#line 1 \"/s/w.ino\"\r\n#define MAKE(x) \\\r\n  void x() {}\r\n#line 3 \"/s/w.ino\"\nvoid setup();\n#line 3 \"/s/w.ino\"\nvoid setup() {\r\n}\r\n");
    }

    #[test]
    fn raw_strings_hide_braces() {
        let src = "const char *page = R\"html(<p>}{ void x() {</p>)html\";\nvoid real() {}\n";
        assert_eq!(protos(src), vec!["void real();"]);
    }

    #[test]
    fn garbage_does_not_panic() {
        for s in [
            "{{{{", "}}}}", "void f(", "void f() {", "((((", "))))", "#if\n#else\n#endif\n#endif", "#else\n#elif\nvoid f() {}", "int (*)(", "\u{fffd}(\u{fffd}) {",
            "template <> {", "a::b() {}", "(*x)() {}", "void f(int = ) {", "int f() , {", "extern \"C\" { }}} {", "X(\nY(\n", "R\"abc", "'", "\"", "/*", "\\", "#",
            "#define A \\", "void f() -> { ", "A(b) c(d) e(f) {", "[[x( {", ") ( void f() {}", "= ( {", "void g(int a = ) {}", "#line\n#line x\n#line 99999999999999999999999 \"f\"\nvoid f(){}",
        ] {
            let _ = add_prototypes(s);
        }
        // Random soup of C++-ish fragments (a small fixed-seed LCG: no dependencies).
        let pieces = ["void ", "int ", "f", "g", "(", ")", "{", "}", ";", ",", "=", "<", ">", "*", "&", "::", "[", "]", "\"", "'", "/*", "*/", "//", "\n", "#if 0\n", "#ifdef X\n", "#else\n", "#elif Y\n", "#endif\n", "#line 3 \"a\"\n", "\\\n", "\r\n", "extern \"C\" ", "R\"(", "\u{fffd}", "é", "template ", "ISR", " "];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..2000 {
            let mut s = String::new();
            for _ in 0..40 {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                s.push_str(pieces[(seed >> 33) as usize % pieces.len()]);
            }
            let out = add_prototypes(&s);
            assert!(out.len() >= s.len());
            let _ = find_prototypes(&s);
        }
    }
}
