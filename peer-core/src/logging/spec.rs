//! `FABRIC_LOGGING_SPEC`: parsing, per-logger level resolution, and Fabric's normalized form.
//!
//! Grammar (Fabric `flogging.LoggerLevels.ActivateSpec`): segments separated by `:`; a segment is
//! either `LEVEL` (the default level) or `name1,name2=LEVEL`. A name ending in `.` means "that
//! exact logger only"; otherwise the name covers the logger and its dot-children. An empty
//! segment, like Fabric's, resets the default to INFO (so `debug:` means `info`).
//!
//! This file knows nothing about `tracing` beyond mapping levels; the filter lives in `layer.rs`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A Fabric (zap) log level as written in a spec.
///
/// Fabric keeps DPANIC, PANIC and FATAL apart; `tracing` has nothing above ERROR, so for filtering
/// they all mean ERROR ([`LogLevel::to_tracing`]). They stay distinct here so the normalized spec
/// reads back as it was set.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Fabric's PAYLOAD (zap debug−1); `tracing`'s TRACE.
    Payload,
    Debug,
    Info,
    Warn,
    Error,
    DPanic,
    Panic,
    Fatal,
}

impl LogLevel {
    /// Parses a level name as Fabric does: all upper case or all lower case (`DEBUG`, `debug`;
    /// not `Debug`). `WARNING` is WARN, `NOTICE` is INFO and `CRITICAL` is ERROR.
    pub fn parse(name: &str) -> Option<LogLevel> {
        // Fabric lists both spellings explicitly; mixed case is an invalid level there too.
        let lower = name.to_ascii_lowercase();
        if name != lower && name != name.to_ascii_uppercase() {
            return None;
        }
        Some(match lower.as_str() {
            "payload" => LogLevel::Payload,
            "debug" => LogLevel::Debug,
            "info" | "notice" => LogLevel::Info,
            "warning" | "warn" => LogLevel::Warn,
            "error" | "critical" => LogLevel::Error,
            "dpanic" => LogLevel::DPanic,
            "panic" => LogLevel::Panic,
            "fatal" => LogLevel::Fatal,
            _ => return None,
        })
    }

    /// The lower-case name used in the normalized spec (zap's `Level.String()`, except PAYLOAD,
    /// which zap would print as `Level(-2)`, a string Fabric itself cannot parse back).
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Payload => "payload",
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
            LogLevel::DPanic => "dpanic",
            LogLevel::Panic => "panic",
            LogLevel::Fatal => "fatal",
        }
    }

    /// The most verbose `tracing` level this Fabric level lets through.
    pub fn to_tracing(self) -> tracing::Level {
        match self {
            LogLevel::Payload => tracing::Level::TRACE,
            LogLevel::Debug => tracing::Level::DEBUG,
            LogLevel::Info => tracing::Level::INFO,
            LogLevel::Warn => tracing::Level::WARN,
            LogLevel::Error | LogLevel::DPanic | LogLevel::Panic | LogLevel::Fatal => tracing::Level::ERROR,
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A spec that Fabric would reject (where Fabric panics, we return this and the CLI exits 1).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LogSpecError {
    /// A segment that is neither `LEVEL` nor `names=LEVEL`, or whose level is unknown.
    #[error("invalid logging specification '{spec}': bad segment '{segment}'")]
    BadSegment { spec: String, segment: String },
    /// A `=LEVEL` segment with nothing before the `=`.
    #[error("invalid logging specification '{spec}': no logger specified in segment '{segment}'")]
    NoLogger { spec: String, segment: String },
    /// A logger name outside `^[[:alnum:]_#:-]+(\.[[:alnum:]_#:-]+)*$` (after one trailing `.`).
    #[error("invalid logging specification '{spec}': bad logger name '{name}'")]
    BadLoggerName { spec: String, name: String },
}

/// A parsed `FABRIC_LOGGING_SPEC`.
///
/// [`Display`](fmt::Display) gives Fabric's normalized form (`LoggerLevels.Spec()`, what
/// `GET /logspec` returns): `name=level` entries sorted, then the default level, joined by `:`.
/// [`LogSpec::as_str`] gives the string exactly as it was set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogSpec {
    original: String,
    default_level: LogLevel,
    /// Keyed by the name as written: a trailing `.` marks an exact-only entry.
    loggers: BTreeMap<String, LogLevel>,
}

impl LogSpec {
    /// Parses a spec; the empty spec means `info`. Later segments override earlier ones.
    pub fn parse(spec: &str) -> Result<LogSpec, LogSpecError> {
        let bad_segment = |segment: &str| LogSpecError::BadSegment { spec: spec.to_string(), segment: segment.to_string() };
        let mut default_level = LogLevel::Info;
        let mut loggers = BTreeMap::new();
        for segment in spec.split(':') {
            let parts: Vec<&str> = segment.split('=').collect();
            match parts.as_slice() {
                [level] => {
                    // Fabric: an empty segment is allowed and sets the default back to INFO.
                    default_level =
                        if level.is_empty() { LogLevel::Info } else { LogLevel::parse(level).ok_or_else(|| bad_segment(segment))? };
                }
                [names, level] => {
                    if names.is_empty() {
                        return Err(LogSpecError::NoLogger { spec: spec.to_string(), segment: segment.to_string() });
                    }
                    let level = LogLevel::parse(level).ok_or_else(|| bad_segment(segment))?;
                    for name in names.split(',') {
                        if !is_valid_logger_name(name.strip_suffix('.').unwrap_or(name)) {
                            return Err(LogSpecError::BadLoggerName { spec: spec.to_string(), name: name.to_string() });
                        }
                        loggers.insert(name.to_string(), level);
                    }
                }
                _ => return Err(bad_segment(segment)),
            }
        }
        Ok(LogSpec { original: spec.to_string(), default_level, loggers })
    }

    /// The spec exactly as it was set.
    pub fn as_str(&self) -> &str {
        &self.original
    }

    /// The level for loggers no entry covers.
    pub fn default_level(&self) -> LogLevel {
        self.default_level
    }

    /// The Fabric level in force for `logger`: an exact-only entry (`name.`) for this very name,
    /// else the longest dotted prefix with an entry (`gossip` covers `gossip.discovery`), else
    /// the default.
    pub fn fabric_level_for(&self, logger: &str) -> LogLevel {
        if let Some(level) = self.loggers.get(&format!("{logger}.")) {
            return *level;
        }
        let mut candidate = logger;
        loop {
            if let Some(level) = self.loggers.get(candidate) {
                return *level;
            }
            // Like Fabric, stop at a leading dot rather than look up the empty name.
            match candidate.rfind('.') {
                Some(dot) if dot > 0 => candidate = &candidate[..dot],
                _ => return self.default_level,
            }
        }
    }

    /// The most verbose `tracing` level enabled for `logger` (a `tracing` target).
    pub fn level_for(&self, logger: &str) -> tracing::Level {
        self.fabric_level_for(logger).to_tracing()
    }

    /// The most verbose level any logger can have under this spec.
    pub fn max_level(&self) -> tracing::Level {
        self.loggers.values().map(|level| level.to_tracing()).fold(self.default_level.to_tracing(), std::cmp::max)
    }
}

impl Default for LogSpec {
    /// The empty spec: everything at INFO.
    fn default() -> Self {
        LogSpec { original: String::new(), default_level: LogLevel::Info, loggers: BTreeMap::new() }
    }
}

impl FromStr for LogSpec {
    type Err = LogSpecError;
    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        LogSpec::parse(spec)
    }
}

impl fmt::Display for LogSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Fabric sorts the joined `name=level` strings, not the names; `.` sorts before `=`.
        let mut fields: Vec<String> = self.loggers.iter().map(|(name, level)| format!("{name}={level}")).collect();
        fields.sort();
        for field in &fields {
            write!(f, "{field}:")?;
        }
        f.write_str(self.default_level.as_str())
    }
}

/// Fabric's logger-name rule: dot-separated, non-empty parts of ASCII letters, digits, `_#:-`.
fn is_valid_logger_name(name: &str) -> bool {
    name.split('.')
        .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'#' | b':' | b'-')))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;

    #[test]
    fn good_specs_normalize() {
        let cases = [
            ("", "info"),
            ("info", "info"),
            ("DEBUG", "debug"),
            ("payload", "payload"),
            ("WARNING", "warn"),
            ("notice", "info"),
            ("CRITICAL", "error"),
            ("fatal", "fatal"),
            ("debug:", "info"),
            ("gossip=debug:info", "gossip=debug:info"),
            ("warn:gossip,peer=debug", "gossip=debug:peer=debug:warn"),
            ("gossip.=debug", "gossip.=debug:info"),
            ("a=info:a.b=debug", "a.b=debug:a=info:info"),
            ("x=info:x=error", "x=error:info"),
            ("my_logger#1=dpanic:a_b#c-d.e=panic", "a_b#c-d.e=panic:my_logger#1=dpanic:info"),
        ];
        for (spec, normalized) in cases {
            let parsed = LogSpec::parse(spec).unwrap();
            assert_eq!(parsed.to_string(), normalized, "spec {spec:?}");
            assert_eq!(parsed.as_str(), spec);
            // The normalized form parses back to the same levels.
            assert_eq!(LogSpec::parse(normalized).unwrap().to_string(), normalized);
        }
    }

    #[test]
    fn bad_specs_give_fabric_errors() {
        let cases = [
            ("bogus", "invalid logging specification 'bogus': bad segment 'bogus'"),
            ("Debug", "invalid logging specification 'Debug': bad segment 'Debug'"),
            ("info:gossip=", "invalid logging specification 'info:gossip=': bad segment 'gossip='"),
            ("gossip=loud", "invalid logging specification 'gossip=loud': bad segment 'gossip=loud'"),
            ("a=b=c", "invalid logging specification 'a=b=c': bad segment 'a=b=c'"),
            ("=debug", "invalid logging specification '=debug': no logger specified in segment '=debug'"),
            ("info:=", "invalid logging specification 'info:=': no logger specified in segment '='"),
            ("a,,b=debug", "invalid logging specification 'a,,b=debug': bad logger name ''"),
            ("bad/name=debug", "invalid logging specification 'bad/name=debug': bad logger name 'bad/name'"),
            (".gossip=debug", "invalid logging specification '.gossip=debug': bad logger name '.gossip'"),
            ("gossip..=debug", "invalid logging specification 'gossip..=debug': bad logger name 'gossip..'"),
            ("a..b=debug", "invalid logging specification 'a..b=debug': bad logger name 'a..b'"),
            // `:` is allowed in names by Fabric's regexp but always splits segments first.
            ("my:logger=debug", "invalid logging specification 'my:logger=debug': bad segment 'my'"),
        ];
        for (spec, message) in cases {
            assert_eq!(LogSpec::parse(spec).unwrap_err().to_string(), message, "spec {spec:?}");
        }
    }

    #[test]
    fn levels_resolve_by_dotted_prefix() {
        let spec = LogSpec::parse("gossip=debug:info").unwrap();
        assert_eq!(spec.level_for("gossip.discovery"), Level::DEBUG);
        assert_eq!(spec.level_for("gossip"), Level::DEBUG);
        assert_eq!(spec.level_for("peer"), Level::INFO);
        assert_eq!(spec.level_for("gossipx"), Level::INFO);

        let spec = LogSpec::parse("gossip.=debug:warn").unwrap();
        assert_eq!(spec.level_for("gossip"), Level::DEBUG);
        assert_eq!(spec.level_for("gossip.discovery"), Level::WARN);

        // The longest prefix wins; an exact-only entry beats a prefix entry for the same name.
        let spec = LogSpec::parse("gossip=warn:gossip.comm=payload:gossip.comm.=error:error").unwrap();
        assert_eq!(spec.level_for("gossip.comm"), Level::ERROR);
        assert_eq!(spec.level_for("gossip.comm.conn"), Level::TRACE);
        assert_eq!(spec.level_for("gossip.discovery"), Level::WARN);
        assert_eq!(spec.level_for("nodeCmd"), Level::ERROR);
        assert_eq!(spec.max_level(), Level::TRACE);

        let spec = LogSpec::parse("fatal").unwrap();
        assert_eq!(spec.fabric_level_for("peer"), LogLevel::Fatal);
        assert_eq!(spec.level_for("peer"), Level::ERROR);
        assert_eq!(spec.max_level(), Level::ERROR);

        // A module-path target (no dots) only matches an entry of the same name, else the default.
        assert_eq!(LogSpec::default().level_for("peer_core::node"), Level::INFO);
    }
}
