//! The crash-safe record log under both the vector index and the event store.
//!
//! A file is a sequence of records, each framed as
//! `magic (4 bytes) | payload length (u32 LE) | CRC-32 of payload (u32 LE) | payload`;
//! its first record is a header. Every change is one appended record, and a call returns only after
//! the record is written and `fdatasync`ed. On open the log is replayed:
//!
//! - a torn tail (a last record cut short, or a last record whose checksum fails, as a crash or
//!   power loss mid-write leaves it; or trailing zeros) is dropped and truncated away, with a warning;
//! - anything else that does not parse (another magic, a checksum failure with records after it,
//!   an oversized length) is [`RetailError::Corrupt`]: the caller rebuilds.
//!
//! Compaction writes the live state to `<path>.tmp`, syncs it, renames it over the log and syncs
//! the directory: a crash before the rename leaves the old log, after it the new one. A failed
//! append is truncated back so a later append never follows garbage.
//!
//! One process at a time: `<path>.lock` is locked exclusively (fs4) for as long as the log is open,
//! waiting up to [`LOCK_WAIT`] for a holder that is closing. Files are the owner's alone (0600,
//! directories 0700 on Unix) and a symbolic link at the path is refused.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Result, RetailError};

pub(crate) const FRAME_HEADER: usize = 12;
/// Largest record accepted; a larger length field is corruption.
pub(crate) const MAX_RECORD: usize = 64 * 1024 * 1024;
/// How long `open` waits for another holder of the lock to let go.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// Frames one payload.
pub(crate) fn frame(magic: [u8; 4], payload: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if payload.len() > MAX_RECORD {
        return Err(RetailError::Storage { reason: format!("record of {} bytes is too large", payload.len()) });
    }
    out.extend_from_slice(&magic);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The result of splitting a file into records.
pub(crate) struct Parsed<'a> {
    /// Each record's payload and its framed size.
    pub records: Vec<&'a [u8]>,
    /// Length of the valid prefix; bytes after it are a torn tail.
    pub valid: usize,
}

/// Splits `data` into records (see the module docs for torn tail vs corruption).
pub(crate) fn parse<'a>(magic: [u8; 4], data: &'a [u8], path: &Path) -> Result<Parsed<'a>> {
    let corrupt =
        |offset: usize, reason| RetailError::Corrupt { path: path.to_path_buf(), offset: offset as u64, reason };
    let mut records = Vec::new();
    let mut off = 0usize;
    while off < data.len() {
        let rest = &data[off..];
        if rest.iter().all(|&b| b == 0) {
            break; // zero-filled tail (a file extended but never written: power loss)
        }
        if rest.len() < FRAME_HEADER {
            let n = rest.len().min(4);
            if rest[..n] == magic[..n] {
                break; // a header cut short
            }
            return Err(corrupt(off, "bad record magic"));
        }
        if rest[0..4] != magic {
            return Err(corrupt(off, "bad record magic"));
        }
        let len = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let crc = u32::from_le_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if len > MAX_RECORD {
            return Err(corrupt(off, "record length out of range"));
        }
        let Some(payload) = rest.get(FRAME_HEADER..FRAME_HEADER + len) else {
            // Runs past the end: a torn last append, unless a valid record follows (then this
            // length field was damaged and the records after it are still committed).
            if has_valid_record(magic, &rest[1..]) {
                return Err(corrupt(off, "record length damaged"));
            }
            break;
        };
        if crc32fast::hash(payload) != crc {
            if FRAME_HEADER + len == rest.len() {
                break; // the last record, torn
            }
            return Err(corrupt(off, "record checksum mismatch"));
        }
        records.push(payload);
        off += FRAME_HEADER + len;
    }
    Ok(Parsed { records, valid: off })
}

/// Whether a complete record with a valid checksum starts anywhere in `data`.
fn has_valid_record(magic: [u8; 4], data: &[u8]) -> bool {
    let mut i = 0;
    while i + FRAME_HEADER <= data.len() {
        if data[i..i + 4] == magic {
            let h = &data[i..];
            let len = u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as usize;
            let crc = u32::from_le_bytes([h[8], h[9], h[10], h[11]]);
            if len <= MAX_RECORD {
                if let Some(p) = h.get(FRAME_HEADER..FRAME_HEADER + len) {
                    if crc32fast::hash(p) == crc {
                        return true;
                    }
                }
            }
        }
        i += 1;
    }
    false
}

/// An open log file: appends are synced; `len` is the length of its valid content.
pub(crate) struct Log {
    pub path: PathBuf,
    pub file: File,
    pub len: u64,
    /// The lock on `<path>.lock`, held while the log is open.
    _lock: File,
}

impl Log {
    /// Opens (creating if needed) the log at `path` and reads its bytes. The caller parses them and
    /// calls [`Log::truncate_to`] for a torn tail. Returns the log and the file's content.
    pub fn open(path: &Path) -> Result<(Self, Vec<u8>)> {
        let lock = lock(path)?;
        let _ = std::fs::remove_file(tmp_path(path)); // a compaction that crashed before its rename
        let existed = path.exists();
        let mut file = open_private(path, OpenOptions::new().read(true).append(true).create(true))?;
        if !existed {
            sync_dir(path);
        }
        let mut data = Vec::new();
        file.read_to_end(&mut data)?;
        let len = data.len() as u64;
        Ok((Self { path: path.to_path_buf(), file, len, _lock: lock }, data))
    }

    /// Drops a torn tail found by [`parse`].
    pub fn truncate_to(&mut self, valid: usize) -> Result<()> {
        if (valid as u64) < self.len {
            log::warn!(
                "retail: {}: dropping {} bytes of torn tail at offset {valid}",
                self.path.display(),
                self.len - valid as u64
            );
            self.file.set_len(valid as u64)?;
            self.file.sync_data()?;
            self.len = valid as u64;
        }
        Ok(())
    }

    /// Appends already framed records and syncs them; on failure truncates back.
    pub fn append(&mut self, framed: &[u8]) -> Result<()> {
        let res = self.file.write_all(framed).and_then(|_| self.file.sync_data());
        if let Err(e) = res {
            let _ = self.file.set_len(self.len);
            let _ = self.file.sync_data();
            return Err(e.into());
        }
        self.len += framed.len() as u64;
        Ok(())
    }

    /// Replaces the whole log with `framed` (header first) atomically: temp file, sync, rename,
    /// directory sync.
    pub fn replace(&mut self, framed: &[u8]) -> Result<()> {
        let tmp = tmp_path(&self.path);
        {
            let _ = std::fs::remove_file(&tmp);
            let mut f = open_private(&tmp, OpenOptions::new().write(true).create_new(true))?;
            f.write_all(framed)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        sync_dir(&self.path);
        self.file = open_private(&self.path, OpenOptions::new().read(true).append(true))?;
        self.len = framed.len() as u64;
        Ok(())
    }
}

/// Takes the exclusive lock on `<path>.lock`, waiting up to [`LOCK_WAIT`].
fn lock(path: &Path) -> Result<File> {
    let mut p = path.as_os_str().to_owned();
    p.push(".lock");
    let f = open_private(Path::new(&p), OpenOptions::new().create(true).truncate(false).write(true))?;
    let deadline = std::time::Instant::now() + LOCK_WAIT;
    loop {
        match fs4::FileExt::try_lock(&f) {
            Ok(()) => return Ok(f),
            Err(fs4::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(fs4::TryLockError::WouldBlock) => return Err(RetailError::Locked { path: path.to_path_buf() }),
            Err(fs4::TryLockError::Error(e)) => return Err(e.into()),
        }
    }
}

pub(crate) fn tmp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".tmp");
    PathBuf::from(p)
}

/// Makes a create/rename durable. Best effort: not every platform can open a directory.
pub(crate) fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Creates `dir` (and parents) owner-only.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)?;
    Ok(())
}

/// Opens `path` as an owner-only regular file, never through a symbolic link.
pub(crate) fn open_private(path: &Path, opts: &mut OpenOptions) -> Result<File> {
    if let Some(dir) = path.parent() {
        create_private_dir(dir)?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    }
    let file = opts.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return RetailError::Storage {
                reason: format!("{} is a symbolic link; refusing to follow it", path.display()),
            };
        }
        RetailError::Io(e)
    })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(RetailError::Storage { reason: format!("{} is not a regular file", path.display()) });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(file)
}

/// Little-endian byte writer/reader for record payloads.
pub(crate) struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    pub fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn f32(&mut self, v: f32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

/// Reads what [`Writer`] wrote; `None` when the payload is too short.
pub(crate) struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    pub fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    pub fn u32(&mut self) -> Option<u32> {
        self.take(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn f32(&mut self) -> Option<f32> {
        self.take(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    pub fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: [u8; 4] = *b"TST1";

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            frame(M, p, &mut out).unwrap();
        }
        out
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32fast::hash(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn torn_tail_vs_corruption() {
        let p = Path::new("/x");
        let full = framed(&[b"header", b"one", b"two"]);
        let last = full.len() - (FRAME_HEADER + 3);
        // Every cut inside the last record is a torn tail: two records survive.
        for cut in last..full.len() {
            let r = parse(M, &full[..cut], p).unwrap();
            assert_eq!((r.records.len(), r.valid), (2, last), "cut {cut}");
        }
        // A flipped bit in the last payload: torn (power loss can leave that).
        let mut b = full.clone();
        let n = b.len();
        b[n - 1] ^= 1;
        assert_eq!(parse(M, &b, p).unwrap().records.len(), 2);
        // The same flip in the middle record: corruption, with its offset.
        let mut b = full.clone();
        b[FRAME_HEADER + 6 + FRAME_HEADER] ^= 1;
        match parse(M, &b, p) {
            Err(RetailError::Corrupt { offset, .. }) => assert_eq!(offset as usize, FRAME_HEADER + 6),
            _ => panic!("expected Corrupt"),
        }
        // A damaged length field in the middle that points past the end is not a torn tail:
        // a valid record follows it.
        let mut b = full.clone();
        b[FRAME_HEADER + 6 + 5] = 0x40;
        assert!(matches!(parse(M, &b, p), Err(RetailError::Corrupt { .. })));
        // Not our file at all.
        assert!(matches!(parse(M, b"GIF89a........................", p), Err(RetailError::Corrupt { offset: 0, .. })));
        // Zero-filled tail.
        let mut z = full.clone();
        z.extend_from_slice(&[0; 100]);
        assert_eq!(parse(M, &z, p).unwrap().valid, full.len());
        // An oversized length field.
        let mut o = full.clone();
        o.extend_from_slice(&M);
        o.extend_from_slice(&u32::MAX.to_le_bytes());
        o.extend_from_slice(&[0; 8]);
        assert!(matches!(parse(M, &o, p), Err(RetailError::Corrupt { .. })));
    }
}
