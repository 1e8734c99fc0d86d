//! `FABRIC_LOGGING_FORMAT`: the `%{verb}` template, `json` and `logfmt` encodings of one record.
//!
//! A format is parsed once ([`Format::parse`]); rendering a [`Record`] is then a walk over the
//! parsed pieces. Structured fields are encoded the way Fabric's zap encoders do: logfmt
//! (`key=value`, quoted only when needed) after the template's text, or extra keys in JSON.
//! Nothing here touches a clock, a writer or `tracing`; `layer.rs` gathers the record.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::gotime::{DEFAULT_TIME_LAYOUT, Layout};

/// Fabric's default template.
pub const DEFAULT_FORMAT: &str =
    "%{color}%{time:2006-01-02 15:04:05.000 MST} [%{module}] %{shortfunc} -> %{level:.4s} %{id:03x}%{color:reset} %{message}";

/// A format string Fabric would reject, or that uses a verb we do not know.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FormatError {
    /// `%{name}` where name is not one of color, id, level, message, module, shortfunc, time.
    /// (Fabric copies such text through unchanged; we refuse it so typos show.)
    #[error("invalid format verb: {verb}")]
    UnknownVerb { verb: String },
    /// `%{color:x}` with x other than `reset` or `bold` (Fabric's own message).
    #[error("invalid color option: {option}")]
    ColorOption { option: String },
    /// A Go fmt directive we cannot apply to the verb, e.g. `%{level:d}` or `%{id:q}`.
    #[error("invalid format directive '{directive}' for verb {verb}")]
    Directive { verb: String, directive: String },
    /// `%{` with no `}` after it, e.g. `%{time` (Fabric prints such text as it is; we refuse it,
    /// as an unknown verb, so a cut-off format shows at start rather than in every line).
    #[error("unterminated verb {text:?}: no closing '}}'")]
    Unterminated { text: String },
}

/// The level of a record, as `tracing` gives it.
pub(crate) type Level = tracing::Level;

/// A structured field value, typed so JSON keeps numbers and booleans.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FieldValue {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// Everything a format needs about one log record.
#[derive(Clone, Debug)]
pub(crate) struct Record<'a> {
    pub level: Level,
    pub time: SystemTime,
    /// The Fabric logger name (the `tracing` target).
    pub logger: &'a str,
    /// The `func` field, else the last segment of the module path; `None` if neither is known.
    pub func: Option<&'a str>,
    /// The `func` field, else the full module path.
    pub caller: Option<&'a str>,
    pub message: &'a str,
    pub fields: &'a [(&'static str, FieldValue)],
}

/// A parsed `FABRIC_LOGGING_FORMAT`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Format {
    Template(Vec<Piece>),
    Json,
    Logfmt,
}

/// One element of a template.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Piece {
    Literal(String),
    Color { bold: bool },
    ColorReset,
    Time(Layout),
    Module(GoFmt),
    ShortFunc(GoFmt),
    Level(GoFmt),
    Message(GoFmt),
    Id(GoFmt),
}

impl Format {
    /// Parses a format: `json`, `logfmt`, else a template; empty means [`DEFAULT_FORMAT`].
    pub(crate) fn parse(format: &str) -> Result<Format, FormatError> {
        match format {
            "" => parse_template(DEFAULT_FORMAT),
            "json" => Ok(Format::Json),
            "logfmt" => Ok(Format::Logfmt),
            template => parse_template(template),
        }
    }

    /// Appends one encoded record, ending in a newline. `sequence` is the `%{id}` value.
    pub(crate) fn render(&self, record: &Record<'_>, sequence: u64, out: &mut String) {
        match self {
            Format::Template(pieces) => render_template(pieces, record, sequence, out),
            Format::Json => render_json(record, out),
            Format::Logfmt => render_logfmt(record, out),
        }
        out.push('\n');
    }
}

fn parse_template(template: &str) -> Result<Format, FormatError> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find("%{") {
        let Some(len) = rest[start..].find('}') else {
            return Err(FormatError::Unterminated { text: rest[start..].to_string() });
        };
        if start > 0 {
            pieces.push(Piece::Literal(rest[..start].to_string()));
        }
        let body = &rest[start + 2..start + len];
        let (verb, directive) = body.split_once(':').unwrap_or((body, ""));
        pieces.push(parse_verb(verb, directive)?);
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        pieces.push(Piece::Literal(rest.to_string()));
    }
    Ok(Format::Template(pieces))
}

fn parse_verb(verb: &str, directive: &str) -> Result<Piece, FormatError> {
    let string_fmt = |default: &str| {
        GoFmt::parse(if directive.is_empty() { default } else { directive }, GoFmt::STRING_VERBS)
            .ok_or_else(|| FormatError::Directive { verb: verb.to_string(), directive: directive.to_string() })
    };
    Ok(match verb {
        "color" => match directive {
            "" => Piece::Color { bold: false },
            "bold" => Piece::Color { bold: true },
            "reset" => Piece::ColorReset,
            option => return Err(FormatError::ColorOption { option: option.to_string() }),
        },
        "time" => Piece::Time(Layout::parse(if directive.is_empty() { DEFAULT_TIME_LAYOUT } else { directive })),
        "module" => Piece::Module(string_fmt("s")?),
        "shortfunc" => Piece::ShortFunc(string_fmt("s")?),
        "level" => Piece::Level(string_fmt("s")?),
        "message" => Piece::Message(string_fmt("s")?),
        "id" => Piece::Id(
            GoFmt::parse(if directive.is_empty() { "d" } else { directive }, GoFmt::INTEGER_VERBS)
                .ok_or_else(|| FormatError::Directive { verb: verb.to_string(), directive: directive.to_string() })?,
        ),
        unknown => return Err(FormatError::UnknownVerb { verb: unknown.to_string() }),
    })
}

fn render_template(pieces: &[Piece], record: &Record<'_>, sequence: u64, out: &mut String) {
    for piece in pieces {
        match piece {
            Piece::Literal(text) => out.push_str(text),
            Piece::Color { bold } => out.push_str(level_color(record.level, *bold)),
            Piece::ColorReset => out.push_str(RESET),
            Piece::Time(layout) => layout.format(record.time, out),
            Piece::Module(fmt) => fmt.write_str(out, record.logger),
            Piece::ShortFunc(fmt) => fmt.write_str(out, record.func.unwrap_or("(unknown)")),
            Piece::Level(fmt) => fmt.write_str(out, capital_level(record.level)),
            Piece::Message(fmt) => fmt.write_str(out, record.message.trim_end_matches('\n')),
            Piece::Id(fmt) => fmt.write_u64(out, sequence),
        }
    }
    // Fabric appends the fields logfmt-encoded, after a space unless the line is empty.
    if !record.fields.is_empty() {
        if !out.is_empty() {
            out.push(' ');
        }
        write_logfmt_fields(out, record.fields);
    }
}

fn render_json(record: &Record<'_>, out: &mut String) {
    // zap's production JSON encoder (NameKey "name"): level, ts, name, caller, msg, then fields.
    out.push_str("{\"level\":");
    write_json_string(out, lower_level(record.level));
    out.push_str(",\"ts\":");
    write_go_float(out, epoch_seconds(record.time), true);
    out.push_str(",\"name\":");
    write_json_string(out, record.logger);
    if let Some(caller) = record.caller {
        out.push_str(",\"caller\":");
        write_json_string(out, caller);
    }
    out.push_str(",\"msg\":");
    write_json_string(out, record.message);
    for (key, value) in record.fields {
        out.push(',');
        write_json_string(out, key);
        out.push(':');
        match value {
            FieldValue::Str(text) => write_json_string(out, text),
            FieldValue::I64(n) => push_display(out, n),
            FieldValue::U64(n) => push_display(out, n),
            FieldValue::F64(x) => write_go_float(out, *x, true),
            FieldValue::Bool(b) => push_display(out, b),
        }
    }
    out.push('}');
}

fn render_logfmt(record: &Record<'_>, out: &mut String) {
    // zap-logfmt with the production encoder config: ts, level, name, caller, msg, then fields.
    out.push_str("ts=");
    write_go_float(out, epoch_seconds(record.time), false);
    out.push_str(" level=");
    write_logfmt_value(out, lower_level(record.level));
    out.push_str(" name=");
    write_logfmt_value(out, record.logger);
    if let Some(caller) = record.caller {
        out.push_str(" caller=");
        write_logfmt_value(out, caller);
    }
    out.push_str(" msg=");
    write_logfmt_value(out, record.message);
    if !record.fields.is_empty() {
        out.push(' ');
        write_logfmt_fields(out, record.fields);
    }
}

const RESET: &str = "\x1b[0m";

/// Fabric's SGR colour per level; a level with no colour (PAYLOAD) gets the reset code.
fn level_color(level: Level, bold: bool) -> &'static str {
    match (level, bold) {
        (Level::DEBUG, false) => "\x1b[36m",
        (Level::DEBUG, true) => "\x1b[36;1m",
        (Level::INFO, false) => "\x1b[34m",
        (Level::INFO, true) => "\x1b[34;1m",
        (Level::WARN, false) => "\x1b[33m",
        (Level::WARN, true) => "\x1b[33;1m",
        (Level::ERROR, false) => "\x1b[31m",
        (Level::ERROR, true) => "\x1b[31;1m",
        _ => RESET,
    }
}

/// zap's `CapitalString`; TRACE is Fabric's PAYLOAD.
fn capital_level(level: Level) -> &'static str {
    match level {
        Level::TRACE => "PAYLOAD",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        _ => "ERROR",
    }
}

fn lower_level(level: Level) -> &'static str {
    match level {
        Level::TRACE => "payload",
        Level::DEBUG => "debug",
        Level::INFO => "info",
        Level::WARN => "warn",
        _ => "error",
    }
}

/// zap's epoch time encoder: `float64(UnixNano) / 1e9`, with the same rounding, so a time
/// like 10:00:00.123 prints as `….1230001` exactly as Fabric's JSON logs show it.
fn epoch_seconds(time: SystemTime) -> f64 {
    let nanos: i128 = match time.duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    };
    nanos as f64 / 1e9
}

fn push_display(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

/// Go's `strconv.FormatFloat(x, 'f', -1, 64)` (shortest, never an exponent), which Rust's
/// `Display` for `f64` matches; non-finite values as zap writes them (quoted in JSON).
fn write_go_float(out: &mut String, x: f64, json: bool) {
    let special = if x.is_nan() {
        "NaN"
    } else if x == f64::INFINITY {
        "+Inf"
    } else if x == f64::NEG_INFINITY {
        "-Inf"
    } else {
        push_display(out, x);
        return;
    };
    if json {
        out.push('"');
        out.push_str(special);
        out.push('"');
    } else {
        out.push_str(special);
    }
}

/// zap's JSON string escaping: `\` and `"` escaped, `\n \r \t` by name, other control bytes as
/// `\u00XX`; everything else (including non-ASCII) as is.
fn write_json_string(out: &mut String, text: &str) {
    out.push('"');
    escape_into(out, text);
    out.push('"');
}

fn escape_into(out: &mut String, text: &str) {
    for ch in text.chars() {
        match ch {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// zap-logfmt: a value is quoted when it contains a space or control character, `=`, `"`, or
/// U+FFFD; escaping as in JSON either way.
fn write_logfmt_value(out: &mut String, text: &str) {
    let quote = text.chars().any(needs_quotes);
    if quote {
        out.push('"');
    }
    escape_into(out, text);
    if quote {
        out.push('"');
    }
}

fn needs_quotes(ch: char) -> bool {
    ch <= ' ' || ch == '=' || ch == '"' || ch == char::REPLACEMENT_CHARACTER
}

fn write_logfmt_fields(out: &mut String, fields: &[(&'static str, FieldValue)]) {
    for (index, (key, value)) in fields.iter().enumerate() {
        if index > 0 {
            out.push(' ');
        }
        // zap-logfmt drops characters from keys that would need quoting.
        out.extend(key.chars().filter(|&ch| !needs_quotes(ch)));
        out.push('=');
        match value {
            FieldValue::Str(text) => write_logfmt_value(out, text),
            FieldValue::I64(n) => push_display(out, n),
            FieldValue::U64(n) => push_display(out, n),
            FieldValue::F64(x) => write_go_float(out, *x, false),
            FieldValue::Bool(b) => push_display(out, b),
        }
    }
}

/// A Go fmt directive (the part after `%`): flags `-+# 0`, width, `.precision`, one verb.
/// Strings take `s`/`v`; integers `d`/`v`/`x`/`X`/`o`/`b`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct GoFmt {
    minus: bool,
    plus: bool,
    sharp: bool,
    zero: bool,
    space: bool,
    width: Option<usize>,
    precision: Option<usize>,
    verb: char,
}

impl GoFmt {
    const STRING_VERBS: &'static str = "sv";
    const INTEGER_VERBS: &'static str = "dvxXob";

    fn parse(directive: &str, verbs: &str) -> Option<GoFmt> {
        let mut fmt = GoFmt::default();
        let mut chars = directive.chars().peekable();
        while let Some(&flag) = chars.peek() {
            match flag {
                '-' => fmt.minus = true,
                '+' => fmt.plus = true,
                '#' => fmt.sharp = true,
                '0' => fmt.zero = true,
                ' ' => fmt.space = true,
                _ => break,
            }
            chars.next();
        }
        let number = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
            let mut value: Option<usize> = None;
            while let Some(digit) = chars.peek().and_then(|c| c.to_digit(10)) {
                value = Some(value.unwrap_or(0).checked_mul(10)?.checked_add(digit as usize)?);
                chars.next();
            }
            Some(value)
        };
        fmt.width = number(&mut chars)?;
        if chars.peek() == Some(&'.') {
            chars.next();
            fmt.precision = Some(number(&mut chars)?.unwrap_or(0));
        }
        fmt.verb = chars.next()?;
        // Bound widths so a typo cannot ask for gigabytes of padding.
        let sane = |n: Option<usize>| n.is_none_or(|n| n <= 1024);
        (chars.next().is_none() && verbs.contains(fmt.verb) && sane(fmt.width) && sane(fmt.precision)).then_some(fmt)
    }

    /// `%s`: precision truncates (in characters), width pads with spaces.
    fn write_str(&self, out: &mut String, text: &str) {
        let text = match self.precision {
            Some(max) => text.char_indices().nth(max).map_or(text, |(end, _)| &text[..end]),
            None => text,
        };
        self.pad(out, "", text);
    }

    /// `%d`, `%x`, …: precision is a minimum digit count; `0` pads after the prefix.
    fn write_u64(&self, out: &mut String, value: u64) {
        let (mut digits, prefix) = match self.verb {
            'x' => (format!("{value:x}"), "0x"),
            'X' => (format!("{value:X}"), "0X"),
            'o' => (format!("{value:o}"), "0"),
            'b' => (format!("{value:b}"), "0b"),
            _ => (value.to_string(), ""),
        };
        if let Some(min) = self.precision
            && digits.len() < min
        {
            digits.insert_str(0, &"0".repeat(min - digits.len()));
        }
        let mut head = String::new();
        if self.plus {
            head.push('+');
        } else if self.space {
            head.push(' ');
        }
        if self.sharp {
            head.push_str(prefix);
        }
        if self.zero && !self.minus && self.precision.is_none() {
            let width = self.width.unwrap_or(0);
            let used = head.len() + digits.len();
            if used < width {
                digits.insert_str(0, &"0".repeat(width - used));
            }
        }
        self.pad(out, &head, &digits);
    }

    fn pad(&self, out: &mut String, head: &str, body: &str) {
        let len = head.chars().count() + body.chars().count();
        let fill = self.width.unwrap_or(0).saturating_sub(len);
        if !self.minus {
            out.extend(std::iter::repeat_n(' ', fill));
        }
        out.push_str(head);
        out.push_str(body);
        if self.minus {
            out.extend(std::iter::repeat_n(' ', fill));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn record<'a>(level: Level, message: &'a str, fields: &'a [(&'static str, FieldValue)]) -> Record<'a> {
        Record {
            level,
            time: UNIX_EPOCH + Duration::from_millis(1_714_557_600_123),
            logger: "nodeCmd",
            func: Some("serve"),
            caller: Some("serve"),
            message,
            fields,
        }
    }

    fn render(format: &str, record: &Record<'_>, sequence: u64) -> String {
        let mut out = String::new();
        Format::parse(format).unwrap().render(record, sequence, &mut out);
        out
    }

    #[test]
    fn default_template() {
        let line = render("", &record(Level::INFO, "Starting peer:\n", &[]), 1);
        assert_eq!(line, "\x1b[34m2024-05-01 10:00:00.123 UTC [nodeCmd] serve -> INFO 001\x1b[0m Starting peer:\n");
        let levels = [
            (Level::TRACE, "\x1b[0m", "PAYL"),
            (Level::DEBUG, "\x1b[36m", "DEBU"),
            (Level::WARN, "\x1b[33m", "WARN"),
            (Level::ERROR, "\x1b[31m", "ERRO"),
        ];
        for (level, color, short) in levels {
            let line = render(DEFAULT_FORMAT, &record(level, "x", &[]), 0xabc1);
            assert_eq!(line, format!("{color}2024-05-01 10:00:00.123 UTC [nodeCmd] serve -> {short} abc1\x1b[0m x\n"));
        }
    }

    #[test]
    fn fields_follow_the_message_logfmt_encoded() {
        let fields = [
            ("peer", FieldValue::Str("peer0.org1:7051".into())),
            ("reason", FieldValue::Str("no route to host".into())),
            ("quote", FieldValue::Str("say \"hi\"".into())),
            ("empty", FieldValue::Str(String::new())),
            ("n", FieldValue::I64(-3)),
            ("big", FieldValue::U64(18_446_744_073_709_551_615)),
            ("ratio", FieldValue::F64(0.25)),
            ("nan", FieldValue::F64(f64::NAN)),
            ("ok", FieldValue::Bool(true)),
            ("bad key", FieldValue::Str("a=b".into())),
        ];
        let line = render("%{message}", &record(Level::INFO, "hello", &fields), 1);
        assert_eq!(
            line,
            "hello peer=peer0.org1:7051 reason=\"no route to host\" quote=\"say \\\"hi\\\"\" empty= n=-3 \
             big=18446744073709551615 ratio=0.25 nan=NaN ok=true badkey=\"a=b\"\n"
        );
        // An empty line gets no separating space.
        assert_eq!(render("%{message}", &record(Level::INFO, "", &fields[..1]), 1), "peer=peer0.org1:7051\n");
    }

    #[test]
    fn template_verbs_and_directives() {
        let rec = record(Level::WARN, "m", &[]);
        assert_eq!(render("%{level} %{level:.1s}|%{level:-6s}|%{level:6s}|", &rec, 1), "WARN W|WARN  |  WARN|\n");
        assert_eq!(render("%{id} %{id:03x} %{id:#x} %{id:X} %{id:5d}|%{id:-4d}|%{id:.4d}", &rec, 255), "255 0ff 0xff FF   255|255 |0255\n");
        assert_eq!(render("%{id:03x}", &rec, 0x1234), "1234\n");
        assert_eq!(render("%{color:bold}%{module:.4s}%{color:reset}", &rec, 1), "\x1b[33;1mnode\x1b[0m\n");
        assert_eq!(render("%{time} %{shortfunc}: %{message}", &rec, 1), "2024-05-01T10:00:00.123Z serve: m\n");
        assert_eq!(render("%{time:2006-01-02T15:04:05.000Z07:00}", &rec, 1), "2024-05-01T10:00:00.123Z\n");
        assert_eq!(render("100% {literal} 50%", &rec, 1), "100% {literal} 50%\n");
        let unknown = Record { func: None, caller: None, ..rec };
        assert_eq!(render("%{shortfunc}", &unknown, 1), "(unknown)\n");
    }

    #[test]
    fn bad_formats_are_errors() {
        let cases = [
            ("%{color}%{bogus} %{message}", "invalid format verb: bogus"),
            ("%{shortpkg:x}", "invalid format verb: shortpkg"),
            ("%{color:blink}", "invalid color option: blink"),
            ("%{level:d}", "invalid format directive 'd' for verb level"),
            ("%{id:s}", "invalid format directive 's' for verb id"),
            ("%{id:03xx}", "invalid format directive '03xx' for verb id"),
            ("%{message:99999s}", "invalid format directive '99999s' for verb message"),
            ("%{bogus", "unterminated verb \"%{bogus\": no closing '}'"),
            ("%{time", "unterminated verb \"%{time\": no closing '}'"),
            ("[%{module}] %{message", "unterminated verb \"%{message\": no closing '}'"),
            ("100% {literal} %{", "unterminated verb \"%{\": no closing '}'"),
        ];
        for (format, message) in cases {
            assert_eq!(Format::parse(format).unwrap_err().to_string(), message, "format {format:?}");
        }
    }

    #[test]
    fn json_and_logfmt() {
        let fields = [("channel", FieldValue::Str("mychannel".into())), ("height", FieldValue::U64(7))];
        let rec = Record { caller: Some("peer_core::node"), ..record(Level::DEBUG, "Joined \"ch\"\n", &fields) };
        assert_eq!(
            render("json", &rec, 1),
            "{\"level\":\"debug\",\"ts\":1714557600.1230001,\"name\":\"nodeCmd\",\"caller\":\"peer_core::node\",\
             \"msg\":\"Joined \\\"ch\\\"\\n\",\"channel\":\"mychannel\",\"height\":7}\n"
        );
        assert_eq!(
            render("logfmt", &rec, 1),
            "ts=1714557600.1230001 level=debug name=nodeCmd caller=peer_core::node msg=\"Joined \\\"ch\\\"\\n\" channel=mychannel height=7\n"
        );
        let whole = Record { time: UNIX_EPOCH + Duration::from_secs(5), ..rec };
        assert_eq!(&render("logfmt", &whole, 1)[..5], "ts=5 ");
    }
}
