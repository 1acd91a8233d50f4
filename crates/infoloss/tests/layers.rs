//! The crate's layers, checked: every `crate::…` and `super::…` path in `src/` (outside `#[cfg(test)]`
//! modules and comments) may only point at its own layer or one below it.
//!
//! | layer | folder | may use |
//! |---|---|---|
//! | ground floor | `src/base` | itself |
//! | options | `src/options` | the ground floor |
//! | kernels | `src/kernels` | the ground floor |
//! | rows | `src/rows` | the ground floor, options, kernels |
//! | losses | `src/losses` | all of the above; another loss only through what its module offers at its top level |
//! | crate root | `src/lib.rs`, `src/nan_policy.rs` | everything |
//!
//! A loss reaching into another loss's submodules (`crate::losses::distill::engine::…`) is an error as
//! well: what losses share lives in `rows` or below, or is offered at the loss module's top level.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// A module path, `["losses", "distill", "engine"]`; `[]` for the crate root.
type ModPath = Vec<String>;

/// The layer a module path lies in.
fn layer(path: &[String]) -> &'static str {
    match path.first().map(String::as_str) {
        Some("base") => "base",
        Some("options") => "options",
        Some("kernels") => "kernels",
        Some("rows") => "rows",
        Some("losses") => "losses",
        _ => "crate root",
    }
}

/// Which layers a layer may use, beyond itself.
fn may_use(from: &str, to: &str) -> bool {
    match from {
        "base" => to == "base",
        "options" => matches!(to, "base" | "options"),
        "kernels" => matches!(to, "base" | "kernels"),
        "rows" => matches!(to, "base" | "options" | "kernels" | "rows"),
        "losses" => matches!(to, "base" | "options" | "kernels" | "rows" | "losses"),
        _ => true,
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

fn module_of(src: &Path, file: &Path) -> ModPath {
    let rel = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: ModPath = rel.iter().map(|c| c.to_string_lossy().into_owned()).collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The text with comments, string and char literals blanked and `#[cfg(test)]` modules removed.
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let end = text[i + 2..].find("*/").map_or(b.len(), |e| i + 2 + e + 2);
            i = end;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // a char literal ('x' or '\n'); lifetimes have no closing quote two bytes on
            let end = text[i + 1..].find('\'').map_or(b.len(), |e| i + 1 + e + 1);
            i = end;
            out.push_str("' '");
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    // drop `#[cfg(test)] mod … { … }` blocks: a unit test may drive a kernel through the public API
    while let Some(at) = out.find("#[cfg(test)]") {
        let rest = &out[at..];
        let Some(open) = rest.find('{') else { break };
        if !rest[..open].contains("mod ") {
            out.replace_range(at..at + "#[cfg(test)]".len(), "");
            continue;
        }
        let mut depth = 0usize;
        let mut end = out.len();
        for (k, c) in rest[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = at + open + k + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.replace_range(at..end, "");
    }
    out
}

/// Expands `a::{b, c::{d, e}}` into `a::b`, `a::c::d`, `a::c::e`.
fn expand(prefix: &str, tree: &str, out: &mut Vec<String>) {
    let tree = tree.trim();
    if let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
        let mut depth = 0;
        let mut start = 0;
        for (k, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    expand(prefix, &inner[start..k], out);
                    start = k + 1;
                }
                _ => {}
            }
        }
        expand(prefix, &inner[start..], out);
    } else if let Some(brace) = tree.find("::{") {
        expand(&format!("{prefix}{}::", &tree[..brace]), &tree[brace + 2..], out);
    } else if !tree.is_empty() {
        let name = tree.split(" as ").next().unwrap().trim();
        out.push(format!("{prefix}{name}"));
    }
}

/// Every `crate::…`/`super::…` path the code names: in `use` trees and inline.
fn paths_in(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    // use trees
    while let Some(at) = rest.find("use ") {
        let before_ok =
            at == 0 || !rest.as_bytes()[at - 1].is_ascii_alphanumeric() && rest.as_bytes()[at - 1] != b'_';
        let tail = &rest[at + 4..];
        if before_ok
            && (tail.starts_with("crate::") || tail.starts_with("super::") || tail.starts_with("self::"))
        {
            let end = tail.find(';').unwrap_or(tail.len());
            let tree: String = tail[..end].split_whitespace().collect::<Vec<_>>().join(" ");
            expand("", &tree, &mut out);
            rest = &tail[end..];
        } else {
            rest = tail;
        }
    }
    // inline paths
    let bytes = code.as_bytes();
    for start in ["crate::", "super::"] {
        let mut from = 0;
        while let Some(k) = code[from..].find(start) {
            let at = from + k;
            from = at + start.len();
            if at > 0
                && (bytes[at - 1].is_ascii_alphanumeric() || bytes[at - 1] == b'_' || bytes[at - 1] == b':')
            {
                continue;
            }
            let line_start = code[..at].rfind('\n').map_or(0, |n| n + 1);
            if code[line_start..at].trim_start().starts_with("use ")
                || code[line_start..at].contains("pub use ")
            {
                continue; // counted with the use trees (and multi-line trees are caught there)
            }
            let len = code[at..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(code.len() - at);
            out.push(code[at..at + len].trim_end_matches(':').to_string());
        }
    }
    out
}

/// Resolves a path to a module path plus the item, following the crate root's re-exports.
fn resolve(me: &ModPath, path: &str, root_exports: &BTreeMap<String, ModPath>) -> ModPath {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: ModPath = match segs.first() {
        Some(&"crate") => {
            segs.remove(0);
            Vec::new()
        }
        Some(&"self") => {
            segs.remove(0);
            me.clone()
        }
        _ => me.clone(),
    };
    while segs.first() == Some(&"super") {
        segs.remove(0);
        base.pop();
    }
    base.extend(segs.iter().map(|s| s.to_string()));
    // a name the crate root re-exports (`crate::Element`, `crate::info::…` through `pub use losses::info`)
    // stands for its definition; follow re-exports of re-exports a few times
    for _ in 0..4 {
        match base.first().and_then(|first| root_exports.get(first)) {
            Some(target) if target.first() != base.first() => {
                let mut t = target.clone();
                t.extend(base.drain(1..));
                base = t;
            }
            _ => break,
        }
    }
    base
}

/// `name → module path` for the crate root's `pub use a::b::{…}` and `mod`/`pub use losses::{x, y}`.
fn root_exports(lib: &str) -> BTreeMap<String, ModPath> {
    let mut map = BTreeMap::new();
    let code = code_only(lib);
    let mut rest = code.as_str();
    while let Some(at) = rest.find("pub use ") {
        let tail = &rest[at + 8..];
        let end = tail.find(';').unwrap_or(tail.len());
        let tree: String = tail[..end].split_whitespace().collect::<Vec<_>>().join(" ");
        let mut paths = Vec::new();
        expand("", &tree, &mut paths);
        for p in paths {
            let segs: ModPath = p.split("::").map(str::to_string).collect();
            if let Some(name) = segs.last() {
                map.insert(name.clone(), segs.clone());
            }
        }
        rest = &tail[end..];
    }
    map
}

#[test]
fn no_module_imports_from_a_layer_above_it_or_another_losss_internals() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let exports = root_exports(&fs::read_to_string(src.join("lib.rs")).unwrap());
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut checked = 0;
    for file in &files {
        // unit-test modules kept in files of their own (`#[cfg(test)] mod tests;`) may drive a kernel
        // through the public API, as inline `#[cfg(test)]` modules may
        if file.file_stem().is_some_and(|s| s == "tests") {
            continue;
        }
        let me = module_of(&src, file);
        let my_layer = layer(&me);
        let code = code_only(&fs::read_to_string(file).unwrap());
        for path in paths_in(&code) {
            let target = resolve(&me, &path, &exports);
            let layer = layer(&target);
            checked += 1;
            let rel = file.strip_prefix(&src).unwrap().display();
            if !may_use(my_layer, layer) {
                problems.push(format!("{rel}: `{path}` reaches up from {my_layer} into {layer}"));
            } else if my_layer == "losses"
                && layer == "losses"
                && me.get(1) != target.get(1)
                && target.len() > 3
            {
                problems.push(format!(
                    "{rel}: `{path}` reaches into the internals of another loss (use what `crate::losses::{}` offers at its top level, or move the shared code to rows/ or base/)",
                    target[1]
                ));
            }
        }
    }
    assert!(checked > 300, "the check found only {checked} paths: the parser no longer sees the code");
    assert!(problems.is_empty(), "{} layering violations:\n{}", problems.len(), problems.join("\n"));
}

#[test]
fn the_checker_sees_an_upward_import() {
    let exports = root_exports("pub use losses::{kl_div};\npub use base::{Element};");
    let code = code_only(
        "use crate::{Element, kl_div};\n// use crate::losses::nll;\nfn f() { crate::losses::softmax::g(); }\n#[cfg(test)]\nmod tests { use crate::losses::bce; }\n",
    );
    let paths = paths_in(&code);
    assert_eq!(paths, ["crate::Element", "crate::kl_div", "crate::losses::softmax::g"]);
    let me: ModPath = vec!["kernels".into(), "elementwise".into()];
    let layers: Vec<&str> = paths.iter().map(|p| layer(&resolve(&me, p, &exports))).collect();
    assert_eq!(layers, ["base", "losses", "losses"]);
    assert!(!may_use("kernels", "losses") && may_use("losses", "kernels"));
}
