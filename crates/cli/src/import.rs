//! `crossdock import positions FILE.csv`: an opening stock snapshot, sent to a running hub as
//! `inventory.counted.v1` events from the import source, in NDJSON batches, with a progress bar.
//! Event ids derive from the file's content and row, so importing the same file twice is a no-op.
//! The file is imported whole or not at all: every row is checked first (ids, the count's check
//! `EventData::validate` as `POST /v1/events` makes it, one row per position (item, location,
//! lot), and each item against the hub's item master); a file with a bad row sends nothing and
//! every bad row is reported with its line. (The hub has no way to ask which locations it knows,
//! so a row naming an unknown location is still only refused when it is sent.)
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

use std::collections::{HashMap, HashSet};

use crossdock_cli::client::{Client, addr_of};
use crossdock_master::{CsvSheet, load::RowProblem};
use crossdock_model::event::{Counted, EventData};
use crossdock_model::{ItemId, LocationId, Lot};

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
    let file_name = file.display().to_string();
    match runtime.block_on(import_positions(
        file,
        as_of,
        &addr_of(&url),
        &token,
        batch.clamp(1, 10_000),
    )) {
        Ok(report) if !report.refused.is_empty() => {
            let name = file_name;
            for r in &report.refused {
                eprintln!("{name}: {r}");
            }
            eprintln!(
                "{} bad row(s) of {}; nothing was imported",
                report.refused.len(),
                report.rows
            );
            ExitCode::from(1)
        }
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
    /// Rows the hub refused as they were sent.
    rejected: Vec<String>,
    /// Bad rows found before anything was sent: then nothing was.
    refused: Vec<String>,
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

/// One row of a positions file, checked.
struct Row {
    line: u64,
    item: ItemId,
    location: LocationId,
    lot: Option<Lot>,
    qty: i64,
}

/// How many requests are in flight at once (each on its own connection).
const IN_FLIGHT: usize = 4;

/// Checks every row of a positions file as the hub will (ids, the count's check
/// `EventData::validate`, the same as `POST /v1/events`), and that no two rows name one
/// position (item, location, lot): a snapshot has one quantity per position. Returns the rows
/// and every problem with its line.
fn check_rows(name: &str, text: &str) -> (Vec<Row>, Vec<RowProblem>) {
    let mut sheet = CsvSheet::new(name);
    let mut rows = Vec::new();
    let mut seen: HashMap<(ItemId, LocationId, Option<Lot>), u64> = HashMap::new();
    sheet.read(text, &["item", "location", "qty"], |sheet, line, get| {
        let raw = |column: &str| get(column).unwrap_or_default();
        let item = match ItemId::new(&raw("item")) {
            Ok(i) => i,
            Err(e) => return sheet.problem(line, Some("item"), e.to_string()),
        };
        let location = match LocationId::new(&raw("location")) {
            Ok(l) => l,
            Err(e) => return sheet.problem(line, Some("location"), e.to_string()),
        };
        let lot = match get("lot").map(|l| Lot::new(&l)).transpose() {
            Ok(l) => l,
            Err(e) => return sheet.problem(line, Some("lot"), e.to_string()),
        };
        let Ok(qty) = raw("qty").parse::<i64>() else {
            let q = raw("qty");
            return sheet.problem(line, Some("qty"), format!("{q:?} is not a whole number"));
        };
        let count = EventData::Counted(Counted {
            item: item.clone(),
            location: location.clone(),
            qty,
            lot: lot.clone(),
        });
        if let Err(e) = count.validate() {
            let column = e
                .field()
                .strip_prefix("data.")
                .unwrap_or(e.field())
                .to_string();
            let reason = e.to_string();
            let reason = reason
                .strip_prefix(&format!("{}: ", e.field()))
                .unwrap_or(&reason)
                .to_string();
            return sheet.problem(line, Some(&column), reason);
        }
        let key = (item.clone(), location.clone(), lot.clone());
        if let Some(first) = seen.get(&key) {
            let lot = lot.as_ref().map_or(String::new(), |l| format!(" lot {l}"));
            return sheet.problem(
                line,
                None,
                format!(
                    "{item} at {location}{lot} is also on line {first}; a snapshot has one row \
                     per position"
                ),
            );
        }
        seen.insert(key, line);
        rows.push(Row {
            line,
            item,
            location,
            lot,
            qty,
        });
    });
    (rows, sheet.problems().to_vec())
}

/// `/`-safe percent-encoding of a path segment.
fn segment(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The items of `rows` the hub does not know (`GET /v1/items/{item}/positions` answers 404),
/// as a problem for every row naming one. The clients ask in parallel and come back.
async fn unknown_items(
    clients: Vec<Client>,
    rows: &[Row],
) -> Result<(Vec<Client>, Vec<RowProblem>), String> {
    let mut items: Vec<ItemId> = rows.iter().map(|r| r.item.clone()).collect();
    items.sort();
    items.dedup();
    let items = std::sync::Arc::new(items);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut checks = Vec::with_capacity(clients.len());
    for mut client in clients {
        let (items, next) = (items.clone(), next.clone());
        checks.push(tokio::spawn(async move {
            let mut unknown = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(item) = items.get(i) else {
                    return Ok::<_, String>((client, unknown));
                };
                let path = format!("/v1/items/{}/positions", segment(item.as_str()));
                let reply = client
                    .get(&path)
                    .await
                    .map_err(|e| format!("request failed: {e}"))?;
                match reply.status {
                    200 => {}
                    404 => unknown.push(item.clone()),
                    status => {
                        return Err(format!(
                            "hub answered {status} to GET {path}: {}",
                            String::from_utf8_lossy(&reply.body)
                        ));
                    }
                }
            }
        }));
    }
    let mut clients = Vec::with_capacity(checks.len());
    let mut unknown: HashSet<ItemId> = HashSet::new();
    for check in checks {
        let (client, found) = check.await.map_err(|e| e.to_string())??;
        clients.push(client);
        unknown.extend(found);
    }
    let problems = rows
        .iter()
        .filter(|r| unknown.contains(&r.item))
        .map(|r| RowProblem {
            line: r.line,
            column: Some("item".into()),
            reason: format!("no item {:?} in the hub's item master", r.item.as_str()),
        })
        .collect();
    Ok((clients, problems))
}

async fn import_positions(
    file: PathBuf,
    as_of: crossdock_model::Timestamp,
    addr: &str,
    token: &str,
    batch: usize,
) -> Result<Report, String> {
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let digest = crossdock_model::event::key_hash("import", &text);
    let name = file.display().to_string();
    // Every row is checked before anything is sent: a file with a bad row imports nothing.
    let (rows, mut problems) = tokio::task::spawn_blocking(move || check_rows(&name, &text))
        .await
        .map_err(|e| e.to_string())?;
    let mut clients = Vec::with_capacity(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        clients.push(
            Client::connect(addr, token)
                .await
                .map_err(|e| format!("cannot reach {addr}: {e}"))?,
        );
    }
    // Rows read: those that passed, and those that did not (a header problem is line 1).
    let read = rows.len() + problems.iter().filter(|p| p.line > 1).count();
    let (clients, unknown) = unknown_items(clients, &rows).await?;
    problems.extend(unknown);
    if !problems.is_empty() {
        problems.sort_by_key(|p| p.line);
        return Ok(Report {
            rows: read,
            refused: problems.iter().map(ToString::to_string).collect(),
            ..Report::default()
        });
    }

    let bar = ProgressBar::new(rows.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .expect("progress template"),
    );
    let total = rows.len();
    let rows = std::sync::Arc::new(rows);
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::with_capacity(IN_FLIGHT);
    for mut client in clients {
        let (rows, next, bar) = (rows.clone(), next.clone(), bar.clone());
        senders.push(tokio::spawn(async move {
            let mut report = Report::default();
            loop {
                let start = next.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                let Some(chunk) = rows.get(start..(start + batch).min(rows.len())) else {
                    return Ok::<Report, String>(report);
                };
                if chunk.is_empty() {
                    return Ok(report);
                }
                let mut body = Vec::with_capacity(chunk.len() * 160);
                for r in chunk {
                    let mut data = json!({
                        "item": r.item,
                        "location": r.location,
                        "qty": r.qty,
                    });
                    if let Some(lot) = &r.lot {
                        data["lot"] = json!(lot);
                    }
                    let ev = json!({
                        "specversion": "1.0",
                        "id": format!("import-{digest:016x}-{}", r.line),
                        "source": "crossdock.import",
                        "type": "inventory.counted.v1",
                        "time": as_of,
                        "data": data,
                    });
                    serde_json::to_writer(&mut body, &ev).expect("json");
                    body.push(b'\n');
                }
                let reply = client
                    .send(
                        Method::POST,
                        "/v1/events",
                        "application/x-ndjson",
                        Bytes::from(body),
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
                for (answer, r) in reply
                    .body
                    .split(|b| *b == b'\n')
                    .filter(|l| !l.is_empty())
                    .zip(chunk)
                {
                    let v: serde_json::Value =
                        serde_json::from_slice(answer).map_err(|e| format!("bad answer: {e}"))?;
                    match v["status"].as_str() {
                        Some("applied") => report.applied += 1,
                        Some("duplicate") => report.duplicate += 1,
                        _ => report.rejected.push(format!(
                            "line {}: {}",
                            r.line,
                            v["problem"]["detail"].as_str().unwrap_or("rejected")
                        )),
                    }
                }
                bar.inc(chunk.len() as u64);
            }
        }));
    }
    let mut report = Report {
        rows: total,
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
    if let Some(e) = failure {
        return Err(e);
    }
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
