//! The dependencies between layers that must never exist (ARCHITECTURE.md), checked from the
//! source: every `crate::<module>` path a file names, in `use` lines or inline, including
//! the members of `use crate::{a, b::c}` groups.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// (directory under src, modules of the crate its files must not name)
const FORBIDDEN: &[(&str, &[&str])] = &[
    (
        "log",
        &[
            "replica",
            "coordinator",
            "controller",
            "handlers",
            "server",
            "node",
            "security",
        ],
    ),
    (
        "record",
        &[
            "replica",
            "coordinator",
            "controller",
            "handlers",
            "server",
            "node",
            "security",
            "log",
        ],
    ),
    ("coordinator", &["node", "handlers", "server"]),
    ("handlers", &["log", "server"]),
    ("replica", &["handlers", "server", "node", "coordinator"]),
];

/// (directory under src, the only modules of the crate its files may name besides itself)
const ALLOWED_ONLY: &[(&str, &[&str])] = &[
    ("raft", &[]),
    ("security", &["config", "protocol"]),
    // Share-partitions are a pure state machine fed by the handlers; only settings come in.
    ("share", &["config"]),
    // `dlog rebalance` is a client of the protocol: it reaches the cluster only over the wire
    // (the peer client), never a broker's state.
    ("rebalance", &["controller"]),
];

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The first path segment after every `crate::` in `text`.
fn crate_modules(text: &str) -> BTreeSet<String> {
    let mut modules = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    for (index, _) in text.match_indices("crate::") {
        // Skip `dlog::crate_...` look-alikes: the match must start a path.
        let before = text[..index].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[index + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A group: every top-level member's first segment.
            let mut depth = 0usize;
            let mut member_start = true;
            for (offset, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => member_start = true,
                    c if c.is_whitespace() => {}
                    _ if member_start && depth == 0 => {
                        member_start = false;
                        let name = ident(&group[offset..]);
                        if !name.is_empty() {
                            modules.insert(name);
                        }
                    }
                    _ => {}
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                modules.insert(name);
            }
        }
    }
    modules
}

/// Every `crate::<module>` named by a file under src/`layer` that `allowed` refuses.
fn violations(src: &Path, layer: &str, allowed: impl Fn(&str) -> bool) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(&src.join(layer), &mut files);
    assert!(
        !files.is_empty(),
        "src/{layer} has no files: update this test"
    );
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable source file");
        for module in crate_modules(&text) {
            if !allowed(&module) {
                found.push(format!("{} names crate::{module}", file.display()));
            }
        }
    }
    found
}

#[test]
fn layers_import_only_what_they_may() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = Vec::new();
    for (layer, forbidden) in FORBIDDEN {
        found.extend(violations(&src, layer, |module| {
            !forbidden.contains(&module)
        }));
    }
    for (layer, allowed) in ALLOWED_ONLY {
        found.extend(violations(&src, layer, |module| {
            module == *layer || allowed.contains(&module)
        }));
    }
    assert!(
        found.is_empty(),
        "layer rules broken (see ARCHITECTURE.md):\n{}",
        found.join("\n")
    );
}

#[test]
fn storage_has_no_kafka_protocol_errors() {
    // Storage returns its own error types; handlers map them to Kafka codes.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("log"), &mut files);
    rust_files(&src.join("record"), &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|file| {
            let text = std::fs::read_to_string(file).expect("readable source file");
            text.contains("ResponseError")
        })
        .map(|file| file.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "Kafka protocol errors in storage: {offenders:?}"
    );
}

#[test]
fn the_scanner_sees_groups_and_inline_paths() {
    let text = "use crate::{log::x, node::{A, B}};\nfn f() { crate::server::run(); }\n";
    let found: Vec<String> = crate_modules(text).into_iter().collect();
    assert_eq!(found, ["log", "node", "server"]);
}
