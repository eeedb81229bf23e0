//! Resource quantities (`500m`, `1Gi`, `1e3`) parsed to an exact integer count of nano-units, for
//! comparisons in validation and QoS. Never panics; unparseable input is `None`.

use std::cmp::Ordering;

/// A parsed quantity in nano-units (10^-9); sub-nano fractions round up as upstream rounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Quantity(i128);

const NANO: i128 = 1_000_000_000;

impl Quantity {
    pub fn parse(s: &str) -> Option<Quantity> {
        let s = s.trim();
        let (negative, body) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let num_end = body
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(body.len());
        let (number, suffix) = body.split_at(num_end);
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return None;
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        // value = digits * 10^(exp10) * 2^(exp2)
        let digits: String = format!("{int_part}{frac_part}");
        let digits = digits.trim_start_matches('0');
        if digits.len() > 30 {
            return None;
        }
        let mantissa: i128 = if digits.is_empty() {
            0
        } else {
            digits.parse().ok()?
        };
        let frac_len = i32::try_from(frac_part.len()).ok()?;
        let (exp10, exp2) = suffix_exponents(suffix)?;
        let exp10 = exp10 - frac_len + 9;
        let mut value = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
        if exp10 >= 0 {
            value = value.checked_mul(10i128.checked_pow(u32::try_from(exp10).ok()?)?)?;
        } else {
            let div = 10i128.checked_pow(u32::try_from(-exp10).ok()?)?;
            value = (value + div - 1) / div;
        }
        Some(Quantity(if negative { -value } else { value }))
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// The value in milli-units, rounded up.
    pub fn milli(self) -> i128 {
        let per_milli = NANO / 1000;
        if self.0 >= 0 {
            (self.0 + per_milli - 1) / per_milli
        } else {
            self.0 / per_milli
        }
    }

    pub fn plus(self, other: Quantity) -> Quantity {
        Quantity(self.0.saturating_add(other.0))
    }

    pub fn cmp_to(self, other: Quantity) -> Ordering {
        self.0.cmp(&other.0)
    }
}

fn suffix_exponents(suffix: &str) -> Option<(i32, u32)> {
    let binary = |n: u32| Some((0, n));
    let decimal = |n: i32| Some((n, 0));
    match suffix {
        "" => decimal(0),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        "Ki" => binary(10),
        "Mi" => binary(20),
        "Gi" => binary(30),
        "Ti" => binary(40),
        "Pi" => binary(50),
        "Ei" => binary(60),
        other => {
            let exp = other
                .strip_prefix('e')
                .or_else(|| other.strip_prefix('E'))?;
            let n: i32 = exp.parse().ok()?;
            if !(-30..=30).contains(&n) {
                return None;
            }
            decimal(n)
        }
    }
}

/// Parses a JSON quantity (string or number).
pub fn from_json(v: &serde_json::Value) -> Option<Quantity> {
    match v {
        serde_json::Value::String(s) => Quantity::parse(s),
        serde_json::Value::Number(n) => Quantity::parse(&n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_exactly() {
        let cases = [
            ("1", Some(NANO)),
            ("500m", Some(NANO / 2)),
            ("0.5", Some(NANO / 2)),
            ("1Ki", Some(1024 * NANO)),
            ("1Gi", Some((1 << 30) * NANO)),
            ("1k", Some(1000 * NANO)),
            ("1e3", Some(1000 * NANO)),
            ("-2", Some(-2 * NANO)),
            ("1.5Mi", Some(1_572_864 * NANO)),
            ("abc", None),
            ("", None),
            ("1Qi", None),
            ("1..2", None),
        ];
        for (s, want) in cases {
            assert_eq!(Quantity::parse(s).map(|q| q.0), want, "{s}");
        }
        assert_eq!(Quantity::parse("100m").map(Quantity::milli), Some(100));
        assert_eq!(
            Quantity::parse("1")
                .unwrap()
                .cmp_to(Quantity::parse("1000m").unwrap()),
            Ordering::Equal
        );
    }
}
