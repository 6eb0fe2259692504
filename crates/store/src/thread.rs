//! A thread that owns one store connection. Store clients are synchronous (the PostgreSQL one
//! runs its own runtime), so async callers hand it work instead of blocking an executor thread.

use std::sync::mpsc::{Sender, channel};

use tokio::sync::oneshot;

use crate::Store;

type Job = Box<dyn FnOnce(&mut dyn Store) + Send>;

/// The store thread has stopped (its connection is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store thread has stopped")]
pub struct Stopped;

#[derive(Clone)]
pub struct StoreThread {
    tx: Sender<Job>,
}

impl StoreThread {
    pub fn spawn(name: &str, mut store: Box<dyn Store>) -> StoreThread {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                for job in rx {
                    job(store.as_mut());
                }
            })
            .expect("spawn store thread");
        StoreThread { tx }
    }

    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |s: &mut dyn Store| drop(tx.send(f(s)))))
            .map_err(|_| Stopped)?;
        rx.await.map_err(|_| Stopped)
    }

    /// For callers on plain threads.
    pub fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> Result<T, Stopped> {
        let (tx, rx) = channel();
        self.tx
            .send(Box::new(move |s: &mut dyn Store| drop(tx.send(f(s)))))
            .map_err(|_| Stopped)?;
        rx.recv().map_err(|_| Stopped)
    }
}
