//! Memory pressure: what [`Engine::trim`](crate::engine::Engine::trim) hands back at each
//! [`TrimLevel`].
//!
//! Phones kill background apps that hold hundreds of MB, so an app forwards the system's signals
//! (Android `onTrimMemory`, iOS memory warnings) to `Engine::trim`. Everything freed is rebuilt on
//! the next use, so trimming never changes an answer:
//!
//! | level | frees | next use pays |
//! |---|---|---|
//! | [`TrimLevel::Background`] | the KV caches of idle sessions (their conversations stay) and the router's pooled sessions, handed back to the system (`malloc_trim`) | the next turn of a trimmed chat prefills its history again |
//! | [`TrimLevel::Low`] | + the tokenizer's word cache, the constraint compiler (constrained decoding's token trie, 54 MiB for a 262k vocabulary; a generation in flight keeps what it uses) and whatever else the allocator holds free | the next constrained request builds the token trie again (~1 s) |
//! | [`TrimLevel::Critical`] | + the model's weight pages (CPU backend: the memory-mapped GGUF file) | the next generation reads the weights from the file again (page cache or flash) |
//!
//! A session that is generating is never touched. On the GPU backend the weights live in device
//! buffers, which `Critical` does not free (the engine would have to be loaded again: close it).

use std::sync::{Mutex, PoisonError, Weak};

/// How much memory to hand back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TrimLevel {
    /// The UI is hidden (Android `TRIM_MEMORY_UI_HIDDEN`): idle sessions' KV caches, pooled
    /// router sessions.
    Background,
    /// Memory is running low: also the tokenizer cache and the constraint compiler (and
    /// whatever the allocator holds free).
    Low,
    /// The process may be killed next (Android `TRIM_MEMORY_BACKGROUND` and above, an iOS memory
    /// warning): also the model's weight pages.
    Critical,
}

/// What a trim handed back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// KV-cache bytes released (idle sessions and pooled router sessions).
    pub kv_cache_bytes: usize,
    /// Sessions whose cache was released or dropped.
    pub sessions: usize,
    /// Whether the model's weight pages were handed back (CPU backend, `Critical`).
    pub weights_released: bool,
}

impl std::ops::AddAssign for TrimReport {
    fn add_assign(&mut self, o: Self) {
        self.kv_cache_bytes += o.kv_cache_bytes;
        self.sessions += o.sessions;
        self.weights_released |= o.weights_released;
    }
}

/// Something holding memory the engine can ask back (a shared session, the router's pool).
pub(crate) trait Trimmable: Send + Sync {
    /// Frees what `level` allows, skipping anything in use.
    fn trim(&self, level: TrimLevel) -> TrimReport;
}

/// The engine's weak list of trimmable holders (dropped ones are pruned on each trim).
#[derive(Default)]
pub(crate) struct TrimRegistry {
    targets: Mutex<Vec<Weak<dyn Trimmable>>>,
}

impl TrimRegistry {
    pub(crate) fn register(&self, target: Weak<dyn Trimmable>) {
        let mut t = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
        t.retain(|w| w.strong_count() > 0);
        t.push(target);
    }

    /// Trims every live holder (outside the registry's lock, so a holder may register others).
    pub(crate) fn trim(&self, level: TrimLevel) -> TrimReport {
        let live: Vec<_> = {
            let mut t = self.targets.lock().unwrap_or_else(PoisonError::into_inner);
            t.retain(|w| w.strong_count() > 0);
            t.iter().filter_map(Weak::upgrade).collect()
        };
        let mut report = TrimReport::default();
        for target in live {
            report += target.trim(level);
        }
        report
    }
}

/// Resident set size of this process in bytes (Linux/Android: `/proc/self/status` `VmRSS`), for
/// tests and measurements; `None` elsewhere.
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    struct Holder(usize);
    impl Trimmable for Holder {
        fn trim(&self, level: TrimLevel) -> TrimReport {
            TrimReport { kv_cache_bytes: self.0, sessions: 1, weights_released: level == TrimLevel::Critical }
        }
    }

    #[test]
    fn registry_trims_live_holders_and_prunes_dropped_ones() {
        let reg = TrimRegistry::default();
        let a: Arc<dyn Trimmable> = Arc::new(Holder(10));
        let b: Arc<dyn Trimmable> = Arc::new(Holder(5));
        reg.register(Arc::downgrade(&a));
        reg.register(Arc::downgrade(&b));
        assert_eq!(
            reg.trim(TrimLevel::Background),
            TrimReport { kv_cache_bytes: 15, sessions: 2, weights_released: false }
        );
        drop(b);
        assert_eq!(
            reg.trim(TrimLevel::Critical),
            TrimReport { kv_cache_bytes: 10, sessions: 1, weights_released: true }
        );
        assert_eq!(reg.targets.lock().unwrap().len(), 1);
        assert!(TrimLevel::Background < TrimLevel::Low && TrimLevel::Low < TrimLevel::Critical);
    }
}
