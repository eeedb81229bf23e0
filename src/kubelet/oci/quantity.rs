//! Kubernetes resource quantities as the kubelet reads them (`MilliValue`, `Value`); pure
//! arithmetic, never any I/O.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A parsed quantity as an exact fraction `numerator / denominator` of one unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Amount {
    numerator: i128,
    denominator: i128,
}

impl Amount {
    pub(crate) const ZERO: Amount = Amount {
        numerator: 0,
        denominator: 1,
    };

    /// Parses `text` (`"100m"`, `"1.5Gi"`, `"2e3"`); `None` for anything that is not a quantity.
    pub(crate) fn parse(text: &str) -> Option<Amount> {
        let s = text.trim();
        let (negative, s) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s.strip_prefix('+').unwrap_or(s)),
        };
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(s.len());
        let (number, suffix) = s.split_at(split);
        if number.is_empty() || number == "." {
            return None;
        }
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if frac_part.contains('.') {
            return None;
        }
        let mut mantissa: i128 = 0;
        for b in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        let mut denominator = 10i128.checked_pow(u32::try_from(frac_part.len()).ok()?)?;
        let (mul, div) = suffix_factor(suffix)?;
        let mut numerator = mantissa.checked_mul(mul)?;
        denominator = denominator.checked_mul(div)?;
        if negative {
            numerator = -numerator;
        }
        Some(Amount {
            numerator,
            denominator,
        })
    }

    /// Thousandths of a unit, rounded up (`Quantity.MilliValue`).
    pub(crate) fn milli(self) -> i64 {
        saturate(ceil_div(
            self.numerator.saturating_mul(1000),
            self.denominator,
        ))
    }

    /// Whole units, rounded up (`Quantity.Value`).
    pub(crate) fn value(self) -> i64 {
        saturate(ceil_div(self.numerator, self.denominator))
    }

    pub(crate) fn is_positive(self) -> bool {
        self.numerator > 0
    }

    pub(crate) fn is_zero(self) -> bool {
        self.numerator == 0
    }
}

fn suffix_factor(suffix: &str) -> Option<(i128, i128)> {
    let binary = |p: u32| Some((1024i128.checked_pow(p)?, 1));
    let decimal = |p: i32| -> Option<(i128, i128)> {
        let f = 10i128.checked_pow(p.unsigned_abs())?;
        Some(if p >= 0 { (f, 1) } else { (1, f) })
    };
    match suffix {
        "" => Some((1, 1)),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        exp if exp.starts_with(['e', 'E']) => {
            let p = exp.get(1..)?.parse::<i32>().ok()?;
            if p.unsigned_abs() > 30 {
                return None;
            }
            decimal(p)
        }
        _ => None,
    }
}

fn ceil_div(n: i128, d: i128) -> i128 {
    if d == 0 {
        return 0;
    }
    let q = n.div_euclid(d);
    if n.rem_euclid(d) != 0 { q + 1 } else { q }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// The amount of `name` in a resource list; zero when absent or unparsable (as the API
/// server validated it, unparsable cannot happen for stored objects).
pub(crate) fn amount(list: Option<&BTreeMap<String, Quantity>>, name: &str) -> Amount {
    list.and_then(|l| l.get(name))
        .and_then(|q| Amount::parse(&q.0))
        .unwrap_or(Amount::ZERO)
}

/// A quantity in whole units, rounded up (`Quantity.Value`); `None` when unparsable.
pub fn quantity_value(quantity: &Quantity) -> Option<i64> {
    Amount::parse(&quantity.0).map(Amount::value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities_as_kubelet_reads_them() {
        let cases = [
            ("100m", 100, 1),
            ("1", 1000, 1),
            ("1.5", 1500, 2),
            ("0.1", 100, 1),
            ("1Ki", 1_024_000, 1024),
            ("128Mi", 134_217_728_000, 134_217_728),
            ("1G", 1_000_000_000_000, 1_000_000_000),
            ("1e3", 1_000_000, 1000),
            ("1n", 1, 1),
            ("0", 0, 0),
            ("-1", -1000, -1),
        ];
        for (text, milli, value) in cases {
            let a = Amount::parse(text).unwrap();
            assert_eq!((a.milli(), a.value()), (milli, value), "{text}");
        }
    }

    #[test]
    fn rejects_non_quantities() {
        for text in ["", ".", "1.2.3", "abc", "1Xi", "1e"] {
            assert!(Amount::parse(text).is_none(), "{text}");
        }
    }
}
