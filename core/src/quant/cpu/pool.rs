//! The CPU thread pool of the kernels: persistent workers plus the calling thread, with a
//! fork/join that costs about a microsecond.
//!
//! A decode step runs ~130 small products (18 layers × 7, each 0.1–1 MB of weights, 5–50 µs),
//! so a hand-off must cost far less than the product. rayon's `par_iter` from a thread outside
//! its pool queues the job, puts the caller to sleep and wakes it afterwards (10–30 µs per
//! product measured here, and the caller does none of the work). This pool follows ggml's
//! threadpool instead: the caller is worker 0, the other `threads − 1` workers spin for a short
//! while after each job (so the next one starts at once) and then sleep on a condition
//! variable, and tasks are handed out through one atomic counter (dynamic balancing).
//!
//! Protocol (one word, `state` = epoch << 32 | OPEN << 31 | active workers):
//! the caller publishes the job, then opens a new epoch; a worker joins by incrementing `active`
//! while the epoch it saw is still open; the caller, once the tasks are exhausted, closes the
//! epoch and waits only for workers that joined (late workers see it closed and do nothing).
//! The job borrows the caller's stack, which is sound because the caller does not return (or
//! unwind) before `active` is back to 0 with the epoch closed.
//!
//! One job runs at a time; a call made while the pool is busy (another thread, or a task that
//! itself calls `for_each`) runs its tasks on the calling thread.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

const OPEN: u64 = 1 << 31;
const ACTIVE: u64 = OPEN - 1;

/// How long an idle worker polls for the next job before it sleeps. Decode issues a product
/// every few tens of microseconds, so workers stay awake through a token; between tokens
/// (sampling, the caller's own work) they go to sleep.
const SPIN: Duration = Duration::from_micros(300);

/// The job: a type-erased task function and the task count.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    tasks: usize,
}

struct Shared {
    state: AtomicU64,
    /// Written only by the caller holding `caller`, while the epoch is closed and no worker is
    /// active; read by workers after they joined an open epoch (acquire on the join).
    job: UnsafeCell<Job>,
    next: AtomicUsize,
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    caller: Mutex<()>,
}

// SAFETY: `job` is only written under the protocol described in the module docs (no reader
// exists while it is written), and the function it points to is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced while the caller keeps it alive.
unsafe impl Send for Shared {}

/// The pool: `workers` spawned threads (the caller makes `workers + 1`).
struct Pool {
    shared: &'static Shared,
    workers: usize,
}

static THREADS: OnceLock<usize> = OnceLock::new();
static NOP: fn(usize) = |_| {};
static POOL: OnceLock<Pool> = OnceLock::new();

/// Sets the number of threads (caller included) before the pool starts; returns the number in
/// effect (the first value set, or the default once the pool has started).
pub(crate) fn set_threads(n: usize) -> usize {
    *THREADS.get_or_init(|| n.max(1))
}

/// Threads working on a job, the caller included.
pub(crate) fn threads() -> usize {
    pool().workers + 1
}

fn pool() -> &'static Pool {
    POOL.get_or_init(|| {
        let n = *THREADS.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let shared: &'static Shared = Box::leak(Box::new(Shared {
            state: AtomicU64::new(0),
            job: UnsafeCell::new(Job { f: &NOP as &(dyn Fn(usize) + Sync), tasks: 0 }),
            next: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            caller: Mutex::new(()),
        }));
        let mut workers = 0;
        for i in 1..n {
            let spawned = std::thread::Builder::new().name(format!("edgewise-cpu-{i}")).spawn(move || worker(shared));
            match spawned {
                Ok(_) => workers += 1,
                Err(e) => {
                    log::warn!("cpu pool: could not start worker {i}: {e}; running with {} threads", workers + 1);
                    break;
                }
            }
        }
        log::debug!("cpu pool: {} threads", workers + 1);
        Pool { shared, workers }
    })
}

fn epoch(s: u64) -> u64 {
    s >> 32
}

/// Runs the tasks of the current job until none is left.
///
/// # Safety
/// The caller must have joined the open epoch whose job is in `sh.job` (or be the publisher).
unsafe fn drain(sh: &Shared) {
    // SAFETY: joined, so the job was published before the acquire that joined and stays alive
    // until this worker leaves (`active` decremented).
    let job = unsafe { *sh.job.get() };
    loop {
        let i = sh.next.fetch_add(1, Ordering::Relaxed);
        if i >= job.tasks {
            break;
        }
        // SAFETY: as above; the function is `Sync`.
        unsafe { (*job.f)(i) };
    }
}

fn worker(sh: &'static Shared) {
    let mut seen = epoch(sh.state.load(Ordering::Acquire));
    loop {
        let mut s = wait(sh, seen);
        seen = epoch(s);
        // Join while this epoch is open.
        let joined = loop {
            if epoch(s) != seen || s & OPEN == 0 {
                break false;
            }
            match sh.state.compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed) {
                Ok(_) => break true,
                Err(now) => s = now,
            }
        };
        if joined {
            // A panic in a task must not leave `active` raised (the caller would wait forever).
            // SAFETY: joined above.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| unsafe { drain(sh) }));
            sh.state.fetch_sub(1, Ordering::Release);
            if r.is_err() {
                log::error!("cpu pool: a task panicked");
            }
        }
    }
}

/// Waits (spinning, then sleeping) for an epoch other than `seen`; returns the state.
fn wait(sh: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let s = sh.state.load(Ordering::Acquire);
        if epoch(s) != seen {
            return s;
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) {
            if start.elapsed() > SPIN {
                break;
            }
            // Let another runnable thread of this core (burn's pool, the caller) go first.
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    let mut g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
    sh.sleepers.fetch_add(1, Ordering::SeqCst);
    loop {
        let s = sh.state.load(Ordering::SeqCst);
        if epoch(s) != seen {
            sh.sleepers.fetch_sub(1, Ordering::SeqCst);
            return s;
        }
        g = sh.wake.wait(g).unwrap_or_else(|e| e.into_inner());
    }
}

/// Closes the open epoch and waits for the workers that joined it, also when the caller's own
/// tasks unwind.
struct Close<'a>(&'a Shared);

impl Drop for Close<'_> {
    fn drop(&mut self) {
        let sh = self.0;
        sh.state.fetch_and(!OPEN, Ordering::AcqRel);
        let mut spins = 0u32;
        while sh.state.load(Ordering::Acquire) & ACTIVE != 0 {
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(1024) {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }
}

/// Runs `f(i)` for every `i < tasks` on the pool's threads (the caller included) and returns
/// when all have finished. Tasks are taken in increasing order, one at a time.
pub(crate) fn for_each(tasks: usize, f: &(dyn Fn(usize) + Sync)) {
    let serial = || (0..tasks).for_each(f);
    if tasks <= 1 {
        return serial();
    }
    let p = pool();
    if p.workers == 0 {
        return serial();
    }
    let sh = p.shared;
    let Ok(_busy) = sh.caller.try_lock() else {
        return serial();
    };
    // SAFETY: only the lifetime is erased; `Close` below keeps the caller here until no worker
    // can still reach `f`.
    let f_static: *const (dyn Fn(usize) + Sync) =
        unsafe { std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f) };
    // SAFETY: we hold `caller`, and the previous epoch was closed with no active worker (its
    // `Close` returned), so no worker reads `job` now.
    unsafe { *sh.job.get() = Job { f: f_static, tasks } };
    sh.next.store(0, Ordering::Relaxed);
    let s = sh.state.load(Ordering::Relaxed);
    sh.state.store(((epoch(s) + 1) << 32) | OPEN, Ordering::SeqCst);
    if sh.sleepers.load(Ordering::SeqCst) > 0 {
        let _g = sh.lock.lock().unwrap_or_else(|e| e.into_inner());
        sh.wake.notify_all();
    }
    let _close = Close(sh);
    // SAFETY: we published the job.
    unsafe { drain(sh) };
}

/// A raw pointer that tasks share to write disjoint parts of one buffer.
#[derive(Clone, Copy)]
pub(crate) struct SyncPtr<T>(pub(crate) *mut T);
// SAFETY: users write disjoint elements only (each documents why), and the buffer outlives
// the `for_each` call.
unsafe impl<T> Send for SyncPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SyncPtr<T> {}

impl<T> SyncPtr<T> {
    /// The pointer (a method, so closures capture the whole wrapper).
    pub(crate) fn get(self) -> *mut T {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_task_runs_once() {
        for tasks in [0, 1, 2, 3, 17, 1000] {
            let hits: Vec<AtomicU32> = (0..tasks).map(|_| AtomicU32::new(0)).collect();
            for_each(tasks, &|i| {
                hits[i].fetch_add(1, Ordering::Relaxed);
            });
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{tasks} tasks");
        }
    }

    #[test]
    fn nested_and_concurrent_calls_complete() {
        let total = AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..3 {
                s.spawn(|| {
                    for _ in 0..50 {
                        for_each(8, &|_| {
                            for_each(4, &|_| {
                                total.fetch_add(1, Ordering::Relaxed);
                            });
                        });
                    }
                });
            }
        });
        assert_eq!(total.load(Ordering::Relaxed), 3 * 50 * 8 * 4);
    }
}
