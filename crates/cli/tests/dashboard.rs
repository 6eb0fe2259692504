//! The dashboard end to end: the real binary serving `/ui`, signed into with a token, refusing
//! what it must (no session, a bad CSRF token, another site's origin, a read-only token acting),
//! and worked by an operator in headless Chromium (`tests/browser/dashboard.mjs`, driven by
//! `playwright-core`) while traffic flows. Screenshots of every page are kept under
//! `<target>/browser-artifacts/`.
//!
//! The browser test needs Debian's `/usr/bin/chromium` and `npm ci` run in `tests/browser`
//! (`scripts/test` does both); it fails, not skips, without them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::shop::{receive, shopify_sim, start_hub_with};
use common::{ADMIN, EAST, Hub, QUERY, get, post_raw};
use crossdock_model::Timestamp;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::Value;

const CHROMIUM: &str = "/usr/bin/chromium";

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// `<target>/browser-artifacts`: kept by CI with the rest of the target directory.
fn artifacts_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("the target directory")
        .join("browser-artifacts")
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn location(&self) -> &str {
        self.headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The session cookie this reply sets (`name=value`) and its attributes.
    fn set_cookie(&self) -> Option<String> {
        self.headers
            .get(SET_COOKIE)
            .map(|v| v.to_str().unwrap().to_string())
    }

    /// The CSRF token of the page's forms.
    fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[at + "name=\"csrf\" value=\"".len()..];
        rest[..rest.find('"').unwrap()].to_string()
    }
}

/// One dashboard request; `cookie` is `name=value` from a sign-in, `form` a url-encoded body.
async fn ui(
    base: &str,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    form: Option<&str>,
    extra: &[(&str, &str)],
) -> Reply {
    let c = http();
    let url = format!("{base}{path}");
    let mut req = match method {
        "GET" => c.get(url),
        _ => c.post(url),
    };
    if let Some(cookie) = cookie {
        req = req.header("cookie", cookie);
    }
    if let Some(form) = form {
        req = req
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form.to_string());
    }
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    let r = req.send().await.expect("request");
    Reply {
        status: r.status(),
        headers: r.headers().clone(),
        body: r.text().await.unwrap(),
    }
}

/// Signs in with `token` from this server's own origin: the session cookie (`name=value`).
async fn sign_in(base: &str, token: &str) -> String {
    let r = ui(
        base,
        "POST",
        "/ui/login",
        None,
        Some(&format!("token={token}&next=%2Fui")),
        &[("origin", base)],
    )
    .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let cookie = r.set_cookie().expect("a session cookie");
    cookie.split(';').next().unwrap().to_string()
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A request body the API refuses at the edge: one `schema_violation` exception.
async fn bad_request_exception(hub: &Hub) -> String {
    let mut east = hub.client(EAST).await;
    let (status, _) = post_raw(
        &mut east,
        "/v1/events",
        "application/json",
        b"{\"not\": json".to_vec(),
    )
    .await;
    assert_eq!(status, 400);
    let mut admin = hub.client(ADMIN).await;
    let (_, v) = get(&mut admin, "/v1/exceptions?kind=schema_violation").await;
    let list = v["exceptions"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{v}");
    list[0]["id"].as_str().unwrap().to_string()
}

async fn exception(hub: &Hub, id: &str) -> Value {
    let mut admin = hub.client(ADMIN).await;
    let (_, v) = get(&mut admin, "/v1/exceptions?kind=schema_violation").await;
    v["exceptions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no exception {id} in {v}"))
        .clone()
}

#[tokio::test]
async fn sign_in_takes_a_token_and_actions_need_a_session_a_csrf_token_this_origin_and_admin() {
    let hub = Hub::start("dashboard-refusals", "").await;
    let base = format!("http://{}", hub.addr);
    let id = bad_request_exception(&hub).await;
    let resolve = format!("/ui/exceptions/{id}/resolve");

    // Without a session: pages lead to sign-in, live fragments answer 401, actions act not.
    let r = ui(&base, "GET", "/ui/exceptions?status=open", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(
        r.location(),
        "/ui/login?next=%2Fui%2Fexceptions%3Fstatus%3Dopen"
    );
    let r = ui(&base, "GET", "/ui/live/overview", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = ui(&base, "POST", &resolve, None, Some("note=x"), &[]).await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/ui/login?next=%2Fui")
    );
    let r = ui(&base, "GET", "/ui/login", None, None, &[]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        r.body.contains("type=\"password\" name=\"token\""),
        "{}",
        r.body
    );

    // Sign-in refuses a wrong token, a token without query or admin, and another site.
    let r = ui(&base, "POST", "/ui/login", None, Some("token=wrong"), &[]).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("That token is not valid"), "{}", r.body);
    assert!(r.set_cookie().is_none());
    let form = format!("token={EAST}");
    let r = ui(&base, "POST", "/ui/login", None, Some(&form), &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(
        r.body
            .contains("the dashboard needs the query or admin scope"),
        "{}",
        r.body
    );
    let form = format!("token={ADMIN}");
    let r = ui(
        &base,
        "POST",
        "/ui/login",
        None,
        Some(&form),
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.set_cookie().is_none(), "no session for another site");

    // A read-only token looks but cannot act.
    let r = ui(
        &base,
        "POST",
        "/ui/login",
        None,
        Some(&format!("token={QUERY}&next=%2Fui%2Fexceptions")),
        &[("origin", &base)],
    )
    .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/ui/exceptions")
    );
    let set = r.set_cookie().unwrap();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(set.contains(attribute), "{set}");
    }
    let reader = set.split(';').next().unwrap().to_string();
    let page = ui(&base, "GET", "/ui/exceptions", Some(&reader), None, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains(&format!("data-exception=\"{id}\"")),
        "{}",
        page.body
    );
    assert!(page.body.contains("(read only)"), "{}", page.body);
    assert!(
        !page.body.contains(&format!("action=\"{resolve}\"")),
        "no action forms for a read-only token"
    );
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    let reader_csrf = page.csrf();
    let r = ui(
        &base,
        "POST",
        &resolve,
        Some(&reader),
        Some(&format!("csrf={reader_csrf}&note=looked")),
        &[("origin", &base)],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("without the admin scope"), "{}", r.body);
    let r = ui(&base, "GET", "/ui/audit", Some(&reader), None, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "the audit log needs admin");
    assert!(r.body.contains("lacks the admin scope"), "{}", r.body);

    // An admin session still needs its own CSRF token and this origin.
    let admin = sign_in(&base, ADMIN).await;
    let csrf = ui(&base, "GET", "/ui/exceptions", Some(&admin), None, &[])
        .await
        .csrf();
    assert_ne!(csrf, reader_csrf);
    let refusals = [
        (
            "note=x".to_string(),
            vec![("origin", base.as_str())],
            "CSRF token",
        ),
        (
            format!("csrf={reader_csrf}&note=x"),
            vec![("origin", base.as_str())],
            "CSRF token",
        ),
        (
            format!("csrf={csrf}&note=x"),
            vec![("origin", "http://evil.example")],
            "http://evil.example",
        ),
        (
            format!("csrf={csrf}&note=x"),
            vec![("sec-fetch-site", "cross-site")],
            "Sec-Fetch-Site: cross-site",
        ),
    ];
    for (form, headers, why) in refusals {
        let r = ui(&base, "POST", &resolve, Some(&admin), Some(&form), &headers).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form} {headers:?}");
        assert!(r.body.contains(why), "{why}: {}", r.body);
    }
    assert_eq!(
        exception(&hub, &id).await["status"],
        "open",
        "nothing moved"
    );

    // With all of it, the move is made and audited as the API's would be.
    let r = ui(
        &base,
        "POST",
        &resolve,
        Some(&admin),
        Some(&format!(
            "csrf={csrf}&note={}&back=%2Fui%2Fexceptions%3Fstatus%3Dall",
            enc("bad JSON from a test client")
        )),
        &[("origin", &base), ("sec-fetch-site", "same-origin")],
    )
    .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/ui/exceptions?status=all")
    );
    let page = ui(&base, "GET", r.location(), Some(&admin), None, &[]).await;
    assert!(
        page.body
            .contains(&format!("Exception {id} is resolved now.")),
        "{}",
        page.body
    );
    let x = exception(&hub, &id).await;
    assert_eq!(
        (&x["status"], &x["actor"], &x["note"]),
        (
            &Value::from("resolved"),
            &Value::from("admin"),
            &Value::from("bad JSON from a test client")
        ),
        "{x}"
    );
    let (_, audit) = get(&mut hub.client(ADMIN).await, "/v1/audit").await;
    let row = &audit["audit"][0];
    assert_eq!(
        (&row["actor"], &row["action"], &row["note"]),
        (
            &Value::from("admin"),
            &Value::from("resolved"),
            &Value::from("bad JSON from a test client")
        ),
        "{audit}"
    );
    // A second move of a closed record is refused and says why.
    let r = ui(
        &base,
        "POST",
        &resolve,
        Some(&admin),
        Some(&format!("csrf={csrf}&note=again")),
        &[("origin", &base)],
    )
    .await;
    let page = ui(&base, "GET", r.location(), Some(&admin), None, &[]).await;
    assert!(
        page.body
            .contains("is resolved; resolve moves only a record"),
        "{}",
        page.body
    );

    // Signing out ends the session.
    let r = ui(
        &base,
        "POST",
        "/ui/logout",
        Some(&admin),
        Some(&format!("csrf={csrf}")),
        &[("origin", &base)],
    )
    .await;
    assert_eq!(
        (r.status, r.location()),
        (StatusCode::SEE_OTHER, "/ui/login")
    );
    assert!(r.set_cookie().unwrap().contains("Max-Age=0"));
    let r = ui(&base, "GET", "/ui", Some(&admin), None, &[]).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the session is gone");
}

/// What the browser test needs on the machine, or a failure saying how to get it.
fn browser_prerequisites() -> PathBuf {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: apt-get install -y --no-install-recommends chromium \
         (scripts/test installs it)"
    );
    let dir = browser_dir();
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci` in {} (scripts/test does)",
        dir.display()
    );
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_works_the_dashboard_in_chromium() {
    let browser = browser_prerequisites();
    let sim = shopify_sim(4).await;
    // The channel refuses SKU-2 for good: its message parks in the dead-letter queue.
    sim.faults().permanent_items(["2"]);
    let hub = start_hub_with(
        "dashboard-browser",
        &sim,
        4,
        &[],
        &[],
        "[[reconciliation.sources]]\nname = \"erp\"\nkind = \"csv\"\n\
         [[slo]]\nname = \"visible-5s\"\nflow = \"committed_to_delivered\"\n\
         threshold_ms = 5000\nobjective = 0.99\n",
    )
    .await;
    let mut east = hub.client(EAST).await;
    let mut admin = hub.client(ADMIN).await;
    assert_eq!(receive(&mut east, "park-1", "SKU-2", 3).await, 200);
    let started = Instant::now();
    let letter = loop {
        let (_, v) = get(&mut admin, "/v1/dlq").await;
        if let Some(l) = v["dead_letters"].as_array().unwrap().first() {
            break l.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "nothing parked: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letter["key"], "SKU-2", "{letter}");
    let letter_id = letter["id"].as_i64().unwrap();
    let exception_id = bad_request_exception(&hub).await;

    // SKU-1 has 5 on hand, then 7 more: at `at` it had 5.
    assert_eq!(receive(&mut east, "h-1", "SKU-1", 5).await, 200);
    tokio::time::sleep(Duration::from_millis(20)).await;
    let at = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(receive(&mut east, "h-2", "SKU-1", 7).await, 200);
    let (status, run) = post_raw(
        &mut admin,
        &format!(
            "/v1/reconciliations?source=erp&as_of={}",
            enc(&Timestamp::now().to_rfc3339())
        ),
        "text/csv",
        b"item,location,qty\nSKU-1,DC-EAST,9\nSKU-1,DC-WEST,4\n".to_vec(),
    )
    .await;
    assert_eq!(status, 201, "{run}");

    // Traffic flows while the browser looks.
    let flowing = Arc::new(AtomicBool::new(true));
    let traffic = {
        let flowing = flowing.clone();
        let mut c = hub.client(EAST).await;
        tokio::spawn(async move {
            let mut n = 0u64;
            while flowing.load(Ordering::Relaxed) {
                n += 1;
                let item = format!("SKU-{}", 3 + n % 40);
                assert_eq!(receive(&mut c, &format!("t-{n}"), &item, 1).await, 200);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            n
        })
    };

    let artifacts = artifacts_dir();
    std::fs::create_dir_all(&artifacts).unwrap();
    for entry in std::fs::read_dir(&artifacts).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "png") {
            std::fs::remove_file(path).unwrap();
        }
    }
    let mut script = Command::new("node");
    script
        .arg(browser.join("dashboard.mjs"))
        .current_dir(&browser)
        .env("CROSSDOCK_URL", format!("http://{}", hub.addr))
        .env("CROSSDOCK_TOKEN", ADMIN)
        .env("DEAD_LETTER_ID", letter_id.to_string())
        .env("EXCEPTION_ID", &exception_id)
        .env("ITEM", "SKU-1")
        .env("HISTORY_AT", at.to_rfc3339())
        .env("HISTORY_ON_HAND", "5")
        .env("ARTIFACTS", &artifacts);
    let output = tokio::task::spawn_blocking(move || script.output().expect("run node"))
        .await
        .unwrap();
    flowing.store(false, Ordering::Relaxed);
    let sent = traffic.await.unwrap();
    let log = format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "dashboard.mjs failed ({}); {log}",
        output.status
    );
    assert!(sent > 0);

    // What the operator did in the browser is what the hub now holds.
    let (_, all) = get(&mut admin, "/v1/dlq?status=all").await;
    let retried = all["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == letter_id)
        .unwrap_or_else(|| panic!("no dead letter {letter_id}: {all}"))
        .clone();
    assert_eq!(
        (&retried["status"], &retried["actor"], &retried["note"]),
        (
            &Value::from("retried"),
            &Value::from("admin"),
            &Value::from("listing checked, sending again")
        ),
        "{retried}"
    );
    let (_, audit) = get(&mut admin, "/v1/audit").await;
    let rows = audit["audit"].as_array().unwrap();
    assert!(
        rows.iter()
            .any(|r| r["action"] == "dlq.retry" && r["actor"] == "admin"),
        "{audit}"
    );
    assert!(
        rows.iter().any(|r| r["action"] == "resolved"
            && r["actor"] == "admin"
            && r["note"] == "a test client's bad JSON; nothing to replay"),
        "{audit}"
    );
    assert_eq!(exception(&hub, &exception_id).await["status"], "resolved");
    for shot in [
        "01-sign-in",
        "02-overview",
        "04-endpoints-after-retry",
        "07-exception-resolved",
        "08-item-history",
        "08b-trace",
        "10-reconciliation",
    ] {
        let path = artifacts.join(format!("{shot}.png"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(bytes.starts_with(b"\x89PNG"), "{} is a PNG", path.display());
    }
}
