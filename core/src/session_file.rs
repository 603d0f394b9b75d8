//! Session files: a conversation and its KV cache on disk, so a chat survives the app being killed
//! and continues without prefilling its history again.
//!
//! ```no_run
//! # use edgewise_core::{engine::{Engine, EngineConfig}, session::{GenerationParams, SessionConfig}};
//! let engine = Engine::load("gemma-3-270m-q4_k_m.gguf", EngineConfig::default())?;
//! let mut s = engine.new_session(SessionConfig::default())?;
//! s.chat("Name three rivers.", &GenerationParams::greedy(64), &mut |_| true)?;
//! s.save("chat.ewsession")?;                           // crash-safe: temp file, fsync, rename
//! let mut resumed = engine.restore_session("chat.ewsession")?; // no prefill: the cache is restored
//! resumed.chat("And the longest?", &GenerationParams::greedy(64), &mut |_| true)?;
//! # Ok::<(), edgewise_core::Error>(())
//! ```
//!
//! # Format (version 1)
//!
//! | bytes | what |
//! |---|---|
//! | 8 | magic `EWSESSN\0` |
//! | 4 | format version, u32 little-endian ([`SESSION_FILE_VERSION`]) |
//! | 4 | header length `H`, u32 LE (at most [`MAX_HEADER_BYTES`]) |
//! | `H` | header, JSON: model id, session config, history, cached token ids, KV geometry |
//! | … | KV rows ([`KvSnapshot`]): per layer, per held position, key then value, f16 (written on the CPU) or f32 (GPU), LE |
//! | … | hybrid models only (the header's `recurrent`): the recurrent state ([`RecurrentSnapshot`]), per recurrent layer its conv values then its state values, f32 LE; then each turn-boundary checkpoint's layers the same way |
//! | 32 | SHA-256 of every byte before it |
//!
//! Everything is validated before it is used: the size against [`MAX_SESSION_FILE_BYTES`], the
//! checksum, the magic and version, the model id (the engine's, see [`model_identity`]), the
//! geometry against the engine's cache layout, the KV byte count against that geometry, and a
//! hybrid model's recurrent state and checkpoints against its layers and the cached tokens. Any
//! failure is a typed error ([`Error::SessionFile`], [`Error::SessionFileVersion`],
//! [`Error::SessionModelMismatch`]) and no session is created. The KV rows are backend-independent
//! (a file written on the GPU restores on the CPU and back). Error messages and logs carry sizes and
//! ids only, never conversation text (the file itself holds it: store it in app-private storage).

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::kv_cache::{KvDtype, KvSnapshot, RecurrentLayer, RecurrentSnapshot};
use crate::session::SessionConfig;
use crate::tokenizer::ChatMessage;
use crate::weights::{WeightId, WeightSource};
use crate::{Error, Result};

/// The format version this build writes and reads.
pub const SESSION_FILE_VERSION: u32 = 1;
/// Largest session file read (a 32k-token context of Gemma 3 270M in f32 is ~230 MB).
pub const MAX_SESSION_FILE_BYTES: u64 = 512 << 20;
/// Largest JSON header (history, token ids, config).
pub const MAX_HEADER_BYTES: u32 = 32 << 20;

const MAGIC: &[u8; 8] = b"EWSESSN\0";
const PREFIX: usize = 16;
const DIGEST: usize = 32;

/// The JSON header of a session file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Header {
    /// [`model_identity`] of the engine that wrote it.
    pub model_id: String,
    /// `general.architecture`.
    pub architecture: String,
    /// The session's settings (the cache geometry follows from them).
    pub config: SessionConfig,
    /// The conversation.
    pub history: Vec<ChatMessage>,
    /// The token ids held by the KV cache.
    pub cached: Vec<u32>,
    /// The KV rows that follow the header.
    pub kv: KvHeader,
    /// A hybrid model's recurrent state, after the KV rows (absent for a plain transformer, and
    /// in files written before hybrid models could be saved).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recurrent: Option<RecurrentHeader>,
}

/// The shape of the recurrent state that follows the KV rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct RecurrentHeader {
    /// `[conv values, state values]` per recurrent layer.
    pub layers: Vec<[usize; 2]>,
    /// Token counts of the checkpoints that follow the current state (ascending).
    pub checkpoints: Vec<usize>,
}

impl RecurrentHeader {
    pub(crate) fn of(r: &RecurrentSnapshot) -> Self {
        Self {
            layers: r.shapes().iter().map(|&(c, s)| [c, s]).collect(),
            checkpoints: r.checkpoints.iter().map(|(p, _)| *p).collect(),
        }
    }

    /// Bytes of one set of layers, and of the whole section (`None` on overflow).
    fn bytes(&self) -> Option<(usize, usize)> {
        let one = self.layers.iter().try_fold(0usize, |a, [c, s]| a.checked_add(c.checked_add(*s)?.checked_mul(4)?))?;
        Some((one, one.checked_mul(self.checkpoints.len().checked_add(1)?)?))
    }
}

/// The geometry of the KV rows, checked against the restoring engine's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct KvHeader {
    pub dtype: KvDtype,
    pub len: usize,
    pub layer_windows: Vec<Option<usize>>,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// `[lo, hi)` positions held by the global and the sliding-window ring.
    pub held: [[usize; 2]; 2],
}

fn bad(reason: impl Into<String>) -> Error {
    Error::SessionFile { reason: reason.into() }
}

/// The model's identity recorded in session files: SHA-256 over the architecture and, for every weight the model reads (in a fixed order) its type, shape and size and 64
/// bytes each from the start, middle and end of its data. It reads ~50 KB, so it costs
/// milliseconds at load, and it tells apart any two different checkpoints in practice (another
/// quantization changes types and sizes, a fine-tune changes every tensor's bytes); it is not a
/// hash of the whole file.
pub fn model_identity(architecture: &str, weights: &dyn WeightSource) -> String {
    let mut h = Sha256::new();
    h.update(b"edgewise-model-id-v1\0");
    h.update(architecture.as_bytes());
    let mut feed = |id: WeightId| {
        let Ok(w) = weights.raw(id) else {
            h.update([0u8]);
            return;
        };
        h.update([1u8]);
        h.update(format!("{:?}", w.ty).as_bytes());
        for n in [w.rows, w.cols, w.bytes.len()] {
            h.update((n as u64).to_le_bytes());
        }
        let len = w.bytes.len();
        for at in [0, len / 2, len.saturating_sub(64)] {
            h.update(&w.bytes[at.min(len)..(at + 64).min(len)]);
        }
    };
    for id in [WeightId::TokenEmbedding, WeightId::OutputNorm, WeightId::Output] {
        feed(id);
    }
    for layer in 0..4096 {
        // A hybrid model's recurrent layers have no `attn_q` (every layer has `attn_norm`; for
        // the plain transformers both are present on the same layers, so their ids are unchanged).
        if !weights.has(WeightId::AttnQ { layer }) && !weights.has(WeightId::AttnNorm { layer }) {
            break;
        }
        if architecture == "qwen35" {
            for name in ["attn_qkv.weight", "ssm_out.weight"] {
                feed(WeightId::Block { layer, name });
            }
        }
        use WeightId::*;
        for id in [
            AttnNorm { layer },
            AttnQ { layer },
            AttnK { layer },
            AttnV { layer },
            AttnOutput { layer },
            AttnQNorm { layer },
            AttnKNorm { layer },
            AttnQBias { layer },
            AttnKBias { layer },
            AttnVBias { layer },
            PostAttnNorm { layer },
            FfnNorm { layer },
            FfnGate { layer },
            FfnUp { layer },
            FfnDown { layer },
            PostFfnNorm { layer },
        ] {
            feed(id);
        }
    }
    hex::encode(h.finalize())
}

/// A short, loggable prefix of a model id.
pub(crate) fn short_id(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Serializes `header`, `kv` and (a hybrid model's) `recurrent` state into the file format (in
/// memory). `header.recurrent` must describe `recurrent`.
pub(crate) fn encode(header: &Header, kv: &KvSnapshot, recurrent: Option<&RecurrentSnapshot>) -> Result<Vec<u8>> {
    if header.recurrent.as_ref() != recurrent.map(RecurrentHeader::of).as_ref() {
        return Err(bad("recurrent header does not describe the state"));
    }
    let json = serde_json::to_vec(header).map_err(|e| bad(format!("header: {e}")))?;
    let hlen =
        u32::try_from(json.len()).ok().filter(|&n| n <= MAX_HEADER_BYTES).ok_or_else(|| bad("header too large"))?;
    let mut out = Vec::with_capacity(PREFIX + json.len() + kv.data.len() + DIGEST);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&SESSION_FILE_VERSION.to_le_bytes());
    out.extend_from_slice(&hlen.to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&kv.data);
    if let Some(r) = recurrent {
        for layers in std::iter::once(&r.layers).chain(r.checkpoints.iter().map(|(_, l)| l)) {
            for l in layers {
                for v in l.conv.iter().chain(&l.state) {
                    out.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    if out.len() as u64 + DIGEST as u64 > MAX_SESSION_FILE_BYTES {
        return Err(bad(format!("{} bytes is over the {MAX_SESSION_FILE_BYTES}-byte limit", out.len())));
    }
    let digest = Sha256::digest(&out);
    out.extend_from_slice(&digest);
    Ok(out)
}

/// Parses and checks a whole file's bytes: size, checksum, magic, version, header. Returns the
/// header, the KV rows (the bytes after the header, without the digest and the recurrent
/// section) and a hybrid model's recurrent state.
pub(crate) fn decode(mut bytes: Vec<u8>) -> Result<(Header, KvSnapshot, Option<RecurrentSnapshot>)> {
    if bytes.len() < PREFIX + DIGEST {
        return Err(bad(format!("{} bytes is too short (truncated?)", bytes.len())));
    }
    // Magic and version first, so an old or foreign file gets the precise error rather than a
    // checksum complaint.
    if &bytes[..8] != MAGIC {
        return Err(bad("not an Edgewise session file (bad magic)"));
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != SESSION_FILE_VERSION {
        return Err(Error::SessionFileVersion { found: version, supported: SESSION_FILE_VERSION });
    }
    let body = bytes.len() - DIGEST;
    if Sha256::digest(&bytes[..body]).as_slice() != &bytes[body..] {
        return Err(bad("checksum mismatch (damaged or truncated)"));
    }
    let hlen = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    if hlen > MAX_HEADER_BYTES || PREFIX + hlen as usize > body {
        return Err(bad(format!("header length {hlen} does not fit the file")));
    }
    let kv_at = PREFIX + hlen as usize;
    let header: Header = serde_json::from_slice(&bytes[PREFIX..kv_at]).map_err(|e| bad(format!("header: {e}")))?;
    let recurrent = match &header.recurrent {
        None => None,
        Some(rh) => {
            let (one, total) = rh.bytes().ok_or_else(|| bad("recurrent state size overflows"))?;
            if total > body - kv_at {
                return Err(bad(format!("recurrent state of {total} bytes does not fit the file")));
            }
            let tail = &bytes[body - total..body];
            let read = |set: &[u8]| -> Vec<RecurrentLayer> {
                let mut at = 0;
                let mut floats = |n: usize| {
                    let v: Vec<f32> = set[at..at + 4 * n]
                        .chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect();
                    at += 4 * n;
                    v
                };
                rh.layers.iter().map(|&[c, s]| RecurrentLayer { conv: floats(c), state: floats(s) }).collect()
            };
            let mut sets = tail.chunks_exact(one.max(1));
            let layers = if one == 0 { Vec::new() } else { sets.next().map(read).unwrap_or_default() };
            let checkpoints = rh
                .checkpoints
                .iter()
                .map(|&p| (p, if one == 0 { Vec::new() } else { sets.next().map(read).unwrap_or_default() }))
                .collect();
            bytes.truncate(body - total);
            Some(RecurrentSnapshot { layers, checkpoints })
        }
    };
    bytes.truncate(body.min(bytes.len()));
    bytes.drain(..kv_at);
    let k = &header.kv;
    let held = [k.held[0][0]..k.held[0][1], k.held[1][0]..k.held[1][1]];
    let snap = KvSnapshot { len: k.len, held, dtype: k.dtype, data: bytes };
    Ok((header, snap, recurrent))
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one: a temporary
/// file next to it, flushed to disk, renamed over `path`, and the directory synced (Unix).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name =
        path.file_name().ok_or_else(|| Error::InvalidParameter { name: "path", reason: "no file name".into() })?;
    let tmp = dir.join(format!(".{}.tmp{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        #[cfg(unix)]
        std::fs::File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    Ok(result?)
}

/// Reads a session file, refusing one over [`MAX_SESSION_FILE_BYTES`] before reading it, and one
/// that does not start with the magic after reading 8 bytes (a model file passed by mistake is
/// not read whole).
pub(crate) fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    if len > MAX_SESSION_FILE_BYTES {
        return Err(bad(format!("{len} bytes is over the {MAX_SESSION_FILE_BYTES}-byte limit")));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    // `take`: a file that grows while being read still cannot exceed the bound.
    let mut f = f.take(MAX_SESSION_FILE_BYTES + 1);
    (&mut f).take(MAGIC.len() as u64).read_to_end(&mut bytes)?;
    if bytes.len() == MAGIC.len() && bytes[..] != MAGIC[..] {
        return Err(bad("not an Edgewise session file (bad magic)"));
    }
    f.read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_SESSION_FILE_BYTES {
        return Err(bad("file grew past the size limit while being read"));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Header, KvSnapshot) {
        let kv = KvHeader {
            dtype: KvDtype::F16,
            len: 3,
            layer_windows: vec![None],
            kv_heads: 1,
            head_dim: 2,
            held: [[0, 3], [3, 3]],
        };
        let header = Header {
            model_id: "ab".repeat(32),
            architecture: "gemma3".into(),
            config: SessionConfig::default(),
            history: Vec::new(),
            cached: vec![2, 10, 11],
            kv,
            recurrent: None,
        };
        let snap = KvSnapshot { len: 3, held: [0..3, 3..3], dtype: KvDtype::F16, data: (0..24u8).collect() };
        (header, snap)
    }

    #[test]
    fn round_trip_and_every_damage_is_a_typed_error() {
        let (h, s) = sample();
        let bytes = encode(&h, &s, None).unwrap();
        let (h2, s2, r2) = decode(bytes.clone()).unwrap();
        assert_eq!(h2.cached, h.cached);
        assert_eq!(s2, s);
        assert_eq!(r2, None);
        // Every truncation, and a flipped bit anywhere, is refused with a typed error.
        for n in 0..bytes.len() {
            assert!(matches!(decode(bytes[..n].to_vec()), Err(Error::SessionFile { .. })), "truncated to {n}");
        }
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x10;
            match decode(b) {
                Err(Error::SessionFile { .. } | Error::SessionFileVersion { .. }) => {}
                other => panic!("bit flip at {i}: {:?}", other.map(|_| ())),
            }
        }
        let mut v2 = bytes.clone();
        v2[8] = 2;
        assert!(matches!(decode(v2), Err(Error::SessionFileVersion { found: 2, supported: 1 })));
    }

    /// A hybrid model's recurrent state and checkpoints come back as written, after the KV rows;
    /// a header that does not describe them, or claims more than the file holds, is refused.
    #[test]
    fn recurrent_state_round_trips_after_the_kv_rows() {
        let (mut h, s) = sample();
        let set = |x: f32| {
            vec![
                RecurrentLayer { conv: vec![x; 3], state: vec![x + 0.5; 4] },
                RecurrentLayer { conv: vec![-x; 3], state: vec![x * 2.0; 4] },
            ]
        };
        let r = RecurrentSnapshot { layers: set(1.0), checkpoints: vec![(1, set(2.0)), (3, set(3.0))] };
        assert!(matches!(encode(&h, &s, Some(&r)), Err(Error::SessionFile { .. })));
        h.recurrent = Some(RecurrentHeader::of(&r));
        let bytes = encode(&h, &s, Some(&r)).unwrap();
        let (h2, s2, r2) = decode(bytes.clone()).unwrap();
        assert_eq!(s2, s);
        assert_eq!(r2.as_ref(), Some(&r));
        assert_eq!(h2.recurrent, h.recurrent);
        for n in 0..bytes.len() {
            assert!(matches!(decode(bytes[..n].to_vec()), Err(Error::SessionFile { .. })), "truncated to {n}");
        }
        // A (checksummed) header claiming a larger state than the bytes after it.
        h.recurrent = Some(RecurrentHeader { layers: vec![[1 << 40, 0]], checkpoints: vec![] });
        let json = serde_json::to_vec(&h).unwrap();
        let mut forged = MAGIC.to_vec();
        forged.extend_from_slice(&SESSION_FILE_VERSION.to_le_bytes());
        forged.extend_from_slice(&(json.len() as u32).to_le_bytes());
        forged.extend_from_slice(&json);
        forged.extend_from_slice(&s.data);
        let digest = Sha256::digest(&forged);
        forged.extend_from_slice(&digest);
        assert!(matches!(decode(forged), Err(Error::SessionFile { reason }) if reason.contains("does not fit")));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("ew-sessfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.ewsession");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
