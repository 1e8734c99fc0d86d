//! Go time layouts (`2006-01-02 15:04:05.000 MST`), rendered in UTC: for log timestamps
//! (`%{time:…}`) and for every time the peer prints the way Fabric (Go) prints it.
//!
//! A layout is parsed once into chunks; formatting then only does arithmetic. All times print in
//! UTC (the zone name is `UTC`, ISO 8601 zones print `Z`), because the peer's wall clock is a
//! `SystemTime` with no zone. Covers Go's reference-time elements: month and weekday names,
//! numeric fields with and without padding, year day, AM/PM, zones, and fractional seconds
//! (`.000` fixed, `.999` trimmed, `,` separator too). It does not parse times.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

/// One element of a parsed layout.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Chunk {
    Literal(String),
    LongMonth,    // January
    Month,        // Jan
    NumMonth,     // 1
    ZeroMonth,    // 01
    LongWeekday,  // Monday
    Weekday,      // Mon
    Day,          // 2
    UnderDay,     // _2
    ZeroDay,      // 02
    UnderYearDay, // __2
    ZeroYearDay,  // 002
    Hour,         // 15
    Hour12,       // 3
    ZeroHour12,   // 03
    Minute,       // 4
    ZeroMinute,   // 04
    Second,       // 5
    ZeroSecond,   // 05
    LongYear,     // 2006
    Year,         // 06
    UpperPm,      // PM
    LowerPm,      // pm
    ZoneName,     // MST
    /// `Z07:00` and friends: `Z` for UTC.
    IsoZone,
    /// `-07:00` and friends: the zero offset in the same shape.
    NumZone(&'static str),
    /// Fractional seconds: separator, digit count, whether trailing zeros are trimmed (`9`s).
    Fraction {
        separator: char,
        digits: usize,
        trim: bool,
    },
}

/// A parsed Go time layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout(Vec<Chunk>);

/// Go's default for `%{time}` without a layout.
pub const DEFAULT_TIME_LAYOUT: &str = "2006-01-02T15:04:05.999Z07:00";

/// Go's `time.Time.String` for a UTC time: `2027-11-10 13:41:11 +0000 UTC` (fractions when non-zero).
pub const GO_STRING: &str = "2006-01-02 15:04:05.999999999 -0700 MST";
/// Go's `time.RFC3339Nano`, as Fabric's JSON carries times: `2025-06-01T00:00:00.12Z`.
pub const RFC3339_NANO: &str = "2006-01-02T15:04:05.999999999Z07:00";

/// Formats `time` with a Go layout (parsed on each call; keep a [`Layout`] for hot paths).
pub fn format(layout: &str, time: SystemTime) -> String {
    let mut out = String::new();
    Layout::parse(layout).format(time, &mut out);
    out
}

/// Zone elements in the order Go tries them (longest first), and how UTC prints for each.
const NUM_ZONES: [(&str, &str); 5] =
    [("-070000", "+000000"), ("-07:00:00", "+00:00:00"), ("-0700", "+0000"), ("-07:00", "+00:00"), ("-07", "+00")];
const ISO_ZONES: [&str; 5] = ["Z070000", "Z07:00:00", "Z0700", "Z07:00", "Z07"];

impl Layout {
    pub fn parse(layout: &str) -> Layout {
        let bytes = layout.as_bytes();
        let mut chunks = Vec::new();
        let mut literal = String::new();
        let mut i = 0;
        while i < layout.len() {
            let rest = &layout[i..];
            let (chunk, len) = match recognize(rest, bytes, i) {
                Some(found) => found,
                None => {
                    // Not an element: copy one character through.
                    let ch = rest.chars().next().unwrap_or_default();
                    literal.push(ch);
                    i += ch.len_utf8();
                    continue;
                }
            };
            if !literal.is_empty() {
                chunks.push(Chunk::Literal(std::mem::take(&mut literal)));
            }
            chunks.push(chunk);
            i += len;
        }
        if !literal.is_empty() {
            chunks.push(Chunk::Literal(literal));
        }
        Layout(chunks)
    }

    /// Appends `time` (in UTC) formatted by this layout.
    pub fn format(&self, time: SystemTime, out: &mut String) {
        let civil = Civil::from_system_time(time);
        for chunk in &self.0 {
            // Writing to a String cannot fail.
            let _ = match chunk {
                Chunk::Literal(text) => {
                    out.push_str(text);
                    Ok(())
                }
                Chunk::LongMonth => write!(out, "{}", MONTHS[civil.month as usize - 1]),
                Chunk::Month => write!(out, "{}", &MONTHS[civil.month as usize - 1][..3]),
                Chunk::NumMonth => write!(out, "{}", civil.month),
                Chunk::ZeroMonth => write!(out, "{:02}", civil.month),
                Chunk::LongWeekday => write!(out, "{}", WEEKDAYS[civil.weekday as usize]),
                Chunk::Weekday => write!(out, "{}", &WEEKDAYS[civil.weekday as usize][..3]),
                Chunk::Day => write!(out, "{}", civil.day),
                Chunk::UnderDay => write!(out, "{:>2}", civil.day),
                Chunk::ZeroDay => write!(out, "{:02}", civil.day),
                Chunk::UnderYearDay => write!(out, "{:>3}", civil.year_day),
                Chunk::ZeroYearDay => write!(out, "{:03}", civil.year_day),
                Chunk::Hour => write!(out, "{:02}", civil.hour),
                Chunk::Hour12 => write!(out, "{}", hour12(civil.hour)),
                Chunk::ZeroHour12 => write!(out, "{:02}", hour12(civil.hour)),
                Chunk::Minute => write!(out, "{}", civil.minute),
                Chunk::ZeroMinute => write!(out, "{:02}", civil.minute),
                Chunk::Second => write!(out, "{}", civil.second),
                Chunk::ZeroSecond => write!(out, "{:02}", civil.second),
                Chunk::LongYear => write_long_year(out, civil.year),
                Chunk::Year => write!(out, "{:02}", civil.year.rem_euclid(100)),
                Chunk::UpperPm => write!(out, "{}", if civil.hour >= 12 { "PM" } else { "AM" }),
                Chunk::LowerPm => write!(out, "{}", if civil.hour >= 12 { "pm" } else { "am" }),
                Chunk::ZoneName => write!(out, "UTC"),
                Chunk::IsoZone => write!(out, "Z"),
                Chunk::NumZone(utc) => write!(out, "{utc}"),
                Chunk::Fraction { separator, digits, trim } => {
                    write_fraction(out, civil.nanos, *separator, *digits, *trim);
                    Ok(())
                }
            };
        }
    }
}

/// Recognizes the layout element starting at byte `i` (`rest` is `layout[i..]`).
fn recognize(rest: &str, bytes: &[u8], i: usize) -> Option<(Chunk, usize)> {
    let starts = |prefix: &str| rest.starts_with(prefix);
    let found = match bytes[i] {
        b'J' if starts("January") => (Chunk::LongMonth, 7),
        b'J' if starts("Jan") => (Chunk::Month, 3),
        b'M' if starts("Monday") => (Chunk::LongWeekday, 6),
        b'M' if starts("Mon") => (Chunk::Weekday, 3),
        b'M' if starts("MST") => (Chunk::ZoneName, 3),
        b'0' if matches!(bytes.get(i + 1), Some(b'1'..=b'6')) => {
            let chunk = match bytes[i + 1] {
                b'1' => Chunk::ZeroMonth,
                b'2' => Chunk::ZeroDay,
                b'3' => Chunk::ZeroHour12,
                b'4' => Chunk::ZeroMinute,
                b'5' => Chunk::ZeroSecond,
                _ => Chunk::Year,
            };
            (chunk, 2)
        }
        b'0' if starts("002") => (Chunk::ZeroYearDay, 3),
        b'1' if starts("15") => (Chunk::Hour, 2),
        b'1' => (Chunk::NumMonth, 1),
        b'2' if starts("2006") => (Chunk::LongYear, 4),
        b'2' => (Chunk::Day, 1),
        // Go reads "_2006" as a literal underscore followed by the year.
        b'_' if starts("_2006") => return None,
        b'_' if starts("_2") => (Chunk::UnderDay, 2),
        b'_' if starts("__2") => (Chunk::UnderYearDay, 3),
        b'3' => (Chunk::Hour12, 1),
        b'4' => (Chunk::Minute, 1),
        b'5' => (Chunk::Second, 1),
        b'P' if starts("PM") => (Chunk::UpperPm, 2),
        b'p' if starts("pm") => (Chunk::LowerPm, 2),
        b'-' => {
            let (element, utc) = NUM_ZONES.iter().find(|(element, _)| starts(element))?;
            (Chunk::NumZone(utc), element.len())
        }
        b'Z' => {
            let element = ISO_ZONES.iter().find(|element| starts(element))?;
            (Chunk::IsoZone, element.len())
        }
        separator @ (b'.' | b',') if matches!(bytes.get(i + 1), Some(b'0' | b'9')) => {
            let digit = bytes[i + 1];
            let run = bytes[i + 1..].iter().take_while(|&&b| b == digit).count();
            // A run followed by another digit is not a fraction (Go's rule).
            if bytes.get(i + 1 + run).is_some_and(u8::is_ascii_digit) {
                return None;
            }
            let chunk = Chunk::Fraction { separator: char::from(separator), digits: run.min(9), trim: digit == b'9' };
            (chunk, 1 + run)
        }
        _ => return None,
    };
    Some(found)
}

const MONTHS: [&str; 12] =
    ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December"];
const WEEKDAYS: [&str; 7] = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];

fn hour12(hour: u32) -> u32 {
    match hour % 12 {
        0 => 12,
        h => h,
    }
}

fn write_long_year(out: &mut String, year: i64) -> std::fmt::Result {
    if year < 0 { write!(out, "-{:04}", -year) } else { write!(out, "{year:04}") }
}

/// Go's fractional seconds: `digits` leading digits of the nanoseconds; when trimming, trailing
/// zeros go, and if nothing is left the separator goes too.
fn write_fraction(out: &mut String, nanos: u32, separator: char, digits: usize, trim: bool) {
    let all = format!("{nanos:09}");
    let mut shown = &all[..digits];
    if trim {
        shown = shown.trim_end_matches('0');
        if shown.is_empty() {
            return;
        }
    }
    out.push(separator);
    out.push_str(shown);
}

/// A UTC calendar breakdown of an instant.
#[derive(Debug, PartialEq, Eq)]
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    /// 1-based day of the year.
    year_day: u32,
    /// 0 = Sunday.
    weekday: u32,
    hour: u32,
    minute: u32,
    second: u32,
    nanos: u32,
}

impl Civil {
    fn from_system_time(time: SystemTime) -> Civil {
        let (seconds, nanos) = match time.duration_since(UNIX_EPOCH) {
            Ok(since) => (since.as_secs() as i64, since.subsec_nanos()),
            Err(before) => {
                // Before 1970: floor to the whole second below, keep the nanoseconds positive.
                let before = before.duration();
                let (secs, sub) = (before.as_secs() as i64, before.subsec_nanos());
                if sub == 0 { (-secs, 0) } else { (-secs - 1, 1_000_000_000 - sub) }
            }
        };
        let days = seconds.div_euclid(86_400);
        let second_of_day = seconds.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_from_days(days);
        Civil {
            year,
            month,
            day,
            year_day: (days - days_from_civil(year, 1, 1) + 1) as u32,
            weekday: (days + 4).rem_euclid(7) as u32, // 1970-01-01 was a Thursday
            hour: second_of_day / 3600,
            minute: second_of_day / 60 % 60,
            second: second_of_day % 60,
            nanos,
        }
    }
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // March = 0
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 { month_index + 3 } else { month_index - 9 } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// (year, month, day) to days since 1970-01-01 (Hinnant's `days_from_civil`).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year.rem_euclid(400);
    let month = i64::from(month);
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn at(millis: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(millis)
    }

    fn format(layout: &str, time: SystemTime) -> String {
        let mut out = String::new();
        Layout::parse(layout).format(time, &mut out);
        out
    }

    #[test]
    fn fabric_layouts() {
        let t = at(1_714_557_600_123); // 2024-05-01 10:00:00.123 UTC, a Wednesday
        assert_eq!(format("2006-01-02 15:04:05.000 MST", t), "2024-05-01 10:00:00.123 UTC");
        assert_eq!(format(DEFAULT_TIME_LAYOUT, t), "2024-05-01T10:00:00.123Z");
        assert_eq!(format("2006-01-02T15:04:05.000Z07:00", t), "2024-05-01T10:00:00.123Z");
        // `.999` trims trailing zeros, and the dot with them when nothing is left.
        assert_eq!(format(DEFAULT_TIME_LAYOUT, at(1_714_557_600_100)), "2024-05-01T10:00:00.1Z");
        assert_eq!(format(DEFAULT_TIME_LAYOUT, at(1_714_557_600_000)), "2024-05-01T10:00:00Z");
        assert_eq!(format("2006-01-02 15:04:05.000 MST", at(1_714_557_600_000)), "2024-05-01 10:00:00.000 UTC");
    }

    #[test]
    fn other_elements() {
        let t = at(1_704_164_645_007); // 2024-01-02 03:04:05.007 UTC, a Tuesday
        assert_eq!(format("Mon Jan _2 3:4:5 PM 06 -0700", t), "Tue Jan  2 3:4:5 AM 24 +0000");
        assert_eq!(format("Monday, January 2 2006 03pm -07:00 Z0700 __2 002", t), "Tuesday, January 2 2024 03am +00:00 Z   2 002");
        assert_eq!(format("15h04,000000000", t), "03h04,007000000");
        assert_eq!(format("_2006 T 1/2", t), "_2024 T 1/2");
        // A digit run followed by another digit is literal text.
        assert_eq!(format(".0001", t), ".0001");
        assert_eq!(format("time: ünïcode", t), "time: ünïcode");
        assert_eq!(format("15 3PM", at(1_704_164_645_007 + 12 * 3_600_000)), "15 3PM");
        assert_eq!(format("MST 15:04:05 Z07:00", at(0)), "UTC 00:00:00 Z");
    }

    #[test]
    fn calendar_round_trips() {
        for days in [-800_000_i64, -1, 0, 1, 59, 365, 10_957, 11_016, 19_844, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        // Before the epoch: 1969-12-31 23:59:59.5
        let before = UNIX_EPOCH - Duration::from_millis(500);
        assert_eq!(format("2006-01-02 15:04:05.000 Monday 002", before), "1969-12-31 23:59:59.500 Wednesday 365");
    }
}
