//! Value types for X12 data elements: dates (`DT`), times (`TM`) and decimal numbers (`R`, `N0`,
//! `N2`).
//!
//! They parse the X12 text form strictly (digits only, real calendar dates, at most 30 digits) and
//! serialize to JSON in a form people read: dates as `"2004-08-11"`, times as `"14:21"` or
//! `"14:21:05"`, numbers as strings (`"1998.61"`) so no precision is lost. Numbers are also
//! accepted from JSON numbers when deserializing.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A calendar date (`DT`, CCYYMMDD in X12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// A date if it exists in the Gregorian calendar.
    pub fn new(year: u16, month: u8, day: u8) -> Option<Self> {
        let leap =
            (year.is_multiple_of(4) && !year.is_multiple_of(100)) || year.is_multiple_of(400);
        let days = match month {
            1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
            4 | 6 | 9 | 11 => 30,
            2 if leap => 29,
            2 => 28,
            _ => return None,
        };
        (year <= 9999 && (1..=days).contains(&day)).then_some(Self { year, month, day })
    }

    /// The year (4 digits).
    pub fn year(&self) -> u16 {
        self.year
    }
    /// The month, 1..=12.
    pub fn month(&self) -> u8 {
        self.month
    }
    /// The day of the month, 1..=31.
    pub fn day(&self) -> u8 {
        self.day
    }

    /// Reads CCYYMMDD (8 digits) or YYMMDD (6 digits; years 00..=69 are 20xx, 70..=99 19xx).
    pub fn from_x12(text: &str) -> Option<Self> {
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u16>().ok();
        match text.len() {
            8 => Self::new(number(0..4)?, number(4..6)? as u8, number(6..8)? as u8),
            6 => {
                let yy = number(0..2)?;
                let year = if yy < 70 { 2000 + yy } else { 1900 + yy };
                Self::new(year, number(2..4)? as u8, number(4..6)? as u8)
            }
            _ => None,
        }
    }

    /// CCYYMMDD.
    pub fn to_x12(&self) -> String {
        format!("{:04}{:02}{:02}", self.year, self.month, self.day)
    }

    /// YYMMDD (for ISA09).
    pub fn to_x12_short(&self) -> String {
        format!("{:02}{:02}{:02}", self.year % 100, self.month, self.day)
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

impl FromStr for Date {
    type Err = String;
    /// Reads `YYYY-MM-DD` (the JSON form) or the X12 forms.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = if s.len() == 10 && s.as_bytes().get(4) == Some(&b'-') {
            s.replace('-', "")
        } else {
            s.to_string()
        };
        if compact.len() != 8 && compact.len() != 6 {
            return Err(format!("not a date (YYYY-MM-DD): {s:?}"));
        }
        Self::from_x12(&compact).ok_or_else(|| format!("not a date (YYYY-MM-DD): {s:?}"))
    }
}

impl Serialize for Date {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// A time of day (`TM`, HHMM[SS[d..d]] in X12).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    hour: u8,
    minute: u8,
    second: Option<u8>,
    /// Decimal fractions of a second as written (`"5"`, `"25"`), only with seconds.
    fraction: Option<String>,
}

impl Time {
    /// Hours and minutes.
    pub fn hm(hour: u8, minute: u8) -> Option<Self> {
        (hour < 24 && minute < 60).then_some(Self {
            hour,
            minute,
            second: None,
            fraction: None,
        })
    }

    /// Hours, minutes and seconds.
    pub fn hms(hour: u8, minute: u8, second: u8) -> Option<Self> {
        let mut time = Self::hm(hour, minute)?;
        (second < 60).then(|| {
            time.second = Some(second);
            time
        })
    }

    /// The hour, 0..=23.
    pub fn hour(&self) -> u8 {
        self.hour
    }
    /// The minute, 0..=59.
    pub fn minute(&self) -> u8 {
        self.minute
    }
    /// The second, when given.
    pub fn second(&self) -> Option<u8> {
        self.second
    }

    /// Reads HHMM, HHMMSS or HHMMSSd..d (at most 8 digits).
    pub fn from_x12(text: &str) -> Option<Self> {
        if !text.bytes().all(|b| b.is_ascii_digit()) || !(4..=8).contains(&text.len()) {
            return None;
        }
        if text.len() == 5 {
            return None;
        }
        let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u8>().ok();
        let mut time = Self::hm(number(0..2)?, number(2..4)?)?;
        if text.len() >= 6 {
            let second = number(4..6)?;
            if second >= 60 {
                return None;
            }
            time.second = Some(second);
            if text.len() > 6 {
                time.fraction = text.get(6..).map(str::to_string);
            }
        }
        Some(time)
    }

    /// HHMM, HHMMSS or HHMMSSd..d.
    pub fn to_x12(&self) -> String {
        let mut out = format!("{:02}{:02}", self.hour, self.minute);
        if let Some(second) = self.second {
            out.push_str(&format!("{second:02}"));
            if let Some(fraction) = &self.fraction {
                out.push_str(fraction);
            }
        }
        out
    }
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)?;
        if let Some(second) = self.second {
            write!(f, ":{second:02}")?;
            if let Some(fraction) = &self.fraction {
                write!(f, ".{fraction}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for Time {
    type Err = String;
    /// Reads `HH:MM`, `HH:MM:SS`, `HH:MM:SS.d` (the JSON form) or the X12 forms.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let compact: String = s.chars().filter(|c| *c != ':' && *c != '.').collect();
        Self::from_x12(&compact).ok_or_else(|| format!("not a time (HH:MM[:SS]): {s:?}"))
    }
}

impl Serialize for Time {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// An exact decimal number (X12 `R` and `Nn` types), kept with the scale it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    unscaled: i128,
    scale: u32,
}

/// At most this many digits are accepted (X12 numbers are at most 18 characters).
const DECIMAL_DIGITS_MAX: usize = 30;

impl Decimal {
    /// The value as an `i64` if it is a whole number that fits (`"12.00"` is 12; `"1.5"` is
    /// `None`): quantities are counted in whole units and never rounded.
    pub fn whole(&self) -> Option<i64> {
        let divisor = 10i128.checked_pow(self.scale)?;
        if self.unscaled % divisor != 0 {
            return None;
        }
        i64::try_from(self.unscaled / divisor).ok()
    }

    /// A whole number.
    pub fn from_i64(value: i64) -> Self {
        Self {
            unscaled: i128::from(value),
            scale: 0,
        }
    }

    /// Reads an X12 `R` number: optional `-`, digits with an optional decimal point
    /// (`"12"`, `"-1.5"`, `".25"`, `"3."`). A leading `+` is accepted.
    pub fn from_x12(text: &str) -> Option<Self> {
        let (negative, body) = match text.as_bytes().first() {
            Some(b'-') => (true, text.get(1..)?),
            Some(b'+') => (false, text.get(1..)?),
            _ => (false, text),
        };
        let (whole, fraction) = match body.split_once('.') {
            Some((whole, fraction)) => (whole, fraction),
            None => (body, ""),
        };
        let digits = whole.len() + fraction.len();
        if digits == 0
            || digits > DECIMAL_DIGITS_MAX
            || !whole
                .bytes()
                .chain(fraction.bytes())
                .all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut unscaled: i128 = 0;
        for b in whole.bytes().chain(fraction.bytes()) {
            unscaled = unscaled
                .checked_mul(10)?
                .checked_add(i128::from(b - b'0'))?;
        }
        Some(Self {
            unscaled: if negative { -unscaled } else { unscaled },
            scale: u32::try_from(fraction.len()).ok()?,
        })
    }

    /// Reads an X12 `Nn` number with `implied` decimal places (`"1234"` with 2 is 12.34).
    pub fn from_implied(text: &str, implied: u32) -> Option<Self> {
        if text.contains('.') {
            return None;
        }
        let whole = Self::from_x12(text)?;
        Some(Self {
            unscaled: whole.unscaled,
            scale: implied,
        })
    }

    /// Writes as an X12 `Nn` number with `implied` decimal places, rounding half away from zero
    /// when the value has more places.
    pub fn to_implied(&self, implied: u32) -> String {
        let mut value = self.unscaled;
        if self.scale > implied {
            // Past 10^38 the divisor does not fit, and every i128 rounds to zero.
            let Some(divisor) = 10i128.checked_pow(self.scale - implied) else {
                return "0".to_string();
            };
            let remainder = value % divisor;
            value /= divisor;
            // |remainder| < divisor <= 10^38, so twice it fits in a u128.
            if remainder.unsigned_abs() * 2 >= divisor.unsigned_abs() {
                value += if self.unscaled < 0 { -1 } else { 1 };
            }
        } else {
            value = value.saturating_mul(10i128.pow((implied - self.scale).min(38)));
        }
        value.to_string()
    }

    /// `true` for zero.
    pub fn is_zero(&self) -> bool {
        self.unscaled == 0
    }

    /// The sum (scales are aligned); `None` on overflow.
    pub fn checked_add(&self, other: &Self) -> Option<Self> {
        let scale = self.scale.max(other.scale);
        let a = self
            .unscaled
            .checked_mul(10i128.checked_pow(scale - self.scale)?)?;
        let b = other
            .unscaled
            .checked_mul(10i128.checked_pow(scale - other.scale)?)?;
        Some(Self {
            unscaled: a.checked_add(b)?,
            scale,
        })
    }

    /// The product; `None` on overflow.
    pub fn checked_mul(&self, other: &Self) -> Option<Self> {
        Some(Self {
            unscaled: self.unscaled.checked_mul(other.unscaled)?,
            scale: self.scale.checked_add(other.scale)?,
        })
    }

    /// The value with the opposite sign.
    pub fn negated(&self) -> Self {
        Self {
            unscaled: -self.unscaled,
            scale: self.scale,
        }
    }

    /// The X12 `R` text (the same as `Display`).
    pub fn to_x12(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.unsigned_abs().to_string();
        let sign = if self.unscaled < 0 { "-" } else { "" };
        let scale = self.scale as usize;
        if scale == 0 {
            return write!(f, "{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (whole, fraction) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{whole}.{fraction}")
    }
}

impl FromStr for Decimal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_x12(s.trim()).ok_or_else(|| format!("not a decimal number: {s:?}"))
    }
}

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Decimal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Decimal;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number as a string or a JSON number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
                Ok(Decimal::from_i64(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
                Ok(Decimal {
                    unscaled: i128::from(v),
                    scale: 0,
                })
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
                if !v.is_finite() {
                    return Err(E::custom("not a finite number"));
                }
                // `Display` for f64 prints the shortest text that reads back to the same value.
                v.to_string().parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_read_both_x12_forms_and_reject_impossible_days() {
        assert_eq!(
            Date::from_x12("20040811").map(|d| d.to_string()).as_deref(),
            Some("2004-08-11")
        );
        assert_eq!(
            Date::from_x12("040811").map(|d| d.to_x12()).as_deref(),
            Some("20040811")
        );
        assert_eq!(Date::from_x12("20230229"), None);
        assert_eq!(Date::from_x12("200"), None);
        assert_eq!(Date::from_x12("2004081a"), None);
        assert_eq!(
            "2024-02-29".parse::<Date>().map(|d| d.to_x12()),
            Ok("20240229".into())
        );
    }

    #[test]
    fn times_keep_seconds_and_fractions() {
        let t = Time::from_x12("14210525").unwrap();
        assert_eq!(t.to_string(), "14:21:05.25");
        assert_eq!(t.to_x12(), "14210525");
        assert_eq!("14:21".parse::<Time>().unwrap().to_x12(), "1421");
        assert_eq!(Time::from_x12("2460"), None);
        assert_eq!(Time::from_x12("12345"), None);
    }

    #[test]
    fn decimals_are_exact() {
        let d = Decimal::from_x12("-1998.61").unwrap();
        assert_eq!(d.to_string(), "-1998.61");
        assert_eq!(Decimal::from_x12(".5").unwrap().to_string(), "0.5");
        assert_eq!(
            Decimal::from_implied("1234", 2).unwrap().to_string(),
            "12.34"
        );
        assert_eq!(Decimal::from_x12("12.345").unwrap().to_implied(2), "1235");
        assert_eq!(Decimal::from_x12("12").unwrap().to_implied(2), "1200");
        assert_eq!(Decimal::from_x12("-0.125").unwrap().to_implied(2), "-13");
        let tiny = Decimal::from_x12(".000000000000000000000000000001").unwrap();
        let product = tiny.checked_mul(&tiny).unwrap();
        assert_eq!(product.to_implied(2), "0", "60 decimal places");
        assert_eq!(Decimal::from_x12("1.2.3"), None);
        assert_eq!(Decimal::from_x12("-"), None);
        assert_eq!(Decimal::from_x12(""), None);
        let sum = Decimal::from_x12("1.5")
            .unwrap()
            .checked_add(&Decimal::from_x12("2").unwrap());
        assert_eq!(sum.map(|s| s.to_string()).as_deref(), Some("3.5"));
        let json: Decimal = serde_json::from_str("12.5").unwrap();
        assert_eq!(json.to_string(), "12.5");
    }
}
