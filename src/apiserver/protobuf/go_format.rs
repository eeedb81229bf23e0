//! Go's text forms of times and durations as Kubernetes JSON carries them: `metav1.Time`
//! (RFC3339, seconds), `metav1.MicroTime` (RFC3339, microseconds) and `time.Duration.String()`.

/// Seconds from the Unix epoch to Go's zero `time.Time` (0001-01-01T00:00:00Z), which Kubernetes
/// encodes as JSON `null`.
pub const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// Formats a UTC instant as `2006-01-02T15:04:05Z`, or with `micros` as
/// `2006-01-02T15:04:05.000000Z`. `None` when the year is outside 0..=9999, which Go's JSON
/// encoder refuses too.
pub fn rfc3339(seconds: i64, micros: Option<u32>) -> Option<String> {
    let days = seconds.div_euclid(86_400);
    let secs_of_day = seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days)?;
    if !(0..=9999).contains(&year) {
        return None;
    }
    let (h, m, s) = (secs_of_day / 3600, secs_of_day / 60 % 60, secs_of_day % 60);
    let base = format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}");
    Some(match micros {
        Some(us) => format!("{base}.{us:06}Z"),
        None => format!("{base}Z"),
    })
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> Option<(i64, u32, u32)> {
    let z = days.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe.checked_add(era.checked_mul(400)?)? + i64::from(month <= 2);
    Some((year, u32::try_from(month).ok()?, u32::try_from(day).ok()?))
}

/// Go's `time.Duration(nanos).String()`: `0s`, `1.5s`, `1h0m0s`, `250ms`, `3µs`, `-2ns`.
pub fn duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".to_string();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    const SECOND: u64 = 1_000_000_000;
    if u < SECOND {
        let (scale, digits, unit) = if u < 1_000 {
            (1, 0, "ns")
        } else if u < 1_000_000 {
            (1_000, 3, "µs")
        } else {
            (1_000_000, 6, "ms")
        };
        return format!(
            "{sign}{}{unit}",
            with_fraction(u / scale, u % scale, digits)
        );
    }
    let total_secs = u / SECOND;
    let seconds = with_fraction(total_secs % 60, u % SECOND, 9);
    let minutes = total_secs / 60;
    if minutes == 0 {
        return format!("{sign}{seconds}s");
    }
    let hours = minutes / 60;
    if hours == 0 {
        return format!("{sign}{}m{seconds}s", minutes % 60);
    }
    format!("{sign}{hours}h{}m{seconds}s", minutes % 60)
}

/// `whole.frac` with `frac` printed on `digits` digits and trailing zeros dropped.
fn with_fraction(whole: u64, frac: u64, digits: usize) -> String {
    if frac == 0 || digits == 0 {
        return whole.to_string();
    }
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_format_as_rfc3339_utc() {
        let cases = [
            (0, None, Some("1970-01-01T00:00:00Z")),
            (1_704_067_200, None, Some("2024-01-01T00:00:00Z")),
            (1_709_210_096, None, Some("2024-02-29T12:34:56Z")),
            (
                1_704_067_200,
                Some(120),
                Some("2024-01-01T00:00:00.000120Z"),
            ),
            (-1, None, Some("1969-12-31T23:59:59Z")),
            (GO_ZERO_TIME_SECONDS, None, Some("0001-01-01T00:00:00Z")),
            (253_402_300_799, None, Some("9999-12-31T23:59:59Z")),
            (253_402_300_800, None, None),
            (-62_167_219_201, None, None),
            (i64::MAX, None, None),
            (i64::MIN, None, None),
        ];
        for (seconds, micros, want) in cases {
            assert_eq!(rfc3339(seconds, micros).as_deref(), want, "{seconds}");
        }
    }

    #[test]
    fn durations_format_like_go() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (1_500_000_000, "1.5s"),
            (60_000_000_000, "1m0s"),
            (61_000_000_000, "1m1s"),
            (3_600_000_000_000, "1h0m0s"),
            (3_723_000_000_001, "1h2m3.000000001s"),
            (-90_000_000_000, "-1m30s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (i64::MAX, "2562047h47m16.854775807s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(duration(nanos), want, "{nanos}");
        }
    }
}
