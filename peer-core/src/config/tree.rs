//! The parsed core.yaml as a tree of nodes that remember where they came from.
//!
//! serde-saphyr deserializes straight into types; we want a loose tree first so that env overrides
//! can replace any key and every bad value can be reported with its file, line and column. Scalars
//! are kept as text: each key's own parser (duration, integer, bool, address) decides what is valid.
//! This module does not know any key names.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Largest core.yaml we accept. Fabric's sample is 36 KB; this bounds parser work on hostile input.
pub const MAX_CONFIG_BYTES: usize = 4 << 20;

/// A YAML value with its position (1-based line and column) in the source text.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub kind: NodeKind,
    pub line: u64,
    pub column: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    /// An empty value (`key:` with nothing after it, `~` or `null`).
    Null,
    /// Any scalar, as text. Booleans and numbers are printed back in their canonical form.
    Scalar(String),
    Seq(Vec<Node>),
    /// Entries in file order. Keys are compared case-insensitively by the reader.
    Map(Vec<(Key, Node)>),
}

/// A mapping key with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub name: String,
    pub line: u64,
    pub column: u64,
}

/// Why a YAML text could not be turned into a tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// 1-based; 0 when the parser did not report a position.
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// Parses a whole YAML document. An empty document is an empty map.
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(SyntaxError {
            line: 0,
            column: 0,
            message: format!("the file is {} bytes, more than the {} bytes a config may have", text.len(), MAX_CONFIG_BYTES),
        });
    }
    if text.trim().is_empty() {
        return Ok(Node { kind: NodeKind::Map(Vec::new()), line: 1, column: 1 });
    }
    // Repeated keys reach our visitor (PassThrough), so the error can name where the key was
    // first (`first_duplicate`); serde-saphyr's own error names neither that nor anything but
    // its API (`set DuplicateKeyPolicy in Options`).
    let options = serde_saphyr::options! { duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough };
    let spanned: Spanned<Kind> = serde_saphyr::from_str_with_options(text, options).map_err(|err| SyntaxError::from(&err))?;
    let root = spanned_to_node(spanned);
    if let Some(duplicate) = first_duplicate(&root, "") {
        return Err(duplicate);
    }
    Ok(root)
}

/// The first key (in file order) that appears twice in one map, reported at its second place:
/// YAML forbids it, and which of the two values counts would be a guess.
fn first_duplicate(node: &Node, path: &str) -> Option<SyntaxError> {
    let NodeKind::Map(entries) = &node.kind else {
        if let NodeKind::Seq(items) = &node.kind {
            return items.iter().find_map(|item| first_duplicate(item, path));
        }
        return None;
    };
    let mut seen: Vec<&Key> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let dotted = if path.is_empty() { key.name.clone() } else { format!("{path}.{}", key.name) };
        if let Some(first) = seen.iter().find(|seen| seen.name == key.name) {
            return Some(SyntaxError {
                line: key.line,
                column: key.column,
                message: format!("duplicate key '{dotted}' (first at line {})", first.line),
            });
        }
        seen.push(key);
        if let Some(duplicate) = first_duplicate(value, &dotted) {
            return Some(duplicate);
        }
    }
    None
}

impl From<&serde_saphyr::Error> for SyntaxError {
    /// One line, without the source snippet; the position is kept apart for the caller to print.
    fn from(err: &serde_saphyr::Error) -> SyntaxError {
        let location = err.location();
        SyntaxError { line: location.map_or(0, |l| l.line()), column: location.map_or(0, |l| l.column()), message: message(err) }
    }
}

/// The operator-facing text of a parse error. Where serde-saphyr's message speaks to the
/// programmer (an API hint, a `Debug` dump, counters of its own machinery, internal states), it
/// gets our own words; the rest are about the document and pass through.
fn message(err: &serde_saphyr::Error) -> String {
    use serde_saphyr::Error as E;
    // Positions are printed by the caller: drop the snippet and alias-location wrappers.
    let mut err = err;
    while let E::AliasError { error, .. } | E::WithSnippet { error, .. } = err {
        err = error;
    }
    let too_big = |what: String| format!("the document is too big to read: {what}, more than the parser allows");
    match err {
        E::MultipleDocuments { .. } => "a second YAML document starts here (---): core.yaml must hold exactly one document".to_string(),
        E::Budget { breach, .. } => too_big(budget_breach(breach)),
        E::AliasReplayLimitExceeded { total_replayed_events, .. } => {
            too_big(format!("{total_replayed_events} values repeated through aliases"))
        }
        E::AliasExpansionLimitExceeded { expansions, .. } => too_big(format!("one anchor used through aliases {expansions} times")),
        E::AliasReplayStackDepthExceeded { depth, .. } => too_big(format!("aliases nested {depth} deep")),
        E::AliasReplayCounterOverflow { .. } => too_big("more values repeated through aliases than can be counted".to_string()),
        E::DuplicateMappingKey { key: Some(key), .. } => format!("duplicate key '{key}'"),
        E::DuplicateMappingKey { key: None, .. } => "duplicate key".to_string(),
        E::IOError { cause } => format!("the text could not be read: {cause}"),
        E::InternalDepthUnderflow { .. }
        | E::InternalRecursionStackEmpty { .. }
        | E::InternalSeedReusedForMapKey { .. }
        | E::RecursiveReferencesRequireWeakTypes { .. }
        | E::CannotBorrowTransformedString { .. } => {
            format!("the YAML parser failed on this document (an internal error of the parser: {})", first_line(&err.to_string()))
        }
        other => match first_line(&other.to_string()) {
            // saphyr's own words name its internals, not the document.
            text if text.starts_with("recursion limit exceeded") => {
                "lists and maps are nested too deep to read (the parser's recursion limit)".to_string()
            }
            text => text,
        },
    }
}

/// Which of the parser's limits a document exceeded, in the document's terms.
fn budget_breach(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach as B;
    match breach {
        B::Nodes { nodes } => format!("{nodes} values once aliases are expanded"),
        B::Events { events } => format!("{events} parser events"),
        B::Aliases { aliases } => format!("{aliases} aliases"),
        B::Anchors { anchors } => format!("{anchors} anchors"),
        B::Depth { depth } => format!("lists and maps nested {depth} deep"),
        B::Documents { documents } => format!("{documents} documents"),
        B::ScalarBytes { total_scalar_bytes } => format!("{total_scalar_bytes} bytes of values"),
        B::MergeKeys { merge_keys } => format!("{merge_keys} merge keys (<<)"),
        B::AliasAnchorRatio { aliases, anchors } => format!("{aliases} aliases for {anchors} anchors"),
        B::InputBytes { .. } => "more bytes than the parser reads".to_string(),
        B::SequenceUnbalanced => "a list or map closed that was never opened".to_string(),
        _ => "one of the parser's limits".to_string(),
    }
}

/// serde-saphyr messages end with " at line X column Y"; we print positions ourselves.
fn first_line(message: &str) -> String {
    let line = message.lines().next().unwrap_or(message).trim();
    match line.rfind(" at line ") {
        Some(at) => line[..at].to_string(),
        None => line.to_string(),
    }
}

fn spanned_to_node(spanned: Spanned<Kind>) -> Node {
    let Spanned { value, referenced, .. } = spanned;
    let kind = match value {
        Kind::Null => NodeKind::Null,
        Kind::Scalar(text) => NodeKind::Scalar(text),
        Kind::Seq(items) => NodeKind::Seq(items.into_iter().map(spanned_to_node).collect()),
        Kind::Map(entries) => NodeKind::Map(
            entries
                .into_iter()
                .map(|(key, value)| {
                    let key = Key { name: key.value.0, line: key.referenced.line(), column: key.referenced.column() };
                    (key, spanned_to_node(value))
                })
                .collect(),
        ),
    };
    Node { kind, line: referenced.line(), column: referenced.column() }
}

/// What serde-saphyr hands us, before positions are flattened into [`Node`].
enum Kind {
    Null,
    Scalar(String),
    Seq(Vec<Spanned<Kind>>),
    Map(Vec<(Spanned<KeyText>, Spanned<Kind>)>),
}

struct KeyText(String);

impl<'de> Deserialize<'de> for Kind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
}

impl<'de> Deserialize<'de> for KeyText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match deserializer.deserialize_any(KindVisitor)? {
            Kind::Scalar(text) => Ok(KeyText(text)),
            Kind::Null => Ok(KeyText(String::new())),
            Kind::Seq(_) | Kind::Map(_) => Err(de::Error::custom("a mapping key must be a plain scalar")),
        }
    }
}

struct KindVisitor;

impl<'de> Visitor<'de> for KindVisitor {
    type Value = Kind;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Kind, E> {
        Ok(Kind::Scalar(v.to_string()))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Kind, E> {
        Ok(Kind::Scalar(v.to_string()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Kind, E> {
        Ok(Kind::Scalar(v.to_string()))
    }
    fn visit_i128<E>(self, v: i128) -> Result<Kind, E> {
        Ok(Kind::Scalar(v.to_string()))
    }
    fn visit_u128<E>(self, v: u128) -> Result<Kind, E> {
        Ok(Kind::Scalar(v.to_string()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Kind, E> {
        Ok(Kind::Scalar(v.to_string()))
    }
    fn visit_str<E>(self, v: &str) -> Result<Kind, E> {
        Ok(Kind::Scalar(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Kind, E> {
        Ok(Kind::Scalar(v))
    }
    fn visit_unit<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_none<E>(self) -> Result<Kind, E> {
        Ok(Kind::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Kind, D::Error> {
        deserializer.deserialize_any(KindVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<Kind>>()? {
            items.push(item);
        }
        Ok(Kind::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
        let mut entries = Vec::new();
        while let Some((key, value)) = map.next_entry::<Spanned<KeyText>, Spanned<Kind>>()? {
            entries.push((key, value));
        }
        Ok(Kind::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_positions_of_nested_values() {
        let tree = parse("peer:\n  id: jdoe\n  gossip:\n    aliveTimeInterval: 5s\n    bootstrap: [a:1, b:2]\n  n: 10\n  e:\n").unwrap();
        let NodeKind::Map(top) = &tree.kind else { panic!("{tree:?}") };
        let NodeKind::Map(peer) = &top[0].1.kind else { panic!() };
        assert_eq!(peer[0].0.name, "id");
        assert_eq!((peer[0].1.line, peer[0].1.column), (2, 7));
        let NodeKind::Map(gossip) = &peer[1].1.kind else { panic!() };
        assert_eq!(gossip[0].1, Node { kind: NodeKind::Scalar("5s".into()), line: 4, column: 24 });
        assert!(matches!(&gossip[1].1.kind, NodeKind::Seq(items) if items.len() == 2));
        assert_eq!(peer[2].1.kind, NodeKind::Scalar("10".into()));
        assert_eq!(peer[3].1.kind, NodeKind::Null);
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let err = parse("peer:\n  id: [unclosed\n  x: 1\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
        let dup = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!((dup.line, dup.column), (2, 1), "{dup:?}");
        assert_eq!(dup.message, "duplicate key 'a' (first at line 1)");
        let nested = parse("peer:\n  id: a\n  gossip:\n    bootstrap: x\n    bootstrap: y\nledger: {}\n").unwrap_err();
        assert_eq!((nested.line, nested.column), (5, 5), "{nested:?}");
        assert_eq!(nested.message, "duplicate key 'peer.gossip.bootstrap' (first at line 4)");
        // Keys of maps inside lists, and keys that differ only by case are not duplicates here
        // (the reader reports those, naming both spellings).
        let listed = parse("builders:\n  - {name: a, name: b}\n").unwrap_err();
        assert_eq!(listed.message, "duplicate key 'builders.name' (first at line 2)");
        assert!(parse("a: 1\nA: 2\n").is_ok());
    }
}
