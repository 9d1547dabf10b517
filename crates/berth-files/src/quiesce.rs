//! The quiesce gate: holds the volume's writes while a consistent snapshot of
//! it is taken (`POST /v1/quiesce` … `POST /v1/resume`, as a Velero pre/post
//! hook would call them).
//!
//! A volume is *quiesced* when no write (upload or delete) is running on it,
//! every write that ran has committed or aborted, the volume has been flushed
//! to disk, and new writes wait — they are held, not refused — until resume,
//! or until the quiesce's own timeout passes (so a snapshot job that dies
//! between its hooks cannot stop the service's writes for good). Reads never
//! pass through the gate.
//!
//! The gate is a fair [`RwLock`]: every write holds a shared [`WriteSlot`]
//! for as long as it touches the volume, and quiesce takes the lock
//! exclusively. Tokio's lock is first-in, first-out, so once quiesce asks for
//! it, writes that arrive later queue behind it while those ahead finish.

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::{Mutex, OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Writes are held on this gate; see the module documentation.
pub struct Gate {
    inner: Arc<Inner>,
}

struct Inner {
    lock: Arc<RwLock<()>>,
    /// Writes holding a slot now.
    in_flight: AtomicUsize,
    /// Slots ever handed out; the difference across a quiesce's wait counts
    /// the writes that were queued ahead of it.
    entered: AtomicU64,
    /// The exclusive hold while quiesced. Quiesce keeps this mutex while it
    /// waits, so concurrent quiesces and resumes happen one after another.
    held: Mutex<Option<Held>>,
    /// Tells a timer whether the hold it was armed for is still the current one.
    generation: AtomicU64,
    gauge: Gauge,
}

struct Held {
    _guard: OwnedRwLockWriteGuard<()>,
    timer: JoinHandle<()>,
    generation: u64,
}

/// Permission for one write to touch the volume; quiesce waits until every
/// slot is dropped. Keep it with the work (into `spawn_blocking` closures
/// too), so a cancelled request cannot leave a write running unseen.
pub struct WriteSlot {
    _guard: OwnedRwLockReadGuard<()>,
    inner: Arc<Inner>,
}

impl Drop for WriteSlot {
    fn drop(&mut self) {
        self.inner.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A successful quiesce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quiesced {
    /// Writes this quiesce waited for (0 when it only restarted the timer).
    pub in_flight_waited: u64,
}

/// Why a quiesce did not take hold; the gate is open again in every case.
#[derive(Debug, thiserror::Error)]
pub enum QuiesceError {
    #[error("in-flight writes did not finish within {timeout_ms} ms ({still} still running); not quiesced, writes continue — retry, or raise timeout_ms")]
    InFlight { timeout_ms: u128, still: usize },
    #[error("flushing the volume to disk did not finish within {timeout_ms} ms; not quiesced, writes continue")]
    FlushTimeout { timeout_ms: u128 },
    #[error("could not flush the volume to disk: {0}; not quiesced, writes continue")]
    Flush(#[source] io::Error),
}

impl Gate {
    /// An open gate; `gauge` is set to 1 while quiesced.
    pub fn new(gauge: Gauge) -> Self {
        gauge.set(0);
        Self {
            inner: Arc::new(Inner {
                lock: Arc::new(RwLock::new(())),
                in_flight: AtomicUsize::new(0),
                entered: AtomicU64::new(0),
                held: Mutex::new(None),
                generation: AtomicU64::new(0),
                gauge,
            }),
        }
    }

    /// Waits while the volume is quiesced (or a quiesce is waiting), then
    /// lets one write in.
    pub async fn enter(&self) -> WriteSlot {
        let guard = Arc::clone(&self.inner.lock).read_owned().await;
        self.inner.entered.fetch_add(1, Ordering::AcqRel);
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        WriteSlot { _guard: guard, inner: Arc::clone(&self.inner) }
    }

    /// A shared hold for the health check's write probe, or `None` while
    /// quiesced or while a quiesce waits: the probe must neither write to a
    /// quiesced volume nor wait (a waiting health check would fail).
    pub fn try_probe(&self) -> Option<OwnedRwLockReadGuard<()>> {
        Arc::clone(&self.inner.lock).try_read_owned().ok()
    }

    /// Holds new writes, waits for those in flight, runs `flush` (blocking,
    /// off the async workers) and stays quiesced until [`Gate::resume`] or
    /// until `timeout` has passed after this returns. Already quiesced, it
    /// only restarts that timer. Waiting and flushing together get `timeout`
    /// too; past it, the gate opens again and an error says which did not end.
    pub async fn quiesce(
        &self,
        timeout: Duration,
        flush: impl FnOnce() -> io::Result<()> + Send + 'static,
    ) -> Result<Quiesced, QuiesceError> {
        let inner = &self.inner;
        let mut held = inner.held.lock().await;
        if let Some(current) = held.as_mut() {
            current.timer.abort();
            current.generation = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
            current.timer = arm(inner, current.generation, timeout);
            tracing::info!(timeout = ?timeout, "quiesce repeated; auto-resume timer restarted");
            return Ok(Quiesced { in_flight_waited: 0 });
        }
        let deadline = Instant::now() + timeout;
        let in_flight = inner.in_flight.load(Ordering::Acquire) as u64;
        let entered = inner.entered.load(Ordering::Acquire);
        // Dropping this future on timeout leaves the lock's queue, which lets
        // the writes held behind it in again.
        let guard = match tokio::time::timeout_at(deadline, Arc::clone(&inner.lock).write_owned()).await {
            Ok(guard) => guard,
            Err(_) => {
                let still = inner.in_flight.load(Ordering::Acquire);
                tracing::warn!(timeout = ?timeout, still, "quiesce gave up: in-flight writes did not finish");
                return Err(QuiesceError::InFlight { timeout_ms: timeout.as_millis(), still });
            }
        };
        // Writes queued ahead of the lock request were let in before it.
        let in_flight_waited = in_flight + (inner.entered.load(Ordering::Acquire) - entered);
        // Commits already fsync their file and the folder; this flush is for
        // whatever else reached the filesystem (deletes, metadata), so that a
        // block-level snapshot taken now finds everything on disk. If the
        // request is cancelled meanwhile, `guard` is dropped and the gate opens.
        match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(flush)).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(QuiesceError::Flush(e)),
            Ok(Err(e)) => return Err(QuiesceError::Flush(io::Error::other(e.to_string()))),
            Err(_) => return Err(QuiesceError::FlushTimeout { timeout_ms: timeout.as_millis() }),
        }
        let generation = inner.generation.fetch_add(1, Ordering::AcqRel) + 1;
        *held = Some(Held { _guard: guard, timer: arm(inner, generation, timeout), generation });
        inner.gauge.set(1);
        tracing::info!(timeout = ?timeout, in_flight_waited, "quiesced: writes held");
        Ok(Quiesced { in_flight_waited })
    }

    /// Lets held writes in; `false` when the volume was not quiesced.
    pub async fn resume(&self) -> bool {
        let mut held = self.inner.held.lock().await;
        let Some(current) = held.take() else {
            return false;
        };
        current.timer.abort();
        drop(current);
        self.inner.gauge.set(0);
        tracing::info!("resumed: writes continue");
        true
    }
}

/// Starts the timer that resumes on its own `after` from now, unless the
/// hold it was armed for has ended or been renewed by then.
fn arm(inner: &Arc<Inner>, generation: u64, after: Duration) -> JoinHandle<()> {
    // Weak, so a pending timer does not keep a dropped gate alive.
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        let Some(inner) = weak.upgrade() else {
            return;
        };
        let mut held = inner.held.lock().await;
        if held.as_ref().is_some_and(|h| h.generation == generation) {
            // Taken out rather than dropped in place: dropping `Held` would
            // drop this task's own handle, which is harmless but confusing.
            let expired = held.take();
            inner.gauge.set(0);
            tracing::warn!(timeout = ?after, "no resume arrived within the quiesce timeout; writes resumed on their own");
            drop(held);
            drop(expired);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate() -> Gate {
        Gate::new(Gauge::default())
    }

    #[tokio::test]
    async fn quiesce_waits_for_slots_and_holds_new_ones() {
        let gate = Arc::new(gate());
        let slot = gate.enter().await;
        let g = Arc::clone(&gate);
        let quiesce = tokio::spawn(async move { g.quiesce(Duration::from_secs(30), || Ok(())).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!quiesce.is_finished(), "quiesce must wait for the slot in flight");
        let g = Arc::clone(&gate);
        let later = tokio::spawn(async move { drop(g.enter().await) });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!later.is_finished(), "a write after quiesce must wait");
        drop(slot);
        assert_eq!(quiesce.await.unwrap().unwrap(), Quiesced { in_flight_waited: 1 });
        assert!(gate.try_probe().is_none());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!later.is_finished(), "a write must wait while quiesced");
        assert!(gate.resume().await);
        later.await.unwrap();
        assert!(!gate.resume().await);
        assert!(gate.try_probe().is_some());
    }

    #[tokio::test]
    async fn timeout_while_waiting_opens_the_gate() {
        let gate = gate();
        let slot = gate.enter().await;
        let err = gate.quiesce(Duration::from_millis(50), || Ok(())).await.unwrap_err();
        assert!(matches!(err, QuiesceError::InFlight { still: 1, .. }), "{err}");
        drop(gate.enter().await);
        drop(slot);
        assert!(!gate.resume().await);
    }

    #[tokio::test]
    async fn failed_flush_opens_the_gate() {
        let gate = gate();
        let err = gate.quiesce(Duration::from_secs(5), || Err(io::Error::other("disk gone"))).await.unwrap_err();
        assert!(err.to_string().contains("disk gone"), "{err}");
        drop(gate.enter().await);
        assert!(!gate.resume().await);
    }

    #[tokio::test]
    async fn repeated_quiesce_restarts_the_timer() {
        let gate = gate();
        gate.quiesce(Duration::from_millis(200), || Ok(())).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(gate.quiesce(Duration::from_secs(30), || Ok(())).await.unwrap().in_flight_waited, 0);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert!(gate.try_probe().is_none(), "the first timer must not end the renewed hold");
        assert!(gate.resume().await);
        assert!(gate.try_probe().is_some());
    }

    #[tokio::test]
    async fn the_timer_resumes_on_its_own() {
        let gate = gate();
        gate.quiesce(Duration::from_millis(100), || Ok(())).await.unwrap();
        let entered = tokio::time::timeout(Duration::from_secs(10), gate.enter()).await;
        assert!(entered.is_ok(), "writes resume without a resume call");
        drop(entered);
        assert!(!gate.resume().await);
    }
}
