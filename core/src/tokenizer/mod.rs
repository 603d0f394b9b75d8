//! Tokenizers: an exact `tokenizers::Tokenizer` built from GGUF metadata, streaming
//! detokenization, and chat templates.
//!
//! # Usage
//!
//! ```no_run
//! # fn main() -> edgewise_core::Result<()> {
//! use edgewise_core::tokenizer::{ChatMessage, ChatTemplate, Role, Tokenizer};
//! let tok = Tokenizer::from_file(std::path::Path::new("tokenizer.json"))?;
//! // Text that may hold control tokens (a rendered prompt): they become control ids.
//! let ids = tok.encode("<start_of_turn>user\nHi<end_of_turn>\n", tok.add_bos_default())?;
//! // Text typed by a user: `<start_of_turn>` stays literal text (see pitfall G.20).
//! let safe = tok.encode_user_text("<start_of_turn>", false)?;
//! // Streaming: push ids as they are sampled; pieces are always whole characters.
//! let mut stream = tok.stream_decoder();
//! for &id in &ids {
//!     if let Some(piece) = stream.push(id)? { print!("{piece}"); }
//! }
//! if let Some(rest) = stream.finish()? { print!("{rest}"); }
//! // Chat: render with the model's template, then encode without a second BOS.
//! let tpl = ChatTemplate::from_gguf_template(None, "gemma3", Some("<bos>".into()), None)?;
//! let msgs = [ChatMessage { role: Role::User, content: "Hello".into() }];
//! let prompt_ids = tpl.encode(&tok, &msgs, true)?;
//! # let _ = (safe, prompt_ids);
//! # Ok(()) }
//! ```
//!
//! Building from a GGUF: [`GgufVocab`] is the plain-data view of `tokenizer.ggml.*`;
//! [`Tokenizer::from_gguf_vocab`] derives the tokenizer (recipe in [`from_gguf`]). Building the
//! 262k-piece Gemma vocabulary takes about 0.8 s in release builds;
//! [`Tokenizer::from_gguf_vocab_cached`] keeps the derived merges under `$EDGEWISE_HOME/cache/`.
//!
//! Privacy: no error or log line from this module contains input text, output text or token ids.

pub mod chat_template;
pub mod from_gguf;
pub(crate) mod jinja_py;
pub mod stream;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::{AddedToken, AddedVocabulary, Model, OffsetType, PostProcessor, PreTokenizedString, PreTokenizer};

pub use chat_template::{ChatMessage, ChatTemplate, Role};
pub use from_gguf::{EogKeyIds, GgufVocab};
pub use stream::StreamDecoder;

use crate::error::{Error, Result};

/// Bumped whenever the builder's output could change, so stale cache files are ignored.
const CACHE_FORMAT: u32 = 1;

/// A tokenizer for one model: encode, decode, special ids and streaming.
///
/// Cheap to clone (the state is shared behind an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

struct Inner {
    tok: tokenizers::Tokenizer,
    /// A copy of the added vocabulary in which every control token is "special" and special
    /// tokens are *not* split out, for [`Tokenizer::encode_user_text`].
    user_added: AddedVocabulary,
    /// One past the largest valid id (model vocab and added tokens), computed once: tokenizers'
    /// `get_vocab_size(true)` rebuilds the whole vocabulary map on every call.
    id_bound: usize,
    meta: Meta,
}

/// The facts kept next to the HF tokenizer.
#[derive(Clone, Debug)]
struct Meta {
    bos: Option<u32>,
    eos: Option<u32>,
    eos_ids: Vec<u32>,
    add_bos: bool,
    control_ids: Vec<u32>,
    vocab_size: usize,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("vocab_size", &self.inner.meta.vocab_size)
            .field("bos", &self.inner.meta.bos)
            .field("eos_ids", &self.inner.meta.eos_ids)
            .finish()
    }
}

impl Tokenizer {
    /// Build from GGUF tokenizer metadata: SentencePiece vocabularies with scores (Gemma 3 recipe)
    /// and GPT-2-style byte-level BPE with merges (Llama 3, Qwen 2/3, SmolLM).
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Self> {
        Self::from_built(from_gguf::build(v)?)
    }

    fn from_built(b: from_gguf::Built) -> Result<Self> {
        let meta = Meta {
            bos: b.bos,
            eos: b.eos,
            eos_ids: b.eos_ids,
            add_bos: b.add_bos,
            control_ids: b.control_ids,
            vocab_size: b.vocab_size,
        };
        Self::assemble(b.tokenizer, meta)
    }

    /// Open a GGUF file and build its tokenizer, reusing cached merges from `$EDGEWISE_HOME/cache/`
    /// (keyed by file name, size and modification time). Also returns the vocabulary metadata
    /// (chat template, special ids) for the caller.
    pub fn from_gguf_file(path: &Path) -> Result<(Self, GgufVocab)> {
        let file = crate::gguf::GgufFile::open(path)?;
        let vocab = GgufVocab::from_metadata(file.metadata())?;
        drop(file);
        let tok = match crate::catalog::edgewise_home() {
            Ok(home) => Self::from_gguf_vocab_cached(&vocab, &home.join("cache"), &file_cache_key(path)?)?,
            // No home directory (an app that passes its own paths): build without a cache.
            Err(_) => Self::from_gguf_vocab(&vocab)?,
        };
        Ok((tok, vocab))
    }

    /// Like [`from_gguf_vocab`](Self::from_gguf_vocab), but reuse the SentencePiece merges derived
    /// earlier for the same vocabulary, saved in `cache_dir/<key>.merges.bin`.
    ///
    /// What is cached is the one expensive step that depends only on the file: the merge
    /// derivation (≈0.4 s of ≈0.8 s for Gemma's 262k pieces). Caching the whole tokenizer as
    /// `tokenizer.json` was measured to be *slower* to load (≈1.1 s of JSON parsing, twice the
    /// memory) than building it. The cache holds a fingerprint of the pieces and scores and is
    /// ignored when it does not match; a missing or damaged cache is rebuilt, and failing to write
    /// one only logs a warning. Byte-level BPE vocabularies carry their merges and are not cached.
    pub fn from_gguf_vocab_cached(v: &GgufVocab, cache_dir: &Path, key: &str) -> Result<Self> {
        if v.model != "llama" {
            return Self::from_gguf_vocab(v);
        }
        let safe_key: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let path = cache_dir.join(format!("{safe_key}.merges.bin"));
        let t0 = std::time::Instant::now();
        let fingerprint = from_gguf::vocab_fingerprint(v);
        let cached = match std::fs::read(&path) {
            Ok(bytes) => {
                let m = decode_merge_cache(&bytes, fingerprint, v.tokens.len());
                if m.is_none() {
                    log::warn!("tokenizer cache {} does not match the model; rebuilding", path.display());
                }
                m
            }
            Err(_) => None,
        };
        log::debug!("tokenizer: merge cache read in {:.2?}", t0.elapsed());
        let b = from_gguf::build_with(v, cached)?;
        if let Some(ids) = &b.merge_ids {
            let bytes = encode_merge_cache(ids, fingerprint, v.tokens.len());
            let tmp = tmp_path(&path);
            let written = std::fs::create_dir_all(cache_dir)
                .and_then(|()| std::fs::write(&tmp, bytes))
                .and_then(|()| std::fs::rename(&tmp, &path));
            if let Err(e) = written {
                log::warn!("could not write tokenizer cache {}: {e}", path.display());
            }
        }
        Self::from_built(b)
    }

    /// Load a Hugging Face `tokenizer.json`.
    ///
    /// BOS, EOS and the stop set are read from the file's post-processor and added tokens (the
    /// usual names: `<bos>`/`<s>`/`<|begin_of_text|>`, `<eos>`/`</s>`/`<|end_of_text|>`, and the
    /// end-of-turn tokens llama.cpp knows).
    pub fn from_file(path: &Path) -> Result<Self> {
        let tok = tokenizers::Tokenizer::from_file(path)
            .map_err(|_| Error::Tokenizer { reason: format!("{} is not a readable tokenizer.json", path.display()) })?;
        Self::from_hf(tok)
    }

    /// Wrap an already-built `tokenizers::Tokenizer` (see [`from_file`](Self::from_file)).
    pub fn from_hf(tok: tokenizers::Tokenizer) -> Result<Self> {
        let find = |names: &[&str]| names.iter().find_map(|n| tok.token_to_id(n));
        let bos = find(&["<bos>", "<s>", "<|begin_of_text|>"]);
        let eos = find(&["<eos>", "</s>", "<|end_of_text|>", "<|endoftext|>"]);
        let added = tok.get_added_tokens_decoder();
        let mut eos_ids: Vec<u32> = eos.into_iter().collect();
        let mut control_ids = Vec::new();
        for (id, t) in &added {
            if t.special {
                control_ids.push(*id);
            }
            if from_gguf::is_end_of_generation(&t.content) {
                eos_ids.push(*id);
            }
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        control_ids.sort_unstable();
        let add_bos = tok.get_post_processor().is_some_and(|pp| pp.added_tokens(false) > 0) && bos.is_some();
        let meta = Meta {
            bos,
            eos,
            eos_ids,
            add_bos,
            control_ids,
            // Model vocab plus added tokens (262 145 for Gemma's file, with `<image_soft_token>`).
            vocab_size: {
                let max_added = added.keys().max().map_or(0, |&id| id as usize + 1);
                tok.get_vocab_size(false).max(max_added)
            },
        };
        Self::assemble(tok, meta)
    }

    fn assemble(tok: tokenizers::Tokenizer, meta: Meta) -> Result<Self> {
        // The user-text view: mark every control token special, and don't split specials out.
        let mut user_added = tok.get_added_vocabulary().clone();
        let control: HashSet<u32> = meta.control_ids.iter().copied().collect();
        let decoder = tok.get_added_tokens_decoder();
        let max_added = decoder.keys().max().map_or(0, |&id| id as usize + 1);
        let id_bound = tok.get_vocab_size(false).max(max_added).max(meta.vocab_size);
        let mut protect: Vec<(u32, AddedToken)> = decoder
            .into_iter()
            .filter(|(id, t)| control.contains(id) && !t.special)
            .map(|(id, t)| (id, t.special(true)))
            .collect();
        protect.sort_by_key(|(id, _)| *id);
        if !protect.is_empty() {
            user_added
                .add_special_tokens(protect.into_iter().map(|(_, t)| t), tok.get_model(), tok.get_normalizer())
                .map_err(|e| Error::Tokenizer { reason: format!("user-text vocabulary: {e}") })?;
        }
        user_added.set_encode_special_tokens(true);
        Ok(Self { inner: Arc::new(Inner { tok, user_added, id_bound, meta }) })
    }

    /// Encode text in which control tokens (`<start_of_turn>`, `<|im_end|>`) are parsed as their
    /// control ids. Use it for rendered prompts, never for raw user input (see
    /// [`encode_user_text`](Self::encode_user_text)).
    ///
    /// `add_bos`: apply the model's post-processor, which prepends BOS for models that use one
    /// (Gemma, Llama 3) and adds nothing for those that don't (Qwen). Pass
    /// [`add_bos_default`](Self::add_bos_default) to match the reference tokenizer.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        crate::check_input_len(text.len())?;
        let enc = self
            .inner
            .tok
            .encode_fast(text, add_bos)
            .map_err(|_| Error::Tokenizer { reason: "encoding failed".into() })?;
        Ok(enc.get_ids().to_vec())
    }

    /// Encode text typed by a user: control tokens are **not** parsed, so a user who types
    /// `<start_of_turn>` gets the ids of that literal text, not the control id (pitfall G.20).
    /// User-defined pieces (whitespace runs, HTML tags) are still matched, as in
    /// [`encode`](Self::encode), so ordinary text gets the same ids either way.
    pub fn encode_user_text(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
        crate::check_input_len(text.len())?;
        let err = |_| Error::Tokenizer { reason: "encoding failed".into() };
        let tok = &self.inner.tok;
        // Mirrors tokenizers' `encode_single_sequence` with our own added vocabulary.
        let mut pre: PreTokenizedString = self.inner.user_added.extract_and_normalize(tok.get_normalizer(), text);
        if let Some(pt) = tok.get_pre_tokenizer() {
            pt.pre_tokenize(&mut pre).map_err(err)?;
        }
        pre.tokenize(|n| tok.get_model().tokenize(n.get())).map_err(err)?;
        let enc = pre.into_encoding(None, 0, OffsetType::None).map_err(err)?;
        let enc = tok.post_process(enc, None, add_bos).map_err(err)?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decode ids to text. `skip_special` drops special tokens (BOS, EOS, turn markers).
    /// Ids outside the vocabulary are an error.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        self.check_ids(ids)?;
        self.inner.tok.decode(ids, skip_special).map_err(|_| Error::Tokenizer { reason: "decoding failed".into() })
    }

    pub(crate) fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let n = self.inner.id_bound;
        match ids.iter().filter(|&&id| id as usize >= n).count() {
            0 => Ok(()),
            bad => Err(Error::Tokenizer { reason: format!("{bad} token id(s) outside the vocabulary of {n}") }),
        }
    }

    /// The BOS id, if the vocabulary has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.inner.meta.bos
    }

    /// The EOS id (a GGUF's `tokenizer.ggml.eos_token_id`; for a `tokenizer.json`, `<eos>`, `</s>`,
    /// `<|end_of_text|>` or `<|endoftext|>`): the template's `eos_token`. Generation stops on the
    /// whole [`eos_ids`](Self::eos_ids) set.
    pub fn eos_id(&self) -> Option<u32> {
        self.inner.meta.eos
    }

    /// The stop set: EOS plus end-of-turn tokens (`<end_of_turn>` 106 for Gemma, `<|eot_id|>`,
    /// `<|im_end|>`, ...), sorted.
    pub fn eos_ids(&self) -> Vec<u32> {
        self.inner.meta.eos_ids.clone()
    }

    /// The control tokens' ids (sorted): never produced from user text or as constrained text.
    pub fn control_ids(&self) -> &[u32] {
        &self.inner.meta.control_ids
    }

    /// Number of token ids (for a GGUF: `tokenizer.ggml.tokens` length, i.e. embedding rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.meta.vocab_size
    }

    /// The piece for an id (`"▁the"`, `"<bos>"`), if any.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.tok.id_to_token(id)
    }

    /// The id of a piece, if any.
    pub fn token_to_id(&self, piece: &str) -> Option<u32> {
        self.inner.tok.token_to_id(piece)
    }

    /// Whether the model's own encoding adds BOS (GGUF `tokenizer.ggml.add_bos_token`).
    pub fn add_bos_default(&self) -> bool {
        self.inner.meta.add_bos
    }

    /// The BOS piece (`"<bos>"`), for chat templates.
    pub fn bos_token(&self) -> Option<String> {
        self.bos_id().and_then(|id| self.id_to_token(id))
    }

    /// A decoder for streaming output, one id at a time; it never emits split UTF-8.
    pub fn stream_decoder(&self) -> StreamDecoder {
        StreamDecoder::new(self.clone(), false)
    }

    /// The underlying `tokenizers::Tokenizer` (tests compare it with reference files).
    pub fn hf(&self) -> &tokenizers::Tokenizer {
        &self.inner.tok
    }

    /// Serialize as a Hugging Face `tokenizer.json`.
    pub fn to_json(&self) -> Result<String> {
        self.inner.tok.to_string(false).map_err(|e| Error::Tokenizer { reason: format!("serializing: {e}") })
    }
}

const MERGE_CACHE_MAGIC: &[u8; 8] = b"EWMRG001";

/// Merge cache layout (little endian): magic, u32 cache format, u64 vocabulary fingerprint,
/// u32 token count, u32 merge count, then `(left id, right id)` u32 pairs.
fn encode_merge_cache(ids: &[(u32, u32)], fingerprint: u64, n_tokens: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(28 + ids.len() * 8);
    out.extend_from_slice(MERGE_CACHE_MAGIC);
    out.extend_from_slice(&CACHE_FORMAT.to_le_bytes());
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out.extend_from_slice(&(n_tokens as u32).to_le_bytes());
    out.extend_from_slice(&(ids.len() as u32).to_le_bytes());
    for &(l, r) in ids {
        out.extend_from_slice(&l.to_le_bytes());
        out.extend_from_slice(&r.to_le_bytes());
    }
    out
}

/// The merges in a cache file, or `None` when it is damaged or belongs to another vocabulary.
fn decode_merge_cache(bytes: &[u8], fingerprint: u64, n_tokens: usize) -> Option<Vec<(u32, u32)>> {
    let u32_at = |at: usize| -> Option<u32> { Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?)) };
    let u64_at = |at: usize| -> Option<u64> { Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?)) };
    if bytes.get(..8)? != MERGE_CACHE_MAGIC
        || u32_at(8)? != CACHE_FORMAT
        || u64_at(12)? != fingerprint
        || u32_at(20)? as usize != n_tokens
    {
        return None;
    }
    let count = u32_at(24)? as usize;
    let body = bytes.get(28..)?;
    if body.len() != count.checked_mul(8)? {
        return None;
    }
    body.chunks_exact(8)
        .map(|c| {
            let l = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            let r = u32::from_le_bytes([c[4], c[5], c[6], c[7]]);
            ((l as usize) < n_tokens && (r as usize) < n_tokens).then_some((l, r))
        })
        .collect()
}

/// A cache key for a model file: its name, size and modification time (hashing 250 MB on every
/// load would cost more than rebuilding the tokenizer).
fn file_cache_key(path: &Path) -> Result<String> {
    let md = std::fs::metadata(path)?;
    let mtime =
        md.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_nanos());
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or("model");
    Ok(format!("{name}-{}-{mtime}", md.len()))
}

fn tmp_path(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".tmp{}", std::process::id()));
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync + Clone>() {}

    #[test]
    fn merge_cache_round_trips_and_rejects_damage() {
        let ids = vec![(1, 2), (3, 4), (0, 9)];
        let bytes = encode_merge_cache(&ids, 42, 10);
        assert_eq!(decode_merge_cache(&bytes, 42, 10), Some(ids));
        assert_eq!(decode_merge_cache(&bytes, 43, 10), None, "other vocabulary");
        assert_eq!(decode_merge_cache(&bytes, 42, 11), None, "other size");
        assert_eq!(decode_merge_cache(&bytes, 42, 9), None, "id out of range");
        assert_eq!(decode_merge_cache(&bytes[..bytes.len() - 1], 42, 10), None, "truncated");
        assert_eq!(decode_merge_cache(&bytes[..5], 42, 10), None, "header cut");
        let mut bad = bytes.clone();
        bad[0] = b'X';
        assert_eq!(decode_merge_cache(&bad, 42, 10), None, "magic");
    }

    /// Text over `MAX_INPUT_BYTES` is refused before the tokenizer sees it (a 50 MB line used to
    /// take it past a gigabyte), and the error carries sizes, not text.
    #[test]
    fn oversized_text_is_a_typed_error() {
        use tokenizers::models::wordlevel::WordLevel;
        let vocab = [("[UNK]".to_string(), 0u32), ("a".to_string(), 1)].into_iter().collect();
        let model = WordLevel::builder().vocab(vocab).unk_token("[UNK]".into()).build().unwrap();
        let mut hf = tokenizers::Tokenizer::new(model);
        hf.with_pre_tokenizer(Some(tokenizers::pre_tokenizers::whitespace::Whitespace {}));
        let tok = Tokenizer::from_hf(hf).unwrap();
        assert_eq!(tok.encode("a a", false).unwrap(), vec![1, 1]);
        let at_limit = "a ".repeat(crate::MAX_INPUT_BYTES / 2);
        assert_eq!(tok.encode(&at_limit, false).unwrap().len(), crate::MAX_INPUT_BYTES / 2);
        let canary = format!("{at_limit}CANARY");
        for r in [tok.encode(&canary, false), tok.encode_user_text(&canary, true)] {
            match r {
                Err(e @ Error::InputTooLarge { max, actual }) => {
                    assert_eq!((max, actual), (crate::MAX_INPUT_BYTES, canary.len()));
                    assert!(!e.to_string().contains("CANARY"), "{e}");
                }
                other => panic!("expected InputTooLarge, got {:?}", other.map(|v| v.len())),
            }
        }
    }

    #[test]
    fn tokenizer_is_send_sync_clone() {
        assert_send_sync::<Tokenizer>();
        assert_send_sync::<GgufVocab>();
    }
}
