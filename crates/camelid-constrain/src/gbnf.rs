//! llama.cpp's GBNF, translated to the Lark-like syntax the grammar engine reads.
//!
//! GBNF as llama.cpp documents it (`grammars/README.md`, and its parser `llama-grammar.cpp`):
//! rules `name ::= body`, the start rule named `root`; in a body, string literals `"..."`,
//! character classes `[a-z0-9_]` and `[^"\\]`, the wildcard `.` (any character), rule
//! references, grouping `( ... )`, alternatives `|`, and the postfix repetitions `*`, `+`, `?`,
//! `{m}`, `{m,}`, `{m,n}`; comments run from `#` to the end of the line. Escapes inside literals
//! and classes: `\n \r \t \\ \" \[ \] \-`, `\xHH`, `\uHHHH`, `\UHHHHHHHH`. Rule names are
//! letters, digits and `-` (`_` is taken too).
//!
//! GBNF matches characters one at a time. The engine's Lark dialect lexes: a regex terminal is
//! one lexeme matched as long as it can be. To keep GBNF's meaning, every literal and every
//! character class becomes its own small terminal (one string, or one character), and all
//! repetition and choice stays in the rules, where the Earley parser explores every split.
//! A body may span lines; a rule ends where the next `name ::=` begins.

use std::collections::HashMap;
use std::fmt::Write;

/// A GBNF grammar that does not parse, with the byte offset of the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GbnfError {
    pub offset: usize,
    pub message: String,
}

impl std::fmt::Display for GbnfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GBNF, at byte {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for GbnfError {}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Name(String),
    Define,
    Literal(String),
    /// Negated, then inclusive ranges.
    Class(bool, Vec<(char, char)>),
    Any,
    LParen,
    RParen,
    Pipe,
    /// Postfix repetition: at least `min`, at most `max` (`None`: unbounded).
    Repeat(u32, Option<u32>),
}

/// The expression tree of a rule body.
#[derive(Debug, Clone)]
enum Expr {
    Alt(Vec<Expr>),
    Seq(Vec<Expr>),
    Literal(String),
    Class(bool, Vec<(char, char)>),
    Any,
    Ref(usize),
    Repeat(Box<Expr>, u32, Option<u32>),
}

/// Translates a GBNF grammar to the engine's Lark syntax (`start` is `root`).
pub fn gbnf_to_lark(src: &str) -> Result<String, GbnfError> {
    let toks = lex(src)?;
    // Rules: a name followed by `::=` starts one; its body runs to the next such pair.
    let mut starts = Vec::new();
    for i in 0..toks.len() {
        if matches!(toks[i].1, Tok::Name(_)) && toks.get(i + 1).map(|t| &t.1) == Some(&Tok::Define)
        {
            starts.push(i);
        }
    }
    match starts.first() {
        None => {
            return Err(GbnfError {
                offset: 0,
                message: "no rule (`name ::= ...`) found".into(),
            });
        }
        Some(&0) => {}
        Some(_) => {
            return Err(GbnfError {
                offset: toks[0].0,
                message: "expected a rule name followed by `::=`".into(),
            });
        }
    }
    let mut names: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for &s in &starts {
        let Tok::Name(n) = &toks[s].1 else {
            unreachable!("rule starts are names")
        };
        if index.contains_key(n) {
            return Err(GbnfError {
                offset: toks[s].0,
                message: format!("rule `{n}` is defined twice"),
            });
        }
        index.insert(n.clone(), names.len());
        names.push(n.clone());
    }
    let Some(&root) = index.get("root") else {
        return Err(GbnfError {
            offset: 0,
            message: "the grammar has no `root` rule".into(),
        });
    };
    let mut bodies = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(toks.len());
        let body = &toks[s + 2..end];
        let at = toks.get(s + 1).map_or(src.len(), |t| t.0);
        let mut p = Parser {
            toks: body,
            pos: 0,
            index: &index,
            end_offset: toks.get(end).map_or(src.len(), |t| t.0),
        };
        if body.is_empty() {
            return Err(GbnfError {
                offset: at,
                message: format!("rule `{}` has an empty body", names[k]),
            });
        }
        let e = p.alternatives()?;
        if p.pos < body.len() {
            return Err(GbnfError {
                offset: body[p.pos].0,
                message: "unexpected `)`".into(),
            });
        }
        bodies.push(e);
    }

    let lark_name = |i: usize| format!("r{i}_{}", sanitize(&names[i]));
    let mut out = String::new();
    let _ = writeln!(out, "start: {}", lark_name(root));
    for (i, body) in bodies.iter().enumerate() {
        let _ = write!(out, "{}: ", lark_name(i));
        emit(body, &lark_name, &mut out, false);
        out.push('\n');
    }
    Ok(out)
}

/// A rule name in the engine's syntax: lowercase letters, digits, `_` and `-`.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn emit(e: &Expr, name: &impl Fn(usize) -> String, out: &mut String, nested: bool) {
    match e {
        Expr::Alt(alts) => {
            if nested {
                out.push('(');
            }
            for (k, a) in alts.iter().enumerate() {
                if k > 0 {
                    out.push_str(" | ");
                }
                emit(a, name, out, true);
            }
            if nested {
                out.push(')');
            }
        }
        Expr::Seq(items) if items.is_empty() => out.push_str("\"\""),
        Expr::Seq(items) => {
            let paren = nested && items.len() > 1;
            if paren {
                out.push('(');
            }
            for (k, x) in items.iter().enumerate() {
                if k > 0 {
                    out.push(' ');
                }
                emit(x, name, out, true);
            }
            if paren {
                out.push(')');
            }
        }
        Expr::Literal(s) => json_string(s, out),
        Expr::Class(neg, ranges) => {
            out.push_str("/[");
            if *neg {
                out.push('^');
            }
            for &(a, b) in ranges {
                class_char(a, out);
                if b != a {
                    out.push('-');
                    class_char(b, out);
                }
            }
            out.push_str("]/");
        }
        Expr::Any => out.push_str("/(?s:.)/"),
        Expr::Ref(i) => out.push_str(&name(*i)),
        Expr::Repeat(x, min, max) => {
            out.push('(');
            emit(x, name, out, false);
            out.push(')');
            match (min, max) {
                (0, None) => out.push('*'),
                (1, None) => out.push('+'),
                (0, Some(1)) => out.push('?'),
                (m, None) => {
                    let _ = write!(out, "{{{m},}}");
                }
                (m, Some(n)) if m == n => {
                    let _ = write!(out, "{{{m}}}");
                }
                (m, Some(n)) => {
                    let _ = write!(out, "{{{m},{n}}}");
                }
            }
        }
    }
}

/// A string in the engine's syntax (JSON string syntax, which has no raw control characters
/// and, in the engine's lexer, no raw DEL).
fn json_string(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\x7f' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One character inside a regex class: letters and digits as they are, anything else as a
/// `\x{...}` escape (the regex crate's syntax), so no character can close the class or the
/// `/.../` around it.
fn class_char(c: char, out: &mut String) {
    if c.is_ascii_alphanumeric() {
        out.push(c);
    } else {
        let _ = write!(out, "\\x{{{:x}}}", c as u32);
    }
}

struct Parser<'a> {
    toks: &'a [(usize, Tok)],
    pos: usize,
    index: &'a HashMap<String, usize>,
    end_offset: usize,
}

impl Parser<'_> {
    fn offset(&self) -> usize {
        self.toks.get(self.pos).map_or(self.end_offset, |t| t.0)
    }

    fn alternatives(&mut self) -> Result<Expr, GbnfError> {
        let mut alts = vec![self.sequence()?];
        while self.toks.get(self.pos).map(|t| &t.1) == Some(&Tok::Pipe) {
            self.pos += 1;
            alts.push(self.sequence()?);
        }
        Ok(if alts.len() == 1 {
            alts.pop().expect("one")
        } else {
            Expr::Alt(alts)
        })
    }

    fn sequence(&mut self) -> Result<Expr, GbnfError> {
        let mut items = Vec::new();
        while let Some((at, t)) = self.toks.get(self.pos) {
            let item = match t {
                Tok::Pipe | Tok::RParen => break,
                Tok::Literal(s) => Expr::Literal(s.clone()),
                Tok::Class(neg, r) => Expr::Class(*neg, r.clone()),
                Tok::Any => Expr::Any,
                Tok::Name(n) => match self.index.get(n) {
                    Some(&i) => Expr::Ref(i),
                    None => {
                        return Err(GbnfError {
                            offset: *at,
                            message: format!("undefined rule `{n}`"),
                        });
                    }
                },
                Tok::LParen => {
                    self.pos += 1;
                    let inner = self.alternatives()?;
                    if self.toks.get(self.pos).map(|t| &t.1) != Some(&Tok::RParen) {
                        return Err(GbnfError {
                            offset: self.offset(),
                            message: "expected `)`".into(),
                        });
                    }
                    inner
                }
                Tok::Repeat(..) => {
                    return Err(GbnfError {
                        offset: *at,
                        message: "a repetition operator must follow an item".into(),
                    });
                }
                Tok::Define => {
                    return Err(GbnfError {
                        offset: *at,
                        message: "unexpected `::=`".into(),
                    });
                }
            };
            self.pos += 1;
            let mut item = item;
            while let Some((_, Tok::Repeat(min, max))) = self.toks.get(self.pos) {
                item = Expr::Repeat(Box::new(item), *min, *max);
                self.pos += 1;
            }
            items.push(item);
        }
        Ok(if items.len() == 1 {
            items.pop().expect("one")
        } else {
            Expr::Seq(items)
        })
    }
}

fn lex(src: &str) -> Result<Vec<(usize, Tok)>, GbnfError> {
    let err = |offset: usize, m: &str| GbnfError {
        offset,
        message: m.to_string(),
    };
    let mut out = Vec::new();
    let mut it = src.char_indices().peekable();
    while let Some(&(at, c)) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '#' => {
                for (_, c) in it.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            ':' => {
                if !src[at..].starts_with("::=") {
                    return Err(err(at, "expected `::=`"));
                }
                it.next();
                it.next();
                it.next();
                out.push((at, Tok::Define));
            }
            '"' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        None => return Err(err(at, "unterminated string literal")),
                        Some((_, '"')) => break,
                        Some((p, '\\')) => s.push(escape(&mut it, p)?),
                        Some((_, c)) => s.push(c),
                    }
                }
                out.push((at, Tok::Literal(s)));
            }
            '[' => {
                it.next();
                let neg = it.next_if(|&(_, c)| c == '^').is_some();
                let mut ranges = Vec::new();
                loop {
                    let lo = match it.next() {
                        None => return Err(err(at, "unterminated character class")),
                        Some((_, ']')) => break,
                        Some((p, '\\')) => escape(&mut it, p)?,
                        Some((_, c)) => c,
                    };
                    // `a-z`, but a `-` before `]` is a plain dash.
                    let is_range = it.peek().is_some_and(|&(_, c)| c == '-')
                        && !src[it.peek().map_or(0, |p| p.0) + 1..].starts_with(']');
                    if is_range {
                        it.next();
                        let hi = match it.next() {
                            None => return Err(err(at, "unterminated character class")),
                            Some((p, '\\')) => escape(&mut it, p)?,
                            Some((_, c)) => c,
                        };
                        if hi < lo {
                            return Err(err(at, "a character range runs backwards"));
                        }
                        ranges.push((lo, hi));
                    } else {
                        ranges.push((lo, lo));
                    }
                }
                if ranges.is_empty() && !neg {
                    return Err(err(at, "an empty character class matches nothing"));
                }
                out.push((at, Tok::Class(neg, ranges)));
            }
            '.' => {
                it.next();
                out.push((at, Tok::Any));
            }
            '(' => {
                it.next();
                out.push((at, Tok::LParen));
            }
            ')' => {
                it.next();
                out.push((at, Tok::RParen));
            }
            '|' => {
                it.next();
                out.push((at, Tok::Pipe));
            }
            '*' | '+' | '?' => {
                it.next();
                let (min, max) = match c {
                    '*' => (0, None),
                    '+' => (1, None),
                    _ => (0, Some(1)),
                };
                out.push((at, Tok::Repeat(min, max)));
            }
            '{' => {
                let close = src[at..]
                    .find('}')
                    .ok_or_else(|| err(at, "unterminated `{`"))?;
                let inner = &src[at + 1..at + close];
                let num = |s: &str| -> Result<u32, GbnfError> {
                    s.trim()
                        .parse::<u32>()
                        .map_err(|_| err(at, "expected `{m}`, `{m,}` or `{m,n}`"))
                };
                let (min, max) = match inner.split_once(',') {
                    None => {
                        let m = num(inner)?;
                        (m, Some(m))
                    }
                    Some((a, b)) if b.trim().is_empty() => (num(a)?, None),
                    Some((a, b)) => (num(a)?, Some(num(b)?)),
                };
                if max.is_some_and(|m| m < min) {
                    return Err(err(at, "a repetition's maximum is below its minimum"));
                }
                while it.next_if(|&(p, _)| p <= at + close).is_some() {}
                out.push((at, Tok::Repeat(min, max)));
            }
            c if c.is_ascii_alphanumeric() || c == '-' || c == '_' => {
                let mut name = String::new();
                while let Some((_, c)) =
                    it.next_if(|&(_, c)| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    name.push(c);
                }
                out.push((at, Tok::Name(name)));
            }
            c => return Err(err(at, &format!("unexpected character {c:?}"))),
        }
    }
    Ok(out)
}

/// The character after a backslash (at byte `at`).
fn escape(
    it: &mut std::iter::Peekable<std::str::CharIndices<'_>>,
    at: usize,
) -> Result<char, GbnfError> {
    let bad = |m: &str| GbnfError {
        offset: at,
        message: m.to_string(),
    };
    let hex = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>, n: usize| {
        let mut v = 0u32;
        for _ in 0..n {
            let d = it
                .next()
                .and_then(|(_, c)| c.to_digit(16))
                .ok_or_else(|| bad(&format!("expected {n} hex digits")))?;
            v = v * 16 + d;
        }
        char::from_u32(v).ok_or_else(|| bad("not a Unicode scalar value"))
    };
    match it.next() {
        Some((_, 'n')) => Ok('\n'),
        Some((_, 'r')) => Ok('\r'),
        Some((_, 't')) => Ok('\t'),
        Some((_, 'x')) => hex(it, 2),
        Some((_, 'u')) => hex(it, 4),
        Some((_, 'U')) => hex(it, 8),
        Some((_, c @ ('\\' | '"' | '[' | ']' | '-' | '/' | '^' | '.'))) => Ok(c),
        Some((_, c)) => Err(bad(&format!("unknown escape `\\{c}`"))),
        None => Err(bad("a backslash ends the grammar")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_each_construct() {
        let g = r#"
            # a comment
            root ::= "yes" | "no" ws item{2,3}
            ws   ::= [ \t\n]*
            item ::= ([a-z] | "-")+ [^"\\] .?
        "#;
        let lark = gbnf_to_lark(g).unwrap();
        let want = "start: r0_root\n\
            r0_root: \"yes\" | (\"no\" r1_ws (r2_item){2,3})\n\
            r1_ws: (/[\\x{20}\\x{9}\\x{a}]/)*\n\
            r2_item: (/[a-z]/ | \"-\")+ /[^\\x{22}\\x{5c}]/ (/(?s:.)/)?\n";
        assert_eq!(lark, want);
    }

    #[test]
    fn errors_name_the_place() {
        let e = gbnf_to_lark("root ::= foo").unwrap_err();
        assert_eq!(e.offset, 9);
        assert!(e.message.contains("undefined rule `foo`"), "{e}");
        assert!(
            gbnf_to_lark("item ::= \"a\"")
                .unwrap_err()
                .message
                .contains("no `root`")
        );
        assert!(
            gbnf_to_lark("root ::= \"a")
                .unwrap_err()
                .message
                .contains("unterminated")
        );
        assert!(
            gbnf_to_lark("root ::= (\"a\"")
                .unwrap_err()
                .message
                .contains("`)`")
        );
        assert!(
            gbnf_to_lark("root ::= [z-a]")
                .unwrap_err()
                .message
                .contains("backwards")
        );
        assert!(
            gbnf_to_lark("root ::= \"a\"{3,1}")
                .unwrap_err()
                .message
                .contains("maximum")
        );
        assert!(
            gbnf_to_lark("root ::= *")
                .unwrap_err()
                .message
                .contains("must follow")
        );
        assert!(gbnf_to_lark("").unwrap_err().message.contains("no rule"));
    }

    #[test]
    fn escapes_and_dashes() {
        let lark = gbnf_to_lark(r#"root ::= "\x41\u00e9\"" [a-] [\]\-]"#).unwrap();
        assert_eq!(
            lark,
            "start: r0_root\nr0_root: \"Aé\\\"\" /[a\\x{2d}]/ /[\\x{5d}\\x{2d}]/\n"
        );
    }
}
