//! A log sink the app installs (issue 16, "diagnosable in the field"): Edgewise's Rust `log`
//! records — level, target, message — go to a Kotlin or Swift [`LogSink`], which forwards them to
//! logcat (`LogcatSink` in the AAR) or the unified log (`OSLogSink` in the Swift package).
//!
//! The records are the ones the library already writes: sizes, timings, backends, ids and paths,
//! never prompt or generated text (STYLE.md 3). The HTTP stack's debug/trace records (which can
//! carry request bytes, `Authorization` included) are dropped whatever the level
//! (`router::cloud::log_allowed`). A sink that throws loses that record only; a record logged
//! while the sink runs on the same thread (the sink calling back into Edgewise) is dropped
//! instead of recursing.

use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Once, RwLock};

use crate::error::{EdgewiseError, EdgewiseResult};

/// How much to log, most severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    /// Nothing.
    Off,
    /// Failures.
    Error,
    /// Fallbacks and recoveries (a GPU that failed its self-test, a reset session).
    Warn,
    /// One line per load or trim.
    Info,
    /// Per generation and per file (timings, sizes).
    Debug,
    /// Everything.
    Trace,
}

impl From<LogLevel> for log::LevelFilter {
    fn from(v: LogLevel) -> Self {
        match v {
            LogLevel::Off => Self::Off,
            LogLevel::Error => Self::Error,
            LogLevel::Warn => Self::Warn,
            LogLevel::Info => Self::Info,
            LogLevel::Debug => Self::Debug,
            LogLevel::Trace => Self::Trace,
        }
    }
}

impl From<log::Level> for LogLevel {
    fn from(v: log::Level) -> Self {
        match v {
            log::Level::Error => Self::Error,
            log::Level::Warn => Self::Warn,
            log::Level::Info => Self::Info,
            log::Level::Debug => Self::Debug,
            log::Level::Trace => Self::Trace,
        }
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct LogRecord {
    /// Its level (never `Off`).
    pub level: LogLevel,
    /// The Rust module that wrote it (`edgewise_core::engine`, `wgpu_core::…`).
    pub target: String,
    /// The message.
    pub message: String,
}

/// Receives Edgewise's log records. Implemented in Kotlin or Swift; called on the thread that
/// logged (often the one running a generation), so keep it quick and thread-safe.
#[uniffi::export(foreign)]
pub trait LogSink: Send + Sync {
    /// One record. Throwing drops that record only.
    fn log(&self, record: LogRecord) -> Result<(), EdgewiseError>;
}

/// The process's `log` logger while a sink is installed.
struct Forwarder {
    sink: RwLock<Option<Arc<dyn LogSink>>>,
}

static FORWARDER: Forwarder = Forwarder { sink: RwLock::new(None) };
static INSTALL: Once = Once::new();

thread_local! {
    /// Set while this thread is inside the sink.
    static IN_SINK: Cell<bool> = const { Cell::new(false) };
}

impl log::Log for Forwarder {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        edgewise_core::router::cloud::log_allowed(metadata)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) || IN_SINK.with(Cell::get) {
            return;
        }
        let Some(sink) = self.sink.read().ok().and_then(|s| s.clone()) else { return };
        let r = LogRecord {
            level: record.level().into(),
            target: record.target().to_string(),
            message: record.args().to_string(),
        };
        IN_SINK.with(|f| f.set(true));
        // Neither an exception nor a panic in the host's sink may reach the code that logged.
        let _ = catch_unwind(AssertUnwindSafe(|| sink.log(r)));
        IN_SINK.with(|f| f.set(false));
    }

    fn flush(&self) {}
}

/// Sends Edgewise's log records at `level` and above to `sink` (replacing any earlier sink).
/// Call it once at start-up, e.g. `setLogSink(LogcatSink(), LogLevel.INFO)`. Fails with
/// `Internal` if something else in the process already installed a Rust `log` logger.
#[uniffi::export]
pub fn set_log_sink(sink: Arc<dyn LogSink>, level: LogLevel) -> EdgewiseResult<()> {
    let mut installed = Ok(());
    INSTALL.call_once(|| installed = log::set_logger(&FORWARDER).map_err(|e| e.to_string()));
    if let Err(e) = installed {
        return Err(EdgewiseError::Internal { reason: format!("cannot install the log sink: {e}") });
    }
    *FORWARDER.sink.write().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(sink);
    log::set_max_level(level.into());
    Ok(())
}

/// Changes the level of the installed sink (`Off` silences it).
#[uniffi::export]
pub fn set_log_level(level: LogLevel) -> EdgewiseResult<()> {
    log::set_max_level(level.into());
    Ok(())
}

/// Removes the sink: records are dropped from now on.
#[uniffi::export]
pub fn clear_log_sink() -> EdgewiseResult<()> {
    log::set_max_level(log::LevelFilter::Off);
    *FORWARDER.sink.write().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Collect(Mutex<Vec<LogRecord>>);
    impl LogSink for Collect {
        fn log(&self, record: LogRecord) -> Result<(), EdgewiseError> {
            // Logging from inside the sink is dropped, not recursed into.
            log::warn!("from inside the sink");
            self.0.lock().unwrap().push(record);
            Err(EdgewiseError::Callback { reason: "thrown by the host".into() })
        }
    }

    #[test]
    fn records_reach_the_sink_filtered_by_level_and_target() {
        let sink = Arc::new(Collect(Mutex::new(Vec::new())));
        set_log_sink(sink.clone(), LogLevel::Info).unwrap();
        log::info!(target: "edgewise_core::engine", "loaded in {} ms", 12);
        log::debug!(target: "edgewise_core::engine", "not at info");
        log::warn!(target: "ureq::unit", "warnings of the HTTP stack pass");
        set_log_level(LogLevel::Trace).unwrap();
        log::trace!(target: "ureq_proto::client", "Authorization: Bearer secret");
        log::debug!(target: "edgewise_core::session", "now at debug");
        clear_log_sink().unwrap();
        log::error!("after clear");
        let got = sink.0.lock().unwrap().clone();
        let want = [
            (LogLevel::Info, "edgewise_core::engine", "loaded in 12 ms"),
            (LogLevel::Warn, "ureq::unit", "warnings of the HTTP stack pass"),
            (LogLevel::Debug, "edgewise_core::session", "now at debug"),
        ];
        let got: Vec<_> = got.iter().map(|r| (r.level, r.target.as_str(), r.message.as_str())).collect();
        assert_eq!(got, want);
    }
}
