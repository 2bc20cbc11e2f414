//! The shape of the source tree, checked from the sources themselves so it stays true: which
//! layer may use which, that the simulator only sees the cost↔sim contract, and the size limits
//! (no file over 600 lines, no function over 80).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const MAX_FILE_LINES: usize = 600;
const MAX_FN_LINES: usize = 80;

/// Functions allowed over [`MAX_FN_LINES`], each with its reason: `(file, fn, reason)`.
const LONG_FN_EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// Top-level modules each layer must not use. Data flows one way: catalog/profile → fit, cost →
/// deploy (which hands the simulator its inputs) → plan → report → cli; the simulator sees costs
/// only through `step`.
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "catalog",
        &[
            "cost",
            "sim",
            "plan",
            "report",
            "cli",
            "deploy",
            "calibrate",
            "fit",
            "validate",
        ],
    ),
    (
        "profile",
        &[
            "cost",
            "sim",
            "plan",
            "report",
            "cli",
            "deploy",
            "calibrate",
        ],
    ),
    (
        "fit",
        &[
            "cost",
            "sim",
            "plan",
            "report",
            "cli",
            "deploy",
            "calibrate",
        ],
    ),
    (
        "step",
        &[
            "cost", "sim", "plan", "report", "cli", "deploy", "catalog", "fit",
        ],
    ),
    (
        "cost",
        &[
            "sim",
            "plan",
            "report",
            "cli",
            "deploy",
            "calibrate",
            "validate",
            "fit",
        ],
    ),
    (
        "calibrate",
        &["sim", "plan", "report", "cli", "deploy", "validate", "fit"],
    ),
    (
        "deploy",
        &["plan", "report", "cli", "calibrate", "validate"],
    ),
    (
        "sim",
        &[
            "cost",
            "fit",
            "deploy",
            "profile",
            "plan",
            "report",
            "cli",
            "calibrate",
            "validate",
        ],
    ),
    ("plan", &["report", "cli", "calibrate", "validate"]),
    ("validate", &["report", "cli", "calibrate"]),
    ("report", &["cli", "calibrate"]),
];

fn src_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("src is readable")
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// Every source file with its path relative to `src/` and its text.
fn sources() -> Vec<(String, String)> {
    let root = src_root();
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    files
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, std::fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The module path of a file: `plan/search.rs` → `[plan, search]`, `plan/mod.rs` → `[plan]`.
fn module_path(rel: &str) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts
        .last()
        .is_some_and(|p| p == "mod" || p == "lib" || p == "main")
    {
        parts.pop();
    }
    parts
}

/// The code of a file without comments and string literals (replaced by spaces, lines kept).
fn code_only(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    let blank = |out: &mut Vec<u8>, c: u8| out.push(if c == b'\n' { b'\n' } else { b' ' });
    while i < b.len() {
        let c = b[i];
        if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                out.push(b' ');
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    out.extend(b"  ");
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    out.extend(b"  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, b[i]);
                    i += 1;
                }
            }
        } else if c == b'r' && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) && is_raw_start(b, i)
        {
            let hashes = b[i + 1..].iter().take_while(|&&h| h == b'#').count();
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            let body = i + 2 + hashes;
            let end = find(b, body, &close).map_or(b.len(), |e| e + close.len());
            for &x in &b[i..end] {
                blank(&mut out, x);
            }
            i = end;
        } else if c == b'"' {
            out.push(b' ');
            i += 1;
            while i < b.len() && b[i] != b'"' {
                let step = if b[i] == b'\\' { 2 } else { 1 };
                for k in 0..step {
                    if let Some(&x) = b.get(i + k) {
                        blank(&mut out, x);
                    }
                }
                i += step;
            }
            out.push(b' ');
            i += 1;
        } else if c == b'\'' {
            // a char literal ('x', '\n', '{'); a lifetime ('a) is left alone
            let len = if b.get(i + 1) == Some(&b'\\') {
                b[i + 2..].iter().position(|&x| x == b'\'').map(|p| p + 3)
            } else if b.get(i + 2) == Some(&b'\'') {
                Some(3)
            } else {
                None
            };
            match len {
                Some(n) => {
                    out.extend(std::iter::repeat_n(b' ', n));
                    i += n;
                }
                None => {
                    out.push(c);
                    i += 1;
                }
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn is_raw_start(b: &[u8], i: usize) -> bool {
    let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
    let hashes = b[i + 1..].iter().take_while(|&&h| h == b'#').count();
    !prev_ident && b.get(i + 1 + hashes) == Some(&b'"')
}

fn find(hay: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

/// The top-level modules a file uses through `crate::x` or `super::…::x` paths.
fn uses(rel: &str, code: &str) -> Vec<(usize, String)> {
    let here = module_path(rel);
    let mut found = Vec::new();
    for (n, line) in code.lines().enumerate() {
        let words: Vec<&str> = line
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| w.contains("::"))
            .collect();
        for w in words {
            let segs: Vec<&str> = w.split("::").filter(|s| !s.is_empty()).collect();
            let top = match segs.first() {
                Some(&"crate") => segs.get(1).map(|s| s.to_string()),
                Some(&"super") => {
                    let ups = segs.iter().take_while(|&&s| s == "super").count();
                    // `super` from a file module `a/b.rs` names `a`; from `a/mod.rs`, the crate
                    let base = here.len().saturating_sub(ups);
                    if base == 0 {
                        segs.get(ups).map(|s| s.to_string())
                    } else {
                        Some(here[0].clone())
                    }
                }
                _ => None,
            };
            if let Some(t) = top {
                found.push((n + 1, t));
            }
        }
    }
    found
}

#[test]
fn layers_use_only_what_is_below_them() {
    let mut broken = Vec::new();
    for (rel, text) in sources() {
        let Some(layer) = module_path(&rel).first().cloned() else {
            continue;
        };
        let Some((_, banned)) = FORBIDDEN.iter().find(|(l, _)| *l == layer) else {
            continue;
        };
        for (line, used) in uses(&rel, &code_only(&text)) {
            if banned.contains(&used.as_str()) {
                broken.push(format!("src/{rel}:{line}: {layer} uses {used}"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_simulator_looks_nothing_up() {
    let mut broken = Vec::new();
    for (rel, text) in sources() {
        if !rel.starts_with("sim/") {
            continue;
        }
        for (n, line) in code_only(&text).lines().enumerate() {
            let calls_catalog = line.split("catalog::").skip(1).any(|rest| {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                rest[name.len()..].trim_start().starts_with('(')
            });
            if calls_catalog || line.contains("fit(") {
                broken.push(format!("src/{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "the simulator resolves its own inputs:\n{}",
        broken.join("\n")
    );
}

#[test]
fn no_source_file_is_over_the_limit() {
    let long: Vec<String> = sources()
        .into_iter()
        .filter(|(_, t)| t.lines().count() > MAX_FILE_LINES)
        .map(|(rel, t)| format!("src/{rel}: {} lines", t.lines().count()))
        .collect();
    assert!(
        long.is_empty(),
        "files over {MAX_FILE_LINES} lines:\n{}",
        long.join("\n")
    );
}

/// `(name, first line, lines)` of every function with a body.
fn functions(code: &str) -> Vec<(String, usize, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(name) = fn_name(line) else { continue };
        // the body opens at the first `{` at bracket depth 0 after the name; `;` first: no body
        let mut depth = 0i64;
        let mut open = None;
        'scan: for (j, l) in lines.iter().enumerate().skip(i) {
            let start = if j == i {
                line.find("fn ").unwrap_or(0)
            } else {
                0
            };
            for c in l[start..].replace("->", "  ").chars() {
                match c {
                    '(' | '[' | '<' => depth += 1,
                    ')' | ']' | '>' => depth -= 1,
                    '{' if depth <= 0 => {
                        open = Some(j);
                        break 'scan;
                    }
                    ';' if depth <= 0 => break 'scan,
                    _ => {}
                }
            }
        }
        let Some(open) = open else { continue };
        let mut braces = 0i64;
        let mut end = None;
        'body: for (j, l) in lines.iter().enumerate().skip(open) {
            for c in l.chars() {
                match c {
                    '{' => braces += 1,
                    '}' => {
                        braces -= 1;
                        if braces == 0 {
                            end = Some(j);
                            break 'body;
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(end) = end {
            out.push((name, i + 1, end - i + 1));
        }
    }
    out
}

fn fn_name(line: &str) -> Option<String> {
    let t = line.trim_start();
    let idx = t.find("fn ")?;
    let before = &t[..idx];
    let qualifiers_only = before
        .split_whitespace()
        .all(|w| w.starts_with("pub") || matches!(w, "const" | "async" | "unsafe" | "extern"));
    if !qualifiers_only {
        return None;
    }
    let name: String = t[idx + 3..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!name.is_empty()).then_some(name)
}

#[test]
fn no_function_is_over_the_limit() {
    let mut long = BTreeMap::new();
    for (rel, text) in sources() {
        for (name, line, n) in functions(&code_only(&text)) {
            let excepted = LONG_FN_EXCEPTIONS
                .iter()
                .any(|(f, g, _)| *f == rel && *g == name);
            if n > MAX_FN_LINES && !excepted {
                long.insert(format!("src/{rel}:{line}"), format!("{name} ({n} lines)"));
            }
        }
    }
    let list: Vec<String> = long.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    assert!(
        list.is_empty(),
        "functions over {MAX_FN_LINES} lines:\n{}",
        list.join("\n")
    );
}

#[test]
fn the_checks_see_what_they_check() {
    // a function of 3 lines, one without a body, braces in strings and chars ignored
    let code = code_only(
        "fn a() -> Vec<u8> {\n    let s = \"}{\"; let c = '{';\n}\ntrait T { fn b(&self); }\n",
    );
    assert_eq!(functions(&code), vec![("a".to_string(), 1, 3)]);
    assert_eq!(
        uses(
            "plan/search.rs",
            "use super::super::report::format;\nuse crate::sim::Load;"
        ),
        vec![(1, "report".to_string()), (2, "sim".to_string())]
    );
    assert_eq!(
        uses("plan/mod.rs", "use super::cost;"),
        vec![(1, "cost".to_string())]
    );
    assert_eq!(
        uses("plan/slo.rs", "use super::search;"),
        vec![(1, "plan".to_string())]
    );
}
