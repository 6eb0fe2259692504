//! The in-memory wheel of durable timers. The store holds every timer; this only decides when to
//! submit its command. A timer fires at least once per process run until its command commits
//! (which deletes it in the same transaction), and its command is idempotent, so it takes effect once.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crossdock_model::{Event, Timestamp};

#[derive(Default)]
struct Wheel {
    heap: BinaryHeap<Reverse<(Timestamp, String)>>,
    /// The live timers; heap entries not found here (or with another due time) are stale.
    /// Boxed: growing the map then moves pointers, not commands (no pause when it doubles).
    live: HashMap<String, (Timestamp, Box<Event>)>,
    stopped: bool,
}

#[derive(Clone, Default)]
pub(crate) struct TimerHandle {
    inner: Arc<(Mutex<Wheel>, Condvar)>,
}

/// How long to wait before retrying a timer whose command could not be queued.
const RETRY_AFTER: Duration = Duration::from_millis(200);

impl TimerHandle {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, id: String, due_at: Timestamp, command: Event) {
        let (lock, cv) = &*self.inner;
        let mut w = lock.lock().expect("timer lock");
        // Only a new earliest deadline changes how long the wheel sleeps.
        let earliest = w
            .heap
            .peek()
            .is_none_or(|Reverse((head, _))| due_at < *head);
        w.heap.push(Reverse((due_at, id.clone())));
        w.live.insert(id, (due_at, Box::new(command)));
        if earliest {
            cv.notify_one();
        }
    }

    pub fn cancel(&self, id: &str) {
        let (lock, _) = &*self.inner;
        lock.lock().expect("timer lock").live.remove(id);
    }

    pub fn len(&self) -> usize {
        self.inner.0.lock().expect("timer lock").live.len()
    }

    pub fn stop(&self) {
        let (lock, cv) = &*self.inner;
        lock.lock().expect("timer lock").stopped = true;
        cv.notify_all();
    }

    /// Runs the wheel on its own thread; `fire` submits a due command and says whether it was queued.
    pub fn start(&self, fire: impl Fn(Event) -> bool + Send + 'static) {
        let inner = self.inner.clone();
        std::thread::Builder::new()
            .name("timers".into())
            .spawn(move || {
                let (lock, cv) = &*inner;
                let mut w = lock.lock().expect("timer lock");
                loop {
                    if w.stopped {
                        return;
                    }
                    let now = Timestamp::now();
                    let Some(Reverse((due, id))) = w.heap.peek().cloned() else {
                        w = cv.wait(w).expect("timer lock");
                        continue;
                    };
                    let live = w
                        .live
                        .get(&id)
                        .filter(|(d, _)| *d == due)
                        .map(|(_, e)| e.clone());
                    let Some(command) = live else {
                        w.heap.pop();
                        continue;
                    };
                    if due > now {
                        let wait =
                            Duration::from_micros((due.as_micros() - now.as_micros()) as u64);
                        w = cv.wait_timeout(w, wait).expect("timer lock").0;
                        continue;
                    }
                    w.heap.pop();
                    drop(w);
                    let queued = fire((*command).clone());
                    w = lock.lock().expect("timer lock");
                    if queued {
                        // Stays live until its commit cancels it; re-armed in case the commit fails.
                        let retry =
                            Timestamp::from_micros(Timestamp::now().as_micros() + 5_000_000);
                        if w.live.contains_key(&id) {
                            w.live.insert(id.clone(), (retry, command));
                            w.heap.push(Reverse((retry, id)));
                        }
                    } else {
                        let retry = Timestamp::from_micros(
                            now.as_micros() + RETRY_AFTER.as_micros() as i64,
                        );
                        w.heap.push(Reverse((retry, id.clone())));
                        w.live.insert(id, (retry, command));
                    }
                }
            })
            .expect("spawn timer thread");
    }
}
