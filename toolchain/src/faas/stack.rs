//! The stack file (`stack.yml`) and the templates' `template.yml`: the parts
//! of OpenFaaS's formats shunt uses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde::{Deserialize, Serialize};

/// The parts of an OpenFaaS stack file shunt uses (unknown keys ignored).
#[derive(Deserialize)]
pub struct Stack {
    #[serde(default)]
    pub functions: BTreeMap<String, Function>,
}

#[derive(Deserialize, Clone)]
pub struct Function {
    pub lang: Option<String>,
    pub handler: Option<String>,
    /// The image the function is deployed as (`shunt faas build` records
    /// its bundles under this reference in the daemon's image store).
    pub image: Option<String>,
    #[serde(default)]
    pub environment: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    pub build_options: Vec<String>,
}

/// `template/<lang>/template.yml`.
#[derive(Deserialize)]
pub struct Template {
    #[allow(dead_code)]
    pub language: Option<String>,
    #[serde(default)]
    pub build_options: Vec<BuildOption>,
    pub handler_folder: Option<String>,
    /// shunt's build recipe (faas-cli ignores this key).
    pub shunt: Option<Recipe>,
}

#[derive(Deserialize)]
pub struct BuildOption {
    pub name: String,
    #[serde(default)]
    pub packages: Vec<String>,
}

#[derive(Deserialize, Clone)]
pub struct Recipe {
    pub build: Vec<String>,
    pub native_build: Vec<String>,
    pub binary: String,
}

/// One built function, as `shunt faas up` needs it.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Bundle {
    pub name: String,
    pub lang: String,
    /// "shunt" or "native".
    pub variant: String,
    pub dir: PathBuf,
    pub binary: PathBuf,
    pub environment: BTreeMap<String, String>,
}

/// A stack file and the directory its paths are relative to.
pub struct Loaded {
    pub path: PathBuf,
    pub dir: PathBuf,
    pub stack: Stack,
}

pub fn load_stack(file: Option<&Path>) -> Result<Loaded> {
    let path = match file {
        Some(f) => f.to_path_buf(),
        None => ["stack.yaml", "stack.yml"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow!("no stack.yaml or stack.yml here; name one with -f"))?,
    };
    let text = shunt_userfile::read_to_string(&path, shunt_userfile::limit::STACK)?;
    let stack = parse_stack(&path, &text)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    Ok(Loaded { path, dir, stack })
}

/// How deep brackets may nest in a stack file. Real stack files nest a few
/// levels; the YAML parser takes time quadratic in the depth (100,000
/// nested `[` took 24 s), so deeper input is refused before it is parsed.
const MAX_NESTING: usize = 64;

/// Parses the text of the stack file `path` (named in errors).
pub fn parse_stack(path: &Path, text: &str) -> Result<Stack> {
    check_nesting(path, text)?;
    let stack: Stack = serde_yaml_ng::from_str(text)
        .map_err(|e| anyhow!("{}: not a valid stack file: {}", path.display(), one_line(&e.to_string())))?;
    if stack.functions.is_empty() {
        bail!("{}: no functions", path.display());
    }
    // Names and paths become directories that builds clear and fill
    // (`build/<name>/`, `build/.shunt/<name>/`): `..`, `/x` or `""` there
    // would delete the stack or files outside it. Checked before any file
    // is touched.
    for (name, f) in &stack.functions {
        shunt_manager::names::check("function", name)
            .map_err(|e| anyhow!("{}: {e} (function names are RFC 1123 labels, as faas-cli requires)", path.display()))?;
        if let Some(h) = &f.handler {
            inside("handler", h).map_err(|why| anyhow!("{}: function {name}: handler {h:?} {why}", path.display()))?;
        }
        if let Some(lang) = &f.lang {
            if lang.is_empty() || lang.contains('/') || lang == "." || lang == ".." || lang.contains('\0') {
                bail!("{}: function {name}: lang {lang:?} is not a template name", path.display());
            }
        }
    }
    Ok(stack)
}

/// Whether `p` names a path inside the directory it is relative to: not
/// absolute, no `..` (a handler of `..` would be copied into itself).
pub(crate) fn inside(what: &str, p: &str) -> std::result::Result<(), String> {
    let path = Path::new(p);
    if p.is_empty() || p.contains('\0') {
        return Err(format!("is not a {what} path"));
    }
    if path.is_absolute() {
        return Err("is absolute; give a path inside the stack's directory".into());
    }
    if path.components().any(|c| c == std::path::Component::ParentDir) {
        return Err("leaves the stack's directory (`..`); give a path inside it".into());
    }
    Ok(())
}

/// Refuses YAML whose flow collections (`[`, `{`) nest deeper than
/// [`MAX_NESTING`]. Brackets inside quoted strings count too: harmless,
/// since no stack file has 64 unbalanced ones.
fn check_nesting(path: &Path, text: &str) -> Result<()> {
    let mut depth = 0usize;
    for b in text.bytes() {
        match b {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    bail!("{}: brackets nest more than {MAX_NESTING} levels deep; not a stack file", path.display());
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

pub(crate) fn selected<'a>(l: &'a Loaded, filter: &[String]) -> Result<Vec<(&'a String, &'a Function)>> {
    for f in filter {
        if !l.stack.functions.contains_key(f) {
            bail!("{}: no function named {f:?}", l.path.display());
        }
    }
    Ok(l.stack.functions.iter().filter(|(n, _)| filter.is_empty() || filter.contains(n)).collect())
}

/// A function's template, checked to be a shunt template.
pub(crate) fn template_of(l: &Loaded, name: &str, f: &Function) -> Result<(String, PathBuf, Template)> {
    let stack = l.path.display();
    let lang = f.lang.clone().ok_or_else(|| anyhow!("{stack}: function {name}: no `lang`"))?;
    let dir = l.dir.join("template").join(&lang);
    let file = dir.join("template.yml");
    if !file.is_file() {
        bail!(
            "{stack}: function {name}: lang `{lang}` has no template ({} is missing); \
             copy the shunt templates next to the stack (`cp -r faasd-templates/template .`) or pull them",
            file.display()
        );
    }
    let text = shunt_userfile::read_to_string(&file, shunt_userfile::limit::STACK)?;
    check_nesting(&file, &text)?;
    let t: Template = serde_yaml_ng::from_str(&text)
        .map_err(|e| anyhow!("{}: not a valid template.yml: {}", file.display(), one_line(&e.to_string())))?;
    if let Some(folder) = &t.handler_folder {
        inside("handler_folder", folder).map_err(|why| anyhow!("{}: handler_folder {folder:?} {why}", file.display()))?;
    }
    if t.shunt.is_none() {
        bail!("{stack}: function {name}: template `{lang}` is not a shunt template ({} has no `shunt:` section)", file.display());
    }
    Ok((lang, dir, t))
}

/// Reads a template directory's template.yml (for tools that build a
/// function outside a stack, like the benchmarks).
pub fn read_template(dir: &Path) -> Result<Template> {
    let file = dir.join("template.yml");
    let text = shunt_userfile::read_to_string(&file, shunt_userfile::limit::STACK)?;
    serde_yaml_ng::from_str(&text).map_err(|e| anyhow!("{}: {}", file.display(), one_line(&e.to_string())))
}

/// A function with no stack settings (for the benchmarks).
pub fn bare_function(lang: &str) -> Function {
    Function { lang: Some(lang.into()), handler: None, image: None, environment: BTreeMap::new(), build_options: Vec::new() }
}
