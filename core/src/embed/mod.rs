//! Sentence embeddings on the device: a BERT-family encoder loaded from a sentence-transformers
//! folder (the default model is all-MiniLM-L6-v2, 384 dimensions).
//!
//! ```no_run
//! use edgewise_core::embed::{EmbedOptions, Embedder};
//!
//! // A catalog id (fetched and unpacked on first use) or a sentence-transformers folder.
//! let embedder = Embedder::load("all-minilm-l6-v2", EmbedOptions::default())?;
//! let v = embedder.embed("red running shoes")?;             // 384 f32, unit length
//! let batch = embedder.embed_batch(&["a lamp", "a desk"])?;  // same vectors as one at a time
//! assert_eq!(v.len(), embedder.dim());
//! assert!(!batch[0].truncated);
//! # Ok::<(), edgewise_core::Error>(())
//! ```
//!
//! What the folder must hold, as sentence-transformers writes it: `config.json` (a BERT config),
//! `model.safetensors` (f32, f16 or bf16; names with or without a `bert.` prefix),
//! `tokenizer.json`, and optionally `modules.json` (Transformer → Pooling → optional Normalize),
//! `1_Pooling/config.json` (mean or CLS pooling) and `sentence_bert_config.json`
//! (`max_seq_length`). Without `modules.json` the folder is taken as a plain BERT: mean pooling,
//! no normalization.
//!
//! Texts longer than the model's limit (`max_seq_length`, 256 tokens for MiniLM, counting
//! `[CLS]` and `[SEP]`) are truncated, and [`Embedding::truncated`] says so; an empty text is
//! embedded as `[CLS] [SEP]`. A text over [`crate::MAX_INPUT_BYTES`] is refused.

pub mod bert;
mod convert;
mod gguf;
mod retail;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

pub use bert::{BertConfig, BertModel, EncoderWeights, Gelu, TensorSource};
pub use convert::{folder_to_gguf, GgufFtype};

use crate::backend::{BackendKind, BackendPreference};
use crate::{Error, Result};

/// Catalog id of the default embedding model.
pub const DEFAULT_EMBEDDING_MODEL: &str = "all-minilm-l6-v2";

/// How token vectors become one text vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The mean over the text's tokens (`[CLS]` and `[SEP]` included, as sentence-transformers).
    Mean,
    /// The first token's (`[CLS]`) vector.
    Cls,
}

/// Load-time settings of an [`Embedder`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOptions {
    /// f32 weights (default) or Q8_0 (quantized at load; about a quarter of the weight memory).
    pub weights: EncoderWeights,
    /// Most tokens one forward pass packs together (texts beyond go to the next pass); bounds the
    /// activation memory: about `tokens × (4·hidden + intermediate) × 4` bytes.
    pub max_batch_tokens: usize,
    /// Where the encoder runs: `Cpu` (the default: the encoder is small, and on the CPU one text
    /// takes milliseconds), `Gpu` (wgpu, or an error), or `Auto` (a hardware GPU adapter whose
    /// vectors agree with the CPU's on a self-test text, else the CPU, said in a warning).
    pub backend: BackendPreference,
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self { weights: EncoderWeights::F32, max_batch_tokens: 4096, backend: BackendPreference::Cpu }
    }
}

impl EmbedOptions {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if !(16..=1 << 20).contains(&self.max_batch_tokens) {
            return Err(Error::InvalidParameter {
                name: "max_batch_tokens",
                reason: format!("{} is outside 16..=1048576", self.max_batch_tokens),
            });
        }
        Ok(())
    }
}

/// One text's embedding.
#[derive(Debug, Clone, PartialEq)]
pub struct Embedding {
    /// The vector ([`Embedder::dim`] values; unit length when the model normalizes).
    pub vector: Vec<f32>,
    /// Tokens the model saw (after truncation, `[CLS]`/`[SEP]` included).
    pub tokens: usize,
    /// Whether the text was cut at [`Embedder::max_tokens`].
    pub truncated: bool,
}

/// A loaded embedding model: tokenizer, encoder, pooling and normalization. `Send + Sync`; calls
/// from several threads share the CPU kernels' pool (one pass runs at a time on it).
pub struct Embedder {
    model: BertModel,
    tokenizer: tokenizers::Tokenizer,
    pooling: Pooling,
    normalize: bool,
    max_tokens: usize,
    opts: EmbedOptions,
    model_id: String,
    fingerprint: String,
    backend: BackendKind,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("model_id", &self.model_id)
            .field("dim", &self.dim())
            .field("pooling", &self.pooling)
            .field("normalize", &self.normalize)
            .field("backend", &self.backend)
            .finish()
    }
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    ty: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct SbertConfig {
    max_seq_length: Option<usize>,
}

impl Embedder {
    /// Loads a catalog id (fetched, verified and unpacked under `$EDGEWISE_HOME` if needed), a
    /// sentence-transformers folder, or a GGUF file of llama.cpp's `bert` architecture.
    pub fn load(path_or_id: &str, opts: EmbedOptions) -> Result<Self> {
        let as_path = Path::new(path_or_id);
        if as_path.is_file() {
            return Self::from_gguf(as_path, opts);
        }
        let dir = if as_path.is_dir() { as_path.to_path_buf() } else { crate::catalog::resolve_model(path_or_id)? };
        if dir.is_file() {
            let mut e = Self::from_gguf(&dir, opts)?;
            e.model_id = path_or_id.to_owned();
            return Ok(e);
        }
        if !dir.is_dir() {
            return Err(Error::InvalidModelFolder {
                reason: format!("{} is not a sentence-transformers folder", dir.display()),
            });
        }
        let mut e = Self::from_folder(&dir, opts)?;
        if !as_path.is_dir() {
            e.model_id = path_or_id.to_owned();
        }
        Ok(e)
    }

    /// Loads a sentence-transformers (or plain BERT) folder.
    pub fn from_folder(dir: &Path, opts: EmbedOptions) -> Result<Self> {
        opts.validate()?;
        let read = |name: &str| -> Result<Option<String>> {
            match std::fs::read_to_string(dir.join(name)) {
                Ok(s) => Ok(Some(s)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        let json_err = |file: &str, e: serde_json::Error| Error::InvalidModelFolder { reason: format!("{file}: {e}") };
        let config_text = read("config.json")?
            .ok_or_else(|| Error::InvalidModelFolder { reason: format!("{} has no config.json", dir.display()) })?;
        let cfg: BertConfig = serde_json::from_str(&config_text).map_err(|e| json_err("config.json", e))?;
        if let Some(mt) = serde_json::from_str::<serde_json::Value>(&config_text)
            .ok()
            .and_then(|v| v.get("model_type").and_then(|m| m.as_str()).map(str::to_owned))
        {
            if mt != "bert" {
                return Err(Error::UnsupportedArchitecture { name: mt });
            }
        }

        // modules.json: Transformer, then Pooling, then optionally Normalize.
        let (mut pooling, mut normalize) = (Pooling::Mean, false);
        match read("modules.json")? {
            None => log::warn!("{} has no modules.json; mean pooling, no normalization", dir.display()),
            Some(text) => {
                let modules: Vec<ModuleEntry> = serde_json::from_str(&text).map_err(|e| json_err("modules.json", e))?;
                for m in &modules {
                    let kind = m.ty.rsplit('.').next().unwrap_or_default();
                    match kind {
                        "Transformer" if m.path.is_empty() => {}
                        "Pooling" => {
                            let rel = Path::new(&m.path);
                            if rel.is_absolute()
                                || rel.components().any(|c| matches!(c, std::path::Component::ParentDir))
                            {
                                return Err(Error::InvalidModelFolder {
                                    reason: "modules.json: pooling path leaves the folder".into(),
                                });
                            }
                            let file = format!("{}/config.json", m.path);
                            let text = read(&file)?
                                .ok_or_else(|| Error::InvalidModelFolder { reason: format!("{file} is missing") })?;
                            let pc: PoolingConfig = serde_json::from_str(&text).map_err(|e| json_err(&file, e))?;
                            pooling = match (pc.pooling_mode_cls_token, pc.pooling_mode_mean_tokens) {
                                _ if pc.pooling_mode_max_tokens
                                    || pc.pooling_mode_mean_sqrt_len_tokens
                                    || pc.pooling_mode_weightedmean_tokens
                                    || pc.pooling_mode_lasttoken =>
                                {
                                    return Err(Error::UnsupportedArchitecture {
                                        name: "pooling other than mean or CLS".into(),
                                    })
                                }
                                (true, false) => Pooling::Cls,
                                (false, true) => Pooling::Mean,
                                _ => {
                                    return Err(Error::UnsupportedArchitecture {
                                        name: "pooling: exactly one of mean or CLS must be on".into(),
                                    })
                                }
                            };
                        }
                        "Normalize" => normalize = true,
                        _ => {
                            return Err(Error::UnsupportedArchitecture {
                                name: format!("sentence-transformers module {kind}"),
                            })
                        }
                    }
                }
            }
        }
        let sbert: Option<SbertConfig> = read("sentence_bert_config.json")?
            .map(|t| serde_json::from_str(&t).map_err(|e| json_err("sentence_bert_config.json", e)))
            .transpose()?;
        let max_tokens = sbert
            .and_then(|s| s.max_seq_length)
            .unwrap_or(cfg.max_position_embeddings)
            .min(cfg.max_position_embeddings);
        if max_tokens < 2 {
            return Err(Error::InvalidModelFolder {
                reason: format!("max_seq_length {max_tokens} leaves no room for [CLS] and [SEP]"),
            });
        }

        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| Error::Tokenizer { reason: format!("{}: {e}", dir.join("tokenizer.json").display()) })?;
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| Error::Tokenizer { reason: e.to_string() })?;
        let vocab = tokenizer.get_vocab_size(true);
        if vocab > cfg.vocab_size {
            return Err(Error::InvalidModelFolder {
                reason: format!("tokenizer has {vocab} tokens, the model {}", cfg.vocab_size),
            });
        }

        let st_path = dir.join("model.safetensors");
        let st = SafetensorsSource::open(&st_path)?;
        let model = load_model(cfg, &st, &opts)?;
        let backend = if model.on_gpu() { BackendKind::Gpu } else { BackendKind::Cpu };
        let mut h = Sha256::new();
        h.update(config_text.as_bytes());
        h.update(st.header_bytes());
        h.update(st.len().to_le_bytes());
        h.update(format!("{pooling:?}/{normalize}/{max_tokens}/{:?}", opts.weights).as_bytes());
        let fingerprint = hex::encode(&h.finalize()[..16]);
        let model_id =
            dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "embedding-model".into());
        log::info!("embedding model {} loaded: dim {}, {:?} pooling, normalize {normalize}, max {max_tokens} tokens, {:?} weights, on {backend}", model_id, model.config().hidden_size, pooling, opts.weights);
        Ok(Self { model, tokenizer, pooling, normalize, max_tokens, opts, model_id, fingerprint, backend })
    }

    /// Loads a GGUF of llama.cpp's `bert` architecture (f32, f16, Q8_0 or any type Edgewise
    /// dequantizes): the config from `bert.*`, pooling from `bert.pooling_type` (mean when
    /// absent), the WordPiece tokenizer from `tokenizer.ggml.*`. Vectors are normalized to unit
    /// length (a GGUF does not record it; llama.cpp's embedding tools normalize too), and texts
    /// are truncated at `bert.context_length` (512 for MiniLM, where its sentence-transformers
    /// folder says 256). Tensors stored as Q8_0 are multiplied as Q8_0 blocks, as llama.cpp does.
    pub fn from_gguf(path: &Path, opts: EmbedOptions) -> Result<Self> {
        opts.validate()?;
        let g = gguf::open(path)?;
        let max_tokens = g.cfg.max_position_embeddings;
        let mut tokenizer: tokenizers::Tokenizer = g
            .tokenizer_json
            .parse()
            .map_err(|e| Error::Tokenizer { reason: format!("{}: vocabulary: {e}", path.display()) })?;
        tokenizer
            .with_truncation(Some(tokenizers::TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| Error::Tokenizer { reason: e.to_string() })?;
        let model = load_model(g.cfg.clone(), &g.source, &opts).map_err(|e| match e {
            Error::InvalidModelFolder { reason } => Error::InvalidGguf { reason },
            other => other,
        })?;
        let backend = if model.on_gpu() { BackendKind::Gpu } else { BackendKind::Cpu };
        let file = g.source.file();
        let mut h = Sha256::new();
        h.update(b"gguf/");
        h.update(file.file_size().to_le_bytes());
        let head = std::fs::File::open(path).and_then(|f| {
            use std::io::Read;
            let mut buf = Vec::new();
            f.take(file.data_offset()).read_to_end(&mut buf)?;
            Ok(buf)
        })?;
        h.update(&head);
        let normalize = true;
        h.update(format!("{:?}/{normalize}/{max_tokens}/{:?}", g.pooling, opts.weights).as_bytes());
        let fingerprint = hex::encode(&h.finalize()[..16]);
        let model_id =
            path.file_stem().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "embedding-model".into());
        log::info!(
            "embedding model {model_id} loaded from GGUF: dim {}, {:?} pooling, max {max_tokens} tokens, {:?} weights, on {backend}",
            model.config().hidden_size,
            g.pooling,
            opts.weights
        );
        Ok(Self { model, tokenizer, pooling: g.pooling, normalize, max_tokens, opts, model_id, fingerprint, backend })
    }

    /// Vector length.
    pub fn dim(&self) -> usize {
        self.model.config().hidden_size
    }

    /// Most tokens a text is given (`[CLS]` and `[SEP]` included); longer texts are truncated.
    pub fn max_tokens(&self) -> usize {
        self.max_tokens
    }

    /// The catalog id, or the folder's name.
    pub fn model_id(&self) -> &str {
        &self.model_id
    }

    /// Identifies the model and its settings (config, weights' header and size, pooling,
    /// normalization, limit, weight mode): 32 hex digits. Vectors from embedders with different
    /// fingerprints must not be mixed in one index.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The pooling the folder asks for.
    pub fn pooling(&self) -> Pooling {
        self.pooling
    }

    /// Whether vectors are normalized to unit length.
    pub fn normalizes(&self) -> bool {
        self.normalize
    }

    /// Where the encoder runs (after `Auto`'s choice).
    pub fn backend(&self) -> BackendKind {
        self.backend
    }

    /// The options it was loaded with.
    pub fn options(&self) -> &EmbedOptions {
        &self.opts
    }

    /// Embeds one text.
    pub fn embed(&self, text: &str) -> Result<Vec<f32>> {
        Ok(self.embed_batch(&[text])?.pop().map(|e| e.vector).unwrap_or_default())
    }

    /// Embeds texts in order; the same vectors as one at a time.
    pub fn embed_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<Embedding>> {
        let mut enc = Vec::with_capacity(texts.len());
        for t in texts {
            enc.push(self.tokenize(t.as_ref())?);
        }
        let mut out = Vec::with_capacity(texts.len());
        let mut start = 0;
        while start < enc.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < enc.len() && (end == start || tokens + enc[end].0.len() <= self.opts.max_batch_tokens) {
                tokens += enc[end].0.len();
                end += 1;
            }
            out.extend(self.forward(&enc[start..end])?);
            start = end;
        }
        Ok(out)
    }

    /// Token ids and type ids of `text` as the model sees it, and whether it was truncated.
    pub fn tokenize(&self, text: &str) -> Result<(Vec<u32>, Vec<u32>, bool)> {
        crate::check_input_len(text.len())?;
        let e = self
            .tokenizer
            .encode(text, true)
            .map_err(|_| Error::Tokenizer { reason: format!("encoding a text of {} bytes failed", text.len()) })?;
        let truncated = !e.get_overflowing().is_empty();
        Ok((e.get_ids().to_vec(), e.get_type_ids().to_vec(), truncated))
    }

    fn forward(&self, enc: &[(Vec<u32>, Vec<u32>, bool)]) -> Result<Vec<Embedding>> {
        let seqs: Vec<(&[u32], &[u32])> = enc.iter().map(|(i, t, _)| (i.as_slice(), t.as_slice())).collect();
        let hidden = self.model.forward(&seqs)?;
        let h = self.dim();
        let mut out = Vec::with_capacity(enc.len());
        let mut row = 0;
        for (ids, _, truncated) in enc {
            let n = ids.len();
            let rows = &hidden[row * h..(row + n) * h];
            row += n;
            let mut v = match self.pooling {
                Pooling::Cls => rows[..h].to_vec(),
                Pooling::Mean => {
                    let mut acc = vec![0f64; h];
                    for r in rows.chunks_exact(h) {
                        for (a, &x) in acc.iter_mut().zip(r) {
                            *a += x as f64;
                        }
                    }
                    acc.iter().map(|a| (a / n.max(1) as f64) as f32).collect()
                }
            };
            if self.normalize {
                // torch.nn.functional.normalize: v / max(‖v‖, 1e-12).
                let norm = v.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>().sqrt().max(1e-12);
                v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
            }
            if v.iter().any(|x| !x.is_finite()) {
                return Err(Error::NonFinite { what: "embedding" });
            }
            out.push(Embedding { vector: v, tokens: n, truncated: *truncated });
        }
        Ok(out)
    }
}

/// Token ids of the `Auto` self-test: fixed ids inside any BERT vocabulary (the hidden states are
/// compared, not a meaning).
const SELF_TEST_IDS: [u32; 12] = [101, 2417, 2770, 6007, 2007, 1037, 3730, 4003, 1010, 2005, 3345, 102];
/// `Auto`: the least cosine between the GPU's and the CPU's hidden state of every self-test
/// token (measured on lavapipe: f32 and Q8_0 above 0.9999; a broken driver gives noise or NaN).
const SELF_TEST_MIN_COS: f32 = 0.999;

/// The encoder on the backend `opts` asks for (`Auto`: see [`EmbedOptions::backend`]).
fn load_model(cfg: BertConfig, src: &dyn TensorSource, opts: &EmbedOptions) -> Result<BertModel> {
    match opts.backend {
        BackendPreference::Cpu => BertModel::load(cfg, src, opts.weights),
        BackendPreference::Gpu => {
            let (device, info) = crate::backend::gpu()?;
            log::info!("embedding model on the gpu: {}", info.name);
            BertModel::load_on(cfg, src, opts.weights, &device)
        }
        BackendPreference::Auto => {
            let cpu = BertModel::load(cfg.clone(), src, opts.weights)?;
            match try_gpu(&cpu, cfg, src, opts) {
                Ok(gpu) => Ok(gpu),
                Err(reason) => {
                    log::warn!("embedding model on the cpu: {reason}");
                    Ok(cpu)
                }
            }
        }
    }
}

/// `Auto`'s GPU attempt: a hardware adapter, and the self-test against `cpu`.
fn try_gpu(
    cpu: &BertModel,
    cfg: BertConfig,
    src: &dyn TensorSource,
    opts: &EmbedOptions,
) -> std::result::Result<BertModel, String> {
    let (device, info) = crate::backend::gpu().map_err(|e| format!("no usable GPU ({e})"))?;
    // A software rasterizer (lavapipe/llvmpipe, SwiftShader) is slower than the CPU path.
    if info.device_type == "Cpu" {
        return Err(format!("only a software GPU adapter is present (`{}`)", info.name));
    }
    let gpu =
        BertModel::load_on(cfg.clone(), src, opts.weights, &device).map_err(|e| format!("GPU load failed: {e}"))?;
    let ids: Vec<u32> = SELF_TEST_IDS.iter().map(|&i| i % cfg.vocab_size as u32).collect();
    let types = vec![0u32; ids.len()];
    let seq = [(ids.as_slice(), types.as_slice())];
    let want = cpu.forward(&seq).map_err(|e| e.to_string())?;
    let got = gpu.forward(&seq).map_err(|e| format!("GPU self-test failed: {e}"))?;
    let h = cfg.hidden_size;
    let worst = want
        .chunks_exact(h)
        .zip(got.chunks_exact(h))
        .map(|(a, b)| if b.iter().all(|x| x.is_finite()) { cosine(a, b).unwrap_or(0.0) } else { 0.0 })
        .fold(1f32, f32::min);
    if worst < SELF_TEST_MIN_COS {
        return Err(format!("GPU self-test failed: cosine {worst:.5} < {SELF_TEST_MIN_COS}"));
    }
    log::info!("embedding model on the gpu `{}` (self-test cosine {worst:.6})", info.name);
    Ok(gpu)
}

/// Checks that `v` has `expected` values, all finite: [`Error::DimensionMismatch`] or
/// [`Error::NonFinite`] otherwise. For anything that stores or compares vectors.
pub fn check_vector(v: &[f32], expected: usize) -> Result<()> {
    if v.len() != expected {
        return Err(Error::DimensionMismatch { expected, found: v.len() });
    }
    if v.iter().any(|x| !x.is_finite()) {
        return Err(Error::NonFinite { what: "vector" });
    }
    Ok(())
}

/// Cosine similarity of two vectors of the same length (0 when either is all zeros).
pub fn cosine(a: &[f32], b: &[f32]) -> Result<f32> {
    if a.len() != b.len() {
        return Err(Error::DimensionMismatch { expected: a.len(), found: b.len() });
    }
    let (mut ab, mut aa, mut bb) = (0f64, 0f64, 0f64);
    for (&x, &y) in a.iter().zip(b) {
        ab += x as f64 * y as f64;
        aa += x as f64 * x as f64;
        bb += y as f64 * y as f64;
    }
    if aa == 0.0 || bb == 0.0 {
        return Ok(0.0);
    }
    Ok((ab / (aa.sqrt() * bb.sqrt())) as f32)
}

/// A memory-mapped `model.safetensors`, read by HF tensor name (with or without a `bert.` prefix).
struct SafetensorsSource {
    map: Arc<memmap2::Mmap>,
    path: PathBuf,
    header_len: usize,
    tensors: std::collections::HashMap<String, (safetensors::Dtype, Vec<usize>, std::ops::Range<usize>)>,
}

impl SafetensorsSource {
    fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path)?;
        // SAFETY: the map is read-only; as everywhere in Edgewise, a model file changed under a
        // running process is outside what we defend against.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        let bad = |reason: String| Error::InvalidModelFolder { reason: format!("{}: {reason}", path.display()) };
        let (header_len, meta) = safetensors::SafeTensors::read_metadata(&map).map_err(|e| bad(e.to_string()))?;
        let base = 8 + header_len;
        let mut tensors = std::collections::HashMap::new();
        for (name, info) in meta.tensors() {
            let (s, e) = info.data_offsets;
            let range = base
                .checked_add(s)
                .zip(base.checked_add(e))
                .filter(|(a, b)| a <= b && *b <= map.len())
                .ok_or_else(|| bad(format!("tensor {name} lies outside the file")))?;
            tensors.insert(name.clone(), (info.dtype, info.shape.clone(), range.0..range.1));
        }
        Ok(Self { map: Arc::new(map), path: path.to_path_buf(), header_len, tensors })
    }

    /// The stored shape of `name` (exact name).
    fn dims(&self, name: &str) -> Result<Vec<usize>> {
        self.tensors.get(name).map(|(_, shape, _)| shape.clone()).ok_or_else(|| Error::Tensor {
            name: name.to_owned(),
            reason: format!("missing from {}", self.path.display()),
        })
    }

    fn header_bytes(&self) -> &[u8] {
        &self.map[..(8 + self.header_len).min(self.map.len())]
    }

    fn len(&self) -> u64 {
        self.map.len() as u64
    }
}

impl TensorSource for SafetensorsSource {
    fn get(&self, name: &str) -> Result<(Vec<f32>, [usize; 2])> {
        let (dtype, shape, range) =
            self.tensors.get(name).or_else(|| self.tensors.get(&format!("bert.{name}"))).ok_or_else(|| {
                Error::Tensor { name: name.to_owned(), reason: format!("missing from {}", self.path.display()) }
            })?;
        let shape2 = match shape.as_slice() {
            [n] => [1, *n],
            [r, c] => [*r, *c],
            other => {
                return Err(Error::Tensor {
                    name: name.to_owned(),
                    reason: format!("expected 1 or 2 dimensions, got {other:?}"),
                })
            }
        };
        let n = shape2[0]
            .checked_mul(shape2[1])
            .ok_or_else(|| Error::Tensor { name: name.to_owned(), reason: "shape overflows".into() })?;
        let bytes = &self.map[range.clone()];
        let width = match dtype {
            safetensors::Dtype::F32 => 4,
            safetensors::Dtype::F16 | safetensors::Dtype::BF16 => 2,
            other => return Err(Error::UnsupportedType { ty: format!("{other:?} (tensor {name})") }),
        };
        if n.checked_mul(width) != Some(bytes.len()) {
            return Err(Error::Tensor {
                name: name.to_owned(),
                reason: format!("{} bytes for shape {shape:?}", bytes.len()),
            });
        }
        let v: Vec<f32> = match dtype {
            safetensors::Dtype::F32 => {
                bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
            }
            safetensors::Dtype::F16 => {
                bytes.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect()
            }
            _ => bytes.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
        };
        if v.iter().any(|x| !x.is_finite()) {
            return Err(Error::Tensor { name: name.to_owned(), reason: "holds NaN or infinity".into() });
        }
        Ok((v, shape2))
    }
}

#[cfg(test)]
mod tests;
