//! Cron schedules as CronJobs use them (robfig/cron's `ParseStandard`): five fields with ranges,
//! steps, lists and month/weekday names, plus the `@hourly`-style descriptors. Time zone
//! prefixes (`TZ=`, `CRON_TZ=`) are rejected: CronJobs take `spec.timeZone` instead. Pure.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("time zone prefixes are not supported in schedules, use spec.timeZone: {0:?}")]
    TimeZonePrefix(String),
    #[error("expected exactly 5 fields, found {found}: {schedule:?}")]
    FieldCount { schedule: String, found: usize },
    #[error("unrecognized descriptor: {0:?}")]
    Descriptor(String),
    #[error("failed to parse {field} field {text:?}")]
    Field { field: &'static str, text: String },
    #[error("{field} value {value} is out of range {min}-{max}")]
    Range {
        field: &'static str,
        value: u32,
        min: u32,
        max: u32,
    },
}

/// A parsed schedule: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// Day-of-month or day-of-week started with `*` or `?`: then both must match (AND),
    /// otherwise either may (OR), as cron does.
    day_star: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const FIELDS: [Field; 5] = [
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    Field {
        name: "day-of-month",
        min: 1,
        max: 31,
        names: &[],
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
    },
    Field {
        name: "day-of-week",
        min: 0,
        max: 6,
        names: &DAYS,
    },
];

impl Field {
    fn value(&self, text: &str) -> Result<u32, ParseError> {
        let lower = text.to_ascii_lowercase();
        if let Some(i) = self.names.iter().position(|n| *n == lower) {
            return Ok(self.min + u32::try_from(i).unwrap_or(0));
        }
        let v: u32 = text.parse().map_err(|_| self.error(text))?;
        if v < self.min || v > self.max {
            return Err(ParseError::Range {
                field: self.name,
                value: v,
                min: self.min,
                max: self.max,
            });
        }
        Ok(v)
    }

    fn error(&self, text: &str) -> ParseError {
        ParseError::Field {
            field: self.name,
            text: text.into(),
        }
    }

    /// The bits of one field and whether it started with `*`/`?`.
    fn parse(&self, text: &str) -> Result<(u64, bool), ParseError> {
        let mut bits = 0u64;
        let mut star = false;
        for part in text.split(',') {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => {
                    let s: u32 = s.parse().map_err(|_| self.error(part))?;
                    if s == 0 {
                        return Err(self.error(part));
                    }
                    (r, Some(s))
                }
                None => (part, None),
            };
            let (lo, hi) = if range == "*" || range == "?" {
                star = true;
                (self.min, self.max)
            } else if let Some((a, b)) = range.split_once('-') {
                (self.value(a)?, self.value(b)?)
            } else {
                let v = self.value(range)?;
                (v, if step.is_some() { self.max } else { v })
            };
            if lo > hi {
                return Err(self.error(part));
            }
            let step = step.unwrap_or(1);
            let mut v = lo;
            while v <= hi {
                bits |= 1u64 << v;
                v += step;
            }
        }
        Ok((bits, star))
    }
}

fn has(bits: u64, v: i8) -> bool {
    u32::try_from(v).is_ok_and(|v| v < 64 && bits & (1u64 << v) != 0)
}

impl Schedule {
    /// Parses a standard 5-field schedule or descriptor.
    pub fn parse(text: &str) -> Result<Schedule, ParseError> {
        let text = text.trim();
        if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
            return Err(ParseError::TimeZonePrefix(text.into()));
        }
        let expanded = if let Some(d) = text.strip_prefix('@') {
            match d.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "0 0 1 1 *",
                "monthly" => "0 0 1 * *",
                "weekly" => "0 0 * * 0",
                "daily" | "midnight" => "0 0 * * *",
                "hourly" => "0 * * * *",
                _ => return Err(ParseError::Descriptor(text.into())),
            }
        } else {
            text
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let [m, h, dom, mon, dow] = parts.as_slice() else {
            return Err(ParseError::FieldCount {
                schedule: text.into(),
                found: parts.len(),
            });
        };
        let [fm, fh, fdom, fmon, fdow] = &FIELDS;
        let (dom, dom_star) = fdom.parse(dom)?;
        let (dow, dow_star) = fdow.parse(dow)?;
        Ok(Schedule {
            minute: fm.parse(m)?.0,
            hour: fh.parse(h)?.0,
            dom,
            month: fmon.parse(mon)?.0,
            dow,
            day_star: dom_star || dow_star,
        })
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = has(self.dom, d.day());
        let dow = has(self.dow, d.weekday().to_sunday_zero_offset());
        if self.day_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// The first scheduled time strictly after `after`, in `tz`; `None` if none within five
    /// years (an impossible date such as February 30th).
    pub fn next(&self, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
        let start = after.to_zoned(tz.clone()).datetime();
        let mut t = start
            .with()
            .second(0)
            .subsec_nanosecond(0)
            .build()
            .ok()?
            .checked_add(1.minute())
            .ok()?;
        let limit = start.checked_add(5.years()).ok()?;
        while t < limit {
            if !has(self.month, t.month()) {
                t = first_of_next_month(t)?;
                continue;
            }
            if !self.day_matches(t.date()) {
                t = t
                    .date()
                    .tomorrow()
                    .ok()?
                    .to_datetime(jiff::civil::Time::midnight());
                continue;
            }
            if !has(self.hour, t.hour()) {
                t = t
                    .with()
                    .minute(0)
                    .build()
                    .ok()?
                    .checked_add(1.hour())
                    .ok()?;
                continue;
            }
            if !has(self.minute, t.minute()) {
                t = t.checked_add(1.minute()).ok()?;
                continue;
            }
            let ts = t.to_zoned(tz.clone()).ok()?.timestamp();
            if ts > after {
                return Some(ts);
            }
            t = t.checked_add(1.minute()).ok()?;
        }
        None
    }
}

fn first_of_next_month(t: DateTime) -> Option<DateTime> {
    let first = t.date().first_of_month().checked_add(1.month()).ok()?;
    Some(first.to_datetime(jiff::civil::Time::midnight()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn next_times_follow_the_fields() {
        let cases = [
            (
                "*/1 * * * *",
                "2024-05-01T12:00:30Z",
                "2024-05-01T12:01:00Z",
            ),
            (
                "*/15 * * * *",
                "2024-05-01T12:01:00Z",
                "2024-05-01T12:15:00Z",
            ),
            ("0 * * * *", "2024-05-01T12:00:00Z", "2024-05-01T13:00:00Z"),
            ("@hourly", "2024-05-01T12:59:59Z", "2024-05-01T13:00:00Z"),
            ("@daily", "2024-05-01T12:00:00Z", "2024-05-02T00:00:00Z"),
            ("@midnight", "2024-12-31T23:00:00Z", "2025-01-01T00:00:00Z"),
            ("@weekly", "2024-05-01T12:00:00Z", "2024-05-05T00:00:00Z"),
            ("@monthly", "2024-05-01T12:00:00Z", "2024-06-01T00:00:00Z"),
            ("@yearly", "2024-05-01T12:00:00Z", "2025-01-01T00:00:00Z"),
            ("@annually", "2024-05-01T12:00:00Z", "2025-01-01T00:00:00Z"),
            (
                "30 9 * JAN-MAR MON",
                "2024-05-01T00:00:00Z",
                "2025-01-06T09:30:00Z",
            ),
            (
                "0 0 29 FEB *",
                "2024-03-01T00:00:00Z",
                "2028-02-29T00:00:00Z",
            ),
            (
                "5,10 8-9 * * *",
                "2024-05-01T08:07:00Z",
                "2024-05-01T08:10:00Z",
            ),
            (
                "0 12 1 * sun",
                "2024-05-01T13:00:00Z",
                "2024-05-05T12:00:00Z",
            ),
            ("0 12 1 * *", "2024-05-01T13:00:00Z", "2024-06-01T12:00:00Z"),
            (
                "10/20 * * * *",
                "2024-05-01T12:31:00Z",
                "2024-05-01T12:50:00Z",
            ),
        ];
        for (spec, after, want) in cases {
            let s = Schedule::parse(spec).unwrap();
            assert_eq!(
                s.next(ts(after), &TimeZone::UTC),
                Some(ts(want)),
                "{spec} after {after}"
            );
        }
    }

    #[test]
    fn schedules_honour_the_time_zone() {
        let tz = TimeZone::get("America/New_York").unwrap();
        let s = Schedule::parse("0 9 * * *").unwrap();
        assert_eq!(
            s.next(ts("2024-05-01T00:00:00Z"), &tz),
            Some(ts("2024-05-01T13:00:00Z"))
        );
    }

    #[test]
    fn malformed_schedules_are_rejected() {
        let cases = [
            "TZ=UTC * * * * *",
            "CRON_TZ=Europe/Paris 0 * * * *",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "@every 5m",
            "x * * * *",
            "* * * FOO *",
        ];
        for spec in cases {
            assert!(Schedule::parse(spec).is_err(), "{spec}");
        }
        assert!(matches!(
            Schedule::parse("TZ=UTC 0 * * * *"),
            Err(ParseError::TimeZonePrefix(_))
        ));
    }

    #[test]
    fn impossible_dates_never_fire() {
        let s = Schedule::parse("0 0 30 2 *").unwrap();
        assert_eq!(s.next(ts("2024-01-01T00:00:00Z"), &TimeZone::UTC), None);
    }
}
