//! GS1 trade item numbers: GTIN-8, UPC-A (GTIN-12), EAN-13 and GTIN-14, check digit verified,
//! all kept as the 14-digit form so a UPC and its GTIN-14 are the same key.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gtin(u64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GtinError {
    #[error("a GTIN has 8, 12, 13 or 14 digits, not {0}")]
    Length(usize),
    #[error("a GTIN has digits only")]
    NotDigits,
    #[error("check digit is {found}, expected {expected}")]
    CheckDigit { found: u8, expected: u8 },
}

impl Gtin {
    pub fn parse(raw: &str) -> Result<Gtin, GtinError> {
        let raw = raw.trim();
        if !raw.bytes().all(|b| b.is_ascii_digit()) {
            return Err(GtinError::NotDigits);
        }
        if !matches!(raw.len(), 8 | 12 | 13 | 14) {
            return Err(GtinError::Length(raw.len()));
        }
        let digits: Vec<u8> = raw.bytes().map(|b| b - b'0').collect();
        let (body, check) = digits.split_at(digits.len() - 1);
        let expected = check_digit(body);
        if check[0] != expected {
            return Err(GtinError::CheckDigit {
                found: check[0],
                expected,
            });
        }
        Ok(Gtin(
            digits.iter().fold(0u64, |n, d| n * 10 + u64::from(*d)),
        ))
    }
}

/// GS1 mod-10: weights 3, 1, 3, … from the digit next to the check digit.
fn check_digit(body: &[u8]) -> u8 {
    let sum: u32 = body
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| u32::from(*d) * if i % 2 == 0 { 3 } else { 1 })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

impl fmt::Display for Gtin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:014}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_length_normalises_to_fourteen_digits() {
        // A real UPC-A (Coca-Cola 12 oz), its EAN-13 and GTIN-14 forms.
        let upc = Gtin::parse("036000291452").unwrap();
        assert_eq!(upc.to_string(), "00036000291452");
        assert_eq!(Gtin::parse("0036000291452").unwrap(), upc);
        assert_eq!(Gtin::parse("00036000291452").unwrap(), upc);
        assert_eq!(
            Gtin::parse("96385074").unwrap().to_string(),
            "00000096385074"
        );
        assert_eq!(
            Gtin::parse("4006381333931").unwrap().to_string(),
            "04006381333931"
        );
    }

    #[test]
    fn bad_codes_say_why() {
        assert_eq!(
            Gtin::parse("036000291453"),
            Err(GtinError::CheckDigit {
                found: 3,
                expected: 2
            })
        );
        assert_eq!(Gtin::parse("12345"), Err(GtinError::Length(5)));
        assert_eq!(Gtin::parse("03600029145X"), Err(GtinError::NotDigits));
    }
}
