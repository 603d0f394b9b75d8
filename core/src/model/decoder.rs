//! The decoder-only transformer every supported architecture is: one implementation whose
//! choices (norm placement, activation, RoPE layout and scaling, q/k norm, q/k/v biases,
//! sliding-window layers, embedding scale) are data in a [`DecoderConfig`], the way llama.cpp's
//! graph builders take an activation and a RoPE type. An architecture file (`gemma3.rs`,
//! `llama.rs`, …) only reads its hyper-parameters into a `DecoderConfig` and names its tensors.
//!
//! Three paths run the same expressions: burn tensor ops (`block_forward`), the fused GPU kernels
//! (`block_forward_fused`, wgpu) and the CPU pass on host buffers (`block_forward_host`).

/// Where the RMSNorms sit in a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NormPlacement {
    /// `x + attn(norm(x))`, `x + ffn(norm(x))` (Llama, Qwen).
    Pre,
    /// Gemma's sandwich: `x + post_norm(attn(norm(x)))`, `x + post_norm(ffn(norm(x)))`.
    Sandwich,
}

/// The gated MLP's activation: `down(act(gate·x) · (up·x))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// GELU, tanh approximation (Gemma's GeGLU).
    GeluTanh,
    /// SiLU (SwiGLU: Llama, Qwen).
    Silu,
}

/// Which elements RoPE rotates together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeLayout {
    /// llama.cpp's "norm" layout: adjacent pairs `(2i, 2i+1)` (Llama's GGUF q/k are permuted for it).
    Norm,
    /// NEOX / `rotate_half`: pairs `(i, i + hd/2)` (Gemma, Qwen, and HF's unpermuted Llama).
    Neox,
}

/// How RoPE frequencies are scaled (on the layers that are not sliding-window).
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// None.
    None,
    /// Positions divided by the factor.
    Linear(f32),
    /// Per-frequency divisors, `hd/2` of them (Llama 3's `rope_freqs`; ggml's `freq_factors`).
    Factors(Vec<f32>),
}

/// Sliding-window attention on all layers but every `pattern`-th (Gemma 3: window 512, pattern 6).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlidingWindow {
    /// Keys a query sees, itself included.
    pub size: usize,
    /// Layer `il` is global iff `il % pattern == pattern - 1`.
    pub pattern: usize,
    /// RoPE base of the sliding-window layers (unscaled).
    pub rope_theta: f32,
}

/// One model's hyper-parameters and architectural choices.
#[derive(Debug, Clone, PartialEq)]
pub struct DecoderConfig {
    /// The architecture's GGUF name (for messages).
    pub arch: &'static str,
    /// Model width (`n_embd`).
    pub hidden_size: usize,
    /// MLP inner width (`n_ff`).
    pub intermediate_size: usize,
    /// Number of transformer blocks.
    pub num_hidden_layers: usize,
    /// Query heads.
    pub num_attention_heads: usize,
    /// Key/value heads (grouped-query attention).
    pub num_key_value_heads: usize,
    /// Per-head dimension (need not be `hidden_size / heads`: Qwen 3).
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// Norm placement.
    pub norm: NormPlacement,
    /// MLP activation.
    pub activation: Activation,
    /// Per-head RMSNorm of q and k before RoPE (Gemma 3, Qwen 3).
    pub qk_norm: bool,
    /// Biases on the q/k/v projections (Qwen 2).
    pub qkv_bias: bool,
    /// RoPE pairing.
    pub rope_layout: RopeLayout,
    /// RoPE base of the global layers.
    pub rope_theta: f32,
    /// RoPE scaling of the global layers.
    pub rope_scaling: RopeScaling,
    /// Sliding-window layers, if any.
    pub sliding: Option<SlidingWindow>,
    /// Token embeddings are multiplied by this (Gemma: `sqrt(hidden)`; else 1).
    pub embed_scale: f32,
    /// Queries are multiplied by this after RoPE (`1/sqrt(head_dim)`, or Gemma's
    /// `query_pre_attn_scalar^-0.5`).
    pub attn_scale: f32,
    /// Maximum context the model was trained for.
    pub max_position_embeddings: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Final logit softcap, if any.
    pub final_logit_softcapping: Option<f32>,
}

impl DecoderConfig {
    /// Rejects sizes no real checkpoint has (and that would make the loader allocate absurdly):
    /// `Err((field, why))` with the `config.json` field name.
    pub fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.hidden_size == 0 || self.hidden_size > 1 << 16 {
            return Err(("hidden_size", format!("{} out of range", self.hidden_size)));
        }
        if self.num_hidden_layers == 0 || self.num_hidden_layers > 512 {
            return Err(("num_hidden_layers", format!("{} out of range", self.num_hidden_layers)));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) || self.head_dim > 1024 {
            return Err(("head_dim", format!("{} is not an even size <= 1024", self.head_dim)));
        }
        if self.intermediate_size == 0 || self.intermediate_size > 1 << 18 {
            return Err(("intermediate_size", format!("{} out of range", self.intermediate_size)));
        }
        if let Some(w) = &self.sliding {
            if w.size == 0 {
                return Err(("sliding_window", "0".into()));
            }
            if w.pattern == 0 {
                return Err(("sliding_window_pattern", "0".into()));
            }
        }
        let (heads, kv) = (self.num_attention_heads, self.num_key_value_heads);
        if heads == 0 || kv == 0 || heads % kv != 0 || heads > 1024 {
            return Err(("num_key_value_heads", format!("{heads} query heads cannot be grouped over {kv} kv heads")));
        }
        if let RopeScaling::Factors(f) = &self.rope_scaling {
            if f.len() != self.head_dim / 2 || f.iter().any(|v| !v.is_finite() || *v <= 0.0) {
                return Err(("rope_scaling", format!("{} frequency factors for a head of {}", f.len(), self.head_dim)));
            }
        }
        if let RopeScaling::Linear(f) = self.rope_scaling {
            if !f.is_finite() || f <= 0.0 {
                return Err(("rope_scaling", format!("linear factor {f}")));
            }
        }
        Ok(())
    }

    /// `[rows, row length]` of every weight the model reads (a vector is one row): what
    /// [`Decoder::check_shapes`] holds a checkpoint to. `output` is the untied LM head, if any.
    pub fn weight_shapes(&self, output: bool) -> Vec<(WeightId, [usize; 2])> {
        let (d, ff, hd) = (self.hidden_size, self.intermediate_size, self.head_dim);
        let (q, kv) = (self.num_attention_heads * hd, self.num_key_value_heads * hd);
        let sandwich = self.norm == NormPlacement::Sandwich;
        let mut v = vec![(WeightId::TokenEmbedding, [self.vocab_size, d]), (WeightId::OutputNorm, [1, d])];
        if output {
            v.push((WeightId::Output, [self.vocab_size, d]));
        }
        for layer in 0..self.num_hidden_layers {
            v.extend([
                (WeightId::AttnNorm { layer }, [1, d]),
                (WeightId::AttnQ { layer }, [q, d]),
                (WeightId::AttnK { layer }, [kv, d]),
                (WeightId::AttnV { layer }, [kv, d]),
                (WeightId::AttnOutput { layer }, [d, q]),
            ]);
            if self.qk_norm {
                v.extend([(WeightId::AttnQNorm { layer }, [1, hd]), (WeightId::AttnKNorm { layer }, [1, hd])]);
            }
            if self.qkv_bias {
                v.extend([
                    (WeightId::AttnQBias { layer }, [1, q]),
                    (WeightId::AttnKBias { layer }, [1, kv]),
                    (WeightId::AttnVBias { layer }, [1, kv]),
                ]);
            }
            if sandwich {
                v.push((WeightId::PostAttnNorm { layer }, [1, d]));
            }
            v.extend([
                (WeightId::FfnNorm { layer }, [1, d]),
                (WeightId::FfnGate { layer }, [ff, d]),
                (WeightId::FfnUp { layer }, [ff, d]),
                (WeightId::FfnDown { layer }, [d, ff]),
            ]);
            if sandwich {
                v.push((WeightId::PostFfnNorm { layer }, [1, d]));
            }
        }
        v
    }

    /// Whether layer `il` uses the sliding window (`il % pattern < pattern - 1`).
    pub fn is_sliding(&self, il: usize) -> bool {
        self.sliding.is_some_and(|w| w.pattern > 0 && il % w.pattern < w.pattern - 1)
    }

    /// The RoPE base and scaling of layer kind `sliding`.
    pub(crate) fn rope_of(&self, sliding: bool) -> (f32, std::borrow::Cow<'_, RopeScaling>) {
        match self.sliding {
            Some(w) if sliding => (w.rope_theta, std::borrow::Cow::Owned(RopeScaling::None)),
            _ => (self.rope_theta, std::borrow::Cow::Borrowed(&self.rope_scaling)),
        }
    }
}

use burn::tensor::{activation, Device, Tensor};

use super::gpu_fused;
use super::layers::{
    add_rows_host, apply_rope, attention, attention_rows, embed_rows, embed_rows_host, glu_host, norm_rope_host,
    rope_tables, rope_tables_host, Bias, Buf, HostIn, Linear, LmHead, RmsNorm, WeightMode,
};
use super::{CausalLm, StepLogits};
use crate::kv_cache::{CacheLayout, KvCache};
use crate::lora::{DeviceLoraSet, LoraSet, Proj};
use crate::weights::{SharedWeight, WeightId, WeightSource};
use crate::Result;

/// `l`'s product of `x`, plus the adapters' deltas for projection `p` of layer `il` (the base
/// product is the same either way; without adapters `x` is not kept past it).
pub(super) fn adapted(lora: &DeviceLoraSet, il: usize, p: Proj, l: &Linear, x: Tensor<2>) -> Result<Tensor<2>> {
    if lora.is_empty() {
        return l.forward(x);
    }
    let y = l.forward(x.clone())?;
    lora.apply(il, p, &x, y)
}

/// One transformer block.
#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    /// Per-head q/k norms (`DecoderConfig::qk_norm`).
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    /// q/k/v biases (`DecoderConfig::qkv_bias`).
    bias: Option<[Bias; 3]>,
    /// The sandwich's post-attention norm.
    post_attn_norm: Option<RmsNorm>,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    /// The sandwich's post-FFN norm.
    post_ffn_norm: Option<RmsNorm>,
    sliding: bool,
}

/// RoPE tables of one pass: `[global, sliding]` (the second only with sliding-window layers).
type RopePair<T> = [(T, T); 2];

/// A decoder-only transformer with weights on one device.
pub struct Decoder {
    cfg: DecoderConfig,
    blocks: Vec<Block>,
    output_norm: RmsNorm,
    lm_head: LmHead,
    /// The embedding matrix, read on the host a row at a time.
    embedding: SharedWeight,
    device: Device,
    /// Run the glue through the fused GPU kernels (`gpu_fused`): on wgpu, unless turned off.
    fused: bool,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Decoder {
    /// Loads the model from `weights` onto `device`. `max_buffer` bounds any single device buffer.
    pub fn load(
        cfg: DecoderConfig,
        src: &dyn WeightSource,
        mode: WeightMode,
        device: &Device,
        max_buffer: u64,
    ) -> Result<Self> {
        Self::check_shapes(&cfg, src)?;
        let eps = cfg.rms_norm_eps;
        let sandwich = cfg.norm == NormPlacement::Sandwich;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for layer in 0..cfg.num_hidden_layers {
            let lin = |id| Linear::load(src, id, mode, device);
            let norm = |id| RmsNorm::load(src, id, eps, device);
            let bias = |id| Bias::load(src, id, device);
            blocks.push(Block {
                attn_norm: norm(WeightId::AttnNorm { layer })?,
                q: lin(WeightId::AttnQ { layer })?,
                k: lin(WeightId::AttnK { layer })?,
                v: lin(WeightId::AttnV { layer })?,
                o: lin(WeightId::AttnOutput { layer })?,
                qk_norm: if cfg.qk_norm {
                    Some((norm(WeightId::AttnQNorm { layer })?, norm(WeightId::AttnKNorm { layer })?))
                } else {
                    None
                },
                bias: if cfg.qkv_bias {
                    Some([
                        bias(WeightId::AttnQBias { layer })?,
                        bias(WeightId::AttnKBias { layer })?,
                        bias(WeightId::AttnVBias { layer })?,
                    ])
                } else {
                    None
                },
                post_attn_norm: if sandwich { Some(norm(WeightId::PostAttnNorm { layer })?) } else { None },
                ffn_norm: norm(WeightId::FfnNorm { layer })?,
                gate: lin(WeightId::FfnGate { layer })?,
                up: lin(WeightId::FfnUp { layer })?,
                down: lin(WeightId::FfnDown { layer })?,
                post_ffn_norm: if sandwich { Some(norm(WeightId::PostFfnNorm { layer })?) } else { None },
                sliding: cfg.is_sliding(layer),
            });
        }
        let output_norm = RmsNorm::load(src, WeightId::OutputNorm, eps, device)?;
        // Tied output: the LM head reuses the embedding unless the file has its own.
        let head_id = if src.has(WeightId::Output) { WeightId::Output } else { WeightId::TokenEmbedding };
        let lm_head = LmHead::load(src, head_id, mode, max_buffer, device)?;
        let embedding = src.shared(WeightId::TokenEmbedding)?;
        let fused = gpu_fused::enabled() && gpu_fused::is_wgpu(device);
        Ok(Self { cfg, blocks, output_norm, lm_head, embedding, device: device.clone(), fused })
    }

    /// Checks every weight's shape against `cfg` before anything is loaded, on every backend and
    /// for every file format: a norm of the wrong length would otherwise load and generate wrong
    /// text, and a wrong projection would fail only at the first forward pass.
    /// [`crate::Error::TensorShape`] names the tensor as its file does.
    pub fn check_shapes(cfg: &DecoderConfig, src: &dyn WeightSource) -> Result<()> {
        crate::weights::check_shapes(src, &cfg.weight_shapes(src.has(WeightId::Output)))
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// RoPE tables for positions `start..start+n`: `[global layers, sliding-window layers]`.
    fn rope_pair(&self, start: usize, n: usize) -> RopePair<Tensor<2>> {
        let c = &self.cfg;
        let table = |sliding: bool| {
            let (base, scaling) = c.rope_of(sliding);
            rope_tables(start, n, c.head_dim, base, &scaling, &self.device)
        };
        let global = table(false);
        let local = if c.sliding.is_some() { table(true) } else { global.clone() };
        [global, local]
    }

    /// [`Decoder::rope_pair`] on the host.
    fn rope_pair_host(&self, start: usize, n: usize) -> RopePair<Vec<f32>> {
        let c = &self.cfg;
        let table = |sliding: bool| {
            let (base, scaling) = c.rope_of(sliding);
            rope_tables_host(start, n, c.head_dim, base, &scaling)
        };
        let global = table(false);
        let local = if c.sliding.is_some() { table(true) } else { (Vec::new(), Vec::new()) };
        [global, local]
    }

    /// `block_forward` with the glue in fused GPU kernels: the same expressions, one launch each
    /// (decode on a GPU is bound by launches; see `gpu_fused`).
    fn block_forward_fused(
        &self,
        il: usize,
        b: &Block,
        x: Tensor<2>,
        cache: &mut KvCache,
        rope: &RopePair<Tensor<2>>,
        lora: &DeviceLoraSet,
    ) -> Result<Tensor<2>> {
        let c = &self.cfg;
        let [n, _] = x.dims();
        let (h, kvh, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let norm = |nm: &RmsNorm, x: Tensor<2>, res: Option<Tensor<2>>| {
            let (w, eps) = nm.parts();
            gpu_fused::rms_norm(x, w, eps, res)
        };
        let hn = norm(&b.attn_norm, x.clone(), None)?;
        let lin = |l: &Linear, p: Proj, x: Tensor<2>| adapted(lora, il, p, l, x);
        let (mut q, mut k, mut v) =
            (lin(&b.q, Proj::Q, hn.clone())?, lin(&b.k, Proj::K, hn.clone())?, lin(&b.v, Proj::V, hn)?);
        if let Some([bq, bk, bv]) = &b.bias {
            (q, k, v) = (bq.add(q), bk.add(k), bv.add(v));
        }
        // q/k RMSNorm over head_dim on [n·heads, hd] rows, then RoPE on [n, heads, hd].
        let (q, k) = match &b.qk_norm {
            Some((qn, kn)) => (norm(qn, q.reshape([n * h, hd]), None)?, norm(kn, k.reshape([n * kvh, hd]), None)?),
            None => (q, k),
        };
        let (q, k) = (q.reshape([n, h, hd]), k.reshape([n, kvh, hd]));
        let v = v.reshape([n, kvh, hd]).swap_dims(0, 1);
        let (cos, sin) = &rope[usize::from(b.sliding)];
        let q = gpu_fused::rope(q, cos, sin, c.attn_scale, c.rope_layout)?.swap_dims(0, 1);
        let k = gpu_fused::rope(k, cos, sin, 1.0, c.rope_layout)?.swap_dims(0, 1);
        cache.store(il, k, v)?;
        // Decode: one launch for the whole attention; prefill keeps burn's batched matmuls.
        let attn = if n == 1 {
            let (k, v, mask, _) = cache.view(il, n)?;
            match gpu_fused::decode_attention(q.clone(), k, v, mask)? {
                Some(a) => a,
                None => attention(q, cache, il)?,
            }
        } else {
            attention(q, cache, il)?
        };
        let o = lin(&b.o, Proj::O, attn)?;
        let x = match &b.post_attn_norm {
            Some(pn) => norm(pn, o, Some(x))?,
            None => x.add(o),
        };
        let hn = norm(&b.ffn_norm, x.clone(), None)?;
        let (g, u) = (lin(&b.gate, Proj::Gate, hn.clone())?, lin(&b.up, Proj::Up, hn)?);
        let ff = gpu_fused::glu(c.activation, g, u)?;
        let down = lin(&b.down, Proj::Down, ff)?;
        match &b.post_ffn_norm {
            Some(pn) => norm(pn, down, Some(x)),
            None => Ok(x.add(down)),
        }
    }

    fn block_forward(
        &self,
        il: usize,
        b: &Block,
        x: Tensor<2>,
        cache: &mut KvCache,
        rope: &RopePair<Tensor<2>>,
        lora: &DeviceLoraSet,
    ) -> Result<Tensor<2>> {
        let c = &self.cfg;
        let [n, _] = x.dims();
        let (h, kvh, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let hn = b.attn_norm.forward(x.clone());
        let lin = |l: &Linear, p: Proj, x: Tensor<2>| adapted(lora, il, p, l, x);
        let (mut q, mut k, mut v) =
            (lin(&b.q, Proj::Q, hn.clone())?, lin(&b.k, Proj::K, hn.clone())?, lin(&b.v, Proj::V, hn)?);
        if let Some([bq, bk, bv]) = &b.bias {
            (q, k, v) = (bq.add(q), bk.add(k), bv.add(v));
        }
        // [n, H·hd] -> [H, n, hd]
        let q = q.reshape([n, h, hd]).swap_dims(0, 1);
        let k = k.reshape([n, kvh, hd]).swap_dims(0, 1);
        let v = v.reshape([n, kvh, hd]).swap_dims(0, 1);
        // q/k RMSNorm over head_dim, before RoPE.
        let (q, k) = match &b.qk_norm {
            Some((qn, kn)) => (qn.forward(q), kn.forward(k)),
            None => (q, k),
        };
        let (cos, sin) = &rope[usize::from(b.sliding)];
        let q = apply_rope(q, cos, sin, c.rope_layout).mul_scalar(c.attn_scale);
        let k = apply_rope(k, cos, sin, c.rope_layout);
        cache.store(il, k, v)?;
        let attn = attention(q, cache, il)?;
        let o = lin(&b.o, Proj::O, attn)?;
        let x = match &b.post_attn_norm {
            Some(pn) => x.add(pn.forward(o)),
            None => x.add(o),
        };
        let hn = b.ffn_norm.forward(x.clone());
        let (g, u) = (lin(&b.gate, Proj::Gate, hn.clone())?, lin(&b.up, Proj::Up, hn)?);
        let ff = match c.activation {
            Activation::GeluTanh => activation::gelu_approximate(g).mul(u),
            Activation::Silu => activation::silu(g).mul(u),
        };
        let down = lin(&b.down, Proj::Down, ff)?;
        Ok(match &b.post_ffn_norm {
            Some(pn) => x.add(pn.forward(down)),
            None => x.add(down),
        })
    }

    /// The CPU pass on host buffers from embedding to logits: no tensor ops, copies or
    /// transposes between the products; every step of a block runs on the kernel pool.
    /// Returns the logits of tokens `first..n`.
    fn forward_host(&self, tokens: &[u32], cache: &mut KvCache, start: usize, first: usize) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let (n, d) = (tokens.len(), c.hidden_size);
        let mut x = embed_rows_host(&self.embedding, tokens, c.embed_scale)?;
        let rope = self.rope_pair_host(start, n);
        for (il, b) in self.blocks.iter().enumerate() {
            self.block_forward_host(il, b, &mut x, n, cache, &rope)?;
        }
        // Only the requested rows reach the final norm and the LM head (prefill: the last one).
        let mut h = x
            .get(first * d..n * d)
            .ok_or_else(|| crate::Error::Backend { reason: "hidden state shorter than the pass".into() })?
            .to_vec();
        self.output_norm.rows_host(&mut h)?;
        let m = n - first;
        let mut logits = self.lm_head.logits_host(&h, m, d)?;
        if let Some(cap) = c.final_logit_softcapping {
            logits.iter_mut().for_each(|l| *l = (*l / cap).tanh() * cap);
        }
        if m == 1 {
            // The usual case (prefill's last token, or a decode step): no second copy.
            return Ok(vec![logits]);
        }
        let vocab = logits.len() / m.max(1);
        Ok(logits.chunks_exact(vocab.max(1)).map(<[f32]>::to_vec).collect())
    }

    /// `block_forward` on host buffers, in place on `x: [n, d]` (the same expressions; the
    /// residual adds are fused into the post-norms, the query scale into RoPE, and q/k/v and
    /// gate/up each quantize their shared input once). Each scratch buffer is dropped as soon as
    /// it is used, back to `Buf`'s free list, so the next product reuses it: fewer buffers are
    /// live at once, which bounds the pass's scratch memory (largest at a full prefill chunk).
    fn block_forward_host(
        &self,
        il: usize,
        b: &Block,
        x: &mut [f32],
        n: usize,
        cache: &mut KvCache,
        rope: &RopePair<Vec<f32>>,
    ) -> Result<()> {
        let c = &self.cfg;
        let (h, kvh, hd, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size);
        let mut hn = Buf::new(x.len());
        hn.copy_from_slice(x);
        b.attn_norm.rows_host(&mut hn)?;
        // [n, H·hd] / [n, KV·hd], token-major.
        let lora = cache.adapters().clone();
        let (mut q, mut k, mut v) = {
            let mut ys =
                products_host(&[(&b.q, Proj::Q), (&b.k, Proj::K), (&b.v, Proj::V)], &hn, n, d, &lora, il)?.into_iter();
            match (ys.next(), ys.next(), ys.next()) {
                (Some(q), Some(k), Some(v)) => (q, k, v),
                _ => return Err(crate::Error::Backend { reason: "q/k/v products missing".into() }),
            }
        };
        if let Some([bq, bk, bv]) = &b.bias {
            bq.add_host(&mut q)?;
            bk.add_host(&mut k)?;
            bv.add_host(&mut v)?;
        }
        let (cos, sin) = &rope[usize::from(b.sliding)];
        let (qn, kn) = match &b.qk_norm {
            Some((qn, kn)) => (Some(qn), Some(kn)),
            None => (None, None),
        };
        norm_rope_host(&mut q, h, hd, qn, c.rope_layout, cos, sin, Some(c.attn_scale))?;
        norm_rope_host(&mut k, kvh, hd, kn, c.rope_layout, cos, sin, None)?;
        cache.store_host(il, &k, &v)?;
        drop((k, v));
        let attn = {
            let kv = cache
                .host_view(il, n)?
                .ok_or_else(|| crate::Error::Backend { reason: "cpu pass without a host cache".into() })?;
            attention_rows(&q, h, n, hd, &kv)?
        };
        drop(q);
        let mut o = one(products_host(&[(&b.o, Proj::O)], &attn, n, h * hd, &lora, il)?)?;
        drop(attn);
        match &b.post_attn_norm {
            Some(pn) => pn.add_host(&mut o, x)?,
            None => add_rows_host(&o, x, d)?,
        }
        drop(o);
        hn.copy_from_slice(x);
        b.ffn_norm.rows_host(&mut hn)?;
        let (mut gate, up) = {
            let mut ys = products_host(&[(&b.gate, Proj::Gate), (&b.up, Proj::Up)], &hn, n, d, &lora, il)?.into_iter();
            match (ys.next(), ys.next()) {
                (Some(g), Some(u)) => (g, u),
                _ => return Err(crate::Error::Backend { reason: "gate/up products missing".into() }),
            }
        };
        glu_host(c.activation, &mut gate, &up)?;
        drop(up);
        let ff = gate.len() / n.max(1);
        let mut down = one(products_host(&[(&b.down, Proj::Down)], &gate, n, ff, &lora, il)?)?;
        match &b.post_ffn_norm {
            Some(pn) => pn.add_host(&mut down, x),
            None => add_rows_host(&down, x, d),
        }
    }
}

/// The products `ls` of `x: [n, cols]` on the CPU path (q/k/v, gate/up, or one), each with the
/// session's adapters added: for one token (decode) fused into the products' pool job
/// ([`crate::lora::DecodeStep`]), otherwise after them ([`LoraSet::apply_host`]). The same
/// values either way.
pub(super) fn products_host(
    ls: &[(&Linear, Proj)],
    x: &[f32],
    n: usize,
    cols: usize,
    lora: &LoraSet,
    il: usize,
) -> Result<Vec<Buf>> {
    let lins: Vec<&Linear> = ls.iter().map(|(l, _)| *l).collect();
    let mut input = HostIn::new(x, n, cols);
    if !lora.is_empty() && n == 1 {
        let outs: Vec<(Proj, usize)> = ls.iter().map(|(l, p)| (*p, l.out_features())).collect();
        if let Some(step) = lora.decode_step(il, x, &outs)? {
            if let Some(ys) = Linear::forward_host_fused(&lins, &mut input, &step)? {
                return Ok(ys);
            }
        }
    }
    let mut ys = Linear::forward_host_many(&lins, &mut input)?;
    if !lora.is_empty() {
        let mut outs: Vec<(Proj, &mut [f32])> =
            ls.iter().map(|(_, p)| *p).zip(ys.iter_mut().map(|y| &mut y[..])).collect();
        lora.apply_host(il, x, n, &mut outs)?;
    }
    Ok(ys)
}

/// The one output of a single product.
pub(super) fn one(ys: Vec<Buf>) -> Result<Buf> {
    ys.into_iter().next().ok_or_else(|| crate::Error::Backend { reason: "product missing".into() })
}

impl Decoder {
    /// Runs `f` as one pass of `n` tokens over `cache`: committed when it succeeds, rolled back
    /// when it fails.
    fn pass<T>(&self, cache: &mut KvCache, n: usize, f: impl FnOnce(&mut KvCache) -> Result<T>) -> Result<T> {
        cache.begin(n)?;
        match f(cache) {
            Ok(v) => {
                cache.commit();
                Ok(v)
            }
            Err(e) => {
                cache.abort();
                Err(e)
            }
        }
    }

    /// The device path's hidden states `[n, d]` after the last block (before the final norm).
    fn device_hidden(&self, tokens: &[u32], cache: &mut KvCache, start: usize) -> Result<Tensor<2>> {
        // The set's adapters on this device (uploaded at their first pass here, then shared).
        let lora = cache.adapters().on_device(&self.device)?;
        let mut x = embed_rows(&self.embedding, tokens, self.cfg.embed_scale, &self.device)?;
        let rope = self.rope_pair(start, tokens.len());
        for (il, b) in self.blocks.iter().enumerate() {
            x = if self.fused {
                self.block_forward_fused(il, b, x, cache, &rope, &lora)?
            } else {
                self.block_forward(il, b, x, cache, &rope, &lora)?
            };
        }
        Ok(x)
    }

    /// Whether a pass over `tokens` can reduce its last logits on the device: the fused GPU path,
    /// and no logit softcap (applied on the host).
    fn reduces_on_device(&self, tokens: &[u32]) -> bool {
        self.fused && !tokens.is_empty() && self.cfg.final_logit_softcapping.is_none()
    }

    /// One pass over `tokens` (on the path [`Decoder::reduces_on_device`] accepts) whose last
    /// token's logits stay on the device and go to `on_device`; an LM head without a device
    /// product hands them to `on_host` instead.
    fn reduce_last_logits<T>(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        on_device: impl FnOnce(Tensor<2>) -> Result<T>,
        on_host: impl FnOnce(Vec<f32>) -> Result<T>,
    ) -> Result<T> {
        let (n, start) = (tokens.len(), cache.len());
        let last = n
            .checked_sub(1)
            .ok_or_else(|| crate::Error::InvalidParameter { name: "tokens", reason: "empty".into() })?;
        self.pass(cache, n, |cache| {
            let x = self.device_hidden(tokens, cache, start)?;
            let row = self.final_norm_row(&x, last)?;
            match self.lm_head.logits_device(row.clone())? {
                Some(logits) => on_device(logits),
                None => on_host(self.lm_head.logits(row)?),
            }
        })
    }

    /// Row `i` of the hidden states through the final norm.
    fn final_norm_row(&self, x: &Tensor<2>, i: usize) -> Result<Tensor<2>> {
        let row = x.clone().slice([i..i + 1, 0..self.cfg.hidden_size]);
        if self.fused {
            let (w, eps) = self.output_norm.parts();
            gpu_fused::rms_norm(row, w, eps, None)
        } else {
            Ok(self.output_norm.forward(row))
        }
    }
}

impl CausalLm for Decoder {
    fn forward_from(&self, tokens: &[u32], cache: &mut KvCache, first: usize) -> Result<Vec<Vec<f32>>> {
        let n = tokens.len();
        if first >= n {
            return Err(crate::Error::InvalidParameter { name: "first", reason: format!("{first} >= {n} tokens") });
        }
        let start = cache.len();
        let host = !self.fused && cache.is_host();
        self.pass(cache, n, |cache| {
            if host {
                return self.forward_host(tokens, cache, start, first);
            }
            let x = self.device_hidden(tokens, cache, start)?;
            let mut out = Vec::with_capacity(n - first);
            for i in first..n {
                let mut logits = self.lm_head.logits(self.final_norm_row(&x, i)?)?;
                if let Some(cap) = self.cfg.final_logit_softcapping {
                    logits.iter_mut().for_each(|l| *l = (*l / cap).tanh() * cap);
                }
                out.push(logits);
            }
            Ok(out)
        })
    }

    /// On the fused GPU path the pick is made on the device (`gpu_fused::greedy`): two numbers
    /// cross back instead of 262144 logits. Elsewhere, and with a logit softcap (which changes
    /// the log-probability), the host picks from the logits.
    fn forward_greedy(&self, tokens: &[u32], cache: &mut KvCache) -> Result<(u32, f32)> {
        if !self.reduces_on_device(tokens) {
            return super::greedy_of(&self.forward(tokens, cache)?);
        }
        self.reduce_last_logits(
            tokens,
            cache,
            |l| gpu_fused::greedy(l).map(|g| (g.token, g.logprob)),
            |v| super::greedy_of(&v),
        )
    }

    /// On the fused GPU path the pick under the mask is made on the device
    /// (`gpu_fused::greedy_masked`: 32 KiB of mask up for 262144 tokens, two numbers back);
    /// where nothing is allowed, or no allowed logit is finite, the logits are read back.
    /// Elsewhere (and with a logit softcap) the logits come back, as `forward` returns them.
    fn forward_greedy_masked(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        words: &mut dyn FnMut() -> Result<Option<Vec<u32>>>,
    ) -> Result<super::MaskedPick> {
        use super::MaskedPick;
        if !self.reduces_on_device(tokens) {
            return Ok(MaskedPick::All(self.forward(tokens, cache)?));
        }
        self.reduce_last_logits(
            tokens,
            cache,
            |l| {
                let picked = match words()? {
                    Some(w) => gpu_fused::greedy_masked(l.clone(), &w)?,
                    None => None,
                };
                match picked {
                    Some(g) => Ok(MaskedPick::Picked(g.token, g.logprob)),
                    None => Ok(MaskedPick::All(crate::model::layers::read_f32(l)?)),
                }
            },
            |v| Ok(MaskedPick::All(v)),
        )
    }

    /// On the fused GPU path the `k` largest logits are selected on the device
    /// (`gpu_fused::top_k`); elsewhere, where that kernel does not fit (`gpu_fused::top_k_fits`),
    /// and with a logit softcap (applied on the host), all the logits come back.
    fn forward_top_k(&self, tokens: &[u32], cache: &mut KvCache, k: usize) -> Result<StepLogits> {
        if !self.reduces_on_device(tokens) || !gpu_fused::top_k_fits(self.cfg.vocab_size, k) {
            return Ok(StepLogits::All(self.forward(tokens, cache)?));
        }
        self.reduce_last_logits(
            tokens,
            cache,
            |l| gpu_fused::top_k(l, k).map(StepLogits::Top),
            |v| Ok(StepLogits::All(v)),
        )
    }

    fn new_cache(&self, max_context: usize, max_chunk: usize) -> Result<KvCache> {
        let c = &self.cfg;
        let layout = CacheLayout {
            layer_windows: (0..c.num_hidden_layers)
                .map(|il| c.sliding.filter(|_| c.is_sliding(il)).map(|w| w.size))
                .collect(),
            kv_heads: c.num_key_value_heads,
            head_dim: c.head_dim,
            max_context,
            max_chunk,
        };
        KvCache::new(layout, &self.device)
    }

    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn max_context(&self) -> usize {
        self.cfg.max_position_embeddings
    }

    fn decoder_config(&self) -> Option<&DecoderConfig> {
        Some(&self.cfg)
    }
}
