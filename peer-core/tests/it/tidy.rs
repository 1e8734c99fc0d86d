//! Texts that leave the process: gRPC status messages, errors and log lines are for operators
//! and clients. Notes for the project's developers (issue numbers, plans) belong in comments.

use std::path::Path;

use peer_core::node::services::DiscoveryService;
use proto::discovery::discovery_server::Discovery;

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
            let quoted = lower.contains('"');
            let note = ["issue #", "(issue", "issues/", "issue 1", "issue 2", "issue 3", "issue 4", "issue 5", "issue 6", "issue 7", "issue 8", "issue 9"]
                .iter()
                .any(|needle| lower.contains(needle));
            if quoted && note {
                found.push(format!("{}:{}: {}", path.display(), index + 1, line.trim()));
            }
        }
    }
}

#[test]
fn no_issue_numbers_in_texts_that_leave_the_process() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut found = Vec::new();
    for crate_dir in ["peer-core/src", "proto/src"] {
        internal_notes_in_strings(&root.join(crate_dir), &mut found);
    }
    assert!(found.is_empty(), "internal notes in texts sent to clients or logged:\n{}", found.join("\n"));
}

#[tokio::test]
async fn unimplemented_methods_answer_in_fabric_words() {
    let request = tonic::Request::new(proto::discovery::SignedRequest::default());
    let status = DiscoveryService.discover(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
    assert_eq!(status.message(), "method Discover not implemented: service discovery is not supported by this peer");
}
