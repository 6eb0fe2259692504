//! The HTTP contract checked by independent tools from PyPI (`scripts/contract-tools`, installed
//! by `scripts/test`): the OpenAPI document validates (openapi-spec-validator) and property-based
//! tests generated from it (schemathesis) find no 5xx and nothing the document does not say,
//! against the real binary on loopback; `/metrics` parses in both of its formats with HELP for
//! every family (prometheus_client's parsers). Each tool is also shown a broken input, so a tool
//! that checks nothing cannot pass for one that does.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// `$CROSSDOCK_CONTRACT_TOOLS`, else `scripts/contract-tools` of this checkout.
fn tools() -> PathBuf {
    if let Ok(p) = std::env::var("CROSSDOCK_CONTRACT_TOOLS") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/contract-tools");
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

/// Runs the tools with `args` in `dir`: whether they passed, and what they said.
fn tool(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(tools())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run scripts/contract-tools");
    let code = out.status.code();
    assert_ne!(
        code,
        Some(2),
        "the contract tools could not be set up:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

async fn fetch(hub: &Hub, path: &str, accept: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new()
        .get(format!("http://{}{path}", hub.addr))
        .bearer_auth(ADMIN);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, resp.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_validates_with_an_independent_validator() {
    let hub = Hub::start("contract-doc", "").await;
    let (status, content_type, text) = fetch(&hub, "/v1/openapi.json", None).await;
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    let doc: Value = serde_json::from_str(&text).unwrap();
    let file = hub.dir.join("openapi.json");
    std::fs::write(&file, &text).unwrap();
    let (ok, said) = tool(&hub.dir, &["validate", file.to_str().unwrap()]);
    assert!(ok, "openapi-spec-validator refused the document:\n{said}");

    // What the issue found: a reference to `#/$defs/...`, which does not resolve in an OpenAPI
    // document. The validator must refuse it.
    let mut broken = doc.clone();
    broken["paths"]["/v1/events"]["post"]["responses"]["409"]["content"]["application/problem+json"]
        ["schema"] = json!({"$ref": "#/$defs/Problem"});
    let file = hub.dir.join("broken.json");
    std::fs::write(&file, serde_json::to_vec(&broken).unwrap()).unwrap();
    let (ok, said) = tool(&hub.dir, &["validate", file.to_str().unwrap()]);
    assert!(
        !ok,
        "the validator passed an unresolvable reference:\n{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_parse_in_both_formats_with_help_for_every_family() {
    let hub = Hub::start("contract-metrics", "").await;
    for (accept, content_type, format) in [
        (
            None,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "openmetrics",
        ),
        (
            Some(
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            ),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            "openmetrics",
        ),
        (
            Some("text/plain"),
            "text/plain; version=0.0.4; charset=utf-8",
            "prometheus",
        ),
    ] {
        let (status, got, text) = fetch(&hub, "/metrics", accept).await;
        assert_eq!((status, got.as_str()), (200, content_type), "{accept:?}");
        let file = hub.dir.join(format!("metrics.{format}"));
        std::fs::write(&file, &text).unwrap();
        let (ok, said) = tool(&hub.dir, &["metrics", file.to_str().unwrap(), format]);
        assert!(ok, "{format} ({accept:?}):\n{said}\n{text}");
        assert!(said.contains("each family with HELP"), "{said}");
    }
    // The checker refuses a family without HELP, and OpenMetrics text that is not terminated.
    let file = hub.dir.join("bad.prometheus");
    std::fs::write(&file, "# TYPE crossdock_x gauge\ncrossdock_x 1\n").unwrap();
    assert!(!tool(&hub.dir, &["metrics", file.to_str().unwrap(), "prometheus"]).0);
    let file = hub.dir.join("bad.openmetrics");
    std::fs::write(
        &file,
        "# HELP crossdock_x x\n# TYPE crossdock_x gauge\ncrossdock_x 1\n",
    )
    .unwrap();
    assert!(
        !tool(
            &hub.dir,
            &["metrics", file.to_str().unwrap(), "openmetrics"]
        )
        .0
    );
}

/// Realistic values half of the time (known items, channels, a reconciliation source), so the
/// generated requests reach the hub's logic and not only its refusals.
const SCHEMATHESIS_CONFIG: &str = r#"
[dictionaries.items]
values = ["SKU-1", "SKU-2", "SKU-3", "SKU-50"]
[dictionaries.channels]
values = ["shopify", "b2b"]
[dictionaries.sources]
values = ["erp"]
[dictionaries.locations]
values = ["DC-EAST", "DC-WEST"]

[parameters]
"path.item" = { dictionary = "items", probability = 0.5 }
"query.item" = { dictionary = "items", probability = 0.5 }
"query.channel" = { dictionary = "channels", probability = 0.5 }
"query.source" = { dictionary = "sources", probability = 0.5 }
"body.channel" = { dictionary = "channels", probability = 0.5 }
"body.items[*]" = { dictionary = "items", probability = 0.5 }
"body.lines[*].item" = { dictionary = "items", probability = 0.5 }
"body.location" = { dictionary = "locations", probability = 0.5 }
"#;

/// Property-based tests generated from the document, against the real binary: every answer is
/// no 5xx, has a documented status, content type, headers and body schema; unsupported methods
/// answer 405; requests without the token are refused; data the document rules out is refused.
/// `CROSSDOCK_SCHEMATHESIS_SEED` and `CROSSDOCK_SCHEMATHESIS_EXAMPLES` change the run (fixed by
/// default, so a failure in CI reproduces).
#[tokio::test(flavor = "multi_thread")]
async fn property_based_tests_from_the_document_find_no_5xx_and_nothing_undocumented() {
    let hub = Hub::start(
        "contract-fuzz",
        "[[reconciliation.sources]]\nname = \"erp\"\nkind = \"csv\"\n",
    )
    .await;
    let mut east = hub.client(EAST).await;
    for (i, item) in ["SKU-1", "SKU-2", "SKU-3", "SKU-50"].iter().enumerate() {
        let (s, v) = post(
            &mut east,
            "/v1/events",
            &event(
                &format!("stock-{i}"),
                "wms-east",
                "inventory.received.v1",
                json!({"item": item, "location": "DC-EAST", "qty": 500}),
            ),
        )
        .await;
        assert_eq!(s, 200, "{v}");
    }
    let (_, _, text) = fetch(&hub, "/v1/openapi.json", None).await;
    let document: Value = serde_json::from_str(&text).unwrap();
    let operations: usize = document["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    let doc = hub.dir.join("openapi.json");
    std::fs::write(&doc, text).unwrap();
    let config = hub.dir.join("schemathesis.toml");
    std::fs::write(&config, SCHEMATHESIS_CONFIG).unwrap();
    let seed = std::env::var("CROSSDOCK_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261204".into());
    let examples = std::env::var("CROSSDOCK_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "25".into());
    let run = |doc: PathBuf, examples: String, only: Option<&'static str>| {
        let dir = hub.dir.clone();
        let config = config.clone();
        let url = format!("http://{}", hub.addr);
        let auth = format!("Authorization: Bearer {ADMIN}");
        let seed = seed.clone();
        tokio::task::spawn_blocking(move || {
            let mut args = vec![
                "schemathesis".to_string(),
                "--config-file".into(),
                config.to_str().unwrap().into(),
                "run".into(),
                doc.to_str().unwrap().into(),
                "--url".into(),
                url,
                "--header".into(),
                auth,
                // Every check but "schema-valid data is accepted": the document's schemas are
                // the shape of the input, and the hub also refuses well-shaped input it cannot
                // take (an unknown item, a blank note) with a documented 4xx.
                "--checks".into(),
                "all".into(),
                "--exclude-checks".into(),
                "positive_data_acceptance".into(),
                "--phases".into(),
                "examples,coverage,fuzzing".into(),
                "--max-examples".into(),
                examples,
                "--seed".into(),
                seed,
                "--generation-database".into(),
                "none".into(),
                "--workers".into(),
                "2".into(),
                "--no-color".into(),
            ];
            if let Some(path) = only {
                args.extend(["--include-path".into(), path.into()]);
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            tool(&dir, &args)
        })
    };
    let last = |said: &str, n: usize| {
        let lines: Vec<&str> = said.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    };

    let (ok, said) = run(doc, examples, None).await.unwrap();
    assert!(
        ok,
        "schemathesis found answers the document does not allow:\n{}",
        last(&said, 400)
    );
    assert!(
        said.contains(&format!("{operations} selected / {operations} total")),
        "every operation ran:\n{}",
        last(&said, 60)
    );
    eprintln!("{}", last(&said, 12));

    // The same run finds an answer the document leaves out: here, 404 for an unknown item.
    let mut short = document.clone();
    short["paths"]["/v1/items/{item}/positions"]["get"]["responses"]
        .as_object_mut()
        .unwrap()
        .remove("404");
    let doc = hub.dir.join("openapi-short.json");
    std::fs::write(&doc, serde_json::to_vec(&short).unwrap()).unwrap();
    let (ok, said) = run(doc, "10".into(), Some("/v1/items/{item}/positions"))
        .await
        .unwrap();
    assert!(
        !ok,
        "an undocumented 404 went unnoticed:\n{}",
        last(&said, 60)
    );
    assert!(said.contains("404"), "{}", last(&said, 60));
}
