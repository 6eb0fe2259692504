//! `crossdock`: the one binary. Serve the hub, run the demo, check a config, import opening
//! stock, reconcile, weigh a channel policy change against the log (`what-if`), benchmark.

mod bench;
mod bench_delivery;
mod bench_orders;
mod bench_partitions;
mod bench_reconcile;
mod demo;
mod edi;
mod import;
mod logs;
mod reconcile;
mod trace;
mod what_if;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};

// The writer allocates and frees a batch's rows every commit from several threads; mimalloc keeps
// that fast and keeps freed memory from fragmenting per-thread arenas (measured in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A worker about to sleep gives the memory it freed back to the system, at most once a second:
/// mimalloc returns freed pages only when the thread that owns them allocates again, so a
/// thread that parsed a large batch and then went idle would keep them.
fn give_back_idle_memory() {
    use std::cell::Cell;
    use std::time::{Duration, Instant};
    thread_local! {
        static LAST: Cell<Option<Instant>> = const { Cell::new(None) };
    }
    LAST.with(|last| {
        let now = Instant::now();
        if last.get().is_none_or(|t| now - t >= Duration::from_secs(1)) {
            last.set(Some(now));
            // SAFETY: mi_collect only walks this thread's own heap.
            unsafe { libmimalloc_sys::mi_collect(false) };
        }
    });
}

#[derive(Parser)]
#[command(name = "crossdock", version, about = "Inventory and order sync hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a whole distributor (ERP, three WMS, transport, Shopify, Amazon, a B2B portal, an
    /// EDI retailer; simulated on loopback) against an embedded hub, inject faults, and print
    /// what the hub saw.
    Demo(demo::DemoArgs),
    /// Run the hub.
    Serve {
        #[arg(long, default_value = "crossdock.toml")]
        config: PathBuf,
        /// Address to listen on; overrides server.listen.
        #[arg(long)]
        listen: Option<String>,
        /// Data directory; overrides server.data_dir.
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check a config file and print every problem in it.
    CheckConfig { file: PathBuf },
    /// Load data into a running hub.
    Import {
        #[command(subcommand)]
        what: import::ImportWhat,
    },
    /// Read, check and write X12.
    Edi {
        #[command(subcommand)]
        what: edi::EdiWhat,
    },
    /// Reconcile a source's snapshot with the ledger in a running hub.
    Reconcile(reconcile::ReconcileArgs),
    /// Replay the event log through other channel policies: oversell exposure and hidden stock
    /// per channel, side by side with the configured policy.
    WhatIf(what_if::WhatIfArgs),
    /// Show the journey of one business document (a correlation id) through a running hub.
    Trace(trace::TraceArgs),
    /// Measure throughput and latency against a hub started for the purpose.
    Bench {
        #[command(subcommand)]
        what: bench::BenchWhat,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve {
            config,
            listen,
            data_dir,
        } => serve(config, listen, data_dir),
        Command::CheckConfig { file } => match crossdock_server::config::load(&file) {
            Ok(c) => {
                println!(
                    "{}: ok ({} locations, {} channels, {} sources, {} tokens, {} endpoints, {} partners, {} items)",
                    file.display(),
                    c.policy.locations.len(),
                    c.policy.channels.len(),
                    c.policy.sources.len(),
                    c.tokens.len(),
                    c.endpoints.len(),
                    c.partners.len(),
                    c.policy
                        .items
                        .as_ref()
                        .map_or("any".to_string(), |i| i.len().to_string())
                );
                ExitCode::SUCCESS
            }
            Err(problems) => {
                for p in &problems {
                    eprintln!("{}: {p}", file.display());
                }
                eprintln!("{} problem(s)", problems.len());
                ExitCode::from(2)
            }
        },
        Command::Import { what } => import::run(what),
        Command::Edi { what } => edi::run(what),
        Command::Bench { what } => bench::run(what),
        Command::Reconcile(args) => reconcile::run(args),
        Command::WhatIf(args) => what_if::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Demo(args) => demo::run(args),
    }
}

fn serve(config_path: PathBuf, listen: Option<String>, data_dir: Option<PathBuf>) -> ExitCode {
    let mut config = match crossdock_server::config::load(&config_path) {
        Ok(c) => c,
        Err(problems) => {
            for p in &problems {
                eprintln!("{}: {p}", config_path.display());
            }
            return ExitCode::from(2);
        }
    };
    if let Some(l) = listen {
        config.listen = l;
    }
    if let Some(d) = data_dir {
        config.set_data_dir(d);
    }
    // Dropped last: spans still in the exporter's queue are sent before exit.
    let _logs = match logs::init(config.telemetry.otlp.as_ref()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("cannot start span export: {e}");
            return ExitCode::FAILURE;
        }
    };
    let started = std::time::Instant::now();
    let hub = match crossdock_server::start(&config) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .on_thread_park(give_back_idle_memory)
        .build()
        .expect("tokio runtime");
    let config = Arc::new(config);
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.listen).await?;
        tracing::info!(
            listen = %listener.local_addr()?,
            ready_ms = started.elapsed().as_millis() as u64,
            ledger_seq = ?hub.engine.ledger_seqs(),
            "crossdock ready"
        );
        let shutdown = async {
            let ctrl_c = tokio::signal::ctrl_c();
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("signal");
            tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
            tracing::info!("shutting down");
        };
        crossdock_server::serve(listener, hub.clone(), config.clone(), shutdown).await
    });
    hub.engine.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("server error: {e}");
            ExitCode::FAILURE
        }
    }
}
