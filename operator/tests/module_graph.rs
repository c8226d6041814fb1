//! The operator's modules import one way: this test reads every file under `src/`, follows its
//! `crate::`, `super::` and `self::` paths to the files that define them, and fails on any cycle
//! (naming the files in it). Run it alone with `cargo test -p sluice-operator --test module_graph`.
//!
//! A node is a file (`foo.rs` and its parts in `foo/` are separate nodes, so a part importing its
//! parent while the parent imports the part is a cycle too). `main.rs` is left out: it uses the
//! library by its crate name and nothing imports it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
};

type Module = Vec<String>;

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every library file with its module path.
fn files() -> BTreeMap<Module, PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut paths = Vec::new();
    walk(&src(), &mut paths);
    let mut modules = BTreeMap::new();
    for path in paths {
        let relative = path.strip_prefix(src()).unwrap().with_extension("");
        let mut module: Module = relative.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        match module.last().map(String::as_str) {
            Some("main") if module.len() == 1 => continue,
            Some("lib") if module.len() == 1 => module.clear(),
            Some("mod") => {
                module.pop();
            }
            _ => {}
        }
        modules.insert(module, path);
    }
    modules
}

/// The file's text without an inline `#[cfg(test)] mod tests { … }` (whose `super` is the file).
fn code_of(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap();
    let mut code = String::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        if line.trim() == "#[cfg(test)]" {
            let rest: Vec<&str> = lines.clone().take(3).collect();
            if rest.iter().any(|l| l.trim_start().starts_with("mod tests {")) {
                break;
            }
        }
        if !line.trim_start().starts_with("//") {
            code.push_str(line);
            code.push('\n');
        }
    }
    code
}

/// Expands the use tree starting at `text` (just after `crate::` etc.) into paths.
fn expand(text: &str) -> Vec<Module> {
    fn tree(chars: &[char], i: &mut usize) -> Vec<Module> {
        let mut prefix: Module = Vec::new();
        loop {
            while *i < chars.len() && chars[*i].is_whitespace() {
                *i += 1;
            }
            if *i < chars.len() && chars[*i] == '{' {
                *i += 1;
                let mut out = Vec::new();
                loop {
                    // A trailing comma leaves an empty entry: it names nothing.
                    for mut sub in tree(chars, i).into_iter().filter(|sub| !sub.is_empty()) {
                        let mut full = prefix.clone();
                        full.append(&mut sub);
                        out.push(full);
                    }
                    while *i < chars.len() && chars[*i].is_whitespace() {
                        *i += 1;
                    }
                    if *i < chars.len() && chars[*i] == ',' {
                        *i += 1;
                        continue;
                    }
                    if *i < chars.len() && chars[*i] == '}' {
                        *i += 1;
                    }
                    return out;
                }
            }
            let start = *i;
            while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
                *i += 1;
            }
            if *i == start {
                return vec![prefix];
            }
            prefix.push(chars[start..*i].iter().collect());
            if chars[*i..].starts_with(&[':', ':']) {
                *i += 2;
            } else {
                return vec![prefix];
            }
        }
    }
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    tree(&chars, &mut i)
}

/// The longest prefix of `path` that is a file.
fn file_of(path: &[String], known: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|m| known.contains_key(m))
}

/// Items a file re-exports from one of its parts (`pub use part::Item;`), with that part: a
/// path through the re-export depends on the part, not on the file re-exporting it.
type Reexports = BTreeMap<(Module, String), Module>;

fn reexports(known: &BTreeMap<Module, PathBuf>) -> Reexports {
    let mut out = Reexports::new();
    for (module, path) in known {
        let code = code_of(path);
        for (at, _) in code.match_indices("pub use ") {
            for used in expand(code[at + "pub use ".len()..].trim_start_matches("self::")) {
                let mut full = module.clone();
                full.extend(used.iter().cloned());
                if let (Some(item), Some(target)) = (used.last(), file_of(&full, known))
                    && target != *module
                {
                    out.insert((module.clone(), item.clone()), target);
                }
            }
        }
    }
    out
}

/// The files `module`'s code refers to.
fn imports(module: &Module, code: &str, known: &BTreeMap<Module, PathBuf>, reexported: &Reexports) -> BTreeSet<Module> {
    let mut out = BTreeSet::new();
    for (anchor, base) in [
        ("crate::", Module::new()),
        ("super::", module[..module.len().saturating_sub(1)].to_vec()),
        ("self::", module.clone()),
    ] {
        for (at, _) in code.match_indices(anchor) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            for path in expand(&code[at + anchor.len()..]) {
                let mut full = base.clone();
                full.extend(path);
                let target = file_of(&full, known).map(|file| {
                    full.get(file.len())
                        .and_then(|item| reexported.get(&(file.clone(), item.clone())))
                        .cloned()
                        .unwrap_or(file)
                });
                if let Some(target) = target.filter(|t| t != module) {
                    out.insert(target);
                }
            }
        }
    }
    // A child module named without a prefix (`handlers::handle`).
    for child in known
        .keys()
        .filter(|k| k.len() == module.len() + 1 && k.starts_with(module))
    {
        let Some(last) = child.last() else { continue };
        let needle = format!("{last}::");
        let named = code.match_indices(&needle).any(|(at, _)| {
            let before = code[..at].chars().next_back();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
        });
        if named {
            out.insert(child.clone());
        }
    }
    out
}

fn name(module: &Module) -> String {
    if module.is_empty() {
        "lib".to_owned()
    } else {
        module.join("::")
    }
}

#[test]
fn no_module_imports_its_way_back_to_itself() {
    let known = files();
    let reexported = reexports(&known);
    let graph: BTreeMap<Module, BTreeSet<Module>> = known
        .iter()
        .map(|(m, path)| (m.clone(), imports(m, &code_of(path), &known, &reexported)))
        .collect();
    // Tarjan's strongly connected components: any with more than one file is a cycle.
    struct State<'a> {
        graph: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<&'a Module, usize>,
        low: BTreeMap<&'a Module, usize>,
        stack: Vec<&'a Module>,
        on_stack: BTreeSet<&'a Module>,
        cycles: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a Module) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on_stack.insert(v);
        for w in &s.graph[v] {
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(name(w));
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.cycles.push(component);
            }
        }
    }
    let mut state = State {
        graph: &graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        cycles: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    println!(
        "{} files, {} imports",
        graph.len(),
        graph.values().map(BTreeSet::len).sum::<usize>()
    );
    assert!(
        state.cycles.is_empty(),
        "import cycles among the operator's files: {:?}",
        state.cycles
    );
}
