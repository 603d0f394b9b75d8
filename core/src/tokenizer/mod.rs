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
//! 262k-piece Gemma vocabulary takes about a second in release builds;
//! [`Tokenizer::from_gguf_vocab_cached`] keeps the result under `$EDGEWISE_HOME/cache/`.
//!
//! Privacy: no error or log line from this module contains input text, output text or token ids.

pub mod chat_template;
pub mod from_gguf;
pub mod stream;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokenizers::{AddedToken, AddedVocabulary, Model, OffsetType, PostProcessor, PreTokenizedString, PreTokenizer};

pub use chat_template::{ChatMessage, ChatTemplate, Role};
pub use from_gguf::GgufVocab;
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
    meta: Meta,
}

/// The facts kept next to the HF tokenizer (also the cache's side file).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
struct Meta {
    format: u32,
    bos: Option<u32>,
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
        let b = from_gguf::build(v)?;
        let meta = Meta {
            format: CACHE_FORMAT,
            bos: b.bos,
            eos_ids: b.eos_ids,
            add_bos: b.add_bos,
            control_ids: b.control_ids,
            vocab_size: b.vocab_size,
        };
        Self::assemble(b.tokenizer, meta)
    }

    /// Open a GGUF file and build its tokenizer, using the cache in `$EDGEWISE_HOME/cache/`
    /// (keyed by file name, size and modification time). Also returns the vocabulary metadata
    /// (chat template, special ids) for the caller.
    pub fn from_gguf_file(path: &Path) -> Result<(Self, GgufVocab)> {
        let file = crate::gguf::GgufFile::open(path)?;
        let vocab = GgufVocab::from_metadata(file.metadata())?;
        drop(file);
        let key = file_cache_key(path)?;
        let tok = Self::from_gguf_vocab_cached(&vocab, &default_cache_dir(), &key)?;
        Ok((tok, vocab))
    }

    /// Like [`from_gguf_vocab`](Self::from_gguf_vocab), but reuse a tokenizer built earlier for the
    /// same model file. `key` must identify the file (e.g. its sha256, or size + mtime); the cache
    /// lives in `cache_dir` as `<key>.tokenizer.json` (a plain HF file) + `<key>.tokenizer-meta.json`.
    /// A missing, stale or unreadable cache is rebuilt; failing to write it only logs a warning.
    pub fn from_gguf_vocab_cached(v: &GgufVocab, cache_dir: &Path, key: &str) -> Result<Self> {
        let safe_key: String =
            key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
        let json_path = cache_dir.join(format!("{safe_key}.tokenizer.json"));
        let meta_path = cache_dir.join(format!("{safe_key}.tokenizer-meta.json"));
        match Self::load_cache(&json_path, &meta_path, v) {
            Ok(Some(t)) => return Ok(t),
            Ok(None) => {}
            Err(e) => log::warn!("tokenizer cache {} unusable, rebuilding: {e}", json_path.display()),
        }
        let t = Self::from_gguf_vocab(v)?;
        if let Err(e) = t.save_cache(cache_dir, &json_path, &meta_path) {
            log::warn!("could not write tokenizer cache {}: {e}", json_path.display());
        }
        Ok(t)
    }

    fn load_cache(json_path: &Path, meta_path: &Path, v: &GgufVocab) -> Result<Option<Self>> {
        if !json_path.is_file() || !meta_path.is_file() {
            return Ok(None);
        }
        let meta: Meta = serde_json::from_slice(&std::fs::read(meta_path)?)
            .map_err(|e| Error::Tokenizer { reason: format!("cache metadata: {e}") })?;
        // A cheap consistency check against the file we were given.
        if meta.format != CACHE_FORMAT || meta.vocab_size != v.tokens.len() || meta.bos != v.bos_token_id {
            return Ok(None);
        }
        let tok = tokenizers::Tokenizer::from_file(json_path)
            .map_err(|_| Error::Tokenizer { reason: "cached tokenizer.json does not parse".into() })?;
        Self::assemble(tok, meta).map(Some)
    }

    fn save_cache(&self, dir: &Path, json_path: &Path, meta_path: &Path) -> Result<()> {
        std::fs::create_dir_all(dir)?;
        let json = self.to_json()?;
        let meta = serde_json::to_vec(&self.inner.meta)
            .map_err(|e| Error::Tokenizer { reason: format!("cache metadata: {e}") })?;
        // Write both through temp files and rename, so a crash never leaves a half file behind.
        let tmp_json = tmp_path(json_path);
        let tmp_meta = tmp_path(meta_path);
        std::fs::write(&tmp_json, json)?;
        std::fs::write(&tmp_meta, meta)?;
        std::fs::rename(&tmp_json, json_path)?;
        std::fs::rename(&tmp_meta, meta_path)?;
        Ok(())
    }

    /// Load a Hugging Face `tokenizer.json`.
    ///
    /// BOS, EOS and the stop set are read from the file's post-processor and added tokens (the
    /// usual names: `<bos>`/`<s>`/`<|begin_of_text|>`, `<eos>`/`</s>`/`<|end_of_text|>`, and the
    /// end-of-turn tokens llama.cpp knows).
    pub fn from_file(path: &Path) -> Result<Self> {
        let tok = tokenizers::Tokenizer::from_file(path).map_err(|_| Error::Tokenizer {
            reason: format!("{} is not a readable tokenizer.json", path.display()),
        })?;
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
            format: CACHE_FORMAT,
            bos,
            eos_ids,
            add_bos,
            control_ids,
            vocab_size: tok.get_vocab_size(true),
        };
        Self::assemble(tok, meta)
    }

    fn assemble(tok: tokenizers::Tokenizer, meta: Meta) -> Result<Self> {
        // The user-text view: mark every control token special, and don't split specials out.
        let mut user_added = tok.get_added_vocabulary().clone();
        let control: HashSet<u32> = meta.control_ids.iter().copied().collect();
        let decoder = tok.get_added_tokens_decoder();
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
        Ok(Self { inner: Arc::new(Inner { tok, user_added, meta }) })
    }

    /// Encode text in which control tokens (`<start_of_turn>`, `<|im_end|>`) are parsed as their
    /// control ids. Use it for rendered prompts, never for raw user input (see
    /// [`encode_user_text`](Self::encode_user_text)).
    ///
    /// `add_bos`: apply the model's post-processor, which prepends BOS for models that use one
    /// (Gemma, Llama 3) and adds nothing for those that don't (Qwen). Pass
    /// [`add_bos_default`](Self::add_bos_default) to match the reference tokenizer.
    pub fn encode(&self, text: &str, add_bos: bool) -> Result<Vec<u32>> {
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
        self.inner
            .tok
            .decode(ids, skip_special)
            .map_err(|_| Error::Tokenizer { reason: "decoding failed".into() })
    }

    pub(crate) fn check_ids(&self, ids: &[u32]) -> Result<()> {
        let n = self.inner.tok.get_vocab_size(true).max(self.inner.meta.vocab_size);
        match ids.iter().filter(|&&id| id as usize >= n).count() {
            0 => Ok(()),
            bad => Err(Error::Tokenizer { reason: format!("{bad} token id(s) outside the vocabulary of {n}") }),
        }
    }

    /// The BOS id, if the vocabulary has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.inner.meta.bos
    }

    /// The stop set: EOS plus end-of-turn tokens (`<end_of_turn>` 106 for Gemma, `<|eot_id|>`,
    /// `<|im_end|>`, ...), sorted.
    pub fn eos_ids(&self) -> Vec<u32> {
        self.inner.meta.eos_ids.clone()
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
        self.inner
            .tok
            .to_string(false)
            .map_err(|e| Error::Tokenizer { reason: format!("serializing: {e}") })
    }
}

/// `$EDGEWISE_HOME/cache`, with `EDGEWISE_HOME` defaulting to `~/.cache/edgewise`.
// TODO: use the catalog's home helper once `crate::catalog` exposes one.
fn default_cache_dir() -> PathBuf {
    let home = std::env::var_os("EDGEWISE_HOME").map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(std::env::temp_dir).join(".cache").join("edgewise")
    });
    home.join("cache")
}

/// A cache key for a model file: its name, size and modification time (hashing 250 MB on every
/// load would cost more than rebuilding the tokenizer).
fn file_cache_key(path: &Path) -> Result<String> {
    let md = std::fs::metadata(path)?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
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
    fn tokenizer_is_send_sync_clone() {
        assert_send_sync::<Tokenizer>();
        assert_send_sync::<GgufVocab>();
    }
}
