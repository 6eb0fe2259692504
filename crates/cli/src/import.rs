//! `crossdock import positions FILE.csv`: an opening stock snapshot, sent to a running hub as
//! `inventory.counted.v1` events from the import source, in NDJSON batches, with a progress bar.
//! Event ids derive from the file's content and row, so importing the same file twice is a no-op.
//!
//! `crossdock import items|locations|crosswalks|units FILE.csv`: master data. The file is
//! checked here row by row first (every bad row reported with its line; nothing is sent if one
//! is bad), then replaces that master file in the running hub, which checks it again against
//! the rest (a crosswalk must name known items and locations).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use hyper::Method;
use hyper::body::Bytes;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;

use crossdock_cli::client::{Client, addr_of};

#[derive(Subcommand)]
pub enum ImportWhat {
    /// CSV with a header: item,location,qty[,lot]; qty is the absolute on-hand.
    Positions {
        file: PathBuf,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Admin token; defaults to $CROSSDOCK_ADMIN_TOKEN.
        #[arg(long, env = "CROSSDOCK_ADMIN_TOKEN", hide_env_values = true)]
        token: String,
        #[arg(long, default_value_t = 5_000)]
        batch: usize,
        /// When the counts were true (RFC 3339); defaults to the file's modification time, so
        /// importing the same file again is recognised as a repeat.
        #[arg(long)]
        as_of: Option<String>,
    },
    /// Items: item[,description,gtin,base_uom].
    Items(MasterArgs),
    /// Locations: location[,name].
    Locations(MasterArgs),
    /// Partner codes: partner,kind(item|location),external,internal.
    Crosswalks(MasterArgs),
    /// Units of measure: item (or *),uom,base_qty.
    Units(MasterArgs),
}

#[derive(clap::Args)]
pub struct MasterArgs {
    file: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Admin token; defaults to $CROSSDOCK_ADMIN_TOKEN.
    #[arg(long, env = "CROSSDOCK_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
}

pub fn run(what: ImportWhat) -> ExitCode {
    let (file, url, token, batch, as_of) = match what {
        ImportWhat::Positions {
            file,
            url,
            token,
            batch,
            as_of,
        } => (file, url, token, batch, as_of),
        ImportWhat::Items(a) => return import_master("items", a),
        ImportWhat::Locations(a) => return import_master("locations", a),
        ImportWhat::Crosswalks(a) => return import_master("crosswalks", a),
        ImportWhat::Units(a) => return import_master("units", a),
    };
    let as_of = match as_of
        .map(|t| crossdock_model::Timestamp::parse_rfc3339(&t))
        .transpose()
    {
        Ok(Some(t)) => t,
        Ok(None) => match file_time(&file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprintln!("--as-of: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match runtime.block_on(import_positions(
        file,
        as_of,
        &addr_of(&url),
        &token,
        batch.clamp(1, 10_000),
    )) {
        Ok(report) => {
            println!(
                "imported {} rows: {} applied, {} duplicate, {} rejected",
                report.rows,
                report.applied,
                report.duplicate,
                report.rejected.len()
            );
            for r in report.rejected.iter().take(50) {
                eprintln!("{r}");
            }
            if report.rejected.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("import failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[derive(Default)]
struct Report {
    rows: usize,
    applied: usize,
    duplicate: usize,
    rejected: Vec<String>,
}

pub(crate) fn file_time(file: &std::path::Path) -> std::io::Result<crossdock_model::Timestamp> {
    let modified = std::fs::metadata(file)?.modified()?;
    let since_epoch = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(std::io::Error::other)?;
    Ok(crossdock_model::Timestamp::from_micros(
        since_epoch.as_micros() as i64,
    ))
}

/// One NDJSON batch and the file lines it carries.
struct Batch {
    body: Vec<u8>,
    lines: Vec<u64>,
}

/// How many batches are in flight at once (each on its own connection).
const IN_FLIGHT: usize = 4;

async fn import_positions(
    file: PathBuf,
    as_of: crossdock_model::Timestamp,
    addr: &str,
    token: &str,
    batch: usize,
) -> Result<Report, String> {
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let digest = crossdock_model::event::key_hash("import", &text);
    let rows = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    let bar = ProgressBar::new(rows as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .expect("progress template"),
    );
    let mut clients = Vec::with_capacity(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        clients.push(
            Client::connect(addr, token)
                .await
                .map_err(|e| format!("cannot reach {addr}: {e}"))?,
        );
    }

    // A reader thread turns rows into batches; IN_FLIGHT senders post them. The channel is
    // bounded, so memory stays a few batches whatever the file's size.
    let (batches_tx, batches_rx) = tokio::sync::mpsc::channel::<Batch>(IN_FLIGHT * 2);
    let name = file.display().to_string();
    let reader = tokio::task::spawn_blocking(move || {
        let mut sheet = crossdock_master::CsvSheet::new(&name);
        let mut current = Batch {
            body: Vec::with_capacity(batch * 160),
            lines: Vec::with_capacity(batch),
        };
        sheet.read(&text, &["item", "location", "qty"], |sheet, line, get| {
            let qty = match get("qty").map(|q| q.parse::<i64>()) {
                Some(Ok(q)) => q,
                _ => {
                    let raw = get("qty").unwrap_or_default();
                    return sheet.problem(
                        line,
                        Some("qty"),
                        format!("{raw:?} is not a whole number"),
                    );
                }
            };
            let mut data = json!({
                "item": get("item").unwrap_or_default(),
                "location": get("location").unwrap_or_default(),
                "qty": qty,
            });
            if let Some(lot) = get("lot") {
                data["lot"] = json!(lot);
            }
            let ev = json!({
                "specversion": "1.0",
                "id": format!("import-{digest:016x}-{line}"),
                "source": "crossdock.import",
                "type": "inventory.counted.v1",
                "time": as_of,
                "data": data,
            });
            serde_json::to_writer(&mut current.body, &ev).expect("json");
            current.body.push(b'\n');
            current.lines.push(line);
            if current.lines.len() >= batch {
                let full = std::mem::replace(
                    &mut current,
                    Batch {
                        body: Vec::with_capacity(batch * 160),
                        lines: Vec::with_capacity(batch),
                    },
                );
                // A closed channel means the senders stopped on an error; they report it.
                let _ = batches_tx.blocking_send(full);
            }
        });
        if !current.lines.is_empty() {
            let _ = batches_tx.blocking_send(current);
        }
        sheet
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
    });

    let batches_rx = std::sync::Arc::new(tokio::sync::Mutex::new(batches_rx));
    let mut senders = Vec::with_capacity(IN_FLIGHT);
    for mut client in clients {
        let rx = batches_rx.clone();
        let bar = bar.clone();
        senders.push(tokio::spawn(async move {
            let mut report = Report::default();
            loop {
                let Some(b) = rx.lock().await.recv().await else {
                    return Ok::<Report, String>(report);
                };
                let n = b.lines.len();
                let reply = client
                    .send(
                        Method::POST,
                        "/v1/events",
                        "application/x-ndjson",
                        Bytes::from(b.body),
                    )
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                if reply.status != 200 {
                    return Err(format!(
                        "hub answered {}: {}",
                        reply.status,
                        String::from_utf8_lossy(&reply.body)
                    ));
                }
                for (answer, line) in reply
                    .body
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .zip(&b.lines)
                {
                    let v: serde_json::Value =
                        serde_json::from_slice(answer).map_err(|e| format!("bad answer: {e}"))?;
                    match v["status"].as_str() {
                        Some("applied") => report.applied += 1,
                        Some("duplicate") => report.duplicate += 1,
                        _ => report.rejected.push(format!(
                            "line {line}: {}",
                            v["problem"]["detail"].as_str().unwrap_or("rejected")
                        )),
                    }
                }
                bar.inc(n as u64);
            }
        }));
    }
    let mut report = Report {
        rows,
        ..Default::default()
    };
    let mut failure = None;
    for s in senders {
        match s.await.map_err(|e| e.to_string()).and_then(|r| r) {
            Ok(r) => {
                report.applied += r.applied;
                report.duplicate += r.duplicate;
                report.rejected.extend(r.rejected);
            }
            Err(e) => failure = Some(e),
        }
    }
    drop(batches_rx);
    let problems = reader.await.map_err(|e| e.to_string())?;
    if let Some(e) = failure {
        return Err(e);
    }
    bar.inc(problems.len() as u64);
    report.rejected.extend(problems);
    bar.finish();
    Ok(report)
}

/// Checks a master file locally, then replaces it in the hub.
fn import_master(kind: &str, args: MasterArgs) -> ExitCode {
    let name = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let rows = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .count();
    let bar = ProgressBar::new(rows as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:10} {bar:40} {pos}/{len} rows")
            .expect("progress template"),
    );
    bar.set_message("checking");
    use crossdock_master::load;
    let checked = match kind {
        "items" => load::items_from_str(&name, &text).map(|v| v.len()),
        "locations" => load::locations_from_str(&name, &text).map(|v| v.len()),
        "units" => load::conversions_from_str(&name, &text).map(|v| v.len()),
        // Crosswalks are checked against the hub's items and locations there.
        _ => Ok(rows),
    };
    if let Err(e) = checked {
        bar.abandon();
        match e {
            load::LoadError::Invalid { problems, .. } => {
                for p in &problems {
                    eprintln!("{name}: {p}");
                }
                eprintln!("{} bad row(s); nothing was imported", problems.len());
            }
            other => eprintln!("{other}"),
        }
        return ExitCode::from(1);
    }
    bar.set_position(rows as u64);
    bar.set_message("sending");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let addr = addr_of(&args.url);
    let reply = runtime.block_on(async {
        let mut client = Client::connect(&addr, &args.token).await?;
        client
            .send(
                Method::POST,
                &format!("/v1/master/{kind}"),
                "text/csv",
                Bytes::from(text.into_bytes()),
            )
            .await
    });
    bar.finish_with_message("done");
    match reply {
        Ok(r) if r.status == 200 => {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            println!(
                "imported {rows} {kind} rows; the hub now has {}",
                v["counts"]
            );
            ExitCode::SUCCESS
        }
        Ok(r) => {
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
            eprintln!(
                "hub answered {}: {}",
                r.status,
                v["detail"].as_str().unwrap_or("")
            );
            for row in v["rows"].as_array().into_iter().flatten() {
                eprintln!(
                    "{name}: line {}: {}",
                    row["line"],
                    row["reason"].as_str().unwrap_or("")
                );
            }
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("cannot reach {addr}: {e}");
            ExitCode::FAILURE
        }
    }
}
