//! Texts that leave the process: gRPC status messages, errors and log lines are for operators
//! and clients. Notes for the project's developers (issue numbers, plans) belong in comments.

use std::path::Path;

/// Lines of code (not comments) under `dir` whose string literals mention an issue number.
fn internal_notes_in_strings(dir: &Path, found: &mut Vec<String>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            internal_notes_in_strings(&path, found);
            continue;
        }
        if path.extension().is_none_or(|ext| ext != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (index, line) in text.lines().enumerate() {
            // The code before a trailing comment; comment lines are skipped whole.
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let code = code.split(" // ").next().unwrap_or(code);
            let lower = code.to_ascii_lowercase();
            if lower.contains('"') && mentions_an_issue(&lower) {
                found.push(format!("{}:{}: {}", path.display(), index + 1, line.trim()));
            }
        }
    }
}

/// `issue #5`, `issue 17`, `(issue #8)`, `issues/12`: not `issuer` or `issued`.
fn mentions_an_issue(text: &str) -> bool {
    text.match_indices("issue").any(|(at, _)| {
        let rest = &text[at + "issue".len()..];
        if rest.starts_with("s/") {
            return true;
        }
        let rest = rest.trim_start_matches(' ');
        rest.starts_with('#') || rest.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[test]
fn no_issue_numbers_in_texts_that_leave_the_process() {
    assert!(mentions_an_issue("\"discovery arrives later (issue #5)\""));
    assert!(mentions_an_issue("see issue 17"));
    assert!(!mentions_an_issue("(issuer: {issuer}) issued by"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for crate_dir in ["peer-core/src", "proto/src"] {
        internal_notes_in_strings(&root.join(crate_dir), &mut found);
    }
    assert!(found.is_empty(), "internal notes in texts sent to clients or logged:\n{}", found.join("\n"));
}

fn rust_files(dir: &Path, found: &mut Vec<std::path::PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// Every source file of the workspace's crates says what it is for in a `//!` doc at its top.
#[test]
fn every_source_file_opens_with_a_module_doc() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut files = Vec::new();
    for dir in [
        "peer-core/src",
        "peer-core/tests",
        "peer-core/benches",
        "proto/src",
        "sim/src",
        "sim/tests",
        "fuzz-entry/src",
        "bench/src",
        "tests/e2e",
    ] {
        rust_files(&root.join(dir), &mut files);
    }
    assert!(files.len() > 100, "found only {} files", files.len());
    let missing: Vec<String> = files
        .iter()
        .filter(|path| !std::fs::read_to_string(path).unwrap().starts_with("//!"))
        .map(|path| path.strip_prefix(root).unwrap().display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a //! module doc at the top:\n{}", missing.join("\n"));
}

/// lib.rs's module doc names every public module (the map a reader starts from).
#[test]
fn the_library_doc_lists_every_module() {
    let lib = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let doc: String = lib.lines().filter(|l| l.starts_with("//!")).collect::<Vec<_>>().join("\n");
    let unlisted: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ").and_then(|m| m.strip_suffix(';')))
        .filter(|module| !doc.contains(&format!("[`{module}`]")))
        .collect();
    assert!(unlisted.is_empty(), "modules missing from lib.rs's doc: {unlisted:?}");
}

/// peer-core's modules in layers, bottom first: a module may import (`crate::x`) only from
/// modules of lower layers. Keeps the domain (ledger, channels, gossip, blocks) from reaching up
/// into the services or the start path, and the env (the world) from knowing any protocol.
const LAYERS: &[&[&str]] = &[
    &["config", "errors", "gotime", "metadata", "metrics"],
    &["env"],
    &["logging", "msp"],
    &["ledger"],
    &["channel"],
    &["channels", "proposal"],
    &["net"],
    &["blocks"],
    &["gossip"],
    &["services"],
    &["node"],
    &["testkit"],
];

/// The `crate::x` modules a source file imports or names (comment lines left out).
fn crate_references(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
        for (at, _) in line.match_indices("crate::") {
            if at > 0 && line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue; // `peer_core::...` or another crate's path
            }
            let name: String = line[at + "crate::".len()..].chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn imports_point_down_the_layers() {
    assert_eq!(crate_references("use crate::node::start;\n// crate::gossip in a comment\nlet a = my_crate::x;"), ["node"]);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let layer_of = |module: &str| LAYERS.iter().position(|layer| layer.contains(&module));
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap();
    let modules: Vec<&str> = lib.lines().filter_map(|l| l.strip_prefix("pub mod ").and_then(|m| m.strip_suffix(';'))).collect();
    let unplaced: Vec<&&str> = modules.iter().filter(|m| layer_of(m).is_none()).collect();
    assert!(unplaced.is_empty(), "modules in no layer of the table: {unplaced:?}");
    let mut violations = Vec::new();
    for module in &modules {
        let mut files = Vec::new();
        let dir = src.join(module);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        } else {
            files.push(src.join(format!("{module}.rs")));
        }
        let own = layer_of(module).unwrap();
        for file in files {
            for used in crate_references(&std::fs::read_to_string(&file).unwrap()) {
                // The test kit serves every module's unit tests (it exists only for tests, so a
                // product path through it would not build without the feature).
                if used == *module || used == "testkit" {
                    continue;
                }
                match layer_of(&used) {
                    Some(layer) if layer < own => {}
                    _ => violations.push(format!("{} uses crate::{used}", file.strip_prefix(&src).unwrap().display())),
                }
            }
        }
    }
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "imports that do not point down the layers:\n{}", violations.join("\n"));
}
