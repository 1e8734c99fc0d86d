//! Writes the seed corpora: `cargo run -p fuzz-entry --bin fuzz-seeds` regenerates
//! `fuzz/corpus/<target>/` from the generated seeds (`fuzz_entry::seeds`) plus copies of the
//! repository's own examples (the sample core.yaml, the scenario files, the configtxgen block).
//!
//! Files it did not write (crash inputs added by hand, regressions) are left alone. Deterministic:
//! running it twice writes the same bytes.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Repository files copied into a target's corpus: (target, directory, extension).
const EXAMPLES: [(&str, &str, &str); 4] = [
    ("config_yaml", "sampleconfig", "yaml"),
    ("config_yaml", "peer-core/tests/data/config", "yaml"),
    ("scenario_file", "scenarios", "yaml"),
    ("genesis_block", "peer-core/tests/data/blocks", "block"),
];

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().context("the workspace root")?.to_path_buf();
    let corpus = root.join("fuzz").join("corpus");
    let mut written = 0;
    for seed in fuzz_entry::seeds::seeds() {
        write(&corpus.join(seed.target).join(&seed.name), &seed.bytes)?;
        written += 1;
    }
    for (target, dir, extension) in EXAMPLES {
        let mut files: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .with_context(|| format!("reading {dir}"))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing {dir}"))?;
        files.retain(|path| path.extension().is_some_and(|e| e == extension));
        files.sort();
        for path in files {
            let name = format!("example-{}-{}", dir.replace('/', "-"), path.file_name().context("a file name")?.to_string_lossy());
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            write(&corpus.join(target).join(name), &bytes)?;
            written += 1;
        }
    }
    println!("wrote {written} seed files under {}", corpus.display());
    Ok(())
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a corpus directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}
