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

fn file_time(file: &std::path::Path) -> std::io::Result<crossdock_model::Timestamp> {
    let modified = std::fs::metadata(file)?.modified()?;
    let since_epoch = modified
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(std::io::Error::other)?;
    Ok(crossdock_model::Timestamp::from_micros(
        since_epoch.as_micros() as i64,
    ))
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
    let mut lines = text.lines().enumerate();
    let (_, header) = lines.next().ok_or("empty file")?;
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    let col = |name: &str| cols.iter().position(|c| *c == name);
    let (Some(ci), Some(cl), Some(cq)) = (col("item"), col("location"), col("qty")) else {
        return Err("the header must name item, location and qty columns".into());
    };
    let clot = col("lot");
    let rows: Vec<(usize, &str)> = lines.filter(|(_, l)| !l.trim().is_empty()).collect();
    let bar = ProgressBar::new(rows.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} rows {per_sec} eta {eta}")
            .expect("progress template"),
    );
    let mut client = Client::connect(addr, token)
        .await
        .map_err(|e| format!("cannot reach {addr}: {e}"))?;
    let mut report = Report {
        rows: rows.len(),
        ..Default::default()
    };
    for chunk in rows.chunks(batch) {
        let mut body = Vec::with_capacity(chunk.len() * 200);
        let mut sent_rows = Vec::with_capacity(chunk.len());
        for (n, line) in chunk {
            let f: Vec<&str> = line.split(',').map(str::trim).collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("");
            let qty = match get(cq).parse::<i64>() {
                Ok(q) => q,
                Err(_) => {
                    report.rejected.push(format!(
                        "row {}: qty {:?} is not a whole number",
                        n + 1,
                        get(cq)
                    ));
                    continue;
                }
            };
            let mut data = json!({"item": get(ci), "location": get(cl), "qty": qty});
            if let Some(c) = clot
                && !get(c).is_empty()
            {
                data["lot"] = json!(get(c));
            }
            let ev = json!({
                "specversion": "1.0",
                "id": format!("import-{digest:016x}-{}", n + 1),
                "source": "crossdock.import",
                "type": "inventory.counted.v1",
                "time": as_of,
                "data": data,
            });
            serde_json::to_writer(&mut body, &ev).expect("json");
            body.push(b'\n');
            sent_rows.push(n + 1);
        }
        if sent_rows.is_empty() {
            continue;
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
        for (line, row) in reply
            .body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .zip(&sent_rows)
        {
            let v: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| format!("bad answer: {e}"))?;
            match v["status"].as_str() {
                Some("applied") => report.applied += 1,
                Some("duplicate") => report.duplicate += 1,
                _ => report.rejected.push(format!(
                    "row {row}: {}",
                    v["problem"]["detail"].as_str().unwrap_or("rejected")
                )),
            }
        }
        bar.inc(chunk.len() as u64);
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
