//! The HTTP edge, end to end on the real binary: every refusal is problem+json with a numeric
//! `status` (the framework's own too), and names are checked at the door and leave an
//! exception.
//!
//! Raw TCP is used where the point is what the hub does before a client has sent everything.

mod common;

use std::time::Duration;

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
