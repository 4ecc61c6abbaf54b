//! A small reader of Go assembler (`.s`) source: just enough to find the
//! `TEXT` symbols, the `SYSCALL` instructions inside them, and the
//! PC-relative branches (`JMP 3(PC)`) that an expanding rewrite could break.
//!
//! It is deliberately strict: a `SYSCALL` in a form it does not understand
//! (inside a `#define`, with operands) is reported as an error rather than
//! skipped, because a skipped site is a syscall that silently bypasses the
//! gate.

use std::ops::Range;

/// One statement (instruction or pseudo-instruction) of a source file.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// 1-based line number.
    pub line: usize,
    /// Byte range of the statement text (labels stripped) within the line.
    pub span: Range<usize>,
    /// The mnemonic as written (`MOVQ`, `SYSCALL`, `get_tls`, …).
    pub mnemonic: String,
    /// The operand text, trimmed.
    pub operands: String,
    /// Inside an `#if`/`#ifdef`/`#ifndef` … `#endif` block: may not exist in
    /// the assembled code.
    pub conditional: bool,
}

/// A `TEXT` block: a function and the statements that follow it up to the
/// next `TEXT`.
#[derive(Debug, Clone)]
pub struct Function {
    /// Symbol as written, e.g. `runtime·exit` or `·rawVforkSyscall`.
    pub raw_symbol: String,
    /// Line of the `TEXT` directive.
    pub line: usize,
    pub stmts: Vec<Stmt>,
}

/// A parsed source file.
#[derive(Debug, Clone)]
pub struct AsmFile {
    pub lines: Vec<String>,
    pub functions: Vec<Function>,
}

/// A problem that makes the file unsafe to rewrite mechanically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProblem {
    pub line: usize,
    pub message: String,
}

/// Parses `text`. Statements before the first `TEXT` are dropped (they can
/// only be directives); a `SYSCALL` there is reported.
pub fn parse(text: &str) -> Result<AsmFile, ParseProblem> {
    let lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let mut functions: Vec<Function> = Vec::new();
    let mut in_block_comment = false;
    let mut in_define = false; // inside a `#define` with `\` continuations
    let mut cond_depth = 0usize;

    for (idx, line) in lines.iter().enumerate() {
        let lineno = idx + 1;
        let code = strip_comments(line, &mut in_block_comment);
        let trimmed = code.trim();

        if in_define || trimmed.starts_with('#') {
            let directive = trimmed.trim_start_matches('#').trim_start();
            if !in_define {
                if directive.starts_with("if") {
                    cond_depth += 1;
                } else if directive.starts_with("endif") {
                    cond_depth = cond_depth.saturating_sub(1);
                }
            }
            let is_define = in_define || directive.starts_with("define");
            if is_define && has_word(&code, "SYSCALL") {
                return Err(ParseProblem {
                    line: lineno,
                    message: "SYSCALL inside a #define macro: its expansions cannot be keyed by function; \
                              extend gotarget's rewriter"
                        .into(),
                });
            }
            in_define = is_define && trimmed.ends_with('\\');
            continue;
        }

        // Statements are separated by ';'. Track byte offsets into `line`
        // (the comment-stripped `code` is a prefix-preserving copy).
        let mut start = 0usize;
        for piece in code.split(';') {
            let piece_start = start;
            start += piece.len() + 1;
            let (label_len, rest) = strip_labels(piece);
            let stmt_text = rest.trim();
            if stmt_text.is_empty() {
                continue;
            }
            let lead = rest.len() - rest.trim_start().len();
            let begin = piece_start + label_len + lead;
            let span = begin..begin + stmt_text.len();
            let (mnemonic, operands) = match stmt_text.find(|c: char| c.is_whitespace()) {
                Some(i) => (&stmt_text[..i], stmt_text[i..].trim()),
                None => (stmt_text, ""),
            };
            if mnemonic == "TEXT" {
                let sym = operands.split('(').next().unwrap_or("").trim().to_owned();
                functions.push(Function { raw_symbol: sym, line: lineno, stmts: Vec::new() });
                continue;
            }
            let stmt = Stmt {
                line: lineno,
                span,
                mnemonic: mnemonic.to_owned(),
                operands: operands.to_owned(),
                conditional: cond_depth > 0,
            };
            if stmt.mnemonic == "SYSCALL" && !stmt.operands.is_empty() {
                return Err(ParseProblem {
                    line: lineno,
                    message: format!("SYSCALL with operands ({}) is not an amd64 form the rewriter knows", stmt.operands),
                });
            }
            match functions.last_mut() {
                Some(f) => f.stmts.push(stmt),
                None if stmt.mnemonic == "SYSCALL" => {
                    return Err(ParseProblem { line: lineno, message: "SYSCALL outside any TEXT block".into() })
                }
                None => {}
            }
        }
    }
    Ok(AsmFile { lines, functions })
}

/// Removes `//` and `/* */` comments, keeping byte offsets of the code that
/// remains (comment bytes become spaces, so spans stay valid).
fn strip_comments(line: &str, in_block: &mut bool) -> String {
    let bytes = line.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    let mut in_string = false; // DATA $"..." operands may contain '/'
    while i < bytes.len() {
        if *in_block {
            if bytes[i..].starts_with(b"*/") {
                *in_block = false;
                out.extend_from_slice(b"  ");
                i += 2;
            } else {
                out.push(if bytes[i] == b'\t' { b'\t' } else { b' ' });
                i += 1;
            }
            continue;
        }
        if bytes[i] == b'"' {
            in_string = !in_string;
        } else if !in_string && bytes[i..].starts_with(b"//") {
            break;
        } else if !in_string && bytes[i..].starts_with(b"/*") {
            *in_block = true;
            out.extend_from_slice(b"  ");
            i += 2;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    // Only ASCII bytes were replaced, by ASCII bytes: still valid UTF-8.
    String::from_utf8(out).unwrap_or_default()
}

/// Strips leading `label:` prefixes; returns the stripped byte length and the rest.
fn strip_labels(piece: &str) -> (usize, &str) {
    let mut consumed = 0;
    let mut rest = piece;
    loop {
        let t = rest.trim_start();
        let ident_len = t
            .char_indices()
            .take_while(|&(_, c)| c.is_alphanumeric() || c == '_' || c == '·' || c == '$')
            .map(|(i, c)| i + c.len_utf8())
            .last()
            .unwrap_or(0);
        if ident_len > 0 && t[ident_len..].starts_with(':') {
            let skip = (rest.len() - t.len()) + ident_len + 1;
            consumed += skip;
            rest = &rest[skip..];
        } else {
            return (consumed, rest);
        }
    }
}

fn has_word(text: &str, word: &str) -> bool {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_')).any(|w| w == word)
}

impl Function {
    /// The function's full Go symbol name: `·X` becomes `<pkg>.X`, the
    /// assembler's `∕` (U+2215) becomes `/`, and an ABI selector such as
    /// `<ABIInternal>` is dropped.
    pub fn name(&self, package: &str) -> String {
        let mut s = self.raw_symbol.replace('∕', "/");
        if let Some(i) = s.find('<') {
            s.truncate(i);
        }
        if let Some(rest) = s.strip_prefix('·') {
            return format!("{package}.{rest}");
        }
        s.replace('·', ".")
    }

    /// Indices (into `stmts`) of the SYSCALL statements.
    pub fn syscall_sites(&self) -> Vec<usize> {
        self.stmts.iter().enumerate().filter(|(_, s)| s.mnemonic == "SYSCALL").map(|(i, _)| i).collect()
    }

    /// PC-relative branches (`J… n(PC)`) that would land on a different
    /// instruction if the statement at `site` grew into several
    /// instructions. Uses a lower bound on the instruction distance
    /// (statements inside `#if` blocks and lower-case macros count as none),
    /// so an uncertain case is reported too.
    pub fn branches_crossing(&self, site: usize) -> Vec<&Stmt> {
        let counts = |range: Range<usize>| -> i64 {
            self.stmts[range].iter().filter(|s| !s.conditional && counts_as_instruction(&s.mnemonic)).count() as i64
        };
        let mut out = Vec::new();
        for (b, stmt) in self.stmts.iter().enumerate() {
            let Some(n) = pc_relative_offset(&stmt.operands) else { continue };
            let crosses = if b < site {
                // Forward jump from before the site: safe if it lands at or
                // before the site's first instruction.
                n > counts(b + 1..site + 1)
            } else if b > site {
                // Backward jump from after the site: safe if it lands after it.
                -n >= counts(site + 1..b + 1)
            } else {
                false
            };
            if crosses {
                out.push(stmt);
            }
        }
        out
    }
}

/// `3(PC)` → 3, `-3(PC)` → -3.
fn pc_relative_offset(operands: &str) -> Option<i64> {
    let t = operands.trim();
    let num = t.strip_suffix("(PC)")?;
    num.trim().parse().ok()
}

/// Whether a mnemonic certainly assembles to at least one instruction (a
/// `Prog`, which is what `n(PC)` counts). Go's mnemonics are upper case;
/// lower-case names are macros (`get_tls`) whose size is unknown.
fn counts_as_instruction(m: &str) -> bool {
    !m.is_empty() && m.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_functions_sites_and_labels() {
        let src = "#include \"textflag.h\"\n\
                   TEXT runtime·a(SB),NOSPLIT,$0\n\
                   \tMOVL\t$1, AX\n\
                   \tSYSCALL // one\n\
                   lbl:\tSYSCALL; RET\n\
                   TEXT ·b<ABIInternal>(SB),NOSPLIT,$0\n\
                   \t/* SYSCALL */ RET\n";
        let f = parse(src).unwrap();
        assert_eq!(f.functions.len(), 2);
        assert_eq!(f.functions[0].name("runtime"), "runtime.a");
        assert_eq!(f.functions[1].name("syscall"), "syscall.b");
        let sites = f.functions[0].syscall_sites();
        assert_eq!(sites.len(), 2);
        let s = &f.functions[0].stmts[sites[1]];
        assert_eq!(s.line, 5);
        assert_eq!(&f.lines[4][s.span.clone()], "SYSCALL");
        assert!(f.functions[1].syscall_sites().is_empty(), "a commented SYSCALL is not a site");
    }

    #[test]
    fn package_paths_with_division_slash() {
        let f = parse("TEXT internal∕runtime∕syscall·Syscall6(SB),0,$0\n\tSYSCALL\n").unwrap();
        assert_eq!(f.functions[0].name("x"), "internal/runtime/syscall.Syscall6");
    }

    #[test]
    fn syscall_in_macro_is_refused() {
        let e = parse("#define DO(x) \\\n\tMOVL x, AX \\\n\tSYSCALL\nTEXT ·f(SB),0,$0\n").unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("#define"));
    }

    #[test]
    fn crossing_branches() {
        let src = "TEXT ·f(SB),0,$0\n\
                   \tCMPQ AX, $0\n\
                   \tJEQ 3(PC)\n\
                   \tMOVQ $1, AX\n\
                   \tSYSCALL\n\
                   \tRET\n\
                   \tJMP -1(PC)\n\
                   \tJMP -3(PC)\n";
        let f = parse(src).unwrap();
        let func = &f.functions[0];
        let site = func.syscall_sites()[0];
        let crossing: Vec<usize> = func.branches_crossing(site).iter().map(|s| s.line).collect();
        // JEQ 3(PC) at line 3 lands on RET, past the site; JMP -1(PC) lands
        // on RET (after the site); JMP -3(PC) lands on the site itself,
        // whose expansion would shift the target.
        assert_eq!(crossing, vec![3, 8]);
    }

    #[test]
    fn conditional_statements_do_not_count() {
        let src = "TEXT ·f(SB),0,$0\n\
                   \tJMP 2(PC)\n\
                   #ifdef X\n\
                   \tNOP\n\
                   #endif\n\
                   \tSYSCALL\n";
        let f = parse(src).unwrap();
        let func = &f.functions[0];
        // The distance is 1 or 2 depending on X: not provably safe.
        assert_eq!(func.branches_crossing(func.syscall_sites()[0]).len(), 1);
    }
}
