//! Parsers for the scalar kinds core.yaml uses: Go durations, host:port addresses and booleans.
//!
//! Each parser returns a reason that quotes the bad text; the reader adds the key and where the
//! value came from. Nothing here falls back to a default: that is the caller's decision.

use std::fmt;
use std::time::Duration;

const NANOS_PER_UNIT: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // µ (micro sign), as Go accepts
    ("\u{3bc}s", 1_000), // μ (Greek mu), as Go accepts
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

/// Go's limit: a time.Duration is an int64 of nanoseconds (about 292 years).
const MAX_DURATION_NANOS: u128 = i64::MAX as u128;

/// Parses a Go-style duration such as `5s`, `1500ms`, `1.5h` or `2h45m`.
///
/// Unlike Go (and Fabric, which appends `ns` to bare numbers), a number without a unit is rejected
/// unless it is `0`: `aliveTimeInterval: 5` almost certainly did not mean five nanoseconds.
/// Negative durations are rejected: no core.yaml key takes one.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| format!("{text:?} is not a duration: {why}");
    let mut rest = text.trim();
    if let Some(stripped) = rest.strip_prefix('+') {
        rest = stripped;
    } else if rest.starts_with('-') {
        return Err(bad("negative durations are not allowed"));
    }
    if rest.is_empty() {
        return Err(bad("it is empty"));
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_number) = match after_int.strip_prefix('.') {
            Some(after_dot) => {
                let frac_len = after_dot.find(|c: char| !c.is_ascii_digit()).unwrap_or(after_dot.len());
                after_dot.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(bad("expected a number followed by a unit, e.g. 5s, 1500ms or 2h45m"));
        }
        let unit_len = after_number.find(|c: char| c == '.' || c.is_ascii_digit()).unwrap_or(after_number.len());
        let (unit, after_unit) = after_number.split_at(unit_len);
        if unit.is_empty() {
            return Err(bad("missing unit (use ns, us, ms, s, m or h), e.g. 5s"));
        }
        let Some(&(_, unit_nanos)) = NANOS_PER_UNIT.iter().find(|(name, _)| *name == unit) else {
            return Err(bad(&format!("unknown unit {unit:?} (use ns, us, ms, s, m or h)")));
        };
        let too_big = || bad("it is larger than the longest duration allowed (about 292 years)");
        let whole: u128 = if int_digits.is_empty() { 0 } else { int_digits.parse::<u128>().map_err(|_| too_big())? };
        let mut part = whole.checked_mul(unit_nanos).ok_or_else(too_big)?;
        // Fractions beyond 20 digits cannot change a nanosecond count below the int64 limit.
        let frac_digits = &frac_digits[..frac_digits.len().min(20)];
        if !frac_digits.is_empty() {
            let numerator: u128 = frac_digits.parse().map_err(|_| too_big())?;
            part += numerator * unit_nanos / 10u128.pow(frac_digits.len() as u32);
        }
        total = total.checked_add(part).filter(|t| *t <= MAX_DURATION_NANOS).ok_or_else(too_big)?;
        rest = after_unit;
    }
    Ok(Duration::from_nanos(total as u64))
}

/// Formats a duration the way Go's `time.Duration.String` does (`15m0s`, `1.5s`, `10ms`), so log
/// lines that Fabric prints with durations read the same.
pub fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = match nanos {
            n if n < 1_000 => return format!("{n}ns"),
            n if n < 1_000_000 => ("\u{b5}s", 1_000),
            _ => ("ms", 1_000_000),
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let hours = nanos / 3_600_000_000_000;
    let minutes = nanos / 60_000_000_000 % 60;
    let seconds = decimal(nanos % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{seconds}s"),
        (0, m) => format!("{m}m{seconds}s"),
        (h, m) => format!("{h}h{m}m{seconds}s"),
    }
}

/// `value / scale` with the fraction printed without trailing zeros.
fn decimal(value: u128, scale: u128) -> String {
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return whole.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Parses a boolean as Go's `strconv.ParseBool` does (what Fabric accepts from env vars), but
/// rejects anything else instead of silently reading it as false.
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!("{text:?} is not a boolean (use true or false)")),
    }
}

/// Whether `c` shows as itself on a terminal and in a log line: not a control character, not an
/// invisible format character (zero-width space, bidi overrides, BOM), not a line or paragraph
/// separator, not an unassigned or private-use code point. Rust's own table decides (what
/// `str::escape_debug` leaves alone); combining marks after a base letter count as printable.
pub fn is_printable(c: char) -> bool {
    if c.is_ascii() {
        return !c.is_ascii_control();
    }
    let mut buffer = [0u8; 5];
    buffer[0] = b'a';
    let len = 1 + c.encode_utf8(&mut buffer[1..]).len();
    let text = std::str::from_utf8(&buffer[..len]).unwrap_or_default();
    // Only a string's first character has its combining marks escaped; `c` comes second.
    text.escape_debug().count() == 2
}

/// `text` with its non-printable characters (see [`is_printable`]) written as `\u{..}` escapes,
/// for quoting a value from outside (a block, a certificate, a request) in a log line or an error.
pub fn escape_non_printable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.chars().all(is_printable) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_printable(c) {
            out.push(c);
        } else {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Checks that an identifier (a peer ID, an MSP ID, a channel name) is printable text: a control
/// character would reach log lines, file names and other peers as it is, invisible or worse. The
/// reason quotes the value escaped, so the bad character shows.
pub fn check_printable(text: &str) -> Result<(), String> {
    match text.chars().find(|c| !is_printable(*c)) {
        None => Ok(()),
        Some(c) => Err(format!("{text:?} contains the non-printable character U+{:04X}; identifiers must be printable text", u32::from(c))),
    }
}

/// A `host:port` endpoint. IPv6 literals are written in brackets: `[::1]:7051`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostPort {
    /// Without brackets. Empty means "all interfaces" and is only allowed for listen addresses.
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        HostPort { host: host.into(), port }
    }

    /// Parses `host:port`. The host may be a name, an IPv4 literal or a bracketed IPv6 literal.
    pub fn parse(text: &str) -> Result<HostPort, String> {
        let bad = |why: &str| format!("{text:?} is not a host:port address: {why}");
        let text_trimmed = text.trim();
        let (host, port) = if let Some(after_bracket) = text_trimmed.strip_prefix('[') {
            let Some((host, rest)) = after_bracket.split_once(']') else {
                return Err(bad("missing ']' after the IPv6 address"));
            };
            let Some(port) = rest.strip_prefix(':') else {
                return Err(bad("missing :port after the IPv6 address"));
            };
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(bad(&format!("{host:?} is not an IPv6 address")));
            }
            (host, port)
        } else {
            let Some((host, port)) = text_trimmed.rsplit_once(':') else {
                return Err(bad("missing :port"));
            };
            if host.contains(':') {
                // `::1:7051` is an IPv6 host without brackets; `name:7051:1` is one ':' too many.
                if host.parse::<std::net::Ipv6Addr>().is_ok() || text_trimmed.parse::<std::net::Ipv6Addr>().is_ok() {
                    return Err(bad("IPv6 addresses must be in brackets, e.g. [::1]:7051"));
                }
                return Err(bad("more than one ':' (host:port has one; an IPv6 host goes in brackets, e.g. [::1]:7051)"));
            }
            if let Some(c) = host.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))) {
                return Err(bad(&format!("the host contains {c:?}")));
            }
            (host, port)
        };
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad(&format!("the port {port:?} is not a number")));
        }
        let port: u16 = port.parse().map_err(|_| bad(&format!("the port {port} is larger than 65535")))?;
        Ok(HostPort { host: host.to_string(), port })
    }

    /// True for `0.0.0.0`, `::` and an empty host: addresses that mean "every interface".
    pub fn is_unspecified(&self) -> bool {
        self.host.is_empty() || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_unspecified())
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') { write!(f, "[{}]:{}", self.host, self.port) } else { write!(f, "{}:{}", self.host, self.port) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn durations_parse_like_go() {
        let cases: &[(&str, Duration)] = &[
            ("0", Duration::ZERO),
            ("5s", ms(5_000)),
            ("1500ms", ms(1_500)),
            ("1m", ms(60_000)),
            ("2h45m", ms(9_900_000)),
            ("1.5h", ms(5_400_000)),
            (".5s", ms(500)),
            ("5.s", ms(5_000)),
            ("+3s", ms(3_000)),
            ("7200s", ms(7_200_000)),
            ("1h1m1s1ms1us1ns", Duration::new(3661, 1_001_001)),
            ("2\u{b5}s", Duration::from_micros(2)),
            ("2\u{3bc}s", Duration::from_micros(2)),
            ("0.000000001s", Duration::from_nanos(1)),
            ("0s", Duration::ZERO),
        ];
        for (text, want) in cases {
            assert_eq!(parse_duration(text).as_ref(), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        let cases = [
            ("notaduration", "expected a number followed by a unit"),
            ("5", "missing unit"),
            ("5x", "unknown unit \"x\""),
            ("5 s", "unknown unit \" s\""),
            ("-1s", "negative"),
            ("", "empty"),
            ("s", "expected a number"),
            ("1.2.3s", "missing unit"),
            ("300000000h", "larger than the longest duration"),
            ("99999999999999999999999999999999999999999h", "larger than the longest duration"),
        ];
        for (text, why) in cases {
            let err = parse_duration(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
            assert!(err.starts_with(&format!("{text:?} is not a duration")), "{err}");
        }
    }

    #[test]
    fn durations_format_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(15), "15ns"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_micros(2), "2\u{b5}s"),
            (ms(10), "10ms"),
            (ms(1500), "1.5s"),
            (ms(5000), "5s"),
            (ms(15 * 60_000), "15m0s"),
            (ms(9_900_000), "2h45m0s"),
            (ms(3_600_000), "1h0m0s"),
            (Duration::new(61, 1), "1m1.000000001s"),
        ];
        for (duration, want) in cases {
            assert_eq!(format_duration(duration), want);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            rng_seed: proptest::test_runner::RngSeed::Fixed(0xFAB),
            cases: 512,
            ..Default::default()
        })]
        #[test]
        fn formatted_durations_parse_back(nanos in 0u64..=(i64::MAX as u64)) {
            let duration = Duration::from_nanos(nanos);
            proptest::prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(HostPort::parse("127.0.0.1:7051"), Ok(HostPort::new("127.0.0.1", 7051)));
        assert_eq!(HostPort::parse("peer0.org1.example.com:7051"), Ok(HostPort::new("peer0.org1.example.com", 7051)));
        assert_eq!(HostPort::parse("[::1]:7051"), Ok(HostPort::new("::1", 7051)));
        assert_eq!(HostPort::parse(":9443"), Ok(HostPort::new("", 9443)));
        assert_eq!(HostPort::new("::1", 1).to_string(), "[::1]:1");
        assert!(HostPort::parse("0.0.0.0:1").unwrap().is_unspecified());
        assert!(HostPort::parse("[::]:1").unwrap().is_unspecified());
        assert!(!HostPort::parse("localhost:1").unwrap().is_unspecified());
        for (text, why) in [
            ("localhost", "missing :port"),
            ("host:http", "is not a number"),
            ("host:70000", "larger than 65535"),
            ("::1:7051", "must be in brackets"),
            ("[::1]7051", "missing :port"),
            ("[zz]:1", "not an IPv6 address"),
            ("a b:1", "contains ' '"),
            ("host:", "is not a number"),
        ] {
            let err = HostPort::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("True"), Ok(true));
        assert_eq!(parse_bool("0"), Ok(false));
        assert!(parse_bool("yes").unwrap_err().contains("not a boolean"));
    }

    #[test]
    fn printable_identifiers() {
        for ok in [
            "peer0.org1.example.com",
            "Org1MSP",
            "my channel",
            "pe\u{e9}r",
            "pe\u{301}er",
            "\u{92a}\u{940}\u{92f}\u{930}",
            "\u{65e5}\u{672c}",
        ] {
            assert_eq!(check_printable(ok), Ok(()), "{ok:?}");
        }
        let cases = [
            ("peer\u{7}0", r#""peer\u{7}0" contains the non-printable character U+0007"#),
            ("peer0\n", r#""peer0\n" contains the non-printable character U+000A"#),
            ("\u{1b}[31mred", r#""\u{1b}[31mred" contains the non-printable character U+001B"#),
            ("a\u{7f}", "U+007F"),
            ("a\u{85}", "U+0085"),
            ("Org1\u{200b}MSP", r#""Org1\u{200b}MSP" contains the non-printable character U+200B"#),
            ("evil\u{202e}gnp.exe", "U+202E"),
            ("\u{feff}peer", "U+FEFF"),
            ("line\u{2028}break", "U+2028"),
            ("private\u{e000}", "U+E000"),
        ];
        for (text, want) in cases {
            let err = check_printable(text).unwrap_err();
            assert!(err.contains(want), "{text:?}: {err}");
        }
        assert_eq!(escape_non_printable("mychannel"), "mychannel");
        assert_eq!(escape_non_printable("my\u{1b}[2Jchan\u{200b}nel"), r"my\u{1b}[2Jchan\u{200b}nel");
    }
}
