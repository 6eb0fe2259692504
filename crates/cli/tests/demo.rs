//! `crossdock demo` through the real binary: a short run whose JSON summary must show zero
//! oversells by every measure and every injected fault (an outage, a 3PL's duplicates and
//! out-of-order events, a hand-edited channel, a refused item) visible in what the hub reports;
//! a run replaying a slice of a real purchase history; and a bad history file refused with the
//! line named.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{assert_valid_x12, temp_dir};
use serde_json::Value;

/// Runs `crossdock demo ARGS --json --listen 127.0.0.1:0 --data-dir DIR`.
fn demo(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_crossdock"))
        .arg("demo")
        .args(args)
        .args(["--json", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir)
        .env("CROSSDOCK_LOG", "warn")
        .output()
        .expect("run crossdock demo")
}

/// The summary on stdout; the run must have succeeded.
fn summary(out: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "crossdock demo failed ({}):\n{stderr}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not the JSON summary ({e}); stderr:\n{stderr}"))
}

fn u(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("{v} is not a whole number"))
}

fn assert_no_oversell(s: &Value) {
    let o = &s["oversells"];
    for key in [
        "metric",
        "positions_below_zero",
        "orders_oversold",
        "warehouse_shortfalls",
        "ledger_differs_from_warehouses",
    ] {
        assert_eq!(u(&o[key]), 0, "oversells.{key}: {o:#}");
    }
}

/// Files of a folder, sorted.
fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    out.sort();
    out
}

#[test]
fn a_short_demo_oversells_nothing_and_every_injected_fault_is_visible() {
    short_demo(1);
}

/// The same demo on four partitions: orders, EDI 850s, the 3PL's sequenced feed and every fault
/// run across partitions, with the same outcome.
#[test]
fn a_short_demo_on_four_partitions_oversells_nothing_and_every_fault_is_visible() {
    short_demo(4);
}

fn short_demo(partitions: u32) {
    let dir = temp_dir(&format!("demo-{partitions}"));
    let partitions = partitions.to_string();
    let out = demo(
        &[
            "--duration",
            "20",
            "--seed",
            "7",
            "--partitions",
            &partitions,
        ],
        &dir,
    );
    let s = summary(&out);
    let progress = String::from_utf8_lossy(&out.stderr);

    assert!(s["ok"].as_bool().unwrap(), "{s:#}");
    assert_no_oversell(&s);
    assert_eq!(u(&s["events"]["rejected"]), 0, "{:#}", s["events"]);
    assert!(u(&s["events"]["accepted"]) > 500, "{:#}", s["events"]);
    for channel in ["shopify", "amazon", "b2b", "retail"] {
        let o = &s["orders"][channel];
        assert!(u(&o["placed"]) > 0, "{channel}: {o:#}");
        assert_eq!(u(&o["failed"]), 0, "{channel}: {o:#}");
    }
    assert!(
        u(&s["fulfilment"]["shipments"]) > 0,
        "{:#}",
        s["fulfilment"]
    );
    assert!(u(&s["supply"]["purchase_orders"]) > 0, "{:#}", s["supply"]);

    // Every fault was announced when injected, and is seen in what the hub reports.
    for announced in [
        "fault: the B2B portal refuses product",
        "fault: the 3PL at DC-CENTRAL starts sending events twice and out of order",
        "fault: Amazon SP-API outage",
        "fault over: Amazon SP-API is back",
        "fault: a merchant edits Shopify levels by hand",
    ] {
        assert!(
            progress.contains(announced),
            "{announced:?} in:\n{progress}"
        );
    }
    let faults: Vec<&str> = s["faults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            assert!(f["visible"].as_bool().unwrap(), "{f:#}");
            f["fault"].as_str().unwrap()
        })
        .collect();
    assert_eq!(
        faults,
        [
            "channel_outage",
            "duplicate_events",
            "out_of_order_events",
            "hand_edit",
            "refused_item"
        ]
    );
    // The outage: Amazon's breaker opened after failed calls, and nothing was lost.
    let amazon = &s["breakers"]["amazon"];
    assert!(u(&amazon["opened"]) >= 1, "{amazon:#}");
    assert!(u(&amazon["failed_calls"]) >= 1, "{amazon:#}");
    assert_eq!(amazon["state"], "closed", "{amazon:#}");
    for channel in ["shopify", "amazon", "b2b"] {
        let c = &s["channels"][channel];
        assert_eq!(
            u(&c["in_sync"]) + u(&c["refused"]),
            u(&c["items"]),
            "{channel} at the end: {c:#}"
        );
    }
    // Duplicates were answered as duplicates; events out of order were held and applied in
    // order, without a sequence gap.
    assert!(u(&s["events"]["duplicates"]) >= 1, "{:#}", s["events"]);
    assert!(
        u(&s["events"]["held_for_sequence"]) >= 1,
        "{:#}",
        s["events"]
    );
    assert!(
        s["exceptions_open"].get("sequence_gap").is_none(),
        "{:#}",
        s["exceptions_open"]
    );
    // The hand edit: drift found and repaired, by the reconciliation or a compare-and-set
    // write that met it first.
    let drift = &s["drift"];
    assert!(
        u(&drift["found"]) + u(&drift["lane_mismatches"]) >= 1,
        "{drift:#}"
    );
    assert!(
        u(&drift["repaired"]) + u(&drift["lane_mismatches"]) >= 1,
        "{drift:#}"
    );
    assert!(u(&drift["reconciliation_runs"]) >= 1, "{drift:#}");
    // The refused item: in the dead-letter queue with the portal's reason, and an exception.
    let parked: Vec<&Value> = s["dlq"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["endpoint"] == "b2b")
        .collect();
    assert_eq!(parked.len(), 1, "{:#}", s["dlq"]);
    assert!(
        parked[0]["keys"]
            .as_array()
            .unwrap()
            .iter()
            .any(|k| k == "SKU-0010"),
        "{:#}",
        parked[0]
    );
    assert!(
        !parked[0]["reason"].as_str().unwrap().is_empty(),
        "{:#}",
        parked[0]
    );
    assert!(
        parked[0]["answer"]
            .as_str()
            .unwrap()
            .contains("woocommerce_rest_product_invalid_id"),
        "the portal's own answer: {:#}",
        parked[0]
    );
    assert!(
        u(&s["exceptions_open"]["delivery_failed"]) >= 1,
        "{:#}",
        s["exceptions_open"]
    );

    // The retail chain's 850s: every file processed, and valid X12 by the independent
    // validator, as is everything the hub wrote back.
    let edi = &s["edi"];
    assert!(u(&edi["files_sent"]) > 0, "{edi:#}");
    assert_eq!(edi["files_processed"], edi["files_sent"], "{edi:#}");
    assert_eq!(u(&edi["files_rejected"]), 0, "{edi:#}");
    let partner = dir.join("data/partners/mart");
    let sent = files(&partner.join("inbound/processed"), ".x12");
    assert_eq!(sent.len() as u64, u(&edi["files_sent"]));
    let mut all = sent;
    all.extend(files(&partner.join("outbound"), ".x12"));
    assert_valid_x12(&all);

    // The dashboard's address and the token were printed.
    assert!(
        s["run"]["dashboard"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:"),
        "{:#}",
        s["run"]
    );
    assert!(s["run"]["dashboard"].as_str().unwrap().ends_with("/ui"));
    assert!(progress.contains("admin token: cdx_"), "{progress}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_purchase_history_is_replayed_compressed_into_the_run() {
    let dir = temp_dir("demo-history");
    let history = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/cdnow-slice.txt");
    let out = demo(
        &["--duration", "10", "--history", history.to_str().unwrap()],
        &dir,
    );
    let s = summary(&out);
    assert_eq!(u(&s["run"]["orders_planned"]), 400, "{:#}", s["run"]);
    assert_eq!(u(&s["run"]["orders_cut_off"]), 0, "{:#}", s["run"]);
    assert!(
        s["run"]["demand"]
            .as_str()
            .unwrap()
            .contains("400 purchases over 541 days"),
        "{:#}",
        s["run"]
    );
    assert_no_oversell(&s);
    // Every purchase became an order attempt on its customer's channel.
    let attempts: u64 = ["shopify", "amazon", "b2b"]
        .iter()
        .map(|c| {
            let o = &s["orders"][c];
            [
                "placed",
                "refused_for_stock",
                "not_offered",
                "held_back",
                "abandoned",
                "failed",
            ]
            .iter()
            .map(|k| u(&o[*k]))
            .sum::<u64>()
        })
        .sum();
    let retail = u(&s["orders"]["retail"]["placed"]) + u(&s["orders"]["retail"]["failed"]);
    assert_eq!(attempts + retail, 400, "{:#}", s["orders"]);
    assert!(u(&s["fulfilment"]["shipments"]) > 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bad_history_file_is_refused_with_its_line_named() {
    let dir = temp_dir("demo-bad-history");
    let history = dir.join("history.txt");
    std::fs::write(
        &history,
        "customer_id date number_of_cds dollar_value\r\n00001 19970101 1 11.77\r\n00002 19971341 2 20.00\r\n00003 19970102 two 9.99\r\n",
    )
    .unwrap();
    let data = dir.join("data");
    let out = demo(
        &["--duration", "10", "--history", history.to_str().unwrap()],
        &data,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "no summary");
    assert!(
        stderr.contains("history.txt line 3: date \"19971341\" is not a calendar date"),
        "{stderr}"
    );
    assert!(
        stderr.contains("history.txt line 4: number_of_cds \"two\""),
        "{stderr}"
    );
    assert!(!data.exists(), "nothing was started");

    let out = demo(
        &["--duration", "10", "--history", "/nonexistent/history.txt"],
        &data,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent/history.txt: cannot read"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
