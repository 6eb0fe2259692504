//! `crossdock trace ID`: the journey of one business document through a running hub (inputs,
//! events, ledger and availability changes, workflow steps, deliveries, dead letters and
//! exceptions, in time order), from `GET /v1/trace/{id}`. Exits 0 when found, 1 when nothing
//! carries the id, 2 when the hub could not be asked.

use std::process::ExitCode;

use serde_json::Value;

use crossdock_cli::client::{Client, addr_of, encode};

#[derive(clap::Args)]
pub struct TraceArgs {
    /// The correlation id (an order number, an EDI document key such as
    /// `x12:SENDER/ISA13/GS06/ST02`, a reconciliation run id, an X-Correlation-Id sent with a
    /// request).
    id: String,
    /// At most this many rows of each kind.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A token with the query scope; defaults to $CROSSDOCK_ADMIN_TOKEN.
    #[arg(long, env = "CROSSDOCK_ADMIN_TOKEN", hide_env_values = true)]
    token: String,
    /// Print the hub's answer as JSON.
    #[arg(long)]
    json: bool,
}

pub fn run(args: TraceArgs) -> ExitCode {
    let path = format!("/v1/trace/{}?limit={}", encode(&args.id), args.limit);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = runtime.block_on(async {
        let mut client = Client::connect(&addr_of(&args.url), &args.token).await?;
        client.get(&path).await
    });
    let reply = match reply {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot reach the hub at {}: {e}", args.url);
            return ExitCode::from(2);
        }
    };
    let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    match reply.status {
        200 => {}
        404 => {
            eprintln!("{}", answer["detail"].as_str().unwrap_or("not found"));
            return ExitCode::from(1);
        }
        status => {
            eprintln!(
                "the hub refused (HTTP {status}): {}",
                answer["detail"]
                    .as_str()
                    .unwrap_or(&String::from_utf8_lossy(&reply.body))
            );
            return ExitCode::from(2);
        }
    }
    if args.json {
        println!("{answer:#}");
        return ExitCode::SUCCESS;
    }
    println!(
        "trace {} from {} to {}",
        args.id,
        answer["started"].as_str().unwrap_or("?"),
        answer["last"].as_str().unwrap_or("?")
    );
    for stop in answer["timeline"].as_array().into_iter().flatten() {
        println!(
            "{}  {:12} {}",
            stop["at"].as_str().unwrap_or("?"),
            stop["stage"].as_str().unwrap_or("?"),
            crossdock_server::trace_api::describe(stop)
        );
    }
    if let Some(counts) = answer["counts"].as_object() {
        let parts: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("{}", parts.join(", "));
    }
    ExitCode::SUCCESS
}
