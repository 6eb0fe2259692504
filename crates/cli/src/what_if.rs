//! `crossdock what-if --policy FILE --from T1 --to T2`: replays the hub's event log through the
//! channel policies in FILE (`[[channels]]` in the config's format, each replacing the configured
//! channel of the same id) and through the configured policy, and prints per channel how much
//! stock each would have shown that was not there (oversell exposure) and how much sellable
//! stock it would have hidden, over the window of received time [T1, T2].
//!
//! Reads the store the config names directly (a running hub is fine: SQLite is read under WAL,
//! PostgreSQL through its own connection) and writes nothing. The measure itself is
//! `crossdock_ledger::exposure`. Exits 0 with a report, 2 on bad arguments (times, unreadable
//! files, a config or policy file with problems, no store where the config says), 1 when the
//! store cannot be read.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::process::ExitCode;

use crossdock_engine::{StoreSpec, event_from_row};
use crossdock_ledger::exposure::{Comparison, Exposure, WhatIf};
use crossdock_model::Timestamp;
use crossdock_server::config::{self, Config, StoreChoice};
use crossdock_store::{EventRow, Store, StoreError};
use serde_json::{Value, json};

/// Log rows read per query.
const PAGE_ROWS: u32 = 1_000;

#[derive(clap::Args)]
pub struct WhatIfArgs {
    /// The hub's config: its store, data_dir and channel policies (the baseline).
    #[arg(long, default_value = "crossdock.toml")]
    config: PathBuf,
    /// The hub's data directory, when it was started with `serve --data-dir`.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// TOML with `[[channels]]` entries in the config's format; each replaces the configured
    /// channel of the same id, the others keep theirs.
    #[arg(long)]
    policy: PathBuf,
    /// Start of the window (RFC 3339), by the hub's received time. Events before it set the
    /// state the window starts from.
    #[arg(long)]
    from: String,
    /// End of the window (RFC 3339).
    #[arg(long)]
    to: String,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(args: WhatIfArgs) -> ExitCode {
    match what_if(&args) {
        Ok(report) => {
            let text = if args.json {
                format!("{:#}\n", to_json(&report))
            } else {
                table(&report)
            };
            // A closed pipe (`| head`) is the reader's choice, not a failure.
            let _ = std::io::Write::write_all(&mut std::io::stdout(), text.as_bytes());
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(lines)) => {
            for l in lines {
                eprintln!("{l}");
            }
            ExitCode::from(2)
        }
        Err(Failure::Store(message)) => {
            eprintln!("{message}");
            ExitCode::from(1)
        }
    }
}

enum Failure {
    /// Bad arguments or files: exit 2.
    Usage(Vec<String>),
    /// The store could not be read: exit 1.
    Store(String),
}

fn usage(line: impl Into<String>) -> Failure {
    Failure::Usage(vec![line.into()])
}

fn what_if(args: &WhatIfArgs) -> Result<Comparison, Failure> {
    let time = |flag: &str, raw: &str| {
        Timestamp::parse_rfc3339(raw).map_err(|e| usage(format!("--{flag} {raw:?}: {e}")))
    };
    let from = time("from", &args.from)?;
    let to = time("to", &args.to)?;
    if to < from {
        return Err(usage(format!(
            "--to {} is before --from {}; the window must not end before it starts",
            args.to, args.from
        )));
    }
    let mut config = config::load(&args.config).map_err(|problems| {
        Failure::Usage(
            problems
                .iter()
                .map(|p| format!("{}: {p}", args.config.display()))
                .collect(),
        )
    })?;
    if let Some(dir) = &args.data_dir {
        config.set_data_dir(dir.clone());
    }
    let text = std::fs::read_to_string(&args.policy)
        .map_err(|e| usage(format!("{}: cannot read: {e}", args.policy.display())))?;
    let alternative =
        config::parse_channel_overrides(&text, &config.policy).map_err(|problems| {
            let mut lines: Vec<String> = problems
                .iter()
                .map(|p| format!("{}: {p}", args.policy.display()))
                .collect();
            lines.push(format!("{} problem(s)", problems.len()));
            Failure::Usage(lines)
        })?;
    let mut store = open_store(&config)?;
    let mut replay = WhatIf::new(config.policy.clone(), alternative, from, to);
    // The log has the partitions the store was written with.
    let partitions = store
        .recorded_partitions()
        .map_err(|e| Failure::Store(format!("cannot read the store: {e}")))?
        .unwrap_or(config.partitions);
    let mut log = LogMerge::new(partitions, |partition, after| {
        store.read_events(partition, after, PAGE_ROWS)
    });
    let failed = |e: StoreError| Failure::Store(format!("cannot read the event log: {e}"));
    while let Some(row) = log.next().map_err(failed)? {
        if row.received_at_us > to.as_micros() {
            break;
        }
        let event = event_from_row(&row).map_err(failed)?;
        if !replay.apply(&event) {
            break;
        }
    }
    Ok(replay.finish())
}

/// The store the config names, as the hub opens it; without creating a missing SQLite file.
fn open_store(config: &Config) -> Result<Box<dyn Store>, Failure> {
    let spec = match &config.store {
        StoreChoice::Sqlite(path) => {
            let path = config.data_dir.join(path);
            if !path.is_file() {
                return Err(usage(format!(
                    "no store at {}: has a hub run with this config? (server.data_dir and store.path, or --data-dir)",
                    path.display()
                )));
            }
            StoreSpec::Sqlite(path)
        }
        StoreChoice::Postgres { url, schema } => StoreSpec::Postgres {
            url: url.clone(),
            schema: schema.clone(),
        },
    };
    spec.open()
        .map_err(|e| Failure::Store(format!("cannot open the store: {e}")))
}

/// Every partition's log, read page by page, merged into one stream ordered by received time,
/// then partition, then log sequence; each partition's events stay in log order.
struct LogMerge<F> {
    read: F,
    partitions: Vec<Cursor>,
}

#[derive(Default)]
struct Cursor {
    after_seq: u64,
    rows: VecDeque<EventRow>,
    /// A read found nothing more.
    done: bool,
}

impl<F> LogMerge<F>
where
    F: FnMut(u32, u64) -> Result<Vec<EventRow>, StoreError>,
{
    /// `read(partition, after_seq)`: the next rows of a partition's log after `after_seq`, in
    /// order; none at its end.
    fn new(partitions: u32, read: F) -> Self {
        LogMerge {
            read,
            partitions: (0..partitions).map(|_| Cursor::default()).collect(),
        }
    }

    fn next(&mut self) -> Result<Option<EventRow>, StoreError> {
        for (p, cursor) in self.partitions.iter_mut().enumerate() {
            if cursor.rows.is_empty() && !cursor.done {
                let page = (self.read)(p as u32, cursor.after_seq)?;
                match page.last() {
                    Some(last) => {
                        assert!(
                            last.seq > cursor.after_seq,
                            "a page of the log moves forward"
                        );
                        cursor.after_seq = last.seq;
                    }
                    None => cursor.done = true,
                }
                cursor.rows.extend(page);
            }
        }
        let first = self
            .partitions
            .iter()
            .enumerate()
            .filter_map(|(p, c)| c.rows.front().map(|r| ((r.received_at_us, p, r.seq), p)))
            .min()
            .map(|(_, p)| p);
        Ok(first.and_then(|p| self.partitions[p].rows.pop_front()))
    }
}

fn exposure_json(e: &Exposure) -> Value {
    json!({
        "exposure_events": e.exposure_events,
        "exposure_unit_seconds": e.exposure_unit_seconds(),
        "hidden_unit_seconds": e.hidden_unit_seconds(),
        "items_exposed": e.items_exposed,
        "peak_exposure": e.peak_exposure,
    })
}

fn to_json(r: &Comparison) -> Value {
    json!({
        "from": r.from.to_rfc3339(),
        "to": r.to.to_rfc3339(),
        "events_replayed": r.events_replayed,
        "events_in_window": r.events_in_window,
        "outcomes_differing": r.outcomes_differing,
        "channels": r.channels.iter().map(|c| json!({
            "channel": c.channel.as_str(),
            "changed": c.changed,
            "baseline": exposure_json(&c.baseline),
            "alternative": exposure_json(&c.alternative),
        })).collect::<Vec<_>>(),
    })
}

fn table(r: &Comparison) -> String {
    let mut out = format!(
        "what-if from {} to {} (received time): {} events replayed, {} in the window\n",
        r.from, r.to, r.events_replayed, r.events_in_window
    );
    if r.outcomes_differing > 0 {
        out.push_str(&format!(
            "{} events would have been answered differently (a channel's locations changed what it could reserve)\n",
            r.outcomes_differing
        ));
    }
    let width = r
        .channels
        .iter()
        .map(|c| c.channel.as_str().len())
        .max()
        .unwrap_or(0)
        .max("channel".len());
    out.push_str(&format!(
        "\n{:width$}  {:11}  {:>15}  {:>15}  {:>15}  {:>13}  {:>12}\n",
        "channel",
        "policy",
        "exposure events",
        "exposure unit·s",
        "hidden unit·s",
        "items exposed",
        "peak exposure"
    ));
    for c in &r.channels {
        for (label, e) in [("baseline", &c.baseline), ("alternative", &c.alternative)] {
            out.push_str(&format!(
                "{:width$}  {:11}  {:>15}  {:>15.1}  {:>15.1}  {:>13}  {:>12}{}\n",
                c.channel.as_str(),
                label,
                e.exposure_events,
                e.exposure_unit_seconds(),
                e.hidden_unit_seconds(),
                e.items_exposed,
                e.peak_exposure,
                if label == "alternative" && !c.changed {
                    "  (policy unchanged)"
                } else {
                    ""
                }
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossdock_store::EventStatus;

    fn row(partition: u32, seq: u64, received_at_us: i64) -> EventRow {
        EventRow {
            partition,
            seq,
            source: "wms".into(),
            id: format!("{partition}-{seq}"),
            ty: "inventory.received.v1".into(),
            time_us: 0,
            received_at_us,
            correlation_id: String::new(),
            payload_hash: 0,
            status: EventStatus::Applied,
            envelope: String::new(),
        }
    }

    #[test]
    fn partitions_merge_by_received_time_then_partition_then_sequence() {
        // (seq, received_at) per partition; partition 0 has a later-stamped event logged first.
        let logs: Vec<Vec<EventRow>> = vec![
            vec![row(0, 1, 10), row(0, 2, 40), row(0, 3, 30), row(0, 4, 50)],
            vec![row(1, 1, 20), row(1, 2, 30), row(1, 3, 40)],
            vec![],
        ];
        let mut reads = 0;
        let mut log = LogMerge::new(3, |p, after| {
            reads += 1;
            // Pages of two rows.
            Ok(logs[p as usize]
                .iter()
                .filter(|r| r.seq > after)
                .take(2)
                .cloned()
                .collect())
        });
        let mut order = Vec::new();
        while let Some(r) = log.next().unwrap() {
            order.push((r.partition, r.seq));
        }
        assert_eq!(
            order,
            vec![
                (0, 1),
                (1, 1),
                (1, 2),
                // 40 from both: partition 0 first; its seq 3 (stamped 30) waits behind seq 2.
                (0, 2),
                (0, 3),
                (1, 3),
                (0, 4),
            ]
        );
        drop(log);
        assert_eq!(reads, 3 + 3 + 1, "pages until each log reads empty");
    }
}
