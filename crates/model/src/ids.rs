//! Identifier newtypes. Ids are cheap to clone (`Arc<str>`) because the ledger keeps millions of them.

use std::fmt;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest id accepted anywhere on the wire, in bytes.
pub const ID_LEN_MAX: usize = 256;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Arc<str>);

        impl $name {
            /// Builds the id; empty, over-long or control-character ids are refused.
            pub fn new(raw: &str) -> Result<Self, IdError> {
                validate_id(raw)?;
                Ok(Self(Arc::from(raw)))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:?}", &*self.0)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::new(&raw).map_err(serde::de::Error::custom)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> std::borrow::Cow<'static, str> {
                stringify!($name).into()
            }
            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({
                    "type": "string",
                    "minLength": 1,
                    "maxLength": ID_LEN_MAX,
                })
            }
        }
    };
}

id_type!(
    /// An item (SKU) in the hub's own master data.
    ItemId
);
id_type!(
    /// A stocking location (warehouse, store, 3PL site).
    LocationId
);
id_type!(
    /// A system that produces events (`wms-east`, `erp`).
    SourceId
);
id_type!(
    /// A sales channel that availability is published to.
    ChannelId
);
id_type!(
    /// A lot or batch number.
    Lot
);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("must not be blank (only whitespace)")]
    Blank,
    #[error("must be at most {ID_LEN_MAX} bytes")]
    TooLong,
    #[error("must not contain control characters")]
    Control,
}

pub fn validate_id(raw: &str) -> Result<(), IdError> {
    if raw.is_empty() {
        return Err(IdError::Empty);
    }
    if raw.trim().is_empty() {
        return Err(IdError::Blank);
    }
    if raw.len() > ID_LEN_MAX {
        return Err(IdError::TooLong);
    }
    if raw.chars().any(char::is_control) {
        return Err(IdError::Control);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_refuse_empty_long_and_control() {
        assert_eq!(ItemId::new(""), Err(IdError::Empty));
        assert_eq!(
            ItemId::new(&"x".repeat(ID_LEN_MAX + 1)),
            Err(IdError::TooLong)
        );
        assert_eq!(ItemId::new("a\nb"), Err(IdError::Control));
        assert_eq!(ItemId::new("   "), Err(IdError::Blank));
        assert_eq!(ItemId::new("\u{3000}\u{a0}"), Err(IdError::Blank));
        assert_eq!(ItemId::new("SKU-1").unwrap().as_str(), "SKU-1");
    }

    #[test]
    fn ids_deserialize_with_validation() {
        let ok: ItemId = serde_json::from_str("\"SKU-9\"").unwrap();
        assert_eq!(ok.as_str(), "SKU-9");
        let err = serde_json::from_str::<ItemId>("\"\"").unwrap_err();
        assert!(err.to_string().contains("must not be empty"), "{err}");
    }
}
