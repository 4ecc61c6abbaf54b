//! Applying the rules to Go assembly files: the rewritten texts, the
//! manifest entries, and every reason to refuse.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::asm::{self, AsmFile};
use crate::manifest::{EntryHook, FileEntry, FunctionEntry, SiteEntry};
use crate::rules::{self, Rewrite, Rule};

/// An assembly file to scan.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Import path of its package (symbols `·X` are `<package>.X`).
    pub package: String,
    /// Where the go command sees it: the overlay key.
    pub path: PathBuf,
    /// The path recorded in the manifest (relative, stable across machines).
    pub rel: String,
}

/// A rewritten file: the overlay maps `key` to a file holding `contents`.
#[derive(Debug, Clone)]
pub struct Rewritten {
    pub key: PathBuf,
    pub rel: String,
    pub contents: String,
}

/// One reason the sources cannot be rewritten safely. Each names the file,
/// line and function, so that the fix (a new rule in `rules.rs`) is obvious.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("{file}:{line}: SYSCALL in {function} has no shunt rewrite rule")]
    UnknownSite { file: String, line: usize, function: String },
    #[error("{file}:{line}: {function} has {found} SYSCALL site(s) but its shunt rule expects {expected}")]
    SiteCount { file: String, line: usize, function: String, found: usize, expected: usize },
    #[error("the shunt rule for {function} matches no function in the scanned files")]
    MissingFunction { function: String },
    #[error("the shunt rule for {function} matches {found}, in {file}, and another name of the same rule")]
    DuplicateFunction { function: String, found: String, file: String },
    #[error(
        "{file}:{line}: in {function}, this PC-relative branch crosses the SYSCALL at line {site_line}, \
         whose {rewrite} rewrite is several instructions"
    )]
    CrossingBranch { file: String, line: usize, function: String, site_line: usize, rewrite: &'static str },
    #[error("{file}:{line}: {message}")]
    Parse { file: String, line: usize, message: String },
    #[error("{file}: {message}")]
    Entry { file: String, message: String },
    #[error("{file}: {message}")]
    Io { file: String, message: String },
}

/// Generation refused: every problem found, each one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GenerateError {
    pub context: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for GenerateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot build the shunt Go target for {}: ", self.context)?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        f.write_str(" (a syscall site shunt does not know would bypass the gate: extend gotarget/src/rules.rs)")
    }
}

impl std::error::Error for GenerateError {}

/// What `rewrite` produced.
#[derive(Debug, Clone, Default)]
pub struct Output {
    pub files: Vec<Rewritten>,
    pub manifest_files: Vec<FileEntry>,
    pub entry: Option<EntryHook>,
}

/// Scans `sources`, applies `rules`, and (when `hook_entry`) redirects the
/// ELF entry point through the auxv scan. `read` returns a file's text.
pub fn rewrite(
    sources: &[SourceFile],
    rules: &[Rule],
    hook_entry: bool,
    read: &dyn Fn(&SourceFile) -> std::io::Result<String>,
) -> Result<Output, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut out = Output::default();
    // Which rule names were found, and where (to catch missing and doubled rules).
    let mut found: BTreeMap<&'static str, String> = BTreeMap::new();
    let mut rule_of: BTreeMap<&str, &Rule> = BTreeMap::new();
    for r in rules {
        for f in &r.functions {
            rule_of.insert(f, r);
        }
    }

    for src in sources {
        let file = src.path.display().to_string();
        let text = match read(src) {
            Ok(t) => t,
            Err(e) => {
                problems.push(Problem::Io { file, message: e.to_string() });
                continue;
            }
        };
        let is_entry_file = hook_entry && src.package == "runtime" && text.contains(rules::ENTRY_FUNCTION);
        if !text.contains("SYSCALL") && !is_entry_file {
            continue;
        }
        let parsed = match asm::parse(&text) {
            Ok(p) => p,
            Err(e) => {
                problems.push(Problem::Parse { file, line: e.line, message: e.message });
                continue;
            }
        };
        let mut edits: Vec<Edit> = Vec::new();
        let mut functions = Vec::new();
        for func in &parsed.functions {
            let name = func.name(&src.package);
            if is_entry_file && name == rules::ENTRY_FUNCTION {
                match entry_edit(func) {
                    Ok(edit) => {
                        out.entry = Some(EntryHook {
                            path: src.rel.clone(),
                            function: name.clone(),
                            line: edit.line,
                            rewrite: format!("jmp {}", rules::RT0_HOOK),
                        });
                        edits.push(edit);
                    }
                    Err(message) => problems.push(Problem::Entry { file: file.clone(), message }),
                }
            }
            let sites = func.syscall_sites();
            if sites.is_empty() {
                continue;
            }
            let Some(rule) = rule_of.get(name.as_str()).copied() else {
                let line = func.stmts[sites[0]].line;
                problems.push(Problem::UnknownSite { file: file.clone(), line, function: name });
                continue;
            };
            let key = rule.functions.iter().copied().find(|f| *f == name).unwrap_or(rule.functions[0]);
            if let Some(prev) = rule.functions.iter().find_map(|f| found.get(f)) {
                problems.push(Problem::DuplicateFunction { function: rule.functions.join(" / "), found: name.clone(), file: prev.clone() });
            }
            found.insert(key, file.clone());
            if sites.len() != rule.sites.len() {
                let at = sites.get(rule.sites.len()).or(sites.last()).copied().unwrap_or(sites[0]);
                problems.push(Problem::SiteCount {
                    file: file.clone(),
                    line: func.stmts[at].line,
                    function: name,
                    found: sites.len(),
                    expected: rule.sites.len(),
                });
                continue;
            }
            let mut entries = Vec::new();
            for (&site, &rw) in sites.iter().zip(&rule.sites) {
                let stmt = &func.stmts[site];
                if rw.expands() {
                    for b in func.branches_crossing(site) {
                        problems.push(Problem::CrossingBranch {
                            file: file.clone(),
                            line: b.line,
                            function: name.clone(),
                            site_line: stmt.line,
                            rewrite: rw.name(),
                        });
                    }
                }
                if let Some(text) = rw.replacement() {
                    edits.push(Edit { line: stmt.line, span: stmt.span.clone(), text: text.into(), note: rw.name() });
                }
                entries.push(SiteEntry { line: stmt.line, rewrite: rw.name().into() });
            }
            let why = (rule.sites.iter().any(|r| *r != Rewrite::Call) || rule.why != rules::PLAIN).then(|| rule.why.to_owned());
            functions.push(FunctionEntry { name, line: func.line, sites: entries, why });
        }
        if !functions.is_empty() {
            out.manifest_files.push(FileEntry { path: src.rel.clone(), package: src.package.clone(), functions });
        }
        if !edits.is_empty() {
            out.files.push(Rewritten { key: src.path.clone(), rel: src.rel.clone(), contents: apply(&parsed, edits) });
        }
    }

    for r in rules {
        if !r.functions.iter().any(|f| found.contains_key(f)) {
            problems.push(Problem::MissingFunction { function: r.functions.join(" / ") });
        }
    }
    if hook_entry && out.entry.is_none() && !problems.iter().any(|p| matches!(p, Problem::Entry { .. })) {
        problems.push(Problem::Entry {
            file: "package runtime".into(),
            message: format!("no {} (the linux/amd64 ELF entry point) found", rules::ENTRY_FUNCTION),
        });
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// A replacement of one statement.
struct Edit {
    line: usize,
    span: std::ops::Range<usize>,
    text: String,
    note: &'static str,
}

/// The entry function must be exactly `JMP _rt0_amd64(SB)`: anything else
/// means Go's start-up changed and the hook needs a fresh look.
fn entry_edit(func: &asm::Function) -> Result<Edit, String> {
    match func.stmts.as_slice() {
        [jmp] if jmp.mnemonic == "JMP" && jmp.operands == rules::ENTRY_JUMP => Ok(Edit {
            line: jmp.line,
            span: jmp.span.clone(),
            text: rules::ENTRY_REPLACEMENT.into(),
            note: "entry hook (reads AT_SHUNT_ENTRY)",
        }),
        _ => Err(format!(
            "{} (line {}) is not the single `JMP {}` the entry hook expects",
            rules::ENTRY_FUNCTION,
            func.line,
            rules::ENTRY_JUMP
        )),
    }
}

/// Applies the edits; line count and the position of every other statement
/// stay the same, so Go's positions (DWARF, panics) still match GOROOT.
fn apply(parsed: &AsmFile, mut edits: Vec<Edit>) -> String {
    edits.sort_by_key(|e| (e.line, e.span.start));
    let mut lines = parsed.lines.clone();
    let mut by_line: BTreeMap<usize, Vec<Edit>> = BTreeMap::new();
    for e in edits {
        by_line.entry(e.line).or_default().push(e);
    }
    for (line, mut es) in by_line {
        let l = &mut lines[line - 1];
        let notes: Vec<&str> = es.iter().map(|e| e.note).collect();
        let note = format!("\t// shunt: {}", notes.join(", "));
        // Right to left, so earlier spans stay valid.
        es.sort_by_key(|e| std::cmp::Reverse(e.span.start));
        for e in es {
            l.replace_range(e.span.clone(), &e.text);
        }
        l.push_str(&note);
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(package: &str, name: &str) -> SourceFile {
        SourceFile { package: package.into(), path: PathBuf::from(format!("/g/src/{name}")), rel: name.into() }
    }

    fn run(text: &str, rules: &[Rule]) -> Result<Output, Vec<Problem>> {
        let t = text.to_owned();
        rewrite(&[src("runtime", "runtime/x.s")], rules, false, &move |_| Ok(t.clone()))
    }

    fn rule(name: &'static str, sites: Vec<Rewrite>) -> Rule {
        Rule { functions: vec![name], sites, why: "test" }
    }

    #[test]
    fn rewrites_by_function_name() {
        let out = run(
            "TEXT runtime·a(SB),0,$0\n\tMOVL $1, AX\n\tSYSCALL\t// hi\n\tRET\nTEXT runtime·b(SB),0,$0\n\tSYSCALL\n",
            &[rule("runtime.a", vec![Rewrite::Call]), rule("runtime.b", vec![Rewrite::TailJump])],
        )
        .unwrap();
        let text = &out.files[0].contents;
        assert!(text.contains("\tCALL\tshunt_syscall(SB)\t// hi\t// shunt: call\n"), "{text}");
        assert!(text.contains("\tJMP\tshunt_syscall_exit(SB)\t// shunt: tail_jump"), "{text}");
        assert_eq!(text.lines().count(), 6, "line numbers are preserved");
        assert_eq!(out.manifest_files[0].functions[1].sites[0].line, 6);
    }

    #[test]
    fn unknown_site_names_file_function_and_line() {
        let e = run("TEXT runtime·a(SB),0,$0\n\tSYSCALL\nTEXT runtime·zz(SB),0,$0\n\tNOP\n\tSYSCALL\n", &[rule("runtime.a", vec![Rewrite::Call])])
            .unwrap_err();
        assert_eq!(
            e,
            vec![Problem::UnknownSite { file: "/g/src/runtime/x.s".into(), line: 5, function: "runtime.zz".into() }]
        );
        assert_eq!(e[0].to_string(), "/g/src/runtime/x.s:5: SYSCALL in runtime.zz has no shunt rewrite rule");
    }

    #[test]
    fn missing_function_and_wrong_count() {
        let e = run(
            "TEXT runtime·a(SB),0,$0\n\tSYSCALL\n\tSYSCALL\n",
            &[rule("runtime.a", vec![Rewrite::Call]), rule("runtime.gone", vec![Rewrite::Call])],
        )
        .unwrap_err();
        assert!(matches!(&e[0], Problem::SiteCount { line: 3, found: 2, expected: 1, .. }), "{e:?}");
        assert_eq!(e[1], Problem::MissingFunction { function: "runtime.gone".into() });
    }

    #[test]
    fn expanding_rewrite_refuses_crossing_branch() {
        let e = run("TEXT runtime·c(SB),0,$0\n\tJEQ 2(PC)\n\tSYSCALL\n\tRET\n", &[rule("runtime.c", vec![Rewrite::InlineFallback])])
            .unwrap_err();
        assert!(matches!(&e[0], Problem::CrossingBranch { line: 2, site_line: 3, .. }), "{e:?}");
        // The same branch over a one-instruction rewrite is fine.
        run("TEXT runtime·c(SB),0,$0\n\tJEQ 2(PC)\n\tSYSCALL\n\tRET\n", &[rule("runtime.c", vec![Rewrite::Call])]).unwrap();
    }

    #[test]
    fn entry_hook() {
        let text = "TEXT _rt0_amd64_linux(SB),NOSPLIT,$-8\n\tJMP\t_rt0_amd64(SB)\n\nTEXT _rt0_amd64_linux_lib(SB),NOSPLIT,$0\n\tJMP\t_rt0_amd64_lib(SB)\n";
        let t = text.to_owned();
        let out = rewrite(&[src("runtime", "runtime/rt0_linux_amd64.s")], &[], true, &move |_| Ok(t.clone())).unwrap();
        assert_eq!(out.entry.as_ref().unwrap().line, 2);
        assert!(out.files[0].contents.contains("\tJMP\tshunt_rt0(SB)\t// shunt:"));
        assert!(out.files[0].contents.contains("\tJMP\t_rt0_amd64_lib(SB)\n"));
        let e = rewrite(&[src("runtime", "runtime/rt0_linux_amd64.s")], &[], true, &|_| Ok("TEXT _rt0_amd64_linux(SB),0,$0\n\tNOP\n\tJMP _rt0_amd64(SB)\n".into()))
            .unwrap_err();
        assert!(matches!(&e[0], Problem::Entry { .. }), "{e:?}");
    }
}
