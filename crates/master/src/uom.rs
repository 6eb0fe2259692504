//! Units of measure and exact integer conversions to an item's base unit.
//!
//! A conversion says how many base units one unit holds (`CS` = 12 `EA`), for one item or for
//! every item (`*`). Converting to the base unit multiplies; converting back divides and is only
//! allowed when nothing is left over. Nothing is ever rounded.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use crossdock_model::ItemId;

/// A unit code as trading partners write it (`EA`, `CS`, `PK`, `DZ`): 1 to 8 letters or digits,
/// kept upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uom(Arc<str>);

impl Uom {
    pub fn parse(raw: &str) -> Result<Uom, String> {
        let code = raw.trim().to_ascii_uppercase();
        if code.is_empty() || code.len() > 8 || !code.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!("unit {raw:?} is not 1 to 8 letters or digits"));
        }
        Ok(Uom(code.into()))
    }

    /// Each: the default base unit.
    pub fn each() -> Uom {
        Uom("EA".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Uom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One unit of `uom` holds `base_qty` base units of `item` (of every item when `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub item: Option<ItemId>,
    pub uom: Uom,
    pub base_qty: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UomError {
    #[error("no conversion from {unit} to {base} for item {item}")]
    Unknown { item: String, unit: Uom, base: Uom },
    #[error(
        "{base_qty} {base} of item {item} is not a whole number of {unit} ({factor} {base} each)"
    )]
    NotExact {
        item: String,
        base_qty: i64,
        unit: Uom,
        base: Uom,
        factor: i64,
    },
    #[error("{qty} {unit} of item {item} overflows the quantity range")]
    Overflow { item: String, qty: i64, unit: Uom },
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    factors: HashMap<(Option<ItemId>, Uom), i64>,
}

impl Table {
    pub fn new(conversions: Vec<Conversion>) -> Table {
        Table {
            factors: conversions
                .into_iter()
                .map(|c| ((c.item, c.uom), c.base_qty))
                .collect(),
        }
    }

    fn factor(&self, item: &ItemId, base: &Uom, unit: &Uom) -> Result<i64, UomError> {
        if unit == base {
            return Ok(1);
        }
        self.factors
            .get(&(Some(item.clone()), unit.clone()))
            .or_else(|| self.factors.get(&(None, unit.clone())))
            .copied()
            .ok_or_else(|| UomError::Unknown {
                item: item.to_string(),
                unit: unit.clone(),
                base: base.clone(),
            })
    }

    pub fn to_base(
        &self,
        item: &ItemId,
        base: &Uom,
        qty: i64,
        unit: &Uom,
    ) -> Result<i64, UomError> {
        let factor = self.factor(item, base, unit)?;
        qty.checked_mul(factor).ok_or_else(|| UomError::Overflow {
            item: item.to_string(),
            qty,
            unit: unit.clone(),
        })
    }

    pub fn to_unit(
        &self,
        item: &ItemId,
        base: &Uom,
        base_qty: i64,
        unit: &Uom,
    ) -> Result<i64, UomError> {
        let factor = self.factor(item, base, unit)?;
        if base_qty % factor != 0 {
            return Err(UomError::NotExact {
                item: item.to_string(),
                base_qty,
                unit: unit.clone(),
                base: base.clone(),
                factor,
            });
        }
        Ok(base_qty / factor)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the factor, going to the base unit and back is exact, and a base quantity
        /// that is not a multiple is refused rather than rounded.
        #[test]
        fn conversions_round_trip_exactly(factor in 1i64..10_000, qty in -1_000_000i64..1_000_000, extra in 1i64..10_000) {
            let item = ItemId::new("SKU-1").unwrap();
            let cs = Uom::parse("CS").unwrap();
            let t = Table::new(vec![Conversion { item: None, uom: cs.clone(), base_qty: factor }]);
            let base = t.to_base(&item, &Uom::each(), qty, &cs).unwrap();
            prop_assert_eq!(base, qty * factor);
            prop_assert_eq!(t.to_unit(&item, &Uom::each(), base, &cs).unwrap(), qty);
            let off = base + extra % factor;
            if extra % factor != 0 {
                let refused = matches!(t.to_unit(&item, &Uom::each(), off, &cs), Err(UomError::NotExact { .. }));
                prop_assert!(refused);
            }
        }
    }

    #[test]
    fn an_items_own_conversion_wins_and_overflow_is_refused() {
        let item = ItemId::new("SKU-1").unwrap();
        let cs = Uom::parse("cs").unwrap();
        assert_eq!(cs.as_str(), "CS");
        let t = Table::new(vec![
            Conversion {
                item: None,
                uom: cs.clone(),
                base_qty: 12,
            },
            Conversion {
                item: Some(item.clone()),
                uom: cs.clone(),
                base_qty: 24,
            },
        ]);
        assert_eq!(t.to_base(&item, &Uom::each(), 2, &cs).unwrap(), 48);
        let other = ItemId::new("SKU-2").unwrap();
        assert_eq!(t.to_base(&other, &Uom::each(), 2, &cs).unwrap(), 24);
        assert!(matches!(
            t.to_base(&item, &Uom::each(), i64::MAX, &cs),
            Err(UomError::Overflow { .. })
        ));
        assert!(Uom::parse("too-long-unit").is_err());
        assert!(Uom::parse("").is_err());
    }
}
