//! The shape of `src/`: no module imports one that imports it back, the
//! folders depend on each other in one direction only (model ← core ← daemon ←
//! http ← operator; cli uses model and core), and the core needs no Kubernetes
//! client and no async runtime. A failure names the cycle or the import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A module of the crate (`daemon::executor`), its file and what it imports.
#[derive(Debug)]
struct Module {
    file: PathBuf,
    /// `crate::` paths it names, braces expanded (`core::plan::Step`).
    imports: BTreeSet<String>,
    text: String,
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every module of the library, by path (`lib.rs` and `main.rs` excluded).
fn modules(src: &Path) -> BTreeMap<String, Module> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(src).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            if parts.len() == 1 && (parts[0] == "lib" || parts[0] == "main") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("read source");
            let imports = crate_paths(&text);
            out.insert(
                parts.join("::"),
                Module {
                    file: path,
                    imports,
                    text,
                },
            );
        }
    }
    out
}

/// The source without comments, so that prose naming a module is no import.
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::` path the source names: `use` trees expanded, and paths
/// written inline in code.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let code = code_of(text);
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let run = after
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(after.len());
        // A `use` tree with braces runs to its closing brace; a path to its end.
        let mut end = run;
        if after[..run].ends_with("::") && after[run..].starts_with('{') {
            let mut depth = 0;
            for (j, c) in after[run..].char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = run + j + 1;
                            break;
                        }
                    }
                    _ => {}
                }
            }
        }
        let tree: String = after[..end]
            .replace(" as ", "@")
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        expand("", &tree, &mut out);
        rest = &after[end..];
    }
    out
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str, out: &mut BTreeSet<String>) {
    let tree = tree.trim_end_matches("::");
    match tree.find('{') {
        None => {
            let path = tree.split('@').next().unwrap_or(tree);
            let joined = join(prefix, path);
            if !joined.is_empty() {
                out.insert(joined);
            }
        }
        Some(open) => {
            let head = tree[..open].trim_end_matches("::");
            let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
            let base = join(prefix, head);
            for part in split_top(inner) {
                if part == "self" {
                    out.insert(base.clone());
                } else if !part.is_empty() && part != "*" {
                    expand(&base, part, out);
                }
            }
        }
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a}::{b}"),
    }
}

/// Splits at the commas outside braces.
fn split_top(s: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The module a path lands in: its longest prefix that is a module.
fn resolve<'a>(path: &str, modules: &'a BTreeMap<String, Module>) -> Option<&'a str> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find_map(|p| modules.get_key_value(&p).map(|(k, _)| k.as_str()))
}

/// Module → modules it imports (itself and its own submodules' tests left out).
fn graph(modules: &BTreeMap<String, Module>) -> BTreeMap<&str, BTreeSet<&str>> {
    modules
        .iter()
        .map(|(name, m)| {
            let deps = m
                .imports
                .iter()
                .filter_map(|p| resolve(p, modules))
                .filter(|d| d != name && !name.starts_with(&format!("{d}::")))
                .collect();
            (name.as_str(), deps)
        })
        .collect()
}

/// A cycle of the graph, if there is one, as the modules along it.
fn find_cycle<'a>(graph: &BTreeMap<&'a str, BTreeSet<&'a str>>) -> Option<Vec<&'a str>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Open,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        graph: &BTreeMap<&'a str, BTreeSet<&'a str>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        path: &mut Vec<&'a str>,
    ) -> Option<Vec<&'a str>> {
        marks.insert(node, Mark::Open);
        path.push(node);
        for &next in graph.get(node).into_iter().flatten() {
            match marks.get(next).copied().unwrap_or(Mark::New) {
                Mark::Open => {
                    let start = path.iter().position(|&n| n == next).unwrap_or(0);
                    let mut cycle = path[start..].to_vec();
                    cycle.push(next);
                    return Some(cycle);
                }
                Mark::New => {
                    if let Some(c) = visit(next, graph, marks, path) {
                        return Some(c);
                    }
                }
                Mark::Done => {}
            }
        }
        path.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for &node in graph.keys() {
        if marks.get(node).copied().unwrap_or(Mark::New) == Mark::New {
            if let Some(c) = visit(node, graph, &mut marks, &mut Vec::new()) {
                return Some(c);
            }
        }
    }
    None
}

/// The folders each folder may import.
fn allowed(folder: &str) -> &'static [&'static str] {
    match folder {
        "model" => &["model"],
        "core" => &["core", "model"],
        "daemon" => &["daemon", "core", "model"],
        "http" => &["http", "daemon", "core", "model"],
        "operator" => &["operator", "http", "daemon", "core", "model"],
        "cli" => &["cli", "core", "model"],
        _ => &[],
    }
}

fn folder(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let modules = modules(&src_dir());
    assert!(modules.len() > 20, "found only {} modules", modules.len());
    let graph = graph(&modules);
    if let Some(cycle) = find_cycle(&graph) {
        panic!("import cycle among src/ modules: {}", cycle.join(" -> "));
    }
}

#[test]
fn folders_depend_on_each_other_in_one_direction() {
    let modules = modules(&src_dir());
    let mut wrong = Vec::new();
    for (name, deps) in graph(&modules) {
        let from = folder(name);
        for dep in deps {
            if !allowed(from).contains(&folder(dep)) {
                wrong.push(format!(
                    "{} imports {dep} ({from} may import only {:?})",
                    modules[name].file.display(),
                    allowed(from)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_core_needs_no_kubernetes_client_and_no_async_runtime() {
    let modules = modules(&src_dir());
    let mut wrong = Vec::new();
    for (name, m) in &modules {
        let code = code_of(&m.text);
        let banned: &[&str] = match folder(name) {
            "core" => &["kube::", "tokio", "hyper", "reqwest"],
            "model" => &[
                "tokio",
                "hyper",
                "kube::Client",
                "kube::Api",
                "kube::runtime",
            ],
            _ => &[],
        };
        for b in banned {
            if code.contains(b) {
                wrong.push(format!("{} uses `{b}`", m.file.display()));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_checks_see_cycles_and_use_trees() {
    let text = "use crate::a::{b::{C, D as E}, e, self};\nfn f() { crate::x::y::z(); }\n";
    let paths = crate_paths(text);
    let want: BTreeSet<String> = ["a", "a::b::C", "a::b::D", "a::e", "x::y::z"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(paths, want);

    let mut g: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    g.insert("a", ["b"].into());
    g.insert("b", ["c"].into());
    g.insert("c", ["a"].into());
    assert_eq!(find_cycle(&g), Some(vec!["a", "b", "c", "a"]));
    g.insert("c", BTreeSet::new());
    assert_eq!(find_cycle(&g), None);
}
