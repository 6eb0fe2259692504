//! One hub per store, until cluster mode exists.
//!
//! Two hubs writing one store fail each other's commits and read each other's stale state, so a
//! hub holds its store for as long as it runs, and a second one refuses to start with a message
//! naming the holder. The operating system releases the hold when the holder's process dies,
//! however it dies: this is a liveness guard, not a fence (the cluster issue replaces it with
//! leases proved inside each write transaction).
//!
//! * SQLite: an exclusive `flock` on `<db>.lock` beside the database file, which holds the
//!   holder's name as JSON. The kernel drops the lock with the last descriptor, so a killed hub
//!   leaves the file behind but not the lock.
//! * PostgreSQL: a session-level advisory lock keyed by the schema, taken on a connection of
//!   its own that stays open while the hub runs, and a row of `hub_holder` naming the holder. A
//!   dead hub's connection closes and the server releases the lock with it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crossdock_model::Timestamp;
use serde::{Deserialize, Serialize};

use crate::{Result, StoreError};

/// Who holds (or asks for) a store: enough for an operator to find that hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Holder {
    pub pid: u32,
    pub host: String,
    /// The address the hub serves its API on.
    pub listen: String,
    pub started_at: Timestamp,
}

impl Holder {
    /// This process, about to serve on `listen`.
    pub fn me(listen: &str) -> Holder {
        Holder {
            pid: std::process::id(),
            host: host_name(),
            listen: listen.to_string(),
            started_at: Timestamp::now(),
        }
    }

    /// `pid 4242 on host dc-1, serving 127.0.0.1:8080, since 2026-11-23T10:00:00Z`.
    pub fn describe(&self) -> String {
        format!(
            "pid {} on host {}, serving {}, since {}",
            self.pid, self.host, self.listen, self.started_at
        )
    }
}

fn host_name() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "(unknown host)".into())
}

/// How long a hub keeps trying for a held store before it gives up: a holder that was just
/// killed lets go a moment later (its process exits, or its database session ends once the
/// server sees the connection close), and a restart must not take that moment for a live hub.
const ACQUIRE_WAIT: Duration = Duration::from_secs(5);

/// How long a refused hub waits for the holder to write its name (it takes the lock first).
const NAME_WAIT: Duration = Duration::from_secs(2);

/// A hub's hold on its store, released when dropped (or when the process dies).
pub struct HubLock {
    holder: Holder,
    _kind: Kind,
}

enum Kind {
    File {
        _file: File,
        path: PathBuf,
    },
    Postgres {
        // Never used again, only kept open; the mutex makes the lock `Sync` (the client is not).
        _client: Box<std::sync::Mutex<::postgres::Client>>,
    },
}

impl std::fmt::Debug for HubLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("HubLock");
        d.field("holder", &self.holder);
        if let Kind::File { path, .. } = &self._kind {
            d.field("path", path);
        }
        d.finish_non_exhaustive()
    }
}

impl HubLock {
    /// The lock file of the SQLite database at `db`: `<db>.lock`.
    pub fn sqlite_path(db: &Path) -> PathBuf {
        let mut p = db.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Holds the SQLite database at `db` for `me`, or says which hub holds it (after trying for
    /// a few seconds).
    pub fn sqlite(db: &Path, me: &Holder) -> Result<HubLock> {
        Self::sqlite_within(db, me, ACQUIRE_WAIT)
    }

    /// [`HubLock::sqlite`], trying for `wait`.
    pub fn sqlite_within(db: &Path, me: &Holder, wait: Duration) -> Result<HubLock> {
        let path = Self::sqlite_path(db);
        let io = |what: &str, e: std::io::Error| {
            StoreError::Config(format!(
                "cannot {what} the lock file {}: {e}",
                path.display()
            ))
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| io("open", e))?;
        let started = Instant::now();
        let locked = loop {
            match file.try_lock() {
                Err(TryLockError::WouldBlock) if started.elapsed() < wait => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                other => break other,
            }
        };
        match locked {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let started = Instant::now();
                let holder = loop {
                    let mut text = String::new();
                    let read = file
                        .seek(SeekFrom::Start(0))
                        .and_then(|_| file.read_to_string(&mut text));
                    match serde_json::from_str::<Holder>(&text) {
                        Ok(h) => break Some(h),
                        Err(_) if read.is_ok() && started.elapsed() < NAME_WAIT => {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        Err(_) => break None,
                    }
                };
                return Err(held(holder, &format!("lock file {}", path.display())));
            }
            Err(TryLockError::Error(e)) => return Err(io("lock", e)),
        }
        let json = serde_json::to_vec(me).expect("a holder serializes");
        file.set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(&json))
            .and_then(|()| file.flush())
            .map_err(|e| io("write", e))?;
        Ok(HubLock {
            holder: me.clone(),
            _kind: Kind::File { _file: file, path },
        })
    }

    /// Holds the PostgreSQL database at `url` (in `schema`, else the connection's current
    /// schema) for `me`, or says which hub holds it (after trying for a few seconds).
    pub fn postgres(url: &str, schema: Option<&str>, me: &Holder) -> Result<HubLock> {
        Self::postgres_within(url, schema, me, ACQUIRE_WAIT)
    }

    /// [`HubLock::postgres`], trying for `wait`.
    pub fn postgres_within(
        url: &str,
        schema: Option<&str>,
        me: &Holder,
        wait: Duration,
    ) -> Result<HubLock> {
        let mut client = ::postgres::Client::connect(url, ::postgres::NoTls)?;
        if let Some(schema) = schema {
            client.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS {0}; SET search_path TO {0}",
                crate::postgres::quote_ident(schema)
            ))?;
        }
        // Seen in pg_stat_activity by whoever looks for the holder from the database's side.
        let app = format!("crossdock hub {}", me.listen);
        client.execute(
            "SELECT set_config('application_name', left($1, 63), false)",
            &[&app],
        )?;
        let started = Instant::now();
        let got = loop {
            let got: bool = client
                .query_one(
                    "SELECT pg_try_advisory_lock(hashtext('crossdock hub'), hashtext(current_schema()))",
                    &[],
                )?
                .try_get(0)?;
            if got || started.elapsed() >= wait {
                break got;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        let schema_name: String = client
            .query_one("SELECT current_schema()", &[])?
            .try_get(0)?;
        if !got {
            let started = Instant::now();
            let holder = loop {
                match read_pg_holder(&mut client) {
                    Ok(Some(h)) => break Some(h),
                    Ok(None) | Err(_) if started.elapsed() < NAME_WAIT => {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    _ => break None,
                }
            };
            return Err(held(
                holder,
                &format!("advisory lock of schema {schema_name:?}"),
            ));
        }
        // Only the holder creates and writes the table, so two hubs never race on its DDL.
        client.batch_execute(
            "CREATE TABLE IF NOT EXISTS hub_holder (
                 id INT PRIMARY KEY CHECK (id = 1),
                 holder TEXT NOT NULL,
                 backend_pid INT NOT NULL
             )",
        )?;
        let json = serde_json::to_string(me).expect("a holder serializes");
        client.execute(
            "INSERT INTO hub_holder (id, holder, backend_pid) VALUES (1, $1, pg_backend_pid())
             ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, backend_pid = EXCLUDED.backend_pid",
            &[&json],
        )?;
        Ok(HubLock {
            holder: me.clone(),
            _kind: Kind::Postgres {
                _client: Box::new(std::sync::Mutex::new(client)),
            },
        })
    }

    /// Who holds the store through this lock.
    pub fn holder(&self) -> &Holder {
        &self.holder
    }
}

/// The holder's row, when its backend still holds the lock (a row left by a dead hub names
/// nobody).
fn read_pg_holder(client: &mut ::postgres::Client) -> Result<Option<Holder>> {
    let exists: bool = client
        .query_one("SELECT to_regclass('hub_holder') IS NOT NULL", &[])?
        .try_get(0)?;
    if !exists {
        return Ok(None);
    }
    let row = client.query_opt(
        "SELECT h.holder FROM hub_holder h
         WHERE h.id = 1 AND EXISTS (
             SELECT 1 FROM pg_locks l
             WHERE l.locktype = 'advisory' AND l.granted AND l.pid = h.backend_pid
               AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()))",
        &[],
    )?;
    Ok(row
        .map(|r| r.try_get::<_, String>(0))
        .transpose()?
        .and_then(|text| serde_json::from_str(&text).ok()))
}

fn held(holder: Option<Holder>, what: &str) -> StoreError {
    let who = holder.map_or_else(
        || "another hub (whose name is not recorded)".to_string(),
        |h| format!("another hub: {}", h.describe()),
    );
    StoreError::Held(format!(
        "the store is held by {who} ({what}); one hub per store until cluster mode: stop that hub, \
         or give this one another store"
    ))
}
