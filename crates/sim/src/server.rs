//! The loopback HTTP server under every simulator.

use std::io;

use axum::Router;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A listener bound to `127.0.0.1:0`, not serving yet: the simulator needs its URL to build its
/// state (SP-API hands out upload and download URLs on itself).
pub(crate) struct Bound {
    listener: TcpListener,
    pub url: String,
    shutdown: watch::Sender<bool>,
}

impl Bound {
    pub async fn loopback() -> io::Result<Bound> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (shutdown, _) = watch::channel(false);
        Ok(Bound {
            listener,
            url,
            shutdown,
        })
    }

    /// Tells the simulator's waits (latency, hangs) that the server is stopping.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Serves `router` on a task of the current runtime until [`Server::stop`] or drop.
    pub fn serve(self, router: Router, name: &'static str) -> Server {
        let mut stopping = self.shutdown.subscribe();
        // No Nagle delay: benchmarks time requests and answers to the millisecond.
        let listener = self.listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let url = self.url.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(simulator = name, error = %e, "simulator server ended");
            }
        });
        tracing::debug!(simulator = name, %url, "simulator listening");
        Server {
            url: self.url,
            shutdown: self.shutdown,
            task: Some(task),
        }
    }
}

/// A running server. Dropping it stops it (in the background); [`Server::stop`] also waits.
#[derive(Debug)]
pub(crate) struct Server {
    url: String,
    shutdown: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Stops accepting, cuts short requests waiting on a fault, lets the others finish, and
    /// waits for the server to end. Idle keep-alive connections are closed.
    pub async fn stop(mut self) {
        self.shutdown.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.send_replace(true);
    }
}
