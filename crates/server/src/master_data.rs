//! Master data at runtime: loaded at start from `<data_dir>/master/*.csv` (items fall back to
//! the config's `[master] items_file`), replaced file by file through the API (each file checked
//! whole first; a file with a bad row changes nothing), and read by the partner adapters.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use crossdock_master::MasterData;
use crossdock_master::load::{self, LoadError};

/// The kinds of master file, by the name the API and CLI use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MasterKind {
    Items,
    Locations,
    Crosswalks,
    Units,
}

impl MasterKind {
    pub fn parse(raw: &str) -> Option<MasterKind> {
        Some(match raw {
            "items" => MasterKind::Items,
            "locations" => MasterKind::Locations,
            "crosswalks" => MasterKind::Crosswalks,
            "units" => MasterKind::Units,
            _ => return None,
        })
    }

    fn file(self) -> &'static str {
        match self {
            MasterKind::Items => "items.csv",
            MasterKind::Locations => "locations.csv",
            MasterKind::Crosswalks => "crosswalks.csv",
            MasterKind::Units => "units.csv",
        }
    }
}

/// The current master data and where its files live.
pub struct MasterHandle {
    dir: PathBuf,
    items_fallback: Option<PathBuf>,
    /// Config locations (`[[locations]]`), always known.
    config_locations: Vec<crossdock_master::Location>,
    current: RwLock<Arc<MasterData>>,
    /// One replacement at a time: each checks against the files the last one left.
    replacing: Mutex<()>,
}

/// The sizes of what is loaded.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct MasterCounts {
    pub items: usize,
    pub locations: usize,
    pub crosswalks: usize,
    pub units: usize,
}

impl MasterHandle {
    /// Loads what `dir` holds. A file that does not load is an error naming every bad row.
    pub fn open(
        dir: PathBuf,
        items_fallback: Option<PathBuf>,
        config_locations: Vec<crossdock_master::Location>,
    ) -> Result<MasterHandle, LoadError> {
        let handle = MasterHandle {
            dir,
            items_fallback,
            config_locations,
            current: RwLock::new(Arc::new(MasterData::default())),
            replacing: Mutex::new(()),
        };
        let data = handle.load(None)?;
        *handle.current.write().expect("master lock") = Arc::new(data.0);
        Ok(handle)
    }

    pub fn current(&self) -> Arc<MasterData> {
        self.current.read().expect("master lock").clone()
    }

    pub fn counts(&self) -> MasterCounts {
        self.load(None).map(|(_, c)| c).unwrap_or(MasterCounts {
            items: self.current().item_count(),
            locations: 0,
            crosswalks: 0,
            units: 0,
        })
    }

    /// Checks `text` as the new `kind` file against the rest, then stores it and switches to
    /// it. Nothing changes when any row is bad.
    pub fn replace(&self, kind: MasterKind, text: &str) -> Result<MasterCounts, LoadError> {
        let _one_at_a_time = self.replacing.lock().expect("master replace lock");
        let (data, counts) = self.load(Some((kind, text)))?;
        crossdock_edi::files::write_atomic(&self.dir, kind.file(), text.as_bytes()).map_err(
            |error| LoadError::Io {
                source_name: self.dir.join(kind.file()).display().to_string(),
                error,
            },
        )?;
        *self.current.write().expect("master lock") = Arc::new(data);
        Ok(counts)
    }

    /// Reads every file, with `replacing` in place of its kind's stored file.
    fn load(
        &self,
        replacing: Option<(MasterKind, &str)>,
    ) -> Result<(MasterData, MasterCounts), LoadError> {
        let text = |kind: MasterKind| -> Result<Option<(String, String)>, LoadError> {
            if let Some((k, t)) = replacing
                && k == kind
            {
                return Ok(Some((kind.file().to_string(), t.to_string())));
            }
            let mut path = self.dir.join(kind.file());
            if !path.exists() {
                match (&self.items_fallback, kind) {
                    (Some(p), MasterKind::Items) => path = p.clone(),
                    _ => return Ok(None),
                }
            }
            std::fs::read_to_string(&path)
                .map(|t| Some((path.display().to_string(), t)))
                .map_err(|error| LoadError::Io {
                    source_name: path.display().to_string(),
                    error,
                })
        };
        let items = match text(MasterKind::Items)? {
            Some((name, t)) => load::items_from_str(&name, &t)?,
            None => Vec::new(),
        };
        let mut locations = match text(MasterKind::Locations)? {
            Some((name, t)) => load::locations_from_str(&name, &t)?,
            None => Vec::new(),
        };
        for l in &self.config_locations {
            if !locations.iter().any(|x| x.id == l.id) {
                locations.push(l.clone());
            }
        }
        let crosswalks = match text(MasterKind::Crosswalks)? {
            Some((name, t)) => {
                let known_items = items.iter().map(|i| i.id.to_string()).collect();
                let known_locations = locations.iter().map(|l| l.id.to_string()).collect();
                load::crosswalks_from_str(&name, &t, &known_items, &known_locations)?
            }
            None => Vec::new(),
        };
        let units = match text(MasterKind::Units)? {
            Some((name, t)) => load::conversions_from_str(&name, &t)?,
            None => Vec::new(),
        };
        let counts = MasterCounts {
            items: items.len(),
            locations: locations.len(),
            crosswalks: crosswalks.len(),
            units: units.len(),
        };
        Ok((MasterData::new(items, locations, crosswalks, units), counts))
    }
}

/// `<data_dir>/master`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("master")
}
