//! A thread that owns the engine's read-side store connection. Store clients are synchronous (the
//! PostgreSQL one runs its own runtime), so async callers hand it work instead of blocking an
//! executor thread.

use std::sync::mpsc::{Sender, channel};

use crossdock_store::Store;
use tokio::sync::oneshot;

use crate::EngineError;

type Job = Box<dyn FnOnce(&mut dyn Store) + Send>;

pub(crate) struct Reader {
    tx: Sender<Job>,
}

impl Reader {
    pub fn spawn(mut store: Box<dyn Store>) -> Reader {
        let (tx, rx) = channel::<Job>();
        std::thread::Builder::new()
            .name("store-reader".into())
            .spawn(move || {
                for job in rx {
                    job(store.as_mut());
                }
            })
            .expect("spawn store reader");
        Reader { tx }
    }

    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Box::new(move |s: &mut dyn Store| drop(tx.send(f(s)))))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)
    }

    /// For callers on plain threads (the timer wheel).
    pub fn call_blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> T + Send + 'static,
    ) -> Result<T, EngineError> {
        let (tx, rx) = channel();
        self.tx
            .send(Box::new(move |s: &mut dyn Store| drop(tx.send(f(s)))))
            .map_err(|_| EngineError::Stopped)?;
        rx.recv().map_err(|_| EngineError::Stopped)
    }
}
