//! The CLI's own commands: check-config on the shipped quickstart and on a broken file, and
//! `import positions` into a running hub.

mod common;

use std::process::Command;

use common::*;

fn crossdock() -> Command {
    Command::new(env!("CARGO_BIN_EXE_crossdock"))
}

fn quickstart() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/quickstart/crossdock.toml")
}

#[test]
fn the_quickstart_config_checks_clean() {
    let out = crossdock()
        .args(["check-config"])
        .arg(quickstart())
        .env("CROSSDOCK_ADMIN_TOKEN", "quickstart-secret-0123")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("2 locations, 2 channels, 3 sources, 1 tokens, 0 endpoints, 1000 items"),
        "{stdout}"
    );
}

#[test]
fn check_config_prints_every_problem_with_its_line() {
    let dir = temp_dir("check");
    let path = dir.join("bad.toml");
    let text = config("")
        .replace("buffer = \"10%\"", "buffer = \"lots\"")
        .replace("id = \"shopify\"", "id = \"shopify\"\nshare = 50")
        .replace("scopes = [\"query\"]", "scopes = [\"read-everything\"]");
    std::fs::write(&path, &text).unwrap();
    std::fs::write(dir.join("items.csv"), "item\nSKU-1\n").unwrap();
    let out = crossdock()
        .arg("check-config")
        .arg(&path)
        .env("T_ADMIN", ADMIN)
        .env("T_QUERY", QUERY)
        .env("T_RESERVE", RESERVE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line_of = |needle: &str| text.lines().position(|l| l.contains(needle)).unwrap() + 1;
    for (key, needle) in [
        ("channels.1.buffer", "buffer = \"lots\""),
        ("channels.0.share", "share = 50"),
        ("tokens.2.scopes.0", "read-everything"),
    ] {
        let expected = format!("line {}: {key}", line_of(needle));
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        stderr.contains("environment variable T_EAST is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("4 problem(s)"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn import_positions_loads_a_snapshot_once() {
    let hub = Hub::start("import", "").await;
    let csv = hub.dir.join("opening.csv");
    std::fs::write(
        &csv,
        "item,location,qty,lot\nSKU-1,DC-EAST,40,\nSKU-1,DC-WEST,15,\nSKU-2,DC-EAST,7,L-9\nSKU-3,DC-EAST,many,\nSKU-404,DC-EAST,1,\n",
    )
    .unwrap();
    let url = format!("http://{}", hub.addr);
    let run = move || {
        crossdock()
            .args(["import", "positions"])
            .arg(&csv)
            .args(["--url", &url])
            .env("CROSSDOCK_ADMIN_TOKEN", ADMIN)
            .output()
            .unwrap()
    };
    let out = tokio::task::spawn_blocking(run.clone()).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rows were rejected: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("imported 5 rows: 3 applied, 0 duplicate, 2 rejected"),
        "{stdout}"
    );
    assert!(
        stderr.contains("row 5: qty \"many\" is not a whole number"),
        "{stderr}"
    );
    assert!(stderr.contains("row 6: unknown item"), "{stderr}");
    let mut q = hub.client(QUERY).await;
    let p = positions(&mut q, "SKU-1").await;
    assert_eq!((p[0].1, p[1].1), (40, 15));
    let (_, v) = get(&mut q, "/v1/items/SKU-2/positions").await;
    assert_eq!(v["positions"][0]["lot"], "L-9");
    let (_, v) = get(&mut q, "/v1/availability?item=SKU-1&channel=shopify").await;
    assert_eq!(v["available"], 55);
    // The same file again changes nothing.
    let out = tokio::task::spawn_blocking(run).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0 applied, 4 duplicate, 1 rejected"),
        "quarantined rows repeat as duplicates too: {stdout}"
    );
    assert_eq!(positions(&mut q, "SKU-1").await[0].1, 40);
}
