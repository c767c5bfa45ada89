//! A persistent pool of compute threads: no thread is spawned per matrix product.
//!
//! The caller of [`ThreadPool::run`] takes part as thread 0; the workers wait for the next job by
//! spinning for a short while (decoding posts a job every few microseconds, and waking a parked
//! thread costs tens of microseconds) and then park on a condition variable, so an idle model
//! burns no CPU. Spinning threads start yielding after a few microseconds, so that on a machine
//! with more runnable threads than cores they do not hold a core a late thread needs.

use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN: Duration = Duration::from_micros(200);

/// Spins before a waiting thread starts yielding its core (a few microseconds).
const YIELD_AFTER: u32 = 4096;

type Job<'a> = &'a (dyn Fn(usize) + Sync);

struct Shared {
    /// Bumped once per job; workers wait for it to change.
    generation: AtomicU64,
    /// Points to the current `Job` (a thin pointer to the fat reference on the caller's stack).
    job: AtomicPtr<()>,
    /// Workers still running the current job.
    pending: AtomicUsize,
    /// Set when a worker's job panicked.
    panicked: AtomicBool,
    shutdown: AtomicBool,
    /// Workers parked on `wake`, and the lock that orders parking against new jobs.
    sleepers: Mutex<usize>,
    wake: Condvar,
}

/// The cores this process may run on (its CPU affinity and quota, not the machine's count), or
/// None where the platform does not say.
pub fn usable_cores() -> Option<usize> {
    std::thread::available_parallelism().ok().map(|n| n.get())
}

/// The threads to compute with when `requested` were asked for on `cores` usable cores, and a
/// warning when they are capped. The workers of one pass meet at a barrier after every matrix
/// product, so threads beyond the cores only wait for each other to be scheduled: on 2 cores,
/// 16 threads decoded about 50× slower and 1000 all but stopped. Such a count is capped to the
/// cores unless `forced`; `force_hint` says in the warning how to force it.
pub fn cap_threads(
    requested: usize,
    cores: Option<usize>,
    forced: bool,
    force_hint: &str,
) -> (usize, Option<String>) {
    match cores {
        Some(cores) if requested > cores && !forced => (
            cores,
            Some(format!(
                "warning: --threads {requested} is more than the {cores} cores this process may \
                 use, which only slows it down; using {cores} ({force_hint} keeps {requested})"
            )),
        ),
        _ => (requested, None),
    }
}

/// A fixed set of worker threads; see the module docs.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serializes `run` (the pool has one job slot).
    busy: Mutex<()>,
}

impl ThreadPool {
    /// A pool for `threads` participants in all: the caller and `threads - 1` workers.
    pub fn new(threads: usize) -> ThreadPool {
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: AtomicPtr::new(std::ptr::null_mut()),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            sleepers: Mutex::new(0),
            wake: Condvar::new(),
        });
        let workers = (1..threads.max(1))
            .map(|id| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("camelid-{id}"))
                    .spawn(move || worker(&s, id))
                    .expect("spawn a compute thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            busy: Mutex::new(()),
        }
    }

    /// Participants in a job: the caller plus the workers.
    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `job(i)` once for every participant `i` in `0..threads()`, the caller taking `i = 0`,
    /// and returns when all are done. A panic in any participant is raised here.
    pub fn run(&self, job: &(dyn Fn(usize) + Sync)) {
        let _guard = self.busy.lock().unwrap_or_else(|e| e.into_inner());
        if self.workers.is_empty() {
            job(0);
            return;
        }
        let s = &*self.shared;
        let job_ref: Job = job;
        s.job
            .store(&job_ref as *const Job as *mut (), Ordering::Relaxed);
        s.pending.store(self.workers.len(), Ordering::Relaxed);
        {
            // Under the lock, so a worker that is about to park sees the new generation.
            let sleepers = s.sleepers.lock().unwrap_or_else(|e| e.into_inner());
            s.generation.fetch_add(1, Ordering::Release);
            if *sleepers > 0 {
                s.wake.notify_all();
            }
        }
        let mine = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(0)));
        // The workers hold `job_ref` until `pending` reaches zero: wait for them even if our own
        // part panicked. After a short spin, yield: a worker that is late has usually lost its
        // core to another process, and spinning here would keep it from getting one back.
        let mut spins = 0u32;
        while s.pending.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins > YIELD_AFTER {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if let Err(p) = mine {
            std::panic::resume_unwind(p);
        }
        if s.panicked.swap(false, Ordering::Relaxed) {
            panic!("a compute thread panicked");
        }
    }
}

fn worker(s: &Shared, id: usize) {
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin, then park.
        let start = Instant::now();
        let mut spins = 0u32;
        loop {
            if s.generation.load(Ordering::Acquire) != seen {
                break;
            }
            if s.shutdown.load(Ordering::Relaxed) {
                return;
            }
            spins += 1;
            if spins > YIELD_AFTER {
                std::thread::yield_now();
            }
            if spins.is_multiple_of(64) && start.elapsed() > SPIN {
                let mut sleepers = s.sleepers.lock().unwrap_or_else(|e| e.into_inner());
                *sleepers += 1;
                while s.generation.load(Ordering::Acquire) == seen
                    && !s.shutdown.load(Ordering::Relaxed)
                {
                    sleepers = s.wake.wait(sleepers).unwrap_or_else(|e| e.into_inner());
                }
                *sleepers -= 1;
                break;
            }
            std::hint::spin_loop();
        }
        if s.shutdown.load(Ordering::Relaxed) {
            return;
        }
        seen = s.generation.load(Ordering::Acquire);
        // SAFETY: `run` stored a pointer to a live `Job` before bumping the generation (Release,
        // read above with Acquire) and keeps it alive until `pending` drops to zero below.
        let job = unsafe { *(s.job.load(Ordering::Relaxed) as *const Job) };
        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(id))).is_err() {
            s.panicked.store(true, Ordering::Relaxed);
        }
        s.pending.fetch_sub(1, Ordering::Release);
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        {
            let _sleepers = self
                .shared
                .sleepers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.shutdown.store(true, Ordering::Relaxed);
            self.shared.wake.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("threads", &self.threads())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_participant_runs_once_per_job_across_many_jobs_and_parking() {
        let pool = ThreadPool::new(3);
        let hits: Vec<AtomicUsize> = (0..3).map(|_| AtomicUsize::new(0)).collect();
        for round in 0..200 {
            pool.run(&|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            if round == 100 {
                // Long enough for the workers to park.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        for h in &hits {
            assert_eq!(h.load(Ordering::Relaxed), 200);
        }
    }

    #[test]
    fn a_panicking_job_is_reported_and_the_pool_stays_usable() {
        let pool = ThreadPool::new(2);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            pool.run(&|i| {
                if i == 1 {
                    panic!("worker fails");
                }
            })
        }));
        assert!(r.is_err());
        let n = AtomicUsize::new(0);
        pool.run(&|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }
}
