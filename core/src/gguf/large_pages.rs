//! 2 MiB pages for the mapped model file (Linux).
//!
//! Decode reads every weight once per token (~250 MB for Gemma 3 270M), so it runs at the speed
//! a core streams the map. Mapped in 4 KiB pages that stream pays a TLB miss every 4 KiB; mapped
//! in 2 MiB pages it does not. Measured on this project's 2-core VM (Linux 6.18, ext4): a plain
//! read of the mapped file went from 8.7 to 12.3 GB/s per core, and decode from 63 to 83 tok/s.
//!
//! The kernel maps a file with 2 MiB entries only where its page cache holds 2 MiB folios, and
//! it allocates those on read-ahead into a mapping advised `MADV_HUGEPAGE`, on filesystems with
//! large folios (ext4 from Linux 6.16, xfs, btrfs, tmpfs). A file that is already cached in small
//! folios (just written or downloaded, or first read by another program) stays so until it is
//! evicted. So [`advise`]:
//! 1. advises the whole map `MADV_HUGEPAGE`;
//! 2. populates one 2 MiB-aligned window and reads in `/proc/self/smaps` whether it is mapped with
//!    2 MiB entries (`FilePmdMapped`) — if so, the cache already holds large folios: done;
//! 3. otherwise evicts that window alone from the page cache and populates it again: if it is now
//!    mapped in 2 MiB, the file was cached in small folios, so the whole file is evicted and the
//!    loads read it back in large folios (once: ~0.3 s for 253 MB here). If it still is not, this
//!    kernel or filesystem cannot (or another process holds the pages): nothing more is done.
//!
//! Eviction (`POSIX_FADV_DONTNEED`) drops only clean pages that no process maps, so it never
//! loses data nor takes pages from under another program. Every step is a hint: any failure is
//! logged at debug level and the map works as before. `EDGEWISE_LARGE_PAGES=0` skips it all.
//! Android kernels (up to 6.12) have no large folios for ext4/f2fs files, so it is Linux only.

use std::fs::File;

use memmap2::Mmap;

/// Set to `0` to leave the map in whatever pages the kernel gives it.
pub const LARGE_PAGES_ENV: &str = "EDGEWISE_LARGE_PAGES";

/// A PMD mapping's size on x86-64 and aarch64 with 4 KiB base pages.
#[cfg(target_os = "linux")]
const PMD: usize = 2 << 20;

/// What [`advise`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Not attempted: not Linux, turned off, or a file too small or a map not 2 MiB-aligned.
    Skipped,
    /// The probe window is mapped in 2 MiB pages.
    Large,
    /// The file was cached in small folios and has been evicted, to come back in large ones.
    Evicted,
    /// Still 4 KiB after evicting the probe window: the kernel or filesystem cannot.
    Unavailable,
}

/// Advises 2 MiB pages for `map` of `file` and evicts a small-folio cache of the file (see the
/// module docs). Call it before anything reads the map.
pub fn advise(map: &Mmap, file: &File) -> Outcome {
    if !enabled() {
        return Outcome::Skipped;
    }
    imp(map, file)
}

/// Whether large pages are wanted (not turned off by `EDGEWISE_LARGE_PAGES=0`).
pub fn enabled() -> bool {
    !std::env::var(LARGE_PAGES_ENV).is_ok_and(|v| v == "0")
}

#[cfg(not(target_os = "linux"))]
fn imp(_map: &Mmap, _file: &File) -> Outcome {
    Outcome::Skipped
}

#[cfg(target_os = "linux")]
fn imp(map: &Mmap, file: &File) -> Outcome {
    use memmap2::Advice;
    use std::os::fd::AsRawFd;

    let start = map.as_ptr() as usize;
    // The probe window: the map's second 2 MiB, which needs the map aligned like the file.
    if !start.is_multiple_of(PMD) || map.len() < 2 * PMD {
        return Outcome::Skipped;
    }
    if let Err(e) = map.advise(Advice::HugePage) {
        log::debug!("large pages: MADV_HUGEPAGE refused ({e})");
        return Outcome::Skipped;
    }
    let probe = || -> Option<bool> {
        map.advise_range(Advice::PopulateRead, PMD, PMD).ok()?;
        smaps_kib(start, "FilePmdMapped:").map(|kib| kib > 0)
    };
    let evict = |off: usize, len: usize| -> bool {
        let zapped = drop_pages(map, off, len);
        // SAFETY: a plain syscall on an open descriptor; it only drops clean, unmapped pages.
        let r = unsafe {
            libc::posix_fadvise(file.as_raw_fd(), off as libc::off_t, len as libc::off_t, libc::POSIX_FADV_DONTNEED)
        };
        zapped.is_ok() && r == 0
    };
    match probe() {
        None => return Outcome::Skipped,
        Some(true) => return Outcome::Large,
        Some(false) => {}
    }
    if !evict(PMD, PMD) || probe() != Some(true) {
        log::debug!("large pages: the model file stays in 4 KiB pages (kernel or filesystem without large folios)");
        return Outcome::Unavailable;
    }
    let t = std::time::Instant::now();
    let ok = evict(0, map.len());
    log::info!(
        "large pages: evicted the model file's small-page cache to read it back in 2 MiB pages ({ok}, {:.0?})",
        t.elapsed()
    );
    Outcome::Evicted
}

/// Hands back the resident pages of `len` bytes at `off` of `map` (`MADV_DONTNEED`; the kernel
/// rounds to whole pages). The one place this module and `GgufFile` drop pages of the map.
pub(crate) fn drop_pages(map: &Mmap, off: usize, len: usize) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        // SAFETY: an `Mmap` is a read-only file mapping that is never written, so DONTNEED only
        // drops page-table entries: any later read, through a borrowed slice too, faults the
        // file's unchanged bytes back in.
        unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, off, len) }
    }
    #[cfg(not(unix))]
    {
        let _ = (map, off, len);
        Ok(())
    }
}

/// A field in KiB (`"FilePmdMapped:"`, `"Rss:"`) of this process's mapping that starts at
/// `start`, from /proc/self/smaps.
#[cfg(target_os = "linux")]
pub(crate) fn smaps_kib(start: usize, field: &str) -> Option<u64> {
    use std::io::BufRead;
    let smaps = std::io::BufReader::new(File::open("/proc/self/smaps").ok()?);
    let header = format!("{start:x}-");
    let mut inside = false;
    for line in smaps.lines() {
        let line = line.ok()?;
        if line.starts_with(&header) {
            inside = true;
        } else if inside {
            if let Some(v) = line.strip_prefix(field) {
                return v.trim().trim_end_matches("kB").trim().parse().ok();
            }
            // The next mapping's header (`start-end perms …`): no such field here.
            if line
                .split_whitespace()
                .next()
                .is_some_and(|w| w.contains('-') && w.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
            {
                return None;
            }
        }
    }
    None
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_file_written_here_ends_up_in_large_pages_where_the_kernel_can() {
        // A 16 MiB file just written: cached in small folios (or still dirty, then not evictable).
        let dir = std::env::temp_dir().join(format!("edgewise-large-pages-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("w.bin");
        let mut f = File::create(&path).expect("create");
        let chunk: Vec<u8> = (0..1 << 20).map(|i| (i * 31 % 251) as u8).collect();
        for _ in 0..16 {
            f.write_all(&chunk).expect("write");
        }
        f.sync_all().expect("sync");
        drop(f);
        let file = File::open(&path).expect("open");
        // SAFETY: read-only, and the file is not modified while mapped.
        let map = unsafe { Mmap::map(&file) }.expect("map");
        let first = advise(&map, &file);
        // The bytes read back through the map are the file's, whatever was evicted.
        assert!(map.chunks(1 << 20).all(|c| c == &chunk[..]));
        let thp = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled").unwrap_or_default();
        eprintln!("first open: {first:?}; THP {thp:?}");
        if first == Outcome::Evicted || first == Outcome::Large {
            // Read back in large folios: a second map finds them at once.
            drop(map);
            // SAFETY: as above.
            let map = unsafe { Mmap::map(&file) }.expect("map");
            assert_eq!(advise(&map, &file), Outcome::Large);
        } else {
            // Where the kernel cannot, the outcome says so and nothing breaks.
            assert!(matches!(first, Outcome::Unavailable | Outcome::Skipped), "{first:?}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
