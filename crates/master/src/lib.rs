//! Master data: the items Crossdock knows (with GTIN/UPC), its locations, each trading
//! partner's names for both (crosswalks), and units of measure with exact integer conversions.
//!
//! Everything an adapter reads from another system goes through here: a partner's SKU or a
//! GTIN becomes an item id, a partner's location code a location id, and a quantity in cases a
//! quantity in base units. Nothing is guessed: an unknown name or a conversion that is not
//! exact is an error naming what is missing, never a rounded or skipped line.
//!
//! Loaded from CSV ([`load`]), every bad row reported at once with its line.

pub mod gtin;
pub mod load;
pub mod uom;

use std::collections::HashMap;

use crossdock_model::{ItemId, LocationId};

pub use gtin::Gtin;
pub use load::{CsvSheet, LoadError, RowProblem};
pub use uom::{Conversion, Uom, UomError};

/// An item as master data knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: ItemId,
    pub description: Option<String>,
    /// Normalised to 14 digits; UPC-A and EAN-13 codes are GTINs too.
    pub gtin: Option<Gtin>,
    /// The unit quantities are kept in (`EA` unless said otherwise).
    pub base_uom: Uom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub id: LocationId,
    pub name: Option<String>,
}

/// What a partner's code names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CrosswalkKind {
    Item,
    Location,
}

/// Why a partner's name for something could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    #[error("partner {partner} item {code:?} is not in the item master or the crosswalk")]
    UnknownItem { partner: String, code: String },
    #[error("partner {partner} location {code:?} is not in the location master or the crosswalk")]
    UnknownLocation { partner: String, code: String },
    #[error(transparent)]
    Uom(#[from] UomError),
}

/// All master data, indexed for lookups.
#[derive(Debug, Clone, Default)]
pub struct MasterData {
    items: HashMap<ItemId, Item>,
    by_gtin: HashMap<Gtin, ItemId>,
    locations: HashMap<LocationId, Location>,
    /// (partner, kind, partner's code) → our id.
    crosswalk: HashMap<(String, CrosswalkKind, String), String>,
    /// (partner, kind, our id) → the partner's code (the first one listed).
    reverse: HashMap<(String, CrosswalkKind, String), String>,
    conversions: uom::Table,
}

impl MasterData {
    pub fn new(
        items: Vec<Item>,
        locations: Vec<Location>,
        crosswalks: Vec<load::CrosswalkRow>,
        conversions: Vec<Conversion>,
    ) -> MasterData {
        let by_gtin = items
            .iter()
            .filter_map(|i| i.gtin.map(|g| (g, i.id.clone())))
            .collect();
        let mut reverse = HashMap::new();
        for c in &crosswalks {
            reverse
                .entry((c.partner.clone(), c.kind, c.internal.clone()))
                .or_insert_with(|| c.external.clone());
        }
        MasterData {
            items: items.into_iter().map(|i| (i.id.clone(), i)).collect(),
            by_gtin,
            locations: locations.into_iter().map(|l| (l.id.clone(), l)).collect(),
            crosswalk: crosswalks
                .into_iter()
                .map(|c| ((c.partner, c.kind, c.external), c.internal))
                .collect(),
            reverse,
            conversions: uom::Table::new(conversions),
        }
    }

    pub fn item(&self, id: &ItemId) -> Option<&Item> {
        self.items.get(id)
    }

    pub fn location(&self, id: &LocationId) -> Option<&Location> {
        self.locations.get(id)
    }

    pub fn items(&self) -> impl Iterator<Item = &Item> {
        self.items.values()
    }

    pub fn item_count(&self) -> usize {
        self.items.len()
    }

    /// The item a partner means by `code`: its crosswalk entry, else a GTIN/UPC/EAN of ours,
    /// else our own item id.
    pub fn resolve_item(&self, partner: &str, code: &str) -> Result<ItemId, LookupError> {
        let code = code.trim();
        if let Some(id) =
            self.crosswalk
                .get(&(partner.to_string(), CrosswalkKind::Item, code.to_string()))
        {
            return Ok(ItemId::new(id).expect("crosswalk targets are checked on load"));
        }
        if let Ok(g) = Gtin::parse(code)
            && let Some(id) = self.by_gtin.get(&g)
        {
            return Ok(id.clone());
        }
        if let Ok(id) = ItemId::new(code)
            && self.items.contains_key(&id)
        {
            return Ok(id);
        }
        Err(LookupError::UnknownItem {
            partner: partner.to_string(),
            code: code.to_string(),
        })
    }

    /// The location a partner means by `code`: its crosswalk entry, else our own location id.
    pub fn resolve_location(&self, partner: &str, code: &str) -> Result<LocationId, LookupError> {
        let code = code.trim();
        if let Some(id) = self.crosswalk.get(&(
            partner.to_string(),
            CrosswalkKind::Location,
            code.to_string(),
        )) {
            return Ok(LocationId::new(id).expect("crosswalk targets are checked on load"));
        }
        if let Ok(id) = LocationId::new(code)
            && self.locations.contains_key(&id)
        {
            return Ok(id);
        }
        Err(LookupError::UnknownLocation {
            partner: partner.to_string(),
            code: code.to_string(),
        })
    }

    /// The partner's code for one of our items or locations, if the crosswalk has one.
    pub fn partner_code(&self, partner: &str, kind: CrosswalkKind, ours: &str) -> Option<&str> {
        self.reverse
            .get(&(partner.to_string(), kind, ours.to_string()))
            .map(String::as_str)
    }

    /// `qty` of `item` in `unit`, in the item's base unit, exactly.
    pub fn to_base(&self, item: &ItemId, qty: i64, unit: &Uom) -> Result<i64, UomError> {
        let base = self.base_uom(item);
        self.conversions.to_base(item, &base, qty, unit)
    }

    /// `base_qty` base units of `item` expressed in `unit`, only if that is a whole number.
    pub fn to_unit(&self, item: &ItemId, base_qty: i64, unit: &Uom) -> Result<i64, UomError> {
        let base = self.base_uom(item);
        self.conversions.to_unit(item, &base, base_qty, unit)
    }

    fn base_uom(&self, item: &ItemId) -> Uom {
        self.items
            .get(item)
            .map_or_else(Uom::each, |i| i.base_uom.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterData {
        let items = load::items_from_str(
            "items.csv",
            "item,description,gtin,base_uom\nSKU-1,Widget,036000291452,EA\nSKU-2,Bolt,,EA\n",
        )
        .unwrap();
        let locations = load::locations_from_str("l.csv", "location,name\nDC-EAST,East\n").unwrap();
        let known_items = items.iter().map(|i| i.id.to_string()).collect();
        let known_locations = locations.iter().map(|l| l.id.to_string()).collect();
        let walk = load::crosswalks_from_str(
            "x.csv",
            "partner,kind,external,internal\nacme,item,A-100,SKU-2\nacme,location,0042,DC-EAST\n",
            &known_items,
            &known_locations,
        )
        .unwrap();
        let conv = load::conversions_from_str("u.csv", "item,uom,base_qty\n*,CS,12\nSKU-2,BX,50\n")
            .unwrap();
        MasterData::new(items, locations, walk, conv)
    }

    #[test]
    fn partners_names_resolve_through_crosswalk_gtin_or_our_id() {
        let m = master();
        assert_eq!(m.resolve_item("acme", "A-100").unwrap().as_str(), "SKU-2");
        // A UPC-A resolves through its GTIN; so does its GTIN-14 form.
        assert_eq!(
            m.resolve_item("acme", "036000291452").unwrap().as_str(),
            "SKU-1"
        );
        assert_eq!(
            m.resolve_item("other", "00036000291452").unwrap().as_str(),
            "SKU-1"
        );
        assert_eq!(m.resolve_item("other", "SKU-2").unwrap().as_str(), "SKU-2");
        assert!(matches!(
            m.resolve_item("other", "A-100"),
            Err(LookupError::UnknownItem { .. })
        ));
        assert_eq!(
            m.resolve_location("acme", "0042").unwrap().as_str(),
            "DC-EAST"
        );
        assert!(m.resolve_location("other", "0042").is_err());
    }

    #[test]
    fn units_convert_exactly_or_not_at_all() {
        let m = master();
        let sku1 = ItemId::new("SKU-1").unwrap();
        let sku2 = ItemId::new("SKU-2").unwrap();
        assert_eq!(m.to_base(&sku1, 3, &Uom::parse("CS").unwrap()).unwrap(), 36);
        assert_eq!(
            m.to_base(&sku2, 2, &Uom::parse("BX").unwrap()).unwrap(),
            100
        );
        assert_eq!(m.to_unit(&sku1, 36, &Uom::parse("CS").unwrap()).unwrap(), 3);
        assert!(matches!(
            m.to_unit(&sku1, 30, &Uom::parse("CS").unwrap()),
            Err(UomError::NotExact { .. })
        ));
        assert!(matches!(
            m.to_base(&sku1, 1, &Uom::parse("BX").unwrap()),
            Err(UomError::Unknown { .. })
        ));
        assert_eq!(m.to_base(&sku1, 7, &Uom::each()).unwrap(), 7);
    }
}
