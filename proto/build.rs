//! Compiles `proto/**/*.proto` with protox (pure Rust, no protoc) and generates
//! prost messages plus tonic client and server stubs.

use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, root, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            let rel = path.strip_prefix(root).expect("file lies under the include root");
            out.push(rel.to_path_buf());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("proto");
    println!("cargo:rerun-if-changed=proto");

    let mut files = Vec::new();
    collect(&root, &root, &mut files)?;
    files.sort();

    let fds = protox::compile(&files, [&root])?;

    // Generated code reaches prost through `crate::wire`, which re-exports prost but
    // encodes map entries the way Go does (key and value always written).
    let mut config = tonic_prost_build::Config::new();
    config.prost_path("crate::wire");

    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Sorted iteration, hence deterministic encoding, for every proto map.
        .btree_map(".")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
