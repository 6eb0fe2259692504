//! `crossdock reconcile --source S [--file F]`: runs a reconciliation in a running hub, with the
//! snapshot in F (CSV, or an X12 846 for an `x12_846` source) or, without F, with what the
//! source has now (its configured file, the partner's latest 846, or a pull from the channel).
//! Prints the counts by class and the variances; exits 0 on a finished run, 1 when the hub
//! refused it, 2 when it could not be asked.

use std::path::PathBuf;
use std::process::ExitCode;

use hyper::Method;
use hyper::body::Bytes;
use serde_json::Value;

use crossdock_cli::client::{Client, addr_of, encode};

#[derive(clap::Args)]
pub struct ReconcileArgs {
    /// The `[[reconciliation.sources]]` name.
    #[arg(long)]
    source: String,
    /// The snapshot to compare; without it, the source's own.
    #[arg(long)]
    file: Option<PathBuf>,
    /// When the snapshot was true (RFC 3339); defaults to the file's `as_of` column or 846 date,
    /// else its modification time.
    #[arg(long)]
    as_of: Option<String>,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token; defaults to $CROSSDOCK_ADMIN_TOKEN.
    #[arg(long, env = "CROSSDOCK_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// Print the hub's answer as JSON instead of a summary.
    #[arg(long)]
    json: bool,
}

pub fn run(args: ReconcileArgs) -> ExitCode {
    let (body, as_of, name) = match &args.file {
        None => (Vec::new(), args.as_of.clone(), None),
        Some(file) => match std::fs::read(file) {
            Ok(bytes) => {
                let as_of = args.as_of.clone().or_else(|| {
                    let t = crate::import::file_time(file).ok()?;
                    Some(t.to_rfc3339())
                });
                let name = file.file_name().map(|n| n.to_string_lossy().into_owned());
                (bytes, as_of, name)
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::from(2);
            }
        },
    };
    let mut path = format!("/v1/reconciliations?source={}", encode(&args.source));
    if let Some(t) = &as_of {
        path.push_str(&format!("&as_of={}", encode(t)));
    }
    if let Some(n) = &name {
        path.push_str(&format!("&name={}", encode(n)));
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = runtime.block_on(async {
        let mut client = Client::connect(&addr_of(&args.url), &args.token).await?;
        client
            .send(Method::POST, &path, "text/plain", Bytes::from(body))
            .await
    });
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot reach the hub at {}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    if reply.status != 201 {
        eprintln!(
            "the hub refused the reconciliation (HTTP {}): {}",
            reply.status,
            answer["detail"]
                .as_str()
                .unwrap_or(&String::from_utf8_lossy(&reply.body))
        );
        if let Some(errors) = answer["errors"].as_array() {
            for e in errors {
                eprintln!(
                    "  {}{}{}",
                    e["line"]
                        .as_u64()
                        .map(|l| format!("line {l}: "))
                        .unwrap_or_default(),
                    e["column"]
                        .as_str()
                        .map(|c| format!("{c}: "))
                        .unwrap_or_default(),
                    e["message"].as_str().unwrap_or_default()
                );
            }
        }
        if let Some(id) = answer["exception_id"].as_str() {
            eprintln!("  recorded as exception {id}");
        }
        return ExitCode::from(1);
    }
    if args.json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    println!(
        "reconciliation {} of {} as of {}: {} rows",
        answer["id"].as_str().unwrap_or("?"),
        answer["source"].as_str().unwrap_or("?"),
        answer["as_of"].as_str().unwrap_or("?"),
        answer["rows"]
    );
    if let Some(counts) = answer["counts"].as_object() {
        for (class, n) in counts {
            println!("  {class:22} {n}");
        }
    }
    let shown = answer["variances"].as_array().map_or(0, Vec::len);
    for v in answer["variances"].as_array().into_iter().flatten() {
        println!(
            "  {} @ {}: {} (source {}, crossdock {}) -> {}{}",
            v["item"].as_str().unwrap_or("?"),
            v["location"].as_str().unwrap_or("?"),
            v["class"].as_str().unwrap_or("?"),
            v["source_qty"],
            v["ledger_qty"],
            v["action"].as_str().unwrap_or("?"),
            v["reference"]
                .as_str()
                .map(|r| format!(" {r}"))
                .unwrap_or_default()
        );
    }
    let total = answer["variance_rows"].as_u64().unwrap_or(0);
    if total > shown as u64 {
        println!(
            "  ... {} more: GET /v1/reconciliations/{}/variances.csv",
            total - shown as u64,
            answer["id"].as_str().unwrap_or("?")
        );
    }
    ExitCode::SUCCESS
}
