//! The spawner: the one thread that starts task processes.
//!
//! `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, not
//! the process. Runtime threads come and go (`block_in_place` hands a
//! worker's thread to the blocking pool, which retires idle threads after
//! a few seconds), and a task killed because some thread retired would look
//! like a crash. So tasks are forked from one thread that lives as long as
//! the process, and die only with it.
//!
//! A job runs to its end even if whoever submitted it stops waiting, so a
//! cancelled `run_task` never leaves a process without a watcher.

use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();

/// Runs `job` on the spawner thread, starting the thread on first use.
pub(crate) fn submit(job: impl FnOnce() + Send + 'static) -> io::Result<()> {
    let sender = match SPAWNER.get() {
        Some(sender) => sender,
        None => {
            let (sender, jobs) = mpsc::channel::<Job>();
            std::thread::Builder::new().name("berth-spawner".into()).spawn(move || {
                for job in jobs {
                    if panic::catch_unwind(AssertUnwindSafe(job)).is_err() {
                        tracing::error!("a task start panicked");
                    }
                }
            })?;
            // Two racing first calls start two threads; the loser's exits at once.
            SPAWNER.get_or_init(|| Mutex::new(sender))
        }
    };
    let sender = sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    sender.send(Box::new(job)).map_err(|_| io::Error::other("the spawner thread is gone"))
}
