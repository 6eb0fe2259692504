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
        stdout.contains(
            "2 locations, 2 channels, 3 sources, 1 tokens, 0 endpoints, 0 partners, 1000 items"
        ),
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
async fn import_positions_loads_a_snapshot_whole_or_not_at_all_and_once() {
    let hub = Hub::start("import", "").await;
    let csv = hub.dir.join("opening.csv");
    let url = format!("http://{}", hub.addr);
    let run = move |file: std::path::PathBuf| {
        let url = url.clone();
        move || {
            crossdock()
                .args(["import", "positions"])
                .arg(&file)
                .args(["--url", &url])
                .env("CROSSDOCK_ADMIN_TOKEN", ADMIN)
                .output()
                .unwrap()
        }
    };
    // Bad rows: a quantity that is not a number, an item the hub does not know, a negative
    // count, a count beyond the bound, and a second row for one position.
    std::fs::write(
        &csv,
        "item,location,qty,lot\nSKU-1,DC-EAST,40,\nSKU-1,DC-WEST,15,\nSKU-2,DC-EAST,7,L-9\nSKU-3,DC-EAST,many,\nSKU-404,DC-EAST,1,\nSKU-3,DC-WEST,-5,\nSKU-3,DC-EAST,9223372036854775807,\nSKU-1,DC-EAST,41,\n",
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(run(csv.clone())).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    for line in [
        "line 5, column qty: \"many\" is not a whole number",
        "line 6, column item: no item \"SKU-404\" in the hub's item master",
        "line 7, column qty: must not be negative, got -5",
        "line 8, column qty: must be at most 1000000000000",
        "line 9: SKU-1 at DC-EAST is also on line 2; a snapshot has one row per position",
        "5 bad row(s) of 8; nothing was imported",
    ] {
        assert!(stderr.contains(line), "{line:?} in {stderr}");
    }
    let mut q = hub.client(QUERY).await;
    assert!(
        positions(&mut q, "SKU-1").await.is_empty(),
        "nothing applied"
    );
    assert!(
        positions(&mut q, "SKU-2").await.is_empty(),
        "nothing applied"
    );

    // The corrected file imports whole.
    let fixed = hub.dir.join("opening-fixed.csv");
    std::fs::write(
        &fixed,
        "item,location,qty,lot\nSKU-1,DC-EAST,40,\nSKU-1,DC-WEST,15,\nSKU-2,DC-EAST,7,L-9\n",
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(run(fixed.clone()))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("imported 3 rows: 3 applied, 0 duplicate, 0 rejected"),
        "{stdout}"
    );
    let p = positions(&mut q, "SKU-1").await;
    assert_eq!((p[0].1, p[1].1), (40, 15));
    let (_, v) = get(&mut q, "/v1/items/SKU-2/positions").await;
    assert_eq!(v["positions"][0]["lot"], "L-9");
    let (_, v) = get(&mut q, "/v1/availability?item=SKU-1&channel=shopify").await;
    assert_eq!(v["available"], 55);
    // The same file again changes nothing.
    let out = tokio::task::spawn_blocking(run(fixed)).await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("0 applied, 3 duplicate, 0 rejected"),
        "{stdout}"
    );
    assert_eq!(positions(&mut q, "SKU-1").await[0].1, 40);
}

fn x12_sample(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../x12/testdata")
        .join(rel)
}

#[test]
fn edi_parse_validate_and_render_round_trip_a_real_file() {
    let sample = x12_sample("846/oopfactory_Example1.txt");
    let out = crossdock()
        .args(["edi", "validate"])
        .arg(&sample)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("1 set(s), 0 error(s)"), "{stdout}");

    let out = crossdock()
        .args(["edi", "parse"])
        .arg(&sample)
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let typed = &doc["interchanges"][0]["groups"][0]["sets"][0]["typed"];
    assert_eq!(typed["set"], "846", "{doc:#}");

    let dir = temp_dir("edi-render");
    let json = dir.join("846.json");
    std::fs::write(&json, serde_json::to_vec(typed).unwrap()).unwrap();
    let out = crossdock()
        .args(["edi", "render", "846"])
        .arg(&json)
        .args([
            "--sender",
            "ZZ/CROSSDOCK",
            "--receiver",
            "01/322341109",
            "--control",
            "42",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = dir.join("846.x12");
    std::fs::write(&rendered, &out.stdout).unwrap();
    let again = crossdock()
        .args(["edi", "parse"])
        .arg(&rendered)
        .output()
        .unwrap();
    let back: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        &back["interchanges"][0]["groups"][0]["sets"][0]["typed"],
        typed
    );
    assert_eq!(back["interchanges"][0]["header"]["control_number"], 42);
}

#[test]
fn edi_validate_names_the_position_of_an_error_and_refuses_edifact() {
    let dir = temp_dir("edi-bad");
    let bad = dir.join("bad.x12");
    std::fs::write(
        &bad,
        "ISA*00*          *00*          *ZZ*A              *ZZ*B              *261123*1000*U*00401*000000001*0*P*>~\
GS*IN*A*B*20261123*1000*1*X*004010~ST*846*0001~BIA*00*MM*R1*20261123~SE*9*0001~GE*1*1~IEA*1*000000001~",
    )
    .unwrap();
    let out = crossdock()
        .args(["edi", "validate"])
        .arg(&bad)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("segment 5 (SE)"),
        "the count error is positioned: {stdout}"
    );

    let edifact = std::fs::read_dir(x12_sample("edifact"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .next()
        .expect("an EDIFACT sample");
    let out = crossdock()
        .args(["edi", "validate"])
        .arg(&edifact)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("EDIFACT is not supported yet"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn master_files_are_checked_row_by_row_before_anything_changes() {
    let hub = Hub::start("import-master", "").await;
    let dir = temp_dir("import-master");
    let bad = dir.join("items.csv");
    std::fs::write(&bad, "item,gtin\nSKU-1,036000291452\nSKU-2,036000291453\n").unwrap();
    let out = crossdock()
        .args(["import", "items"])
        .arg(&bad)
        .args(["--url", &format!("http://{}", hub.addr), "--token", ADMIN])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 3"),
        "the bad check digit is named by line: {stderr}"
    );

    // A crosswalk naming an item the hub does not know is refused by the hub, row by row.
    let walk = dir.join("walk.csv");
    std::fs::write(
        &walk,
        "partner,kind,external,internal\nacme,item,A-1,SKU-1\nacme,item,A-2,NOPE\n",
    )
    .unwrap();
    let out = crossdock()
        .args(["import", "crosswalks"])
        .arg(&walk)
        .args(["--url", &format!("http://{}", hub.addr), "--token", ADMIN])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 3") && stderr.contains("NOPE"),
        "{stderr}"
    );
    let mut q = hub.client(QUERY).await;
    let (_, counts) = get(&mut q, "/v1/master").await;
    assert_eq!(counts["crosswalks"], 0, "nothing changed: {counts}");

    std::fs::write(
        &walk,
        "partner,kind,external,internal\nacme,item,A-1,SKU-1\n",
    )
    .unwrap();
    let out = crossdock()
        .args(["import", "crosswalks"])
        .arg(&walk)
        .args(["--url", &format!("http://{}", hub.addr), "--token", ADMIN])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, counts) = get(&mut q, "/v1/master").await;
    assert_eq!(counts["crosswalks"], 1, "{counts}");
}
