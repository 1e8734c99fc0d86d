//! core.yaml: finding it, reading it with `CORE_*` env overrides, and validating every value.
//!
//! Fabric 2.2 finds the file through `FABRIC_CFG_PATH` (or `./`, then `/etc/hyperledger/fabric`),
//! lets any key be overridden by `CORE_<KEY>` and coerces bad values to zero. We find it the same
//! way and accept Fabric's own files unchanged, but a bad value is an error naming the key, where
//! it came from and the text. Precedence, highest first: a non-empty `CORE_*` env var, the file,
//! Fabric's default for the key. Env vars are passed in as a snapshot ([`EnvVars`]), never read
//! from the process here, so tests and the simulator control them.
//!
//! [`load`] touches the file system (it is called by the CLI); [`Config::from_yaml`] does not.

mod keys;
pub mod reader;
pub mod tree;
pub mod value;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

pub use keys::*;
pub use reader::{Origin, ValueError};
pub use value::{HostPort, format_duration, parse_duration};

/// Environment variables as seen by the config loader.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EnvVars(BTreeMap<String, String>);

impl EnvVars {
    pub fn new() -> Self {
        EnvVars::default()
    }

    /// Takes the variables that matter to config loading: `FABRIC_*` and `CORE_*`.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        EnvVars(
            pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .filter(|(k, _)| k.starts_with("CORE_") || k.starts_with("FABRIC_"))
                .collect(),
        )
    }

    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.0.insert(name.to_string(), value.to_string());
        self
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }
}

/// Something worth logging that came up while loading (the caller logs it once logging is set up).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub level: NoteLevel,
    /// The Fabric logger name the message belongs to.
    pub target: &'static str,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum NoteLevel {
    Debug,
    Info,
    Warn,
}

impl Note {
    pub fn debug(target: &'static str, message: impl Into<String>) -> Self {
        Note { level: NoteLevel::Debug, target, message: message.into() }
    }
    pub fn info(target: &'static str, message: impl Into<String>) -> Self {
        Note { level: NoteLevel::Info, target, message: message.into() }
    }
    pub fn warn(target: &'static str, message: impl Into<String>) -> Self {
        Note { level: NoteLevel::Warn, target, message: message.into() }
    }
}

/// The prefix Fabric puts on every config loading failure.
const FATAL: &str = "Fatal error when initializing core config : ";

/// Why core.yaml could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No core.yaml in any searched directory. Fabric's text; when something named `core.<ext>`
    /// is there but is not a file (a directory, a dangling link), it is named after it.
    #[error(
        "{FATAL}Could not find config file. Please make sure that FABRIC_CFG_PATH is set to a path which contains core.yaml{}",
        not_files_hint(not_files)
    )]
    NotFound { searched: Vec<PathBuf>, not_files: Vec<PathBuf> },
    /// `FABRIC_CFG_PATH` names a directory that does not exist (Fabric's text; when the path
    /// exists but is a file, that is said after it).
    #[error("{FATAL}FABRIC_CFG_PATH {} does not exist{}", path.display(), if *exists { " (it is not a directory)" } else { "" })]
    CfgPathMissing { path: PathBuf, exists: bool },
    /// The file exists but could not be read.
    #[error("{FATAL}error when reading core config file: reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    /// The file is found but is in a format we do not read.
    #[error("{FATAL}error when reading core config file: {}: peer-core reads core.yaml (YAML or JSON), not {format}", path.display())]
    UnsupportedFormat { path: PathBuf, format: String },
    /// The file is larger than [`tree::MAX_CONFIG_BYTES`] (checked before it is read).
    #[error("{FATAL}error when reading core config file: {}: the file is {size} bytes, more than the {} bytes a config may have", path.display(), tree::MAX_CONFIG_BYTES)]
    TooLarge { path: PathBuf, size: u64 },
    /// Malformed YAML (or text that is not UTF-8). Line and column are 1-based; 0 when unknown.
    #[error("{FATAL}error when reading core config file: While parsing config: {}: {message}", position(path, *line, *column))]
    Syntax { path: PathBuf, line: u64, column: u64, message: String },
    /// One or more settings are invalid; all of them are listed.
    #[error("{FATAL}{}", InvalidList(.0))]
    Invalid(Vec<ValueError>),
}

fn not_files_hint(not_files: &[PathBuf]) -> String {
    let names: Vec<String> = not_files.iter().map(|p| p.display().to_string()).collect();
    match names.as_slice() {
        [] => String::new(),
        _ => format!(" ({} is there but is not a readable file)", names.join(", ")),
    }
}

/// `file:line:column`, or just the file when the parser gave no position.
fn position(path: &Path, line: u64, column: u64) -> String {
    if line == 0 { path.display().to_string() } else { format!("{}:{line}:{column}", path.display()) }
}

struct InvalidList<'a>(&'a [ValueError]);

impl fmt::Display for InvalidList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} invalid settings:", many.len())?;
                for error in many {
                    write!(f, "\n  - {error}")?;
                }
                Ok(())
            }
        }
    }
}

/// The extensions viper tries, in its order; the first existing `core.<ext>` wins.
const EXTENSIONS: [&str; 7] = ["json", "toml", "yaml", "yml", "properties", "props", "prop"];

/// The directories searched for core.yaml, as Fabric 2.2 does.
pub fn search_dirs(env: &EnvVars, cwd: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    if let Some(dir) = env.get("FABRIC_CFG_PATH").filter(|d| !d.is_empty()) {
        let dir = absolute(cwd, Path::new(dir));
        if !dir.is_dir() {
            let exists = dir.exists();
            return Err(ConfigError::CfgPathMissing { path: dir, exists });
        }
        return Ok(vec![dir]);
    }
    let mut dirs = vec![cwd.to_path_buf()];
    let etc = Path::new("/etc/hyperledger/fabric");
    if etc.is_dir() {
        dirs.push(etc.to_path_buf());
    }
    Ok(dirs)
}

/// Finds the config file: the first `core.<ext>` in the first search directory that has one.
pub fn locate(env: &EnvVars, cwd: &Path) -> Result<PathBuf, ConfigError> {
    let dirs = search_dirs(env, cwd)?;
    let mut not_files = Vec::new();
    for dir in &dirs {
        for ext in EXTENSIONS {
            let candidate = dir.join(format!("core.{ext}"));
            if candidate.is_file() {
                return Ok(candidate);
            }
            if std::fs::symlink_metadata(&candidate).is_ok() {
                not_files.push(candidate);
            }
        }
    }
    Err(ConfigError::NotFound { searched: dirs, not_files })
}

/// Finds, reads and validates core.yaml.
pub fn load(env: &EnvVars, cwd: &Path) -> Result<Loaded, ConfigError> {
    let path = locate(env, cwd)?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default().to_string();
    if !matches!(ext.as_str(), "yaml" | "yml" | "json") {
        return Err(ConfigError::UnsupportedFormat { path, format: ext });
    }
    let bytes = read_bounded(&path)?;
    let text = String::from_utf8(bytes).map_err(|err| {
        let valid = &err.as_bytes()[..err.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|b| **b == b'\n').count() as u64 + 1;
        let column = valid.iter().rev().take_while(|b| **b != b'\n').count() as u64 + 1;
        let byte = err.as_bytes()[valid.len()];
        ConfigError::Syntax { path: path.clone(), line, column, message: format!("the file is not UTF-8 text (byte 0x{byte:02x})") }
    })?;
    Config::from_yaml(&text, &path, env)
}

/// Reads the file, refusing one over [`tree::MAX_CONFIG_BYTES`] before reading it (a huge or
/// endless file must not be pulled into memory).
fn read_bounded(path: &Path) -> Result<Vec<u8>, ConfigError> {
    use std::io::Read;
    let read_error = |source| ConfigError::Read { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(read_error)?;
    let size = file.metadata().map_err(read_error)?.len();
    let limit = tree::MAX_CONFIG_BYTES as u64;
    if size > limit {
        return Err(ConfigError::TooLarge { path: path.to_path_buf(), size });
    }
    // The size from metadata can lie (files under /proc report 0): read one byte past the limit.
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > limit {
        return Err(ConfigError::TooLarge { path: path.to_path_buf(), size: bytes.len() as u64 });
    }
    Ok(bytes)
}

fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() { path.to_path_buf() } else { cwd.join(path) }
}

/// A validated config and what is worth logging about it.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub config: Config,
    pub notes: Vec<Note>,
}

impl Config {
    /// Parses and validates core.yaml text. `path` is where the text came from: it is used in
    /// error messages and relative paths resolve against its directory.
    pub fn from_yaml(text: &str, path: &Path, env: &EnvVars) -> Result<Loaded, ConfigError> {
        let root = tree::parse(text).map_err(|err| ConfigError::Syntax {
            path: path.to_path_buf(),
            line: err.line,
            column: err.column,
            message: err.message,
        })?;
        if !matches!(root.kind, tree::NodeKind::Map(_)) {
            return Err(ConfigError::Syntax {
                path: path.to_path_buf(),
                line: root.line,
                column: root.column,
                message: "the top level of core.yaml must be a map of sections (peer:, ledger:, …)".into(),
            });
        }
        let dir = path.parent().unwrap_or(Path::new("/"));
        let mut reader = reader::Reader::new(&root, path, dir, env);
        reader.check_case_duplicates();
        let config = keys::read(&mut reader, path);
        if !reader.errors.is_empty() {
            return Err(ConfigError::Invalid(reader.errors));
        }
        let mut notes = std::mem::take(&mut reader.notes);
        for (key, origin) in reader.unknown_file_keys() {
            notes.push(Note::debug("config", format!("ignoring key {key} {origin}: peer-core does not use it")));
        }
        // A warning at the default level: a misspelled variable leaves the file's value in force.
        for (var, suggestion) in reader.unused_env_vars() {
            let message = match suggestion {
                Some(known) => format!("{var} matches no key in core.yaml; did you mean {known}?"),
                None => format!("{var} matches no key in core.yaml"),
            };
            notes.push(Note::warn("config", message));
        }
        Ok(Loaded { config, notes })
    }
}
