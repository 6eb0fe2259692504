//! The HTTP edge, end to end on the real binary: every refusal is problem+json with a numeric
//! `status` (the framework's own too), names are checked at the door and leave an exception,
//! the body budget answers 503 with `Retry-After` before reading a body, slow headers and
//! bodies are cut off, connections wait at the cap (which stays below the open-file limit), and
//! memory stays bounded under many concurrent large batches.
//!
//! Raw TCP is used where the point is what the hub does before a client has sent everything.

mod common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP/1.1 connection driven by hand.
struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// A problem+json body whose `status` is the answer's status, as a number.
    fn problem(&self) -> Value {
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "{self:?}"
        );
        let p = self.json();
        assert_eq!(p["status"].as_u64(), Some(u64::from(self.status)), "{p}");
        assert!(
            p["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:crossdock:problem:"),
            "{p}"
        );
        assert!(!p["detail"].as_str().unwrap().is_empty(), "{p}");
        p
    }
}

impl Raw {
    async fn connect(addr: &str) -> Raw {
        Raw {
            stream: TcpStream::connect(addr).await.expect("connect"),
            buf: Vec::new(),
        }
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// The head of a request with `token`; `extra` headers end with `\r\n` each.
    async fn head(&mut self, method: &str, path: &str, token: &str, extra: &str) {
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: hub\r\nauthorization: Bearer {token}\r\n{extra}\r\n"
        );
        self.send(head.as_bytes()).await;
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
        }
    }

    /// The next response, or `None` when none came within `within` (or the connection closed).
    async fn response(&mut self, within: Duration) -> Option<Resp> {
        tokio::time::timeout(within, self.read_response())
            .await
            .ok()
            .flatten()
    }

    async fn read_response(&mut self) -> Option<Resp> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        self.buf.drain(..end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut resp = Resp {
            status,
            headers,
            body: Vec::new(),
        };
        if let Some(n) = resp.header("content-length") {
            let n: usize = n.parse().ok()?;
            while self.buf.len() < n {
                if !self.fill().await {
                    return None;
                }
            }
            resp.body = self.buf.drain(..n).collect();
        } else if resp.header("transfer-encoding") == Some("chunked") {
            loop {
                let line_end = loop {
                    if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if !self.fill().await {
                        return None;
                    }
                };
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&self.buf[..line_end]).trim(),
                    16,
                )
                .ok()?;
                self.buf.drain(..line_end + 2);
                while self.buf.len() < size + 2 {
                    if !self.fill().await {
                        return None;
                    }
                }
                resp.body.extend(self.buf.drain(..size));
                self.buf.drain(..2);
                if size == 0 {
                    break;
                }
            }
        }
        Some(resp)
    }

    /// Whether the hub closed the connection within `within` (without answering anything).
    async fn closed_within(&mut self, within: Duration) -> bool {
        let mut chunk = [0u8; 1024];
        matches!(
            tokio::time::timeout(within, self.stream.read(&mut chunk)).await,
            Ok(Ok(0) | Err(_))
        )
    }
}

/// A request with a body of `len` bytes sent whole.
async fn request(
    addr: &str,
    method: &str,
    path: &str,
    token: &str,
    content_type: &str,
    body: &[u8],
) -> Resp {
    let mut c = Raw::connect(addr).await;
    c.head(
        method,
        path,
        token,
        &format!(
            "content-type: {content_type}\r\ncontent-length: {}\r\n",
            body.len()
        ),
    )
    .await;
    c.send(body).await;
    c.response(Duration::from_secs(30))
        .await
        .expect("an answer")
}

async fn get_raw(addr: &str, path: &str, token: &str) -> Resp {
    let mut c = Raw::connect(addr).await;
    c.head("GET", path, token, "").await;
    c.response(Duration::from_secs(30))
        .await
        .expect("an answer")
}

/// `name` (a sample without labels, or with the label text given) from an OpenMetrics scrape.
async fn metric(hub: &Hub, sample: &str) -> f64 {
    let r = get_raw(&hub.addr, "/metrics", QUERY).await;
    assert_eq!(r.status, 200);
    let text = String::from_utf8(r.body).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no {sample} in {text}"))
        .parse()
        .unwrap()
}

/// The common config with `[server]` keys of this test instead of the 1 MiB body limit.
fn config_with_server(server: &str, extra: &str) -> String {
    config(extra).replace("body_max_bytes = 1048576\n", server)
}

fn received(id: &str, item: &str, qty: i64) -> Value {
    event(
        id,
        "wms-east",
        "inventory.received.v1",
        json!({"item": item, "location": "DC-EAST", "qty": qty}),
    )
}

async fn exceptions_of_kind(hub: &Hub, kind: &str) -> Vec<Value> {
    let mut q = hub.client(QUERY).await;
    let (s, v) = get(&mut q, &format!("/v1/exceptions?kind={kind}&limit=100")).await;
    assert_eq!(s, 200, "{v}");
    v["exceptions"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_refusal_is_a_problem_with_a_numeric_status() {
    let hub = Hub::start("edge-problems", "").await;
    let addr = hub.addr.clone();

    // The framework's own refusals: a query string that does not parse, a method the route
    // does not serve, a path that does not decode, a route that does not exist.
    let r = get_raw(&addr, "/v1/dlq?limit=many", ADMIN).await;
    assert_eq!(r.status, 400);
    let p = r.problem();
    assert_eq!(p["field"], "limit", "{p}");
    let r = get_raw(&addr, "/v1/exceptions?limit=-1", ADMIN).await;
    assert_eq!(
        (r.status, r.problem()["field"].as_str()),
        (400, Some("limit"))
    );
    let r = request(
        &addr,
        "DELETE",
        "/v1/events",
        ADMIN,
        "application/json",
        b"",
    )
    .await;
    assert_eq!(r.status, 405);
    r.problem();
    assert!(r.header("allow").unwrap().contains("POST"), "{r:?}");
    let r = get_raw(&addr, "/v1/orders/%FF%FE", ADMIN).await;
    assert_eq!(r.status, 400);
    assert!(
        r.problem()["type"]
            .as_str()
            .unwrap()
            .ends_with("invalid-path")
    );
    let r = get_raw(&addr, "/v2/nothing", ADMIN).await;
    assert_eq!(r.status, 404);
    r.problem();
    let r = get_raw(&addr, "/v1/endpoints", "not-a-token").await;
    assert_eq!(r.status, 401);
    r.problem();

    // Blank ids are refused, in the path as in a body.
    let r = request(
        &addr,
        "POST",
        "/v1/reservations/%20%20/release",
        RESERVE,
        "application/json",
        b"",
    )
    .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.problem()["field"], "id");
    let r = get_raw(&addr, "/v1/orders/%09", QUERY).await;
    assert_eq!((r.status, r.problem()["field"].as_str()), (400, Some("id")));
    let blank = serde_json::to_vec(&received(" ", "SKU-1", 1)).unwrap();
    let r = request(
        &addr,
        "POST",
        "/v1/events",
        EAST,
        "application/json",
        &blank,
    )
    .await;
    assert_eq!((r.status, r.problem()["field"].as_str()), (422, Some("id")));

    // Too large: declared (answered before the body is sent) and chunked (cut where it passes
    // the limit), on a route that takes its body whole before the handler runs.
    let mut c = Raw::connect(&addr).await;
    c.head(
        "POST",
        "/v1/reservations",
        RESERVE,
        "content-type: application/json\r\ncontent-length: 2097152\r\n",
    )
    .await;
    let r = c
        .response(Duration::from_secs(10))
        .await
        .expect("answered before the body");
    assert_eq!(r.status, 413);
    assert!(
        r.problem()["type"]
            .as_str()
            .unwrap()
            .ends_with("body-too-large")
    );
    let mut c = Raw::connect(&addr).await;
    c.head(
        "POST",
        "/v1/reservations",
        RESERVE,
        "content-type: application/json\r\ntransfer-encoding: chunked\r\n",
    )
    .await;
    let chunk = vec![b' '; 256 * 1024];
    let mut answered = None;
    for _ in 0..8 {
        c.send(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
        c.send(&chunk).await;
        c.send(b"\r\n").await;
        if let Some(r) = c.response(Duration::from_millis(200)).await {
            answered = Some(r);
            break;
        }
    }
    let r = answered.expect("a chunked body past the limit is answered");
    assert_eq!(r.status, 413);
    r.problem();

    // A quarantined event: 422 with a numeric status; the event's status is its own member.
    let unknown = serde_json::to_vec(&received("q-1", "SKU-404", 1)).unwrap();
    let r = request(
        &addr,
        "POST",
        "/v1/events",
        EAST,
        "application/json",
        &unknown,
    )
    .await;
    assert_eq!(r.status, 422);
    let p = r.problem();
    assert_eq!(p["event_status"], "quarantined", "{p}");

    // A reservation or an order naming an unknown item or channel is refused with the field
    // named and leaves an exception keeping the input.
    for (path, body, kind, field) in [
        (
            "/v1/reservations",
            json!({"id": "r-x1", "channel": "ebay", "lines": [{"item": "SKU-1", "qty": 1}], "ttl_s": 60}),
            "unknown_channel",
            "channel",
        ),
        (
            "/v1/reservations",
            json!({"id": "r-x2", "channel": "shopify", "lines": [{"item": "SKU-1", "qty": 1}, {"item": "SKU-NONE", "qty": 1}], "ttl_s": 60}),
            "unknown_item",
            "lines[1].item",
        ),
        (
            "/v1/orders",
            json!({"id": "o-x1", "channel": "ebay", "lines": [{"item": "SKU-1", "qty": 1}], "ship_to": {"region": "east"}}),
            "unknown_channel",
            "channel",
        ),
        (
            "/v1/orders",
            json!({"id": "o-x2", "channel": "b2b", "lines": [{"item": "SKU-GONE", "qty": 1}], "ship_to": {"region": "east"}}),
            "unknown_item",
            "lines[0].item",
        ),
    ] {
        let before = exceptions_of_kind(&hub, kind).await.len();
        let raw = serde_json::to_vec(&body).unwrap();
        let r = request(&addr, "POST", path, RESERVE, "application/json", &raw).await;
        assert_eq!(r.status, 422, "{path} {body}");
        let p = r.problem();
        assert_eq!(p["field"], field, "{p}");
        let records = exceptions_of_kind(&hub, kind).await;
        assert_eq!(
            records.len(),
            before + 1,
            "{path} {body}: one record of {kind}"
        );
        let id = body["id"].as_str().unwrap();
        assert!(
            records
                .iter()
                .any(|x| x["raw"].as_str().is_some_and(|r| r.contains(id))),
            "the record keeps the input: {records:#?}"
        );
    }
    // Nothing was held or allocated for them.
    let mut q = hub.client(QUERY).await;
    let (s, v) = get(&mut q, "/v1/orders").await;
    assert_eq!(
        (s, v["workflows"].as_array().map(Vec::len)),
        (200, Some(0)),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spent_body_budget_answers_503_before_reading_the_body() {
    const MIB: usize = 1 << 20;
    let hub = Hub::start_with(
        "edge-budget",
        &config_with_server(
            "body_max_bytes = 1048576\nbatch_lines_max = 100\nbody_budget_mb = 2\nbody_read_timeout_s = 30\n",
            "",
        ),
    )
    .await;
    let addr = hub.addr.clone();
    assert_eq!(
        metric(&hub, "crossdock_http_body_budget_bytes").await,
        (2 * MIB) as f64
    );

    // Two slow clients declare bodies that leave 8 KiB of the budget and send a little.
    let line = serde_json::to_vec(&received("b-slow", "SKU-2", 4)).unwrap();
    let mut slow = Vec::new();
    for declared in [MIB, MIB - 8192] {
        let mut c = Raw::connect(&addr).await;
        c.head(
            "POST",
            "/v1/events",
            EAST,
            &format!("content-type: application/x-ndjson\r\ncontent-length: {declared}\r\n"),
        )
        .await;
        c.send(&line).await;
        slow.push((c, declared));
    }
    let started = Instant::now();
    while metric(&hub, "crossdock_http_body_bytes").await < (2 * MIB - 8192) as f64 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the budget was never charged"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Another request declares 10 KiB and sends none of it: the hub answers at once.
    let mut c = Raw::connect(&addr).await;
    c.head(
        "POST",
        "/v1/events",
        EAST,
        "content-type: application/json\r\ncontent-length: 10240\r\n",
    )
    .await;
    let r = c
        .response(Duration::from_secs(5))
        .await
        .expect("answered without the body");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(
        r.problem()["type"]
            .as_str()
            .unwrap()
            .ends_with("overloaded")
    );

    // A chunked body is charged as it arrives and refused at the first chunk that does not fit;
    // the hub drains the rest and the client reads its answer.
    let mut c = Raw::connect(&addr).await;
    c.head(
        "POST",
        "/v1/events",
        EAST,
        "content-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n",
    )
    .await;
    let mut chunk = line.clone();
    chunk.resize(10240, b' ');
    c.send(format!("{:x}\r\n", chunk.len()).as_bytes()).await;
    c.send(&chunk).await;
    c.send(b"\r\n0\r\n\r\n").await;
    let r = c.response(Duration::from_secs(5)).await.expect("answered");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    r.problem();

    // Requests without a body are not held up.
    let r = get_raw(&addr, "/v1/endpoints", QUERY).await;
    assert_eq!(r.status, 200);
    assert!(metric(&hub, "crossdock_http_refused_total{reason=\"body_budget\"}").await >= 2.0);

    // The slow clients finish (one line and blanks): each is answered, its one event charged
    // from what was left, and the budget is whole again.
    for (mut c, declared) in slow {
        let mut rest = vec![b' '; declared - line.len()];
        rest[0] = b'\n';
        c.send(&rest).await;
        let r = c.response(Duration::from_secs(30)).await.expect("answered");
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert!(
            String::from_utf8_lossy(&r.body).contains("\"duplicate\"")
                || String::from_utf8_lossy(&r.body).contains("\"applied\"")
        );
    }
    assert_eq!(metric(&hub, "crossdock_http_body_bytes").await, 0.0);
    let ok = serde_json::to_vec(&received("b-after", "SKU-2", 1)).unwrap();
    let r = request(&addr, "POST", "/v1/events", EAST, "application/json", &ok).await;
    assert_eq!(r.status, 200);
    // A refusal is not an input error: no exception for it.
    assert!(
        exceptions_of_kind(&hub, "schema_violation")
            .await
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_headers_and_slow_bodies_are_cut_off() {
    let hub = Hub::start_with(
        "edge-slow",
        &config_with_server(
            "body_max_bytes = 1048576\nheader_read_timeout_s = 1\nbody_read_timeout_s = 1\n",
            "",
        ),
    )
    .await;
    let addr = hub.addr.clone();

    // Headers that never end: the connection is closed.
    let mut c = Raw::connect(&addr).await;
    c.send(b"GET /healthz HTTP/1.1\r\nhost: hub\r\n").await;
    let started = Instant::now();
    assert!(c.closed_within(Duration::from_secs(5)).await, "still open");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );

    // An idle keep-alive connection is closed the same way.
    let mut c = Raw::connect(&addr).await;
    c.head("GET", "/healthz", QUERY, "").await;
    assert_eq!(
        c.response(Duration::from_secs(5)).await.unwrap().status,
        200
    );
    assert!(
        c.closed_within(Duration::from_secs(5)).await,
        "idle, still open"
    );

    // A body that stops coming: 408, and its charge is released.
    let mut c = Raw::connect(&addr).await;
    c.head(
        "POST",
        "/v1/events",
        EAST,
        "content-type: application/json\r\ncontent-length: 5000\r\n",
    )
    .await;
    c.send(b"{\"specversion\":").await;
    let r = c
        .response(Duration::from_secs(5))
        .await
        .expect("answered at the deadline");
    assert_eq!(r.status, 408);
    assert!(
        r.problem()["type"]
            .as_str()
            .unwrap()
            .ends_with("body-timeout")
    );
    assert_eq!(metric(&hub, "crossdock_http_body_bytes").await, 0.0);
    assert!(
        metric(
            &hub,
            "crossdock_http_refused_total{reason=\"body_timeout\"}"
        )
        .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn connections_wait_at_the_cap() {
    let hub = Hub::start_with(
        "edge-cap",
        &config_with_server(
            "body_max_bytes = 1048576\nconnections_max = 4\nheader_read_timeout_s = 60\n",
            "",
        ),
    )
    .await;
    let addr = hub.addr.clone();
    // Three idle connections and the scrape's own: four open.
    let mut idle = Vec::new();
    for _ in 0..3 {
        let mut c = Raw::connect(&addr).await;
        c.head("GET", "/healthz", QUERY, "").await;
        assert_eq!(
            c.response(Duration::from_secs(5)).await.unwrap().status,
            200
        );
        idle.push(c);
    }
    let mut scraper = Raw::connect(&addr).await;
    scraper.head("GET", "/metrics", QUERY, "").await;
    let text =
        String::from_utf8(scraper.response(Duration::from_secs(5)).await.unwrap().body).unwrap();
    assert!(text.contains("crossdock_http_connections 4\n"), "{text}");
    assert!(
        text.contains("crossdock_http_connections_max 4\n"),
        "{text}"
    );

    // A fifth waits (connected by the kernel, not served) until one of the four closes.
    let mut fifth = Raw::connect(&addr).await;
    fifth.head("GET", "/healthz", QUERY, "").await;
    assert!(
        fifth.response(Duration::from_millis(700)).await.is_none(),
        "served beyond the cap"
    );
    drop(idle.pop());
    let r = fifth
        .response(Duration::from_secs(5))
        .await
        .expect("served once a slot is free");
    assert_eq!(r.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_connection_cap_stays_below_the_open_file_limit() {
    let dir = temp_dir("edge-nofile");
    std::fs::write(dir.join("crossdock.toml"), config("")).unwrap();
    let items: String = std::iter::once("item\n".to_string())
        .chain((1..=100).map(|i| format!("SKU-{i}\n")))
        .collect();
    std::fs::write(dir.join("items.csv"), items).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    // `ulimit -n 256`, then the hub with the default cap of 4096 connections.
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -n 256 && exec \"$0\" serve --config \"$1\" --listen \"$2\"")
        .arg(env!("CARGO_BIN_EXE_crossdock"))
        .arg(dir.join("crossdock.toml"))
        .arg(&addr)
        .env("T_QUERY", QUERY)
        .env("T_ADMIN", ADMIN)
        .env("T_EAST", EAST)
        .env("T_RESERVE", RESERVE)
        .env("CROSSDOCK_LOG", "warn")
        .spawn()
        .expect("start crossdock under a low file limit");
    let started = Instant::now();
    let text = loop {
        if let Ok(mut c) = crossdock_cli::client::Client::connect(&addr, QUERY).await
            && let Ok(r) = c.get("/metrics").await
            && r.status == 200
        {
            break String::from_utf8(r.body.to_vec()).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no hub");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let cap: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("crossdock_http_connections_max "))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(cap, 128, "a quarter of 256 kept, at least 128: {text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// An NDJSON batch of `lines` received events of about `line_bytes` each (an extension
/// attribute pads them, as real envelopes carry more than the hub reads), generated as it is
/// sent so the test holds none of it; with `declared` its length goes in `Content-Length`,
/// otherwise it is sent chunked.
struct Batch {
    tag: String,
    next: usize,
    lines: usize,
    pad: String,
    declared: Option<u64>,
}

impl Batch {
    fn new(tag: String, lines: usize, line_bytes: usize, declared: bool) -> Batch {
        let mut b = Batch {
            tag,
            next: 0,
            lines,
            pad: String::new(),
            declared: None,
        };
        let bare = b.line(lines - 1).len();
        b.pad = "x".repeat(line_bytes.saturating_sub(bare));
        if declared {
            b.declared = Some((0..lines).map(|i| b.line(i).len() as u64).sum());
        }
        b
    }

    fn line(&self, i: usize) -> String {
        format!(
            "{{\"specversion\":\"1.0\",\"id\":\"{}-{i:05}\",\"source\":\"wms-east\",\"type\":\"inventory.received.v1\",\
             \"time\":\"2026-11-23T10:00:00Z\",\"padding\":\"{}\",\"data\":{{\"item\":\"SKU-{}\",\"location\":\"DC-EAST\",\"qty\":1}}}}\n",
            self.tag,
            self.pad,
            i % 100 + 1
        )
    }
}

impl hyper::body::Body for Batch {
    type Data = hyper::body::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.next >= self.lines {
            return std::task::Poll::Ready(None);
        }
        let mut buf = String::with_capacity(64 * 1024);
        while self.next < self.lines && buf.len() < 60 * 1024 {
            let line = self.line(self.next);
            buf.push_str(&line);
            self.next += 1;
        }
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(buf.into()))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        match self.declared {
            Some(n) => hyper::body::SizeHint::with_exact(n),
            None => hyper::body::SizeHint::default(),
        }
    }
}

/// One batch on its own connection: the status, `Retry-After`, the content type and the body.
async fn send_batch(
    addr: String,
    batch: Batch,
) -> Result<(u16, Option<String>, String, Vec<u8>), String> {
    use http_body_util::BodyExt;
    let stream = TcpStream::connect(&addr).await.map_err(|e| e.to_string())?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = hyper::Request::post("/v1/events")
        .header("host", "hub")
        .header("authorization", format!("Bearer {EAST}"))
        .header("content-type", "application/x-ndjson")
        .body(batch)
        .unwrap();
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let retry_after = header("retry-after");
    let content_type = header("content-type").unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok((status, retry_after, content_type, body))
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// `clients` at once, each with an NDJSON batch of 10,000 events of about `line_bytes`, half
/// declared and half chunked, against the default budget: every client gets 200 or 503 with
/// `Retry-After`, the hub's peak resident memory stays under its baseline plus twice the budget,
/// and it serves on afterwards with nothing charged.
async fn memory_stays_bounded(name: &str, clients: usize, line_bytes: usize) {
    const LINES: usize = 10_000;
    const BUDGET_MIB: u64 = 256;
    let hub = Hub::start_with(name, &config_with_server("body_max_bytes = 16777216\n", "")).await;
    assert_eq!(
        metric(&hub, "crossdock_http_body_budget_bytes").await,
        (BUDGET_MIB << 20) as f64,
        "the default budget"
    );
    let pid = hub.pid();
    let baseline_kib = rss_kib(pid, "VmRSS:");
    let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid, "VmRSS:"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let batch = Batch::new(format!("{name}-{c:03}"), LINES, line_bytes, c % 2 == 0);
            tokio::spawn(send_batch(hub.addr.clone(), batch))
        })
        .collect();
    let (mut accepted, mut refused, mut applied) = (0, 0, 0);
    for t in tasks {
        let (status, retry_after, content_type, body) =
            t.await.unwrap().expect("every client is answered");
        match status {
            200 => {
                accepted += 1;
                applied += String::from_utf8_lossy(&body)
                    .matches("\"status\":\"applied\"")
                    .count();
            }
            503 => {
                refused += 1;
                assert_eq!(retry_after.as_deref(), Some("1"));
                assert_eq!(content_type, "application/problem+json");
                let p: Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(p["status"], 503, "{p}");
            }
            other => panic!("answered {other}: {}", String::from_utf8_lossy(&body)),
        }
    }
    let took = started.elapsed();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let peak_kib = rss_kib(pid, "VmHWM:").max(sampler.await.unwrap());
    eprintln!(
        "{name}: {clients} clients x {:.1} MB: {accepted} answered 200 ({applied} events applied), \
         {refused} 503; hub resident {} MiB before, peak {} MiB; {:.1} s",
        (LINES * line_bytes) as f64 / 1e6,
        baseline_kib / 1024,
        peak_kib / 1024,
        took.as_secs_f64()
    );
    assert!(
        accepted >= 1 && refused >= 1,
        "{accepted} accepted, {refused} refused"
    );
    assert!(
        applied >= LINES,
        "the accepted batches were applied: {applied}"
    );
    let bound_kib = baseline_kib + 2 * (BUDGET_MIB << 10);
    assert!(
        peak_kib < bound_kib,
        "peak resident memory {} MiB, bound {} MiB",
        peak_kib / 1024,
        bound_kib / 1024
    );
    assert_eq!(metric(&hub, "crossdock_http_body_bytes").await, 0.0);
    let ok = serde_json::to_vec(&received(&format!("{name}-after"), "SKU-1", 1)).unwrap();
    let r = request(
        &hub.addr,
        "POST",
        "/v1/events",
        EAST,
        "application/json",
        &ok,
    )
    .await;
    assert_eq!(r.status, 200);
}

/// The load: 80 clients with 13 MB batches. Without the budget the hub took them all
/// in (past 1.6 GiB before this change, about 0.9 GiB after it with no budget) and never
/// answered 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stays_bounded_under_many_concurrent_large_batches() {
    memory_stays_bounded("mem-large", 80, 1_300).await;
}

/// Small events, where parsing costs more than the text: 200 clients with 2 MB batches of
/// 10,000 events each (about 0.95 GiB with no budget).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory_stays_bounded_under_many_concurrent_batches_of_small_events() {
    memory_stays_bounded("mem-small", 200, 200).await;
}
