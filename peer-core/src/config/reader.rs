//! Reads typed values out of a core.yaml tree with viper's precedence: a non-empty `CORE_*`
//! environment variable, then the file, then the caller's default.
//!
//! Every getter remembers which keys were read (so unknown file keys and unused `CORE_*` variables
//! can be listed) and, instead of failing on the first bad value, records a [`ValueError`] and
//! returns `None`, so one run reports every mistake in the file at once.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::tree::{self, Node, NodeKind};
use super::value::{self, HostPort};
use super::{EnvVars, Note};

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    File {
        path: PathBuf,
        line: u64,
        column: u64,
    },
    Env {
        var: String,
    },
    /// The key is set nowhere: neither in the file nor by its env var.
    Unset {
        path: PathBuf,
        var: String,
    },
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File { path, line, column } => write!(f, "at {}:{line}:{column}", path.display()),
            Origin::Env { var } => write!(f, "in env var {var}"),
            Origin::Unset { path, var } => write!(f, "not set in {}, nor in env var {var}", path.display()),
        }
    }
}

/// One bad setting: the key, where its value came from, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ValueError {
    pub key: String,
    /// [`Origin::Unset`] when the key is missing altogether; `None` for a rule across keys.
    pub origin: Option<Origin>,
    pub reason: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(origin @ Origin::Unset { .. }) => write!(f, "{}: {} ({origin})", self.key, self.reason),
            Some(origin) => write!(f, "invalid value for {} {origin}: {}", self.key, self.reason),
            None => write!(f, "{}: {}", self.key, self.reason),
        }
    }
}

/// A value as found, before it is interpreted.
pub struct Raw<'t> {
    pub value: RawValue<'t>,
    pub origin: Origin,
}

pub enum RawValue<'t> {
    /// A scalar from an env var or the file.
    Text(String),
    /// A sequence or mapping from the file, or one parsed from an env var's YAML text.
    Tree(TreeRef<'t>),
}

pub enum TreeRef<'t> {
    Borrowed(&'t Node),
    Owned(Node),
}

impl TreeRef<'_> {
    pub fn node(&self) -> &Node {
        match self {
            TreeRef::Borrowed(node) => node,
            TreeRef::Owned(node) => node,
        }
    }
}

/// The env var viper consults for a key: `CORE_` + the key upper-cased with `.` → `_`.
pub fn env_var_name(key: &str) -> String {
    format!("CORE_{}", key.to_ascii_uppercase().replace('.', "_"))
}

pub struct Reader<'a> {
    root: &'a Node,
    file: &'a Path,
    dir: &'a Path,
    env: &'a EnvVars,
    /// Keys asked for (lower case): read, or marked known.
    used: BTreeSet<String>,
    /// Keys marked known without being read (lower case): every key below them is known too.
    known_subtrees: BTreeSet<String>,
    /// Sections already reported as not being maps (each is reported once).
    misshapen_sections: BTreeSet<String>,
    pub errors: Vec<ValueError>,
    pub notes: Vec<Note>,
}

impl<'a> Reader<'a> {
    pub fn new(root: &'a Node, file: &'a Path, dir: &'a Path, env: &'a EnvVars) -> Self {
        Reader {
            root,
            file,
            dir,
            env,
            used: BTreeSet::new(),
            known_subtrees: BTreeSet::new(),
            misshapen_sections: BTreeSet::new(),
            errors: Vec::new(),
            notes: Vec::new(),
        }
    }

    /// Records a bad setting. `origin: None` is for a rule across several keys with no single
    /// place to point at; a key that is set nowhere is [`Self::missing`].
    pub fn fail(&mut self, key: &str, origin: Option<Origin>, reason: impl Into<String>) {
        self.errors.push(ValueError { key: key.to_string(), origin, reason: reason.into() });
    }

    /// Records a required key that is set nowhere: the error names the file and the env var it
    /// could have been set in (unless a section above it is already reported as misshapen, which
    /// is the real mistake).
    pub fn missing(&mut self, key: &str, reason: impl Into<String>) {
        let lower = key.to_ascii_lowercase();
        if self.misshapen_sections.iter().any(|section| lower.starts_with(&format!("{section}."))) {
            return;
        }
        let origin = Origin::Unset { path: self.file.to_path_buf(), var: env_var_name(key) };
        self.fail(key, Some(origin), reason);
    }

    /// Where a key's value comes from, if it is set (for errors about a rule between keys).
    pub fn origin_of(&mut self, key: &str) -> Option<Origin> {
        self.raw(key).map(|raw| raw.origin)
    }

    /// Marks a subtree as known without reading it (keys for chaincode containers, 2.5 keys, …).
    pub fn known(&mut self, key: &str) {
        self.used.insert(key.to_ascii_lowercase());
        self.known_subtrees.insert(key.to_ascii_lowercase());
    }

    /// The file node at a dotted key, matching each segment case-insensitively (as Fabric 2.5+ does;
    /// 2.2 matched nested segments case-sensitively, which silently ignored `alivetimeinterval`).
    fn file_node(&self, key: &str) -> Option<&'a Node> {
        let mut node = self.root;
        for segment in key.split('.') {
            let NodeKind::Map(entries) = &node.kind else { return None };
            node = entries.iter().find(|(k, _)| k.name.eq_ignore_ascii_case(segment)).map(|(_, v)| v)?;
        }
        Some(node)
    }

    /// When `key` cannot be found because a section on its path is a scalar or a list (e.g.
    /// `peer: 5`), reports that section once: otherwise every key under it would silently fall
    /// back to its default (or be reported as missing, which points at the wrong line).
    fn check_section_shape(&mut self, key: &str) {
        let mut node = self.root;
        let mut path = String::new();
        for segment in key.split('.') {
            let NodeKind::Map(entries) = &node.kind else { break };
            let Some((name, child)) = entries.iter().find(|(k, _)| k.name.eq_ignore_ascii_case(segment)) else { return };
            if !path.is_empty() {
                path.push('.');
            }
            path.push_str(&name.name);
            if path.len() == key.len() {
                return;
            }
            let found = match &child.kind {
                NodeKind::Map(_) | NodeKind::Null => None,
                NodeKind::Scalar(text) if text.is_empty() => None,
                NodeKind::Scalar(text) => Some(format!("{text:?}")),
                NodeKind::Seq(_) => Some("a list".to_string()),
            };
            if let Some(found) = found {
                if self.misshapen_sections.insert(path.to_ascii_lowercase()) {
                    let origin = self.file_origin(child);
                    self.fail(&path, Some(origin), format!("expected a map of settings (such as {key}), found {found}"));
                }
                return;
            }
            node = child;
        }
    }

    fn file_origin(&self, node: &Node) -> Origin {
        Origin::File { path: self.file.to_path_buf(), line: node.line, column: node.column }
    }

    /// The raw value of a key, or `None` when it is unset (absent, empty, or an empty env var).
    pub fn raw(&mut self, key: &str) -> Option<Raw<'a>> {
        self.used.insert(key.to_ascii_lowercase());
        let var = env_var_name(key);
        if let Some(text) = self.env.get(&var).filter(|v| !v.is_empty()) {
            return Some(Raw { value: RawValue::Text(text.to_string()), origin: Origin::Env { var } });
        }
        let Some(node) = self.file_node(key) else {
            self.check_section_shape(key);
            return None;
        };
        let origin = self.file_origin(node);
        let value = match &node.kind {
            NodeKind::Null => return None,
            NodeKind::Scalar(text) if text.is_empty() => return None,
            NodeKind::Scalar(text) => RawValue::Text(text.clone()),
            NodeKind::Seq(_) | NodeKind::Map(_) => RawValue::Tree(TreeRef::Borrowed(node)),
        };
        Some(Raw { value, origin })
    }

    /// A scalar, as text. A list or map where a scalar belongs is an error.
    pub fn text(&mut self, key: &str) -> Option<(String, Origin)> {
        let raw = self.raw(key)?;
        match raw.value {
            RawValue::Text(text) => Some((text, raw.origin)),
            RawValue::Tree(tree) => {
                let what = if matches!(tree.node().kind, NodeKind::Seq(_)) { "a list" } else { "a map" };
                self.fail(key, Some(raw.origin), format!("expected a single value, found {what}"));
                None
            }
        }
    }

    /// Interprets a scalar with `parse`, recording its error against the key.
    pub fn parsed<T>(&mut self, key: &str, parse: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        let (text, origin) = self.text(key)?;
        match parse(&text) {
            Ok(value) => Some(value),
            Err(reason) => {
                self.fail(key, Some(origin), reason);
                None
            }
        }
    }

    pub fn string(&mut self, key: &str) -> Option<String> {
        self.text(key).map(|(text, _)| text)
    }

    /// An identifier (peer ID, network ID, MSP ID): printable text only (see
    /// [`value::check_printable`]).
    pub fn identifier(&mut self, key: &str) -> Option<String> {
        self.parsed(key, |text| value::check_printable(text).map(|()| text.to_string()))
    }

    pub fn string_or(&mut self, key: &str, default: &str) -> String {
        self.string(key).unwrap_or_else(|| default.to_string())
    }

    pub fn bool_or(&mut self, key: &str, default: bool) -> bool {
        self.parsed(key, value::parse_bool).unwrap_or(default)
    }

    pub fn duration(&mut self, key: &str) -> Option<Duration> {
        self.parsed(key, value::parse_duration)
    }

    pub fn duration_or(&mut self, key: &str, default: Duration) -> Duration {
        self.duration(key).unwrap_or(default)
    }

    /// For keys Fabric reads "get-or-default": an explicit zero also means the default. We keep
    /// that meaning (configs written for Fabric rely on it) but say so at info level.
    pub fn nonzero_duration_or(&mut self, key: &str, default: Duration) -> Duration {
        match self.duration(key) {
            Some(d) if d.is_zero() => {
                self.zero_means_default(key, &value::format_duration(default));
                default
            }
            Some(d) => d,
            None => default,
        }
    }

    /// A key for which Fabric has several values but peer-core supports exactly one.
    pub fn only(&mut self, key: &str, supported: &str, why: &str) {
        self.parsed(key, |text| {
            if text.trim().eq_ignore_ascii_case(supported) { Ok(()) } else { Err(format!("{text:?} is not supported: {why}")) }
        });
    }

    /// An integer in `min..=max`. Accepts decimal and 0x/0o/0b prefixes as Go's ParseInt(s, 0) does.
    pub fn integer(&mut self, key: &str, min: i64, max: i64) -> Option<i64> {
        self.parsed(key, |text| {
            let n = parse_int(text)?;
            if n < min || n > max {
                return Err(format!("{text} is out of range: it must be between {min} and {max}"));
            }
            Ok(n)
        })
    }

    pub fn u64_or(&mut self, key: &str, default: u64) -> u64 {
        self.integer(key, 0, i64::MAX).map_or(default, |n| n as u64)
    }

    /// Get-or-default for counts and sizes: zero means the default, as in Fabric.
    pub fn nonzero_u64_or(&mut self, key: &str, default: u64, max: u64) -> u64 {
        match self.integer(key, 0, max.min(i64::MAX as u64) as i64) {
            Some(0) => {
                self.zero_means_default(key, &default.to_string());
                default
            }
            Some(n) => n as u64,
            None => default,
        }
    }

    fn zero_means_default(&mut self, key: &str, default: &str) {
        self.notes.push(Note::info("config", format!("{key} is 0, which means the default ({default})")));
    }

    pub fn f64_in(&mut self, key: &str, min: f64, max: f64) -> Option<f64> {
        self.parsed(key, |text| {
            let x: f64 = text.trim().parse().map_err(|_| format!("{text:?} is not a number"))?;
            if !(min..=max).contains(&x) {
                return Err(format!("{text} is out of range: it must be between {min} and {max}"));
            }
            Ok(x)
        })
    }

    pub fn host_port(&mut self, key: &str) -> Option<HostPort> {
        self.parsed(key, HostPort::parse)
    }

    /// One of a fixed set of words, compared case-insensitively.
    pub fn choice<T: Copy>(&mut self, key: &str, choices: &[(&str, T)], default: T) -> T {
        self.parsed(key, |text| {
            choices.iter().find(|(name, _)| name.eq_ignore_ascii_case(text.trim())).map(|(_, v)| *v).ok_or_else(|| {
                let names: Vec<&str> = choices.iter().map(|(name, _)| *name).collect();
                format!("{text:?} is not one of {}", names.join(", "))
            })
        })
        .unwrap_or(default)
    }

    /// A list of strings: a YAML sequence of scalars, or one string split on whitespace (what
    /// Fabric does with env vars such as `CORE_PEER_GOSSIP_BOOTSTRAP="p1:7051 p2:7051"`).
    pub fn string_list(&mut self, key: &str) -> Option<Vec<(String, Origin)>> {
        let raw = self.raw(key)?;
        match raw.value {
            RawValue::Text(text) => Some(text.split_whitespace().map(|item| (item.to_string(), raw.origin.clone())).collect()),
            RawValue::Tree(tree) => match &tree.node().kind {
                NodeKind::Seq(items) => {
                    let mut out = Vec::new();
                    for item in items {
                        let origin = self.origin_within(&raw.origin, item);
                        match &item.kind {
                            NodeKind::Scalar(text) if !text.is_empty() => out.push((text.clone(), origin)),
                            NodeKind::Null | NodeKind::Scalar(_) => {}
                            _ => self.fail(key, Some(origin), "expected a list of strings, found a nested list or map"),
                        }
                    }
                    Some(out)
                }
                _ => {
                    self.fail(key, Some(raw.origin), "expected a list, found a map");
                    None
                }
            },
        }
    }

    /// A path; relative paths resolve against the directory of the config file (Fabric's GetPath).
    pub fn path(&mut self, key: &str) -> Option<PathBuf> {
        self.string(key).map(|text| self.resolve(&text))
    }

    pub fn path_list(&mut self, key: &str) -> Vec<PathBuf> {
        let items = self.string_list(key).unwrap_or_default();
        items.into_iter().map(|(text, _)| self.resolve(&text)).collect()
    }

    pub fn resolve(&self, text: &str) -> PathBuf {
        let path = Path::new(text);
        if path.is_absolute() { path.to_path_buf() } else { self.dir.join(path) }
    }

    /// A structured value (list or map). From an env var, the text is parsed as YAML, so
    /// `CORE_CHAINCODE_EXTERNALBUILDERS='[{name: b, path: /opt/b}]'` works as it does in Fabric.
    pub fn tree(&mut self, key: &str) -> Option<(TreeRef<'a>, Origin)> {
        let raw = self.raw(key)?;
        match raw.value {
            RawValue::Tree(tree) => Some((tree, raw.origin)),
            RawValue::Text(text) => match tree::parse(&text) {
                Ok(node) if matches!(node.kind, NodeKind::Seq(_) | NodeKind::Map(_)) => Some((TreeRef::Owned(node), raw.origin)),
                Ok(_) => {
                    self.fail(key, Some(raw.origin), format!("{text:?} is not a list or map"));
                    None
                }
                Err(err) => {
                    self.fail(key, Some(raw.origin), format!("{text:?} is not valid YAML: {err}"));
                    None
                }
            },
        }
    }

    /// The origin of a node nested inside a value that came from `parent`.
    pub fn origin_within(&self, parent: &Origin, node: &Node) -> Origin {
        match parent {
            Origin::File { .. } => self.file_origin(node),
            Origin::Env { .. } | Origin::Unset { .. } => parent.clone(),
        }
    }

    /// File keys that no getter asked for (leaf paths, in file order).
    pub fn unknown_file_keys(&self) -> Vec<(String, Origin)> {
        let mut out = Vec::new();
        self.collect_unknown(self.root, "", &mut out);
        out
    }

    fn collect_unknown(&self, node: &Node, path: &str, out: &mut Vec<(String, Origin)>) {
        if !path.is_empty() && self.used.contains(&path.to_ascii_lowercase()) {
            return;
        }
        match &node.kind {
            NodeKind::Map(entries) if !entries.is_empty() => {
                for (key, value) in entries {
                    let child = if path.is_empty() { key.name.clone() } else { format!("{path}.{}", key.name) };
                    self.collect_unknown(value, &child, out);
                }
            }
            _ => out.push((path.to_string(), self.file_origin(node))),
        }
    }

    /// `CORE_*` env vars (non-empty) that match no known key, each with the closest known key's
    /// variable when one is close enough (as cargo suggests a flag): usually a typo, which would
    /// otherwise leave the file's value in force without a word. Known keys are those the peer
    /// reads (Fabric's and peer-core's own), every key below a subtree marked known (settings for
    /// chaincode containers, 2.5 keys), and every key in the file.
    pub fn unused_env_vars(&self) -> Vec<(String, Option<String>)> {
        let mut known: BTreeSet<String> = self.used.iter().map(|key| env_var_name(key)).collect();
        let mut file_keys = Vec::new();
        collect_leaf_keys(self.root, "", &mut file_keys);
        known.extend(file_keys.iter().map(|key| env_var_name(key)));
        let subtrees: Vec<String> = self.known_subtrees.iter().map(|key| format!("{}_", env_var_name(key))).collect();
        self.env
            .iter()
            .filter(|(name, value)| name.starts_with("CORE_") && !value.is_empty())
            .map(|(name, _)| name)
            .filter(|name| !known.contains(*name) && !subtrees.iter().any(|prefix| name.starts_with(prefix.as_str())))
            .map(|name| (name.clone(), closest(name, &known)))
            .collect()
    }

    /// Two keys in one map that differ only by case would make lookups ambiguous.
    pub fn check_case_duplicates(&mut self) {
        let mut found = Vec::new();
        walk_case_duplicates(self.root, "", &mut found);
        for (key, node) in found {
            let origin = self.file_origin(node);
            self.fail(&key, Some(origin), "this key appears twice in the same map, spelled with different case");
        }
    }
}

fn walk_case_duplicates<'n>(node: &'n Node, path: &str, found: &mut Vec<(String, &'n Node)>) {
    let NodeKind::Map(entries) = &node.kind else { return };
    let mut seen = BTreeSet::new();
    for (key, value) in entries {
        let child = if path.is_empty() { key.name.clone() } else { format!("{path}.{}", key.name) };
        if !seen.insert(key.name.to_ascii_lowercase()) {
            found.push((child.clone(), value));
        }
        walk_case_duplicates(value, &child, found);
    }
}

/// The dotted paths of a tree's leaves (values that are not non-empty maps).
fn collect_leaf_keys(node: &Node, path: &str, out: &mut Vec<String>) {
    match &node.kind {
        NodeKind::Map(entries) if !entries.is_empty() => {
            for (key, value) in entries {
                let child = if path.is_empty() { key.name.clone() } else { format!("{path}.{}", key.name) };
                collect_leaf_keys(value, &child, out);
            }
        }
        _ if !path.is_empty() => out.push(path.to_string()),
        _ => {}
    }
}

/// The candidate closest to `name` by edit distance, if within a third of its length (rustc's
/// rule for suggesting names); ties go to the first in order, so the suggestion is stable.
pub fn closest<'c>(name: &str, candidates: impl IntoIterator<Item = &'c String>) -> Option<String> {
    let limit = name.chars().count().max(3) / 3;
    let mut best: Option<(usize, &String)> = None;
    for candidate in candidates {
        let distance = edit_distance(name, candidate);
        if distance <= limit && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate.clone())
}

/// Levenshtein distance over characters (insertions, deletions, substitutions).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitution.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// Integers as Go's `strconv.ParseInt(s, 0, 64)` reads them: optional sign, then decimal or a
/// 0x/0o/0b prefix (and `_` between digits). A leading-zero octal (`010`) is rejected as ambiguous.
pub fn parse_int(text: &str) -> Result<i64, String> {
    let bad = || format!("{text:?} is not an integer");
    let trimmed = text.trim();
    let (negative, digits) = match trimmed.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, trimmed.strip_prefix('+').unwrap_or(trimmed)),
    };
    let lower = digits.to_ascii_lowercase();
    let (radix, body) = if let Some(rest) = lower.strip_prefix("0x") {
        (16, rest)
    } else if let Some(rest) = lower.strip_prefix("0o") {
        (8, rest)
    } else if let Some(rest) = lower.strip_prefix("0b") {
        (2, rest)
    } else if lower.len() > 1 && lower.starts_with('0') {
        return Err(format!("{text:?} is ambiguous: write it without leading zeros (or with 0o for octal)"));
    } else {
        (10, lower.as_str())
    };
    let body = body.replace('_', "");
    if body.is_empty() {
        return Err(bad());
    }
    let magnitude = i128::from_str_radix(&body, radix).map_err(|_| bad())?;
    let value = if negative { -magnitude } else { magnitude };
    i64::try_from(value).map_err(|_| format!("{text} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_int("104857600"), Ok(104_857_600));
        assert_eq!(parse_int("0x10"), Ok(16));
        assert_eq!(parse_int("-5"), Ok(-5));
        assert_eq!(parse_int("0"), Ok(0));
        assert_eq!(parse_int("1_000"), Ok(1000));
        assert!(parse_int("010").unwrap_err().contains("ambiguous"));
        assert!(parse_int("1.5").unwrap_err().contains("not an integer"));
        assert!(parse_int("abc").unwrap_err().contains("not an integer"));
        assert!(parse_int("99999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn suggestions_are_the_closest_key_within_reach() {
        assert_eq!(edit_distance("CORE_PEER_GOSIP_BOOTSTRAP", "CORE_PEER_GOSSIP_BOOTSTRAP"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        let known: Vec<String> = ["CORE_PEER_GOSSIP_BOOTSTRAP", "CORE_PEER_GOSSIP_ENDPOINT", "CORE_PEER_ID"].map(String::from).to_vec();
        assert_eq!(closest("CORE_PEER_GOSIP_BOOTSTRAP", &known).as_deref(), Some("CORE_PEER_GOSSIP_BOOTSTRAP"));
        assert_eq!(closest("CORE_PEER_GOSSIPBOOTSTRAP", &known).as_deref(), Some("CORE_PEER_GOSSIP_BOOTSTRAP"));
        assert_eq!(closest("CORE_PEER_IDD", &known).as_deref(), Some("CORE_PEER_ID"));
        assert_eq!(closest("CORE_SOMETHING_ELSE_ENTIRELY", &known), None);
    }

    #[test]
    fn env_names() {
        assert_eq!(env_var_name("peer.gossip.externalEndpoint"), "CORE_PEER_GOSSIP_EXTERNALENDPOINT");
        assert_eq!(env_var_name("peer.BCCSP.SW.Hash"), "CORE_PEER_BCCSP_SW_HASH");
    }
}
