//! A BERT-family encoder on the CPU: the transformer of sentence-embedding models
//! (all-MiniLM-L6-v2, bge-small, e5-small and the like).
//!
//! Reference: Devlin et al. 2018, "BERT: Pre-training of Deep Bidirectional Transformers", and
//! huggingface/transformers `models/bert/modeling_bert.py` (`BertEmbeddings`, `BertSelfAttention`,
//! `BertSelfOutput`, `BertIntermediate`, `BertOutput`), which this mirrors:
//!
//! ```text
//! x   = LayerNorm(word[id] + position[p] + token_type[t])
//! per layer (post-norm):
//!   a = softmax(q·kᵀ/√d over the keys of the same text) · v      (q, k, v = x·Wᵀ + b)
//!   x = LayerNorm(x + a·Woᵀ + bo)
//!   x = LayerNorm(x + GELU(x·W1ᵀ + b1)·W2ᵀ + b2)                    (GELU with erf, as HF "gelu")
//! ```
//!
//! A batch is packed, not padded: the tokens of all texts are concatenated (`[tokens, hidden]`)
//! for the products, and each text's attention runs over its own keys only. That is exactly what
//! BERT's attention mask does to padded positions (they get −∞ before the softmax), without
//! computing them, so a batch gives the same vectors as one text at a time.
//!
//! Weights: the products run either on f32 weights through burn `flex`'s matmul, or on weights
//! quantized at load to Q8_0 through our int8 CPU kernels (`quant::cpu`, activations quantized to
//! 8 bits per block of 32 as everywhere else on the CPU path). Norms, attention and GELU run on
//! host buffers, split over the kernels' thread pool.
//!
//! On wgpu ([`BertModel::load_on`] with a wgpu device) the layers run on the device: f32 weights
//! through burn's matmul, Q8_0 weights as repacked blocks through our CubeCL kernels
//! ([`crate::quant::gpu::QMatrix`]), their activations first rounded to 8 bits per block of 32
//! ([`crate::quant::gpu::round_q8_0`]) exactly as the CPU path and llama.cpp round them: with
//! f32 activations the Q8_0 GGUF's vectors departed from llama.cpp's to cosine 0.9984. There a batch is padded, not packed:
//! texts are grouped by length (longest first), each group is one `[texts, longest]` pass, and
//! the padded keys get −10³⁰ before the softmax (BERT's attention mask), so a batch again gives
//! the same vectors as one text at a time. Groups are bounded so that the attention scores stay
//! under [`GPU_SCORES_BYTES`] (storage buffers are 128 MiB on lavapipe and many phones). The
//! embedding lookup runs on the host, as on the CPU path.

use serde::Deserialize;

use burn::tensor::{activation, Device, Tensor, TensorData};

use crate::backend::cpu_device;
use crate::model::layers::{read_f32, tensor2, Buf};
use crate::quant::cpu::pool::{self, SyncPtr};
use crate::quant::gpu::QMatrix;
use crate::quant::GgmlType;
use crate::{Error, Result};

/// The HF `config.json` of a BERT model (the fields the encoder uses).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct BertConfig {
    /// Vocabulary size (rows of the word embedding).
    pub vocab_size: usize,
    /// Hidden size (the embedding width).
    pub hidden_size: usize,
    /// Encoder layers.
    pub num_hidden_layers: usize,
    /// Attention heads (`hidden_size` must be a multiple).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Positions the model was trained for (rows of the position embedding).
    pub max_position_embeddings: usize,
    /// Token-type (segment) vocabulary.
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    /// LayerNorm epsilon.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// `gelu` (erf), or `gelu_new` / `gelu_pytorch_tanh` (tanh approximation).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// Only `absolute` is supported.
    #[serde(default = "default_pos_type")]
    pub position_embedding_type: String,
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}
fn default_pos_type() -> String {
    "absolute".into()
}

/// The feed-forward activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gelu {
    /// `0.5·x·(1 + erf(x/√2))`: HF `gelu`, what BERT and MiniLM were trained with.
    Erf,
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`: HF `gelu_new` / `gelu_pytorch_tanh`.
    Tanh,
}

impl BertConfig {
    /// Checks the numbers fit together; returns the activation.
    pub fn validate(&self) -> Result<Gelu> {
        let bad = |reason: String| Err(Error::InvalidModelFolder { reason });
        if self.hidden_size == 0 || self.num_attention_heads == 0 || self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.vocab_size == 0
            || self.intermediate_size == 0
            || self.max_position_embeddings < 2
            || self.type_vocab_size == 0
        {
            return bad(
                "vocab_size, intermediate_size, type_vocab_size must be > 0 and max_position_embeddings >= 2".into()
            );
        }
        if self.num_hidden_layers == 0
            || self.num_hidden_layers > 256
            || self.hidden_size > 65536
            || self.intermediate_size > 262144
        {
            return bad("layer count or widths out of range".into());
        }
        if self.position_embedding_type != "absolute" {
            return Err(Error::UnsupportedArchitecture {
                name: format!("bert with {} position embeddings", self.position_embedding_type),
            });
        }
        match self.hidden_act.as_str() {
            "gelu" => Ok(Gelu::Erf),
            "gelu_new" | "gelu_pytorch_tanh" => Ok(Gelu::Tanh),
            other => Err(Error::UnsupportedArchitecture { name: format!("bert with hidden_act {other}") }),
        }
    }
}

/// How the encoder's products are computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncoderWeights {
    /// f32 weights (burn `flex` matmul): the reference path.
    #[default]
    F32,
    /// Mixed: the attention output and FFN down projections quantized at load to Q8_0 (blocks of
    /// 32, f16 scale) and multiplied by the int8 CPU kernels, and the word embeddings stored in
    /// Q8_0 (rows dequantized on lookup); q/k/v and the FFN up projection stay f32.
    ///
    /// Why not every product: those two read LayerNorm outputs, whose few outlier dimensions
    /// (BERT's LayerNorm scales and shifts carry them; Kovaleva et al. 2021, "BERT Busters") make
    /// 8-bit activations per block of 32 lose the small values next to them. all-MiniLM-L6-v2
    /// with every product in Q8_0: worst cosine 0.9977 against the f32 reference on the 200
    /// golden texts (folding the LayerNorm scale into the weights: 0.9981); with these two in f32:
    /// 0.9997. Matrices whose rows are not a multiple of 32 stay f32.
    ///
    /// Whatever the mode, a tensor a GGUF stores as Q8_0 is multiplied as those Q8_0 blocks
    /// ([`TensorSource::get_q8_0`]), as llama.cpp does.
    Q8_0,
}

/// Where the encoder reads a named tensor from: `[rows, cols]` f32, row-major.
pub trait TensorSource {
    /// The tensor `name` (HF naming, without any `bert.` prefix) as f32 with its shape.
    fn get(&self, name: &str) -> Result<(Vec<f32>, [usize; 2])>;

    /// The tensor's Q8_0 blocks when the source stores it so (a Q8_0 GGUF): the products then
    /// use them as they are, whatever [`EncoderWeights`] says, as llama.cpp does. `None`
    /// otherwise (the default).
    fn get_q8_0(&self, _name: &str) -> Result<Option<(Vec<u8>, [usize; 2])>> {
        Ok(None)
    }
}

/// A linear layer `y = x·Wᵀ + b`, `W: [out, in]`.
enum Proj {
    /// `[in, out]` (transposed once at load), on the wgpu device.
    F32 { wt: Tensor<2> },
    /// `[out, in]` f32 as stored, on the host (the CPU path: [`crate::quant::cpu::dense`]).
    HostF32 { w: Vec<f32> },
    /// `[out, in]` in Q8_0 blocks (CPU kernels).
    Q8 { blocks: Vec<u8> },
    /// `[out, in]` Q8_0 blocks repacked on the GPU (CubeCL kernels).
    GpuQ8(QMatrix),
}

struct Linear {
    w: Proj,
    b: Vec<f32>,
    /// The bias on the GPU (wgpu models only).
    b_dev: Option<Tensor<1>>,
    out: usize,
    inp: usize,
}

/// Largest attention-score tensor (`texts × heads × longest²` f32) of one GPU pass.
pub const GPU_SCORES_BYTES: usize = 64 << 20;
/// Most padded tokens (`texts × longest`) in one GPU pass.
const GPU_PASS_TOKENS: usize = 4096;
/// What a padded key gets before the softmax (as HF's `finfo.min`: its weight is exactly 0).
const MASKED: f32 = -1e30;

impl Linear {
    fn load(
        src: &dyn TensorSource,
        w_name: &str,
        b_name: &str,
        out: usize,
        inp: usize,
        mode: EncoderWeights,
        device: &Device,
    ) -> Result<Self> {
        let (b, bshape) = src.get(b_name)?;
        expect_shape(b_name, bshape, [1, out])?;
        if inp % 32 == 0 {
            if let Some((blocks, shape)) = src.get_q8_0(w_name)? {
                expect_shape(w_name, shape, [out, inp])?;
                return Self::finish(Proj::Q8 { blocks }, b, out, inp, device);
            }
        }
        let (w, shape) = src.get(w_name)?;
        expect_shape(w_name, shape, [out, inp])?;
        Self::from_parts(w, b, out, inp, mode, device)
    }

    /// Several weights with the same input stacked into one (q/k/v): `[Σ out, in]`.
    fn load_stacked(
        src: &dyn TensorSource,
        names: &[(&str, &str)],
        out: usize,
        inp: usize,
        mode: EncoderWeights,
        device: &Device,
    ) -> Result<Self> {
        let mut b = Vec::with_capacity(names.len() * out);
        for (_, bn) in names {
            let (bi, bshape) = src.get(bn)?;
            expect_shape(bn, bshape, [1, out])?;
            b.extend_from_slice(&bi);
        }
        // Stored as Q8_0 (all of them): the blocks stacked as they are, rows after rows.
        if inp % 32 == 0 {
            let mut blocks = Vec::new();
            let mut all = true;
            for (wn, _) in names {
                match src.get_q8_0(wn)? {
                    Some((q, shape)) => {
                        expect_shape(wn, shape, [out, inp])?;
                        blocks.extend_from_slice(&q);
                    }
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            if all {
                return Self::finish(Proj::Q8 { blocks }, b, names.len() * out, inp, device);
            }
        }
        let mut w = Vec::with_capacity(names.len() * out * inp);
        for (wn, _) in names {
            let (wi, shape) = src.get(wn)?;
            expect_shape(wn, shape, [out, inp])?;
            w.extend_from_slice(&wi);
        }
        Self::from_parts(w, b, names.len() * out, inp, mode, device)
    }

    fn from_parts(
        w: Vec<f32>,
        b: Vec<f32>,
        out: usize,
        inp: usize,
        mode: EncoderWeights,
        device: &Device,
    ) -> Result<Self> {
        let w = if mode == EncoderWeights::Q8_0 && inp % 32 == 0 {
            Proj::Q8 { blocks: quantize_q8_0(&w) }
        } else if !crate::model::gpu_fused::is_wgpu(device) {
            Proj::HostF32 { w }
        } else {
            let mut t = vec![0f32; w.len()];
            for r in 0..out {
                for c in 0..inp {
                    t[c * out + r] = w[r * inp + c];
                }
            }
            Proj::F32 { wt: tensor2(t, inp, out, device) }
        };
        Self::finish(w, b, out, inp, device)
    }

    /// On a wgpu device: Q8_0 blocks uploaded for the CubeCL kernels, the bias uploaded too.
    fn finish(w: Proj, b: Vec<f32>, out: usize, inp: usize, device: &Device) -> Result<Self> {
        if !crate::model::gpu_fused::is_wgpu(device) {
            return Ok(Self { w, b, b_dev: None, out, inp });
        }
        let w = match w {
            Proj::Q8 { blocks } => Proj::GpuQ8(QMatrix::upload(GgmlType::Q8_0, &blocks, out, inp, u64::MAX, device)?),
            other => other,
        };
        let b_dev = Some(Tensor::from_data(TensorData::new(b.clone(), [out]), device));
        Ok(Self { w, b, b_dev, out, inp })
    }

    /// The GPU path: x: [n, in] on the device -> [n, out] on the device.
    fn forward_dev(&self, x: Tensor<2>) -> Result<Tensor<2>> {
        let y = match &self.w {
            Proj::F32 { wt } => x.matmul(wt.clone()),
            Proj::GpuQ8(q) => {
                // Tests only: f32 activations, the wrong variant llama.cpp's Q8_0 vectors catch.
                #[cfg(test)]
                if F32_ACTIVATIONS.with(|u| u.get()) {
                    return self.add_bias_dev(q.matmul(x)?);
                }
                q.matmul(crate::quant::gpu::round_q8_0(x)?)?
            }
            Proj::Q8 { .. } | Proj::HostF32 { .. } => {
                return Err(Error::Backend { reason: "encoder: host weights on the gpu path".into() })
            }
        };
        self.add_bias_dev(y)
    }

    fn add_bias_dev(&self, y: Tensor<2>) -> Result<Tensor<2>> {
        let b = self.b_dev.as_ref().ok_or_else(|| Error::Backend { reason: "encoder: no device bias".into() })?;
        Ok(y.add(b.clone().unsqueeze::<2>()))
    }

    /// x: [n, in] -> [n, out], in a buffer of the thread's free list (no allocation per call
    /// once warm).
    fn forward(&self, x: &[f32], n: usize) -> Result<Buf> {
        if n.checked_mul(self.inp) != Some(x.len()) {
            return Err(Error::DimensionMismatch { expected: n.saturating_mul(self.inp), found: x.len() });
        }
        let mut y = Buf::new(n * self.out);
        match &self.w {
            Proj::HostF32 { w } => {
                // Bias added in the kernel.
                crate::quant::cpu::dense::matmul_f32(w, self.out, self.inp, Some(&self.b), x, n, &mut y)?;
                return Ok(y);
            }
            Proj::Q8 { blocks } => {
                let mut q = crate::quant::cpu::Quantized::new(x, n, self.inp)?;
                q.matmul_into(GgmlType::Q8_0, blocks, self.out, &mut y)?;
            }
            Proj::F32 { .. } | Proj::GpuQ8(_) => {
                return Err(Error::Backend { reason: "encoder: gpu weights on the cpu path".into() })
            }
        }
        for row in y.chunks_exact_mut(self.out) {
            for (v, b) in row.iter_mut().zip(&self.b) {
                *v += b;
            }
        }
        Ok(y)
    }
}

fn expect_shape(name: &str, found: [usize; 2], expected: [usize; 2]) -> Result<()> {
    if found != expected {
        return Err(Error::TensorShape { name: name.to_owned(), expected, found });
    }
    Ok(())
}

/// Quantizes rows (length a multiple of 32) to Q8_0 blocks as ggml's `quantize_row_q8_0_ref`:
/// per 32 values `d = max|x|/127`, `q = round(x/d)`, stored as `f16 d` + 32 `i8`.
pub(crate) fn quantize_q8_0(x: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(x.len() / 32 * 34);
    for blk in x.chunks_exact(32) {
        let amax = blk.iter().fold(0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        out.extend_from_slice(&half::f16::from_f32(d).to_le_bytes());
        out.extend(blk.iter().map(|v| ((v * id).round() as i8) as u8));
    }
    out
}

struct LayerNorm {
    w: Vec<f32>,
    b: Vec<f32>,
    /// Weight and bias on the GPU (wgpu models only).
    dev: Option<(Tensor<1>, Tensor<1>)>,
}

impl LayerNorm {
    fn load(src: &dyn TensorSource, prefix: &str, hidden: usize, device: &Device) -> Result<Self> {
        let (w, ws) = src.get(&format!("{prefix}.weight"))?;
        expect_shape(&format!("{prefix}.weight"), ws, [1, hidden])?;
        let (b, bs) = src.get(&format!("{prefix}.bias"))?;
        expect_shape(&format!("{prefix}.bias"), bs, [1, hidden])?;
        let dev = crate::model::gpu_fused::is_wgpu(device).then(|| {
            let t = |v: &[f32]| Tensor::from_data(TensorData::new(v.to_vec(), [hidden]), device);
            (t(&w), t(&b))
        });
        Ok(Self { w, b, dev })
    }

    /// The GPU path: `LayerNorm(x)` over the rows of `x: [n, h]` (two-pass mean and variance).
    fn forward_dev(&self, x: Tensor<2>, eps: f32) -> Result<Tensor<2>> {
        let (w, b) = self.dev.as_ref().ok_or_else(|| Error::Backend { reason: "encoder: no device norm".into() })?;
        let xc = x.clone().sub(x.mean_dim(1));
        let var = xc.clone().square().mean_dim(1);
        Ok(xc.div(var.add_scalar(eps).sqrt()).mul(w.clone().unsqueeze::<2>()).add(b.clone().unsqueeze::<2>()))
    }
}

/// The word embeddings: f32 rows, or Q8_0 rows dequantized on lookup.
enum WordTable {
    F32(Vec<f32>),
    Q8 { blocks: Vec<u8>, row_bytes: usize },
}

impl WordTable {
    /// Adds row `id` (`h` values) to `dst`.
    fn add_row(&self, id: usize, dst: &mut [f32]) -> Result<()> {
        let h = dst.len();
        match self {
            Self::F32(v) => dst.iter_mut().zip(&v[id * h..][..h]).for_each(|(d, w)| *d += w),
            Self::Q8 { blocks, row_bytes } => {
                let row = crate::quant::dequantize(GgmlType::Q8_0, &blocks[id * row_bytes..][..*row_bytes], dst.len())?;
                dst.iter_mut().zip(&row).for_each(|(d, w)| *d += w);
            }
        }
        Ok(())
    }
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    up: Linear,
    down: Linear,
    out_norm: LayerNorm,
}

/// The encoder: embeddings and layers, loaded and ready.
pub struct BertModel {
    cfg: BertConfig,
    gelu: Gelu,
    word: WordTable,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    /// The wgpu device the layers run on; `None`: the CPU.
    gpu: Option<Device>,
}

impl std::fmt::Debug for BertModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BertModel({} layers, hidden {})", self.cfg.num_hidden_layers, self.cfg.hidden_size)
    }
}

impl BertModel {
    /// Loads every weight from `src` (HF names) and checks each shape against `cfg`; the CPU path.
    pub fn load(cfg: BertConfig, src: &dyn TensorSource, mode: EncoderWeights) -> Result<Self> {
        Self::load_on(cfg, src, mode, &cpu_device())
    }

    /// [`BertModel::load`] onto `device`: the CPU (burn `flex`) or a wgpu device, where the layers
    /// then run (see the module docs).
    pub fn load_on(cfg: BertConfig, src: &dyn TensorSource, mode: EncoderWeights, device: &Device) -> Result<Self> {
        let gelu = cfg.validate()?;
        let gpu = crate::model::gpu_fused::is_wgpu(device).then(|| device.clone());
        let device = device.clone();
        let h = cfg.hidden_size;
        let get = |name: &str, shape: [usize; 2]| -> Result<Vec<f32>> {
            let (v, s) = src.get(name)?;
            expect_shape(name, s, shape)?;
            Ok(v)
        };
        let word_name = "embeddings.word_embeddings.weight";
        let stored_q8 = if h % 32 == 0 { src.get_q8_0(word_name)? } else { None };
        let word = if let Some((blocks, shape)) = stored_q8 {
            expect_shape(word_name, shape, [cfg.vocab_size, h])?;
            WordTable::Q8 { blocks, row_bytes: h / 32 * 34 }
        } else {
            let word = get(word_name, [cfg.vocab_size, h])?;
            if mode == EncoderWeights::Q8_0 && h % 32 == 0 {
                WordTable::Q8 { blocks: quantize_q8_0(&word), row_bytes: h / 32 * 34 }
            } else {
                WordTable::F32(word)
            }
        };
        let position = get("embeddings.position_embeddings.weight", [cfg.max_position_embeddings, h])?;
        let token_type = get("embeddings.token_type_embeddings.weight", [cfg.type_vocab_size, h])?;
        let emb_norm = LayerNorm::load(src, "embeddings.LayerNorm", h, &cpu_device())?;
        let mut layers: Vec<Layer> = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{l}");
            let n = |s: &str| format!("{p}.{s}");
            let qkv_names = [
                (n("attention.self.query.weight"), n("attention.self.query.bias")),
                (n("attention.self.key.weight"), n("attention.self.key.bias")),
                (n("attention.self.value.weight"), n("attention.self.value.bias")),
            ];
            let qkv_refs: Vec<(&str, &str)> = qkv_names.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            // Q8_0 mode quantizes only the products whose input is not a LayerNorm output (see
            // `EncoderWeights::Q8_0`): q/k/v and the up projection stay f32.
            let qkv = Linear::load_stacked(src, &qkv_refs, h, h, EncoderWeights::F32, &device)?;
            let attn_out = Linear::load(
                src,
                &n("attention.output.dense.weight"),
                &n("attention.output.dense.bias"),
                h,
                h,
                mode,
                &device,
            )?;
            let attn_norm = LayerNorm::load(src, &n("attention.output.LayerNorm"), h, &device)?;
            let up = Linear::load(
                src,
                &n("intermediate.dense.weight"),
                &n("intermediate.dense.bias"),
                cfg.intermediate_size,
                h,
                EncoderWeights::F32,
                &device,
            )?;
            let down = Linear::load(
                src,
                &n("output.dense.weight"),
                &n("output.dense.bias"),
                h,
                cfg.intermediate_size,
                mode,
                &device,
            )?;
            let out_norm = LayerNorm::load(src, &n("output.LayerNorm"), h, &device)?;
            layers.push(Layer { qkv, attn_out, attn_norm, up, down, out_norm });
        }
        Ok(Self { cfg, gelu, word, position, token_type, emb_norm, layers, gpu })
    }

    /// Whether the layers run on a wgpu device.
    pub fn on_gpu(&self) -> bool {
        self.gpu.is_some()
    }

    /// The config.
    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }

    /// The hidden states of a packed batch.
    ///
    /// `seqs[i]`: the token ids and token-type ids of text `i` (each at most
    /// `max_position_embeddings` long, ids in range) -> `[Σ len, hidden]`, text after text.
    pub fn forward(&self, seqs: &[(&[u32], &[u32])]) -> Result<Vec<f32>> {
        let h = self.cfg.hidden_size;
        let mut spans = Vec::with_capacity(seqs.len());
        let mut total = 0usize;
        for (ids, types) in seqs {
            if ids.len() != types.len() {
                return Err(Error::DimensionMismatch { expected: ids.len(), found: types.len() });
            }
            if ids.len() > self.cfg.max_position_embeddings {
                return Err(Error::ContextOverflow { max: self.cfg.max_position_embeddings, requested: ids.len() });
            }
            spans.push((total, ids.len()));
            total += ids.len();
        }
        // Embeddings: word + position + token type, then LayerNorm.
        let mut x = vec![0f32; total * h];
        for ((ids, types), &(start, _)) in seqs.iter().zip(&spans) {
            for (p, (&id, &tt)) in ids.iter().zip(types.iter()).enumerate() {
                let (id, tt) = (id as usize, tt as usize);
                if id >= self.cfg.vocab_size || tt >= self.cfg.type_vocab_size {
                    return Err(Error::InvalidParameter {
                        name: "token id",
                        reason: format!("out of range for a vocabulary of {}", self.cfg.vocab_size),
                    });
                }
                let row = &mut x[(start + p) * h..(start + p + 1) * h];
                let (ps, t) = (&self.position[p * h..][..h], &self.token_type[tt * h..][..h]);
                for i in 0..h {
                    row[i] = ps[i] + t[i];
                }
                self.word.add_row(id, row)?;
            }
        }
        let eps = self.cfg.layer_norm_eps as f32;
        layer_norm_rows(&mut x, None, &self.emb_norm, eps, h);
        if let Some(device) = &self.gpu {
            return self.forward_gpu(device, &x, &spans);
        }
        for layer in &self.layers {
            let qkv = layer.qkv.forward(&x, total)?;
            let ctx = self.attention(&qkv, &spans, total);
            let a = layer.attn_out.forward(&ctx, total)?;
            layer_norm_rows(&mut x, Some(&a[..]), &layer.attn_norm, eps, h);
            let mut u = layer.up.forward(&x, total)?;
            gelu_all(&mut u, self.gelu);
            let d = layer.down.forward(&u, total)?;
            layer_norm_rows(&mut x, Some(&d[..]), &layer.out_norm, eps, h);
        }
        Ok(x)
    }

    /// The layers on the GPU over the embedded rows `x: [Σ len, hidden]` (text after text, as
    /// `spans` says) -> the hidden states in the same order. Texts are grouped longest first into
    /// padded passes (see the module docs).
    fn forward_gpu(&self, device: &Device, x: &[f32], spans: &[(usize, usize)]) -> Result<Vec<f32>> {
        let heads = self.cfg.num_attention_heads;
        let mut out = vec![0f32; x.len()];
        let mut order: Vec<usize> = (0..spans.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(spans[i].1));
        let fits = |b: usize, l: usize| b * l <= GPU_PASS_TOKENS.max(l) && b * heads * l * l * 4 <= GPU_SCORES_BYTES;
        let mut at = 0;
        while at < order.len() {
            let l = spans[order[at]].1.max(1);
            let mut b = 1;
            while at + b < order.len() && fits(b + 1, l) {
                b += 1;
            }
            self.pass_gpu(device, x, spans, &order[at..at + b], l, &mut out)?;
            at += b;
        }
        Ok(out)
    }

    /// One padded pass of the texts `group` (each at most `l` tokens) on the GPU; writes their
    /// hidden states into `out` at their spans.
    fn pass_gpu(
        &self,
        device: &Device,
        x: &[f32],
        spans: &[(usize, usize)],
        group: &[usize],
        l: usize,
        out: &mut [f32],
    ) -> Result<()> {
        let h = self.cfg.hidden_size;
        let heads = self.cfg.num_attention_heads;
        let hd = h / heads;
        let (b, n) = (group.len(), group.len() * l);
        let eps = self.cfg.layer_norm_eps as f32;
        let mut xs = vec![0f32; n * h];
        let mut mask = vec![MASKED; n];
        for (slot, &i) in group.iter().enumerate() {
            let (start, len) = spans[i];
            xs[slot * l * h..][..len * h].copy_from_slice(&x[start * h..][..len * h]);
            mask[slot * l..][..len].fill(0.0);
        }
        // Tests only: padded keys visible, the wrong variant the goldens must catch.
        #[cfg(test)]
        if UNMASKED.with(|u| u.get()) {
            mask.fill(0.0);
        }
        let mask = Tensor::<4>::from_data(TensorData::new(mask, [b, 1, 1, l]), device);
        let scale = 1.0 / (hd as f32).sqrt();
        let mut xt = tensor2(xs, n, h, device);
        for layer in &self.layers {
            let qkv = layer.qkv.forward_dev(xt.clone())?;
            // [n, 3h] -> q, k, v as [b, heads, l, hd].
            let part =
                |i: usize| qkv.clone().slice([0..n, i * h..(i + 1) * h]).reshape([b, l, heads, hd]).swap_dims(1, 2);
            let (q, k, v) = (part(0).mul_scalar(scale), part(1), part(2));
            let p = activation::softmax(q.matmul(k.transpose()).add(mask.clone()), 3);
            let ctx = p.matmul(v).swap_dims(1, 2).reshape([n, h]);
            let a = layer.attn_out.forward_dev(ctx)?;
            xt = layer.attn_norm.forward_dev(xt.add(a), eps)?;
            let u = layer.up.forward_dev(xt.clone())?;
            let u = match self.gelu {
                Gelu::Erf => activation::gelu(u),
                Gelu::Tanh => activation::gelu_approximate(u),
            };
            let d = layer.down.forward_dev(u)?;
            xt = layer.out_norm.forward_dev(xt.add(d), eps)?;
        }
        let hidden = read_f32(xt)?;
        for (slot, &i) in group.iter().enumerate() {
            let (start, len) = spans[i];
            out[start * h..][..len * h].copy_from_slice(&hidden[slot * l * h..][..len * h]);
        }
        Ok(())
    }

    /// Self-attention of each text over its own tokens: `qkv: [T, 3·hidden]` -> `[T, hidden]`.
    /// One task per (text, head), each writing its own columns of its own rows.
    fn attention(&self, qkv: &[f32], spans: &[(usize, usize)], total: usize) -> Buf {
        let h = self.cfg.hidden_size;
        let heads = self.cfg.num_attention_heads;
        let hd = h / heads;
        let scale = 1.0 / (hd as f32).sqrt();
        // Every value is written below (each task its rows' columns of its head).
        let mut ctx = Buf::new(total * h);
        // Tests only: attention over the whole pass, the wrong variant the goldens must catch.
        #[cfg(test)]
        let all = [(0, total)];
        #[cfg(test)]
        let spans: &[(usize, usize)] = if UNMASKED.with(|u| u.get()) { &all } else { spans };
        let out = SyncPtr(ctx.as_mut_ptr());
        let task = |t: usize| {
            let (s, hh) = (t / heads, t % heads);
            let (start, len) = spans[s];
            let mut scores = vec![0f32; len];
            let mut acc = vec![0f32; hd];
            for i in 0..len {
                let q = &qkv[(start + i) * 3 * h + hh * hd..][..hd];
                let mut m = f32::NEG_INFINITY;
                for (j, sc) in scores.iter_mut().enumerate() {
                    let k = &qkv[(start + j) * 3 * h + h + hh * hd..][..hd];
                    *sc = dot(q, k) * scale;
                    m = m.max(*sc);
                }
                scores.iter_mut().for_each(|sc| *sc -= m);
                // The CPU path's vectorized exp (Cephes, ~1 ulp), as the chat models' softmax.
                crate::quant::cpu::exp_in_place(&mut scores);
                let sum: f32 = scores.iter().sum();
                acc.fill(0.0);
                for (j, &p) in scores.iter().enumerate() {
                    crate::quant::cpu::axpy_f32(&mut acc, p, &qkv[(start + j) * 3 * h + 2 * h + hh * hd..][..hd]);
                }
                let inv = 1.0 / sum;
                // SAFETY: row `start + i`, columns `hh·hd..(hh+1)·hd` belong to this task alone
                // (spans are disjoint, heads split the columns); `ctx` outlives `for_each`.
                let dst = unsafe { std::slice::from_raw_parts_mut(out.get().add((start + i) * h + hh * hd), hd) };
                for (d, a) in dst.iter_mut().zip(&acc) {
                    *d = a * inv;
                }
            }
        };
        pool::for_each(spans.len() * heads, &task);
        ctx
    }
}

#[cfg(test)]
thread_local! {
    /// Tests only: when set on the calling thread, attention ignores the text boundaries.
    pub(crate) static UNMASKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// Tests only: when set on the calling thread, the GPU's Q8_0 products take f32 activations.
    pub(crate) static F32_ACTIVATIONS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight partial sums, so the compiler vectorizes it.
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ra.iter().zip(rb) {
        s += x * y;
    }
    s
}

/// Rows per pool task for the element-wise passes.
const ROWS_PER_TASK: usize = 16;

/// `x = LayerNorm(x + add)` row by row (`add` absent: `LayerNorm(x)`), statistics in f64 over
/// each row of `h`.
fn layer_norm_rows(x: &mut [f32], add: Option<&[f32]>, ln: &LayerNorm, eps: f32, h: usize) {
    let rows = x.len() / h;
    let ptr = SyncPtr(x.as_mut_ptr());
    let task = |t: usize| {
        let r0 = t * ROWS_PER_TASK;
        let r1 = (r0 + ROWS_PER_TASK).min(rows);
        // SAFETY: rows r0..r1 belong to this task alone; `x` outlives `for_each`.
        let part = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(r0 * h), (r1 - r0) * h) };
        for (i, row) in part.chunks_exact_mut(h).enumerate() {
            if let Some(a) = add {
                for (v, &b) in row.iter_mut().zip(&a[(r0 + i) * h..][..h]) {
                    *v += b;
                }
            }
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / h as f64;
            let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / h as f64;
            let inv = 1.0 / (var + eps as f64).sqrt();
            for ((v, &w), &b) in row.iter_mut().zip(&ln.w).zip(&ln.b) {
                *v = ((*v as f64 - mean) * inv) as f32 * w + b;
            }
        }
    };
    pool::for_each(rows.div_ceil(ROWS_PER_TASK), &task);
}

/// Values per pool task of the GELU pass (a 16-token text's `16 × 1536` splits over the threads).
const GELU_PER_TASK: usize = 4096;

fn gelu_all(x: &mut [f32], kind: Gelu) {
    let len = x.len();
    let ptr = SyncPtr(x.as_mut_ptr());
    let task = |t: usize| {
        let i0 = t * GELU_PER_TASK;
        let i1 = (i0 + GELU_PER_TASK).min(len);
        // SAFETY: values i0..i1 belong to this task alone; `x` outlives `for_each`.
        let part = unsafe { std::slice::from_raw_parts_mut(ptr.get().add(i0), i1 - i0) };
        match kind {
            Gelu::Erf => crate::quant::cpu::gelu_erf(part),
            Gelu::Tanh => part.iter_mut().for_each(|v| {
                let u = *v;
                *v = 0.5 * u * (1.0 + (0.797_884_6 * (u + 0.044715 * u * u * u)).tanh());
            }),
        }
    };
    pool::for_each(len.div_ceil(GELU_PER_TASK), &task);
}

/// erf(x), absolute error below 1.2e-7 (Numerical Recipes' `erfc` Chebyshev fit, in f64): the
/// reference of the vectorized f32 version the encoder uses (`quant::cpu::erf_approx`).
#[cfg(test)]
pub(crate) fn erf(x: f32) -> f32 {
    let z = (x as f64).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    let e = 1.0 - r;
    (if x >= 0.0 { e } else { -e }) as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erf_matches_known_values() {
        // erf values from Abramowitz & Stegun table 7.1.
        for (x, want) in [
            (0.0f32, 0.0f64),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265_0),
            (-1.5, -0.966_105_146_5),
            (4.0, 0.999_999_984_6),
        ] {
            assert!((erf(x) as f64 - want).abs() < 2e-7, "erf({x}) = {} want {want}", erf(x));
        }
    }

    #[test]
    fn q8_0_blocks_round_trip() {
        let x: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
        let b = quantize_q8_0(&x);
        assert_eq!(b.len(), 2 * 34);
        let back = crate::quant::dequantize(GgmlType::Q8_0, &b, 64).expect("dequantize");
        for (a, r) in x.iter().zip(&back) {
            // One step of the block's scale (3/127) at most, plus the f16 rounding of the scale.
            assert!((a - r).abs() <= 3.0 / 127.0 * 0.51 + 1e-3, "{a} vs {r}");
        }
    }
}
