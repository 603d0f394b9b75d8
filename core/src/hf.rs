//! Hugging Face model folders: `config.json`, one or more `*.safetensors`, `tokenizer.json`, and
//! the chat template from `tokenizer_config.json` (or `chat_template.jinja`).
//!
//! The safetensors files are memory-mapped and their f32/f16/bf16 tensors are read in place, like
//! a GGUF's; the layers take them as dense weights (no quantized kernels run on them, so such a
//! model needs about twice its file size in memory — ship GGUF Q4_K_M to phones). HF tensor and
//! config names appear only in this module, as GGUF's appear only under `gguf/`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use serde_json::Value;

use crate::model::Architecture;
use crate::quant::GgmlType;
use crate::weights::{RawWeight, SharedWeight, WeightId, WeightSource};
use crate::{Error, Result};

fn invalid(reason: impl Into<String>) -> Error {
    Error::InvalidModelFolder { reason: reason.into() }
}

/// Whether `path` looks like a Hugging Face model folder (a directory with a `config.json`).
pub fn is_model_folder(path: &Path) -> bool {
    path.is_dir() && path.join("config.json").is_file()
}

/// An opened model folder.
#[derive(Debug)]
pub struct HfFolder {
    dir: PathBuf,
    arch: Architecture,
    /// The text model's config object (`text_config` of a multimodal checkpoint).
    config: Value,
    weights: HfWeights,
    chat_template: Option<String>,
}

impl HfFolder {
    /// Opens `dir`: reads `config.json`, maps every `*.safetensors` and indexes their tensors.
    pub fn open(dir: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(dir.join("config.json")).map_err(|e| invalid(format!("config.json: {e}")))?;
        let root: Value = serde_json::from_str(&text).map_err(|e| invalid(format!("config.json: {e}")))?;
        let model_type = root.get("model_type").and_then(Value::as_str).unwrap_or_default();
        let arch = Architecture::from_hf_model_type(model_type)?;
        let config = root.get("text_config").cloned().unwrap_or(root);
        let weights = HfWeights::open(dir, arch)?;
        Ok(Self { dir: dir.to_path_buf(), arch, config, weights, chat_template: read_chat_template(dir)? })
    }

    /// The architecture (from `model_type`).
    pub fn architecture(&self) -> Architecture {
        self.arch
    }

    /// The weights.
    pub fn weights(&self) -> &HfWeights {
        &self.weights
    }

    /// The chat template, if the folder has one.
    pub fn chat_template(&self) -> Option<&str> {
        self.chat_template.as_deref()
    }

    /// The `tokenizer.json` path (an error when the folder has none).
    pub fn tokenizer_path(&self) -> Result<PathBuf> {
        let p = self.dir.join("tokenizer.json");
        if p.is_file() {
            Ok(p)
        } else {
            Err(invalid("no tokenizer.json"))
        }
    }

    /// The text model's `config.json` object (the architecture file reads it).
    pub fn config(&self) -> &Value {
        &self.config
    }
}

fn read_chat_template(dir: &Path) -> Result<Option<String>> {
    if let Ok(t) = std::fs::read_to_string(dir.join("chat_template.jinja")) {
        return Ok(Some(t));
    }
    let Ok(text) = std::fs::read_to_string(dir.join("tokenizer_config.json")) else { return Ok(None) };
    let v: Value = serde_json::from_str(&text).map_err(|e| invalid(format!("tokenizer_config.json: {e}")))?;
    Ok(match v.get("chat_template") {
        Some(Value::String(s)) => Some(s.clone()),
        // A list of named templates: the default one.
        Some(Value::Array(list)) => list
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template"))
            .and_then(Value::as_str)
            .map(str::to_string),
        _ => None,
    })
}

/// One tensor of a safetensors file.
#[derive(Debug, Clone)]
struct Entry {
    shard: usize,
    ty: GgmlType,
    shape: Vec<usize>,
    /// Byte range in the shard's map.
    start: usize,
    len: usize,
}

/// Weights read from a folder's memory-mapped `*.safetensors` files.
#[derive(Clone)]
pub struct HfWeights {
    arch: Architecture,
    shards: Vec<Arc<Mmap>>,
    entries: HashMap<String, Entry>,
    /// What the names carry before `embed_tokens.weight` (`model.`, `language_model.model.`, …).
    prefix: String,
    /// Norm weights rewritten as f32 with the +1 GGUF folds in (see [`norm_offset`]).
    norms: HashMap<String, Arc<Vec<u8>>>,
}

impl std::fmt::Debug for HfWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HfWeights({} tensors in {} files)", self.entries.len(), self.shards.len())
    }
}

/// What the architecture's HF norm weights lack compared with GGUF's (see `ArchDef::hf_norm_offset`).
fn norm_offset(arch: Architecture) -> f32 {
    arch.def().hf_norm_offset
}

/// The HF name (after the prefix) of a logical weight; `lm_head` sits outside the prefix.
fn hf_name(arch: Architecture, id: WeightId) -> String {
    (arch.def().hf_tensor)(id)
}

impl HfWeights {
    /// Maps and indexes every `*.safetensors` in `dir` (sorted by name, so shards keep their order).
    pub fn open(dir: &Path, arch: Architecture) -> Result<Self> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "safetensors") && p.is_file())
            .collect();
        files.sort();
        if files.is_empty() {
            return Err(invalid("no *.safetensors file"));
        }
        let mut shards = Vec::with_capacity(files.len());
        let mut entries = HashMap::new();
        for (shard, path) in files.iter().enumerate() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let file = std::fs::File::open(path)?;
            // SAFETY: the map is read-only; as with the GGUF reader, a model file must not be
            // truncated while it is loaded (documented in the README).
            let map = unsafe { Mmap::map(&file)? };
            let (header_len, meta) =
                safetensors::SafeTensors::read_metadata(&map).map_err(|e| invalid(format!("{name}: {e}")))?;
            let data_start = 8 + header_len;
            for (tensor, info) in meta.tensors() {
                let ty = match info.dtype {
                    safetensors::Dtype::F32 => GgmlType::F32,
                    safetensors::Dtype::F16 => GgmlType::F16,
                    safetensors::Dtype::BF16 => GgmlType::BF16,
                    other => {
                        return Err(invalid(format!(
                            "{name}: tensor `{tensor}` has dtype {other:?} (f32, f16 and bf16 are supported)"
                        )))
                    }
                };
                let (a, b) = info.data_offsets;
                let start = data_start
                    .checked_add(a)
                    .filter(|_| a <= b)
                    .ok_or_else(|| invalid(format!("{name}: bad offsets")))?;
                let len = b - a;
                let elements = info.shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d));
                if start.checked_add(len).is_none_or(|end| end > map.len())
                    || elements.and_then(|n| n.checked_mul(ty.type_size() as usize)) != Some(len)
                {
                    return Err(invalid(format!("{name}: tensor `{tensor}` does not fit its data")));
                }
                if entries.insert(tensor.clone(), Entry { shard, ty, shape: info.shape.clone(), start, len }).is_some()
                {
                    return Err(invalid(format!("tensor `{tensor}` appears in two files")));
                }
            }
            shards.push(Arc::new(map));
        }
        let embed = hf_name(arch, WeightId::TokenEmbedding);
        let prefix = entries
            .keys()
            .filter_map(|k| k.strip_suffix(embed.as_str()))
            .min_by_key(|p| p.len())
            .map(str::to_string)
            .ok_or_else(|| invalid(format!("no `{embed}` tensor")))?;
        let mut w = Self { arch, shards, entries, prefix, norms: HashMap::new() };
        w.norms = w.offset_norms()?;
        Ok(w)
    }

    /// Total size of the safetensors files.
    pub fn file_size(&self) -> u64 {
        self.shards.iter().map(|m| m.len() as u64).sum()
    }

    /// Number of tensors.
    pub fn tensor_count(&self) -> usize {
        self.entries.len()
    }

    /// Number of parameters.
    pub fn parameter_count(&self) -> u64 {
        self.entries.values().map(|e| e.shape.iter().product::<usize>() as u64).sum()
    }

    /// The file name of a weight: prefixed, except `lm_head` (top level, or under the
    /// multimodal wrapper's `language_model.`).
    fn key(&self, id: WeightId) -> Option<String> {
        let name = hf_name(self.arch, id);
        if id == WeightId::Output {
            let root = self.prefix.strip_suffix("model.").unwrap_or(&self.prefix);
            return [format!("{root}{name}"), name].into_iter().find(|k| self.entries.contains_key(k));
        }
        let key = format!("{}{}", self.prefix, name);
        self.entries.contains_key(&key).then_some(key)
    }

    fn offset_norms(&self) -> Result<HashMap<String, Arc<Vec<u8>>>> {
        let offset = norm_offset(self.arch);
        let mut out = HashMap::new();
        if offset == 0.0 {
            return Ok(out);
        }
        for (key, e) in &self.entries {
            if !key.ends_with("norm.weight") {
                continue;
            }
            let n = e.shape.iter().product();
            let values = crate::quant::dequantize(e.ty, self.bytes(e)?, n)?;
            let bytes: Vec<u8> = values.into_iter().flat_map(|v| (v + offset).to_le_bytes()).collect();
            out.insert(key.clone(), Arc::new(bytes));
        }
        Ok(out)
    }

    fn bytes(&self, e: &Entry) -> Result<&[u8]> {
        self.shards
            .get(e.shard)
            .and_then(|m| m.get(e.start..e.start + e.len))
            .ok_or_else(|| invalid("tensor outside its file"))
    }

    fn entry(&self, id: WeightId) -> Result<(String, &Entry)> {
        let key =
            self.key(id).ok_or_else(|| Error::Tensor { name: hf_name(self.arch, id), reason: "missing".into() })?;
        let e = &self.entries[&key];
        if e.shape.is_empty() || e.shape.len() > 2 || e.shape.contains(&0) {
            return Err(Error::Tensor { name: key, reason: format!("shape {:?} is not a vector or matrix", e.shape) });
        }
        Ok((key, e))
    }
}

/// `(rows, cols)` of an HF shape: `[out, in]` matrices, `[n]` vectors.
fn dims(shape: &[usize]) -> (usize, usize) {
    match shape {
        [n] => (1, *n),
        [rows, cols, ..] => (*rows, *cols),
        [] => (0, 0),
    }
}

impl WeightSource for HfWeights {
    fn raw(&self, id: WeightId) -> Result<RawWeight<'_>> {
        let (key, e) = self.entry(id)?;
        let (rows, cols) = dims(&e.shape);
        if let Some(b) = self.norms.get(&key) {
            return Ok(RawWeight { ty: GgmlType::F32, rows, cols, bytes: b.as_slice() });
        }
        Ok(RawWeight { ty: e.ty, rows, cols, bytes: self.bytes(e)? })
    }

    fn shared(&self, id: WeightId) -> Result<SharedWeight> {
        let (key, e) = self.entry(id)?;
        let (rows, cols) = dims(&e.shape);
        if let Some(b) = self.norms.get(&key) {
            return SharedWeight::new(GgmlType::F32, rows, cols, b.clone(), 0, b.len());
        }
        let map = self.shards.get(e.shard).ok_or_else(|| invalid("tensor outside its file"))?;
        SharedWeight::new(e.ty, rows, cols, map.clone(), e.start, e.len)
    }

    fn has(&self, id: WeightId) -> bool {
        self.key(id).is_some()
    }

    fn name(&self, id: WeightId) -> String {
        self.key(id).unwrap_or_else(|| format!("{}{}", self.prefix, hf_name(self.arch, id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gemma() -> Architecture {
        Architecture::from_gguf_name("gemma3").unwrap()
    }

    fn folder(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("edgewise-hf-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// A safetensors file from (name, dtype, shape, raw bytes), written by the `safetensors` crate.
    fn write_st(path: &Path, tensors: &[(&str, safetensors::Dtype, Vec<usize>, Vec<u8>)]) {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
            .iter()
            .map(|(n, d, s, b)| (n.to_string(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn names_prefix_norm_offset_and_tied_head() {
        let d = folder("names");
        let bf16: Vec<u8> =
            [1.5f32, -2.0, 0.25, 4.0, 3.0, 0.5].iter().flat_map(|&x| half::bf16::from_f32(x).to_le_bytes()).collect();
        write_st(
            &d.join("model.safetensors"),
            &[
                ("language_model.model.embed_tokens.weight", safetensors::Dtype::BF16, vec![3, 2], bf16),
                ("language_model.model.norm.weight", safetensors::Dtype::F32, vec![2], f32s(&[0.5, -1.0])),
                (
                    "language_model.model.layers.0.self_attn.q_norm.weight",
                    safetensors::Dtype::F32,
                    vec![2],
                    f32s(&[0.0, 2.0]),
                ),
            ],
        );
        let w = HfWeights::open(&d, gemma()).unwrap();
        let emb = w.shared(WeightId::TokenEmbedding).unwrap();
        assert_eq!((emb.ty, emb.rows, emb.cols), (GgmlType::BF16, 3, 2));
        assert_eq!(crate::quant::dequantize(emb.ty, emb.bytes(), 6).unwrap(), vec![1.5, -2.0, 0.25, 4.0, 3.0, 0.5]);
        // Norms come back as 1 + w, like GGUF's.
        assert_eq!(w.raw(WeightId::OutputNorm).unwrap().to_f32().unwrap(), vec![1.5, 0.0]);
        assert_eq!(w.raw(WeightId::AttnQNorm { layer: 0 }).unwrap().to_f32().unwrap(), vec![1.0, 3.0]);
        assert!(!w.has(WeightId::Output), "no lm_head: tied to the embedding");
        assert!(matches!(w.raw(WeightId::AttnQ { layer: 0 }), Err(Error::Tensor { .. })));
        assert_eq!(w.parameter_count(), 10);
    }

    /// A folder's tensors are held to the config's shapes too, and the error names the tensor
    /// as the folder does.
    #[test]
    fn wrong_shapes_are_named_as_in_the_folder() {
        let d = folder("shapes");
        write_st(
            &d.join("model.safetensors"),
            &[
                ("model.embed_tokens.weight", safetensors::Dtype::F32, vec![3, 4], f32s(&[0.5; 12])),
                ("model.norm.weight", safetensors::Dtype::F32, vec![2], f32s(&[0.0; 2])),
            ],
        );
        let w = HfWeights::open(&d, gemma()).unwrap();
        let v = serde_json::json!({
            "model_type": "gemma3_text", "hidden_size": 4, "intermediate_size": 8, "num_hidden_layers": 1,
            "num_attention_heads": 1, "num_key_value_heads": 1, "head_dim": 4, "rms_norm_eps": 1e-6,
            "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0, "sliding_window": 4,
            "max_position_embeddings": 64, "query_pre_attn_scalar": 4
        });
        let cfg = (gemma().def().from_hf)(&v, 3).unwrap();
        match crate::model::decoder::Decoder::check_shapes(&cfg, &w) {
            Err(Error::TensorShape { name, expected, found }) => {
                assert_eq!((name.as_str(), expected, found), ("model.norm.weight", [1, 4], [1, 2]));
            }
            other => panic!("expected TensorShape, got {other:?}"),
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn damaged_or_unsupported_files_are_typed_errors() {
        let d = folder("bad");
        assert!(matches!(HfWeights::open(&d, gemma()), Err(Error::InvalidModelFolder { .. })));
        write_st(
            &d.join("a.safetensors"),
            &[("model.embed_tokens.weight", safetensors::Dtype::F32, vec![2, 2], f32s(&[1.0; 4]))],
        );
        let full = std::fs::read(d.join("a.safetensors")).unwrap();
        for cut in [0, 7, 9, full.len() / 2, full.len() - 1] {
            std::fs::write(d.join("a.safetensors"), &full[..cut]).unwrap();
            assert!(matches!(HfWeights::open(&d, gemma()), Err(Error::InvalidModelFolder { .. })), "cut at {cut}");
        }
        write_st(
            &d.join("a.safetensors"),
            &[("model.embed_tokens.weight", safetensors::Dtype::I64, vec![1], vec![0; 8])],
        );
        assert!(matches!(HfWeights::open(&d, gemma()), Err(Error::InvalidModelFolder { .. })));
        // A second file repeating a tensor.
        write_st(
            &d.join("a.safetensors"),
            &[("model.embed_tokens.weight", safetensors::Dtype::F32, vec![1], f32s(&[1.0]))],
        );
        write_st(
            &d.join("b.safetensors"),
            &[("model.embed_tokens.weight", safetensors::Dtype::F32, vec![1], f32s(&[1.0]))],
        );
        assert!(matches!(HfWeights::open(&d, gemma()), Err(Error::InvalidModelFolder { .. })));
    }

    #[test]
    fn model_type_picks_the_architecture() {
        let d = folder("cfg");
        write_st(
            &d.join("m.safetensors"),
            &[("model.embed_tokens.weight", safetensors::Dtype::F32, vec![1], f32s(&[1.0]))],
        );
        for (ty, arch) in [
            ("gemma3_text", "gemma3"),
            ("gemma3", "gemma3"),
            ("llama", "llama"),
            ("qwen2", "qwen2"),
            ("qwen3", "qwen3"),
        ] {
            std::fs::write(d.join("config.json"), format!(r#"{{"model_type": "{ty}"}}"#)).unwrap();
            assert_eq!(HfFolder::open(&d).unwrap().architecture().name(), arch);
        }
        std::fs::write(d.join("config.json"), r#"{"model_type": "mamba"}"#).unwrap();
        assert!(matches!(HfFolder::open(&d), Err(Error::UnsupportedArchitecture { name }) if name.contains("mamba")));
        std::fs::write(d.join("config.json"), "{not json").unwrap();
        assert!(matches!(HfFolder::open(&d), Err(Error::InvalidModelFolder { .. })));
    }

    #[test]
    fn chat_template_from_either_file() {
        let d = folder("tmpl");
        assert_eq!(read_chat_template(&d).unwrap(), None);
        std::fs::write(
            d.join("tokenizer_config.json"),
            r#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#,
        )
        .unwrap();
        assert_eq!(read_chat_template(&d).unwrap().as_deref(), Some("D"));
        std::fs::write(d.join("chat_template.jinja"), "J").unwrap();
        assert_eq!(read_chat_template(&d).unwrap().as_deref(), Some("J"));
    }
}
