//! The HTTP/1.1 server loop: at most `connections_max` connections at once (always below the
//! process's open-file limit, so the hub keeps descriptors for its store, files and channels),
//! a deadline for each request's headers (which also closes a keep-alive connection left idle
//! that long), and a graceful stop that lets requests in progress finish.
//!
//! At the cap the loop stops accepting: new connections wait in the listen backlog until one
//! closes, and the descriptors the hub needs are never taken by clients. Each connection reads
//! into a buffer of at most [`READ_BUFFER_MAX`] (hyper's default grows to about 400 KiB, which
//! at a few thousand connections sending at once is more than the body budget), so what
//! connections hold outside the budget is bounded by `connections_max` times that.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::config::server::HttpLimits;

/// The most a connection buffers of what it reads (a request's headers must fit in it).
pub const READ_BUFFER_MAX: usize = 32 * 1024;

/// The connection cap and how many are open.
#[derive(Debug)]
pub struct Connections {
    slots: Arc<Semaphore>,
    max: usize,
}

impl Connections {
    /// `configured`, lowered below the open-file limit when that is lower.
    pub fn new(configured: usize) -> Arc<Connections> {
        let max = match open_file_limit() {
            Some(files) => {
                let cap = connection_cap(configured, files);
                if cap < configured {
                    tracing::info!(
                        configured,
                        open_file_limit = files,
                        connections_max = cap,
                        "connections capped below the open-file limit"
                    );
                }
                cap
            }
            None => {
                tracing::warn!(
                    connections_max = configured,
                    "the open-file limit is unknown or unlimited; connections are capped as configured"
                );
                configured
            }
        };
        Arc::new(Connections {
            slots: Arc::new(Semaphore::new(max)),
            max,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }
}

/// The cap for `configured` connections under a soft open-file limit of `files`: a quarter of
/// the descriptors (at least 128, at most half) stay for the hub itself.
pub fn connection_cap(configured: usize, files: u64) -> usize {
    let files = usize::try_from(files).unwrap_or(usize::MAX);
    let reserve = (files / 4).max(128.min(files / 2));
    configured.min(files.saturating_sub(reserve)).max(1)
}

/// The soft `RLIMIT_NOFILE` of this process, from `/proc/self/limits` (`None` elsewhere or when
/// unlimited).
pub fn open_file_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Serves `app` on `listener` until `shutdown` resolves, then waits for the requests in
/// progress.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: &HttpLimits,
    connections: Arc<Connections>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(READ_BUFFER_MAX)
        .keep_alive(true);
    let (closing, closed) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            s = connections.slots.clone().acquire_owned() => s.expect("the slots are never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of descriptors or a connection reset before it was taken: wait a
                    // little rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let conn =
            builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let mut stop = closed.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut conn = std::pin::pin!(conn);
            let stopping = async {
                while !*stop.borrow_and_update() {
                    if stop.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    return;
                }
                () = stopping => conn.as_mut().graceful_shutdown(),
            }
            let _ = conn.await;
            drop(stop);
        });
    }
    drop(listener);
    let _ = closing.send(true);
    drop(closed);
    closing.closed().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_below_the_open_file_limit() {
        assert_eq!(connection_cap(4096, 1024), 768, "a quarter kept");
        assert_eq!(connection_cap(4096, 1_048_576), 4096, "as configured");
        assert_eq!(connection_cap(100, 1024), 100);
        assert_eq!(connection_cap(4096, 200), 100, "half kept of a small limit");
        assert_eq!(connection_cap(4096, 1), 1, "never zero");
        for files in [64, 256, 1024, 20_000] {
            assert!(connection_cap(usize::MAX, files) < files as usize);
        }
    }

    #[test]
    fn this_process_has_an_open_file_limit() {
        let n = open_file_limit().expect("Linux has /proc/self/limits");
        assert!(n >= 64, "{n}");
    }
}
