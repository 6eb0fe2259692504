//! Starts the real `crossdock` binary on loopback with a fresh data directory.

#![allow(dead_code)]

pub mod shop;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crossdock_cli::client::Client;
use hyper::Method;
use hyper::body::Bytes;
use serde_json::Value;

pub const ADMIN: &str = "admin-token-0123456789";
pub const EAST: &str = "east-token-0123456789";
pub const QUERY: &str = "query-token-0123456789";
pub const RESERVE: &str = "reserve-token-0123456789";

pub fn config(extra: &str) -> String {
    format!(
        r#"[server]
data_dir = "data"
body_max_bytes = 1048576

[master]
items_file = "items.csv"

[[locations]]
id = "DC-EAST"
[[locations]]
id = "DC-WEST"

[[sources]]
id = "wms-east"
[[sources.owns]]
types = ["inventory.*", "transfer.*", "return.*"]
locations = ["DC-EAST"]

[[sources]]
id = "wms-west"
[[sources.owns]]
types = ["inventory.*", "transfer.*", "return.*"]
locations = ["DC-WEST"]

[[channels]]
id = "shopify"
locations = ["DC-EAST", "DC-WEST"]

[[channels]]
id = "b2b"
locations = ["DC-EAST"]
buffer = "10%"

[[tokens]]
name = "admin"
secret_env = "T_ADMIN"
scopes = ["admin"]

[[tokens]]
name = "east"
secret_env = "T_EAST"
scopes = ["ingest:wms-east"]

[[tokens]]
name = "query"
secret_env = "T_QUERY"
scopes = ["query"]

[[tokens]]
name = "shop"
secret_env = "T_RESERVE"
scopes = ["reserve", "query"]
{extra}
"#
    )
}

pub struct Hub {
    pub dir: PathBuf,
    pub addr: String,
    /// Extra environment for the binary (endpoint secrets).
    pub env: Vec<(String, String)>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "crossdock-test-{name}-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Hub {
    /// Writes the config and an items file (`SKU-1` .. `SKU-100`) into a new folder and starts the hub.
    pub async fn start(name: &str, extra_config: &str) -> Hub {
        Self::start_with(name, &config(extra_config)).await
    }

    pub async fn start_with(name: &str, config_text: &str) -> Hub {
        Self::start_full(name, config_text, &[], &[], &[]).await
    }

    /// Like [`Hub::start_with`], with more items than `SKU-1..SKU-100`, files beside the config
    /// (crosswalks) and environment (secrets).
    pub async fn start_full(
        name: &str,
        config_text: &str,
        extra_items: &[&str],
        files: &[(&str, String)],
        env: &[(&str, &str)],
    ) -> Hub {
        let dir = temp_dir(name);
        std::fs::write(dir.join("crossdock.toml"), config_text).unwrap();
        let items: String = std::iter::once("item\n".to_string())
            .chain((1..=100).map(|i| format!("SKU-{i}\n")))
            .chain(extra_items.iter().map(|i| format!("{i}\n")))
            .collect();
        std::fs::write(dir.join("items.csv"), items).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let mut hub = Hub {
            dir,
            addr: String::new(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            child: None,
        };
        hub.restart().await;
        hub
    }

    pub async fn restart(&mut self) {
        self.addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .args(["serve", "--config"])
            .arg(self.dir.join("crossdock.toml"))
            .args(["--listen", &self.addr])
            .env("T_ADMIN", ADMIN)
            .env("T_EAST", EAST)
            .env("T_QUERY", QUERY)
            .env("T_RESERVE", RESERVE)
            .env("CROSSDOCK_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start crossdock");
        self.child = Some(child);
        let started = Instant::now();
        loop {
            if let Ok(mut c) = Client::connect(&self.addr, ADMIN).await
                && let Ok(r) = c.get("/readyz").await
                && r.status == 200
            {
                return;
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("crossdock exited during start: {status}");
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "crossdock did not become ready"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The running hub's process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the hub runs").id()
    }

    /// Starts a second hub on this one's config and data on another port and waits up to 60 s
    /// for it to exit (it must: the store is held); its exit status and stderr.
    pub fn second_hub(&self) -> (std::process::ExitStatus, String) {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut child = Command::new(env!("CARGO_BIN_EXE_crossdock"))
            .args(["serve", "--config"])
            .arg(self.dir.join("crossdock.toml"))
            .args(["--listen", &addr])
            .env("T_ADMIN", ADMIN)
            .env("T_EAST", EAST)
            .env("T_QUERY", QUERY)
            .env("T_RESERVE", RESERVE)
            .env("CROSSDOCK_LOG", "warn")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start a second crossdock");
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(60) {
                child.kill().unwrap();
                child.wait().unwrap();
                panic!("a second hub on the same store kept running (serving {addr})");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// SIGKILL: no shutdown path runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub async fn client(&self, token: &str) -> Client {
        Client::connect(&self.addr, token).await.expect("connect")
    }

    pub fn db(&self) -> PathBuf {
        self.dir.join("data").join("crossdock.db")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub fn event(id: &str, source: &str, ty: &str, data: Value) -> Value {
    serde_json::json!({
        "specversion": "1.0", "id": id, "source": source, "type": ty,
        "time": "2026-11-23T10:00:00Z", "data": data,
    })
}

pub async fn post(c: &mut Client, path: &str, body: &Value) -> (u16, Value) {
    let r = c
        .post_json(path, serde_json::to_vec(body).unwrap())
        .await
        .expect("request");
    (r.status, parse(&r.body))
}

pub async fn post_raw(
    c: &mut Client,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    let r = c
        .send(Method::POST, path, content_type, Bytes::from(body))
        .await
        .expect("request");
    (r.status, parse(&r.body))
}

pub async fn get(c: &mut Client, path: &str) -> (u16, Value) {
    let r = c.get(path).await.expect("request");
    (r.status, parse(&r.body))
}

fn parse(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

/// Every position of an item, keyed by location: (on_hand, reserved, allocated, available).
pub async fn positions(c: &mut Client, item: &str) -> Vec<(String, i64, i64, i64, i64)> {
    let (status, v) = get(c, &format!("/v1/items/{item}/positions")).await;
    assert_eq!(status, 200, "{v}");
    v["positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["location"].as_str().unwrap().to_string(),
                p["on_hand"].as_i64().unwrap(),
                p["reserved"].as_i64().unwrap(),
                p["allocated"].as_i64().unwrap(),
                p["available"].as_i64().unwrap(),
            )
        })
        .collect()
}

/// One integer from the hub's SQLite file, read as an operator would with the sqlite3 shell.
pub fn sqlite_count(db: &Path, sql: &str) -> i64 {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open db");
    conn.query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The independent validator: `$X12_VALIDATE`, else `shared/tools/x12-validate` beside or above
/// the checkout.
pub fn validator() -> PathBuf {
    if let Ok(p) = std::env::var("X12_VALIDATE") {
        return PathBuf::from(p);
    }
    let mut dir = Some(Path::new(env!("CARGO_MANIFEST_DIR")));
    while let Some(d) = dir {
        for candidate in [
            d.join("shared/tools/x12-validate"),
            d.join("../shared/tools/x12-validate"),
        ] {
            if candidate.is_file() {
                return candidate;
            }
        }
        dir = d.parent();
    }
    let fallback = PathBuf::from("/work/shared/tools/x12-validate");
    assert!(
        fallback.is_file(),
        "the X12 validator was not found: set X12_VALIDATE to shared/tools/x12-validate"
    );
    fallback
}

pub fn assert_valid_x12(files: &[PathBuf]) {
    let out = std::process::Command::new(validator())
        .args(files)
        .output()
        .expect("run x12-validate");
    assert!(
        out.status.success(),
        "x12-validate refused these interchanges:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
