//! `crossdock edi parse|validate|render`: the X12 library from the command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;
use crossdock_x12::envelope::{Release, Version};
use crossdock_x12::sets::TypedSet;
use crossdock_x12::value::{Date, Time};
use crossdock_x12::{Document, OutboundEnvelope};
use serde_json::{Value, json};

#[derive(Subcommand)]
pub enum EdiWhat {
    /// Print an interchange file as JSON: envelopes, typed sets, diagnostics.
    Parse { file: PathBuf },
    /// Check an interchange file; exit 1 if it has errors, each printed with its position.
    Validate { file: PathBuf },
    /// Render a typed set from JSON (as `parse` prints it) as an interchange on stdout.
    Render {
        /// ST01: 846, 850, 855, 856, 810, 940, 943, 944, 945, 947, 180 or 997.
        set: String,
        file: PathBuf,
        /// Sender as QUALIFIER/ID.
        #[arg(long, default_value = "ZZ/CROSSDOCK")]
        sender: String,
        /// Receiver as QUALIFIER/ID.
        #[arg(long, default_value = "ZZ/PARTNER")]
        receiver: String,
        /// ISA13 and GS06.
        #[arg(long, default_value_t = 1)]
        control: u32,
        /// GS08, e.g. 004010, 005010 or 004010VICS.
        #[arg(long, default_value = "004010")]
        version: String,
    },
}

pub fn run(what: EdiWhat) -> ExitCode {
    match what {
        EdiWhat::Parse { file } => match read(&file) {
            Ok(doc) => {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&to_json(&doc)).expect("json")
                );
                if doc.has_errors() {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(code) => code,
        },
        EdiWhat::Validate { file } => match read(&file) {
            Ok(doc) => {
                let mut diags = doc.diagnostics.clone();
                let mut sets = 0;
                for (_, set) in doc.sets() {
                    sets += 1;
                    TypedSet::read(set, &mut diags);
                }
                for d in &diags {
                    let severity = if d.is_error() { "error" } else { "warning" };
                    let element = d
                        .element
                        .map(|e| format!(" element {e}"))
                        .unwrap_or_default();
                    println!("{}: {severity}: {d}{element}", file.display());
                }
                let errors = diags.iter().filter(|d| d.is_error()).count();
                println!(
                    "{}: {} interchange(s), {sets} set(s), {errors} error(s), {} warning(s)",
                    file.display(),
                    doc.interchanges.len(),
                    diags.len() - errors
                );
                if errors > 0 {
                    ExitCode::from(1)
                } else {
                    ExitCode::SUCCESS
                }
            }
            Err(code) => code,
        },
        EdiWhat::Render {
            set,
            file,
            sender,
            receiver,
            control,
            version,
        } => render(&set, &file, &sender, &receiver, control, &version),
    }
}

fn read(file: &PathBuf) -> Result<Document, ExitCode> {
    let bytes = std::fs::read(file).map_err(|e| {
        eprintln!("{}: {e}", file.display());
        ExitCode::from(2)
    })?;
    crossdock_x12::parse(&bytes).map_err(|e| {
        for d in &e.diagnostics {
            let element = d
                .element
                .map(|e| format!(" element {e}"))
                .unwrap_or_default();
            eprintln!("{}: error: {d}{element}", file.display());
        }
        ExitCode::from(1)
    })
}

fn to_json(doc: &Document) -> Value {
    let interchanges: Vec<Value> = doc
        .interchanges
        .iter()
        .map(|i| {
            let groups: Vec<Value> = i
                .groups
                .iter()
                .map(|g| {
                    let sets: Vec<Value> = g
                        .sets
                        .iter()
                        .map(|s| {
                            let mut diags = Vec::new();
                            let typed = TypedSet::read(s, &mut diags).map(TypedSet::without_raw);
                            json!({
                                "id": s.id,
                                "control_number": s.control_number,
                                "position": s.position,
                                "typed": typed,
                                "diagnostics": diags,
                            })
                        })
                        .collect();
                    json!({
                        "functional_id": g.functional_id,
                        "control_number": g.control_number,
                        "sender": g.application_sender,
                        "receiver": g.application_receiver,
                        "version": g.version.0,
                        "sets": sets,
                    })
                })
                .collect();
            json!({"header": i.header, "separators": i.separators, "groups": groups})
        })
        .collect();
    json!({"interchanges": interchanges, "diagnostics": doc.diagnostics})
}

fn render(
    set: &str,
    file: &PathBuf,
    sender: &str,
    receiver: &str,
    control: u32,
    version: &str,
) -> ExitCode {
    let text = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(2);
        }
    };
    let typed = match TypedSet::from_json(set, &text) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("{}: {e}", file.display());
            return ExitCode::from(1);
        }
    };
    let party = |raw: &str| -> Option<(String, String)> {
        let (q, id) = raw.split_once('/')?;
        Some((q.to_string(), id.to_string()))
    };
    let (Some(from), Some(to)) = (party(sender), party(receiver)) else {
        eprintln!("--sender and --receiver are QUALIFIER/ID, e.g. ZZ/ACME");
        return ExitCode::from(2);
    };
    let v = Version(version.to_string());
    let Some(release) = v.release() else {
        eprintln!("--version {version:?}: use 004010 or 005010, optionally with a suffix");
        return ExitCode::from(2);
    };
    let now = time::OffsetDateTime::now_utc();
    let date = Date::new(now.year() as u16, u8::from(now.month()), now.day()).expect("today");
    let time = Time::hm(now.hour(), now.minute()).expect("now");
    let mut envelope = OutboundEnvelope::new(
        (&from.0, &from.1),
        (&to.0, &to.1),
        control,
        control,
        date,
        time,
    );
    envelope.release = release;
    envelope.version_suffix = v.suffix().to_string();
    if release == Release::V005010 {
        envelope.separators.repetition = Some('^');
    }
    match crossdock_x12::render(&envelope, &[typed]) {
        Ok(x12) => {
            print!("{x12}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
