//! Gemma 3 (text). Reference: Gemma Team, "Gemma 3 Technical Report" (2025); mirrors
//! ggml-org/llama.cpp `src/models/gemma3.cpp` and huggingface/transformers
//! `models/gemma3/modeling_gemma3.py`. Facts in ENGINEERING.md D.

use serde::{Deserialize, Serialize};

/// Gemma 3 text configuration, with HF `config.json` field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gemma3Config {
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
    /// Per-head dimension.
    pub head_dim: usize,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base of the global (full-attention) layers.
    pub rope_theta: f32,
    /// RoPE base of the sliding-window layers (10 000 in Gemma 3).
    pub rope_local_base_freq: f32,
    /// Linear RoPE scaling factor of the global layers (1.0 = none).
    pub rope_scaling_factor: f32,
    /// Sliding-window size in keys, the current one included.
    pub sliding_window: usize,
    /// Every `sliding_window_pattern`-th layer is global (6 in Gemma 3: layers 5, 11, 17, …).
    pub sliding_window_pattern: usize,
    /// Maximum context the model was trained for.
    pub max_position_embeddings: usize,
    /// Vocabulary size (rows of the embedding).
    pub vocab_size: usize,
    /// Attention scale is `query_pre_attn_scalar^-0.5`.
    pub query_pre_attn_scalar: f32,
    /// Final logit softcap, if any (none in Gemma 3).
    pub final_logit_softcapping: Option<f32>,
    /// Attention logit softcap, if any (none in Gemma 3).
    pub attn_logit_softcapping: Option<f32>,
}

impl Gemma3Config {
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
        if self.sliding_window == 0 {
            return Err(("sliding_window", "0".into()));
        }
        let (heads, kv) = (self.num_attention_heads, self.num_key_value_heads);
        if heads == 0 || kv == 0 || heads % kv != 0 || heads > 1024 {
            return Err(("num_key_value_heads", format!("{heads} query heads cannot be grouped over {kv} kv heads")));
        }
        Ok(())
    }

    /// Whether layer `il` uses the sliding window (`il % pattern < pattern - 1`).
    pub fn is_sliding(&self, il: usize) -> bool {
        self.sliding_window_pattern > 0 && il % self.sliding_window_pattern < self.sliding_window_pattern - 1
    }
}

use burn::tensor::{activation, Device, Tensor};

use super::gpu_fused;
use super::layers::{apply_rope, attention, attention_rows, embed_rows, embed_rows_host, geglu_host, norm_rope_host, rope_tables, rope_tables_host, Buf, HostIn, Linear, LmHead, RmsNorm, WeightMode};
use super::{CausalLm, StepLogits};
use crate::kv_cache::{CacheLayout, KvCache};
use crate::weights::{SharedWeight, WeightId, WeightSource};
use crate::Result;

/// One transformer block (sandwich norms around attention and the GeGLU MLP).
#[derive(Debug)]
struct Block {
    attn_norm: RmsNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    post_attn_norm: RmsNorm,
    ffn_norm: RmsNorm,
    gate: Linear,
    up: Linear,
    down: Linear,
    post_ffn_norm: RmsNorm,
    sliding: bool,
}

/// Gemma 3 with weights on one device.
pub struct Gemma3 {
    cfg: Gemma3Config,
    blocks: Vec<Block>,
    output_norm: RmsNorm,
    lm_head: LmHead,
    /// The embedding matrix, read on the host a row at a time.
    embedding: SharedWeight,
    embed_scale: f32,
    device: Device,
    /// Run the glue through the fused GPU kernels (`gpu_fused`): on wgpu, unless turned off.
    fused: bool,
}

impl std::fmt::Debug for Gemma3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gemma3").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl Gemma3 {
    /// Loads the model from `weights` onto `device`. `max_buffer` bounds any single device buffer.
    pub fn load(cfg: Gemma3Config, src: &dyn WeightSource, mode: WeightMode, device: &Device, max_buffer: u64) -> Result<Self> {
        let eps = cfg.rms_norm_eps;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for layer in 0..cfg.num_hidden_layers {
            let lin = |id| Linear::load(src, id, mode, device);
            let norm = |id| RmsNorm::load(src, id, eps, device);
            blocks.push(Block {
                attn_norm: norm(WeightId::AttnNorm { layer })?,
                q: lin(WeightId::AttnQ { layer })?,
                k: lin(WeightId::AttnK { layer })?,
                v: lin(WeightId::AttnV { layer })?,
                o: lin(WeightId::AttnOutput { layer })?,
                q_norm: norm(WeightId::AttnQNorm { layer })?,
                k_norm: norm(WeightId::AttnKNorm { layer })?,
                post_attn_norm: norm(WeightId::PostAttnNorm { layer })?,
                ffn_norm: norm(WeightId::FfnNorm { layer })?,
                gate: lin(WeightId::FfnGate { layer })?,
                up: lin(WeightId::FfnUp { layer })?,
                down: lin(WeightId::FfnDown { layer })?,
                post_ffn_norm: norm(WeightId::PostFfnNorm { layer })?,
                sliding: cfg.is_sliding(layer),
            });
            let (q, k) = (&blocks[layer].q, &blocks[layer].k);
            let want_q = cfg.num_attention_heads * cfg.head_dim;
            let want_k = cfg.num_key_value_heads * cfg.head_dim;
            if q.out_features() != want_q || k.out_features() != want_k {
                return Err(crate::Error::Tensor {
                    name: format!("blk.{layer}.attn_q/attn_k"),
                    reason: format!("projections give {}/{} features, config expects {want_q}/{want_k}", q.out_features(), k.out_features()),
                });
            }
        }
        let output_norm = RmsNorm::load(src, WeightId::OutputNorm, eps, device)?;
        // Tied output: the LM head reuses the embedding unless the file has its own.
        let head_id = if src.has(WeightId::Output) { WeightId::Output } else { WeightId::TokenEmbedding };
        let lm_head = LmHead::load(src, head_id, mode, max_buffer, device)?;
        let embedding = src.shared(WeightId::TokenEmbedding)?;
        // llama.cpp scales by sqrtf(n_embd) in f32 (25.2982 for 640), not HF's bf16 25.25.
        let embed_scale = (cfg.hidden_size as f32).sqrt();
        let fused = gpu_fused::enabled() && gpu_fused::is_wgpu(device);
        Ok(Self { cfg, blocks, output_norm, lm_head, embedding, embed_scale, device: device.clone(), fused })
    }

    /// The configuration.
    pub fn config(&self) -> &Gemma3Config {
        &self.cfg
    }

    /// RoPE tables for positions `start..start+n`: (sliding-window layers, global layers).
    fn rope_pair(&self, start: usize, n: usize) -> [(Tensor<2>, Tensor<2>); 2] {
        let c = &self.cfg;
        let local = rope_tables(start, n, c.head_dim, c.rope_local_base_freq, 1.0, &self.device);
        let global = rope_tables(start, n, c.head_dim, c.rope_theta, c.rope_scaling_factor, &self.device);
        [local, global]
    }

    /// `block_forward` with the glue in fused GPU kernels: the same expressions, one launch each
    /// (decode on a GPU is bound by launches; see `gpu_fused`).
    fn block_forward_fused(&self, il: usize, b: &Block, x: Tensor<2>, cache: &mut KvCache, rope: &[(Tensor<2>, Tensor<2>); 2]) -> Result<Tensor<2>> {
        let c = &self.cfg;
        let [n, _] = x.dims();
        let (h, kvh, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let norm = |nm: &RmsNorm, x: Tensor<2>, res: Option<Tensor<2>>| {
            let (w, eps) = nm.parts();
            gpu_fused::rms_norm(x, w, eps, res)
        };
        let hn = norm(&b.attn_norm, x.clone(), None)?;
        // q/k RMSNorm over head_dim on [n·heads, hd] rows, then RoPE on [n, heads, hd].
        let q = norm(&b.q_norm, b.q.forward(hn.clone())?.reshape([n * h, hd]), None)?.reshape([n, h, hd]);
        let k = norm(&b.k_norm, b.k.forward(hn.clone())?.reshape([n * kvh, hd]), None)?.reshape([n, kvh, hd]);
        let v = b.v.forward(hn)?.reshape([n, kvh, hd]).swap_dims(0, 1);
        let (cos, sin) = if b.sliding { &rope[0] } else { &rope[1] };
        let q = gpu_fused::rope(q, cos, sin, c.query_pre_attn_scalar.powf(-0.5))?.swap_dims(0, 1);
        let k = gpu_fused::rope(k, cos, sin, 1.0)?.swap_dims(0, 1);
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
        let x = norm(&b.post_attn_norm, b.o.forward(attn)?, Some(x))?;
        let hn = norm(&b.ffn_norm, x.clone(), None)?;
        let ff = gpu_fused::gelu_mul(b.gate.forward(hn.clone())?, b.up.forward(hn)?)?;
        norm(&b.post_ffn_norm, b.down.forward(ff)?, Some(x))
    }

    fn block_forward(&self, il: usize, b: &Block, x: Tensor<2>, cache: &mut KvCache, rope: &[(Tensor<2>, Tensor<2>); 2]) -> Result<Tensor<2>> {
        let c = &self.cfg;
        let [n, _] = x.dims();
        let (h, kvh, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let hn = b.attn_norm.forward(x.clone());
        // [n, H·hd] -> [H, n, hd]
        let q = b.q.forward(hn.clone())?.reshape([n, h, hd]).swap_dims(0, 1);
        let k = b.k.forward(hn.clone())?.reshape([n, kvh, hd]).swap_dims(0, 1);
        let v = b.v.forward(hn)?.reshape([n, kvh, hd]).swap_dims(0, 1);
        // q/k RMSNorm over head_dim, before RoPE.
        let q = b.q_norm.forward(q);
        let k = b.k_norm.forward(k);
        let (cos, sin) = if b.sliding { &rope[0] } else { &rope[1] };
        let q = apply_rope(q, cos, sin).mul_scalar(c.query_pre_attn_scalar.powf(-0.5));
        let k = apply_rope(k, cos, sin);
        cache.store(il, k, v)?;
        let attn = attention(q, cache, il)?;
        let x = x.add(b.post_attn_norm.forward(b.o.forward(attn)?));
        let hn = b.ffn_norm.forward(x.clone());
        let ff = activation::gelu_approximate(b.gate.forward(hn.clone())?).mul(b.up.forward(hn)?);
        Ok(x.add(b.post_ffn_norm.forward(b.down.forward(ff)?)))
    }

    /// The CPU pass on host buffers from embedding to logits: no tensor ops, copies or
    /// transposes between the products; every step of a block runs on the kernel pool.
    /// Returns the logits of tokens `first..n`.
    fn forward_host(&self, tokens: &[u32], cache: &mut KvCache, start: usize, first: usize) -> Result<Vec<Vec<f32>>> {
        let c = &self.cfg;
        let (n, d) = (tokens.len(), c.hidden_size);
        let mut x = embed_rows_host(&self.embedding, tokens, self.embed_scale)?;
        let rope = [
            rope_tables_host(start, n, c.head_dim, c.rope_local_base_freq, 1.0),
            rope_tables_host(start, n, c.head_dim, c.rope_theta, c.rope_scaling_factor),
        ];
        for (il, b) in self.blocks.iter().enumerate() {
            self.block_forward_host(il, b, &mut x, n, cache, &rope)?;
        }
        // Only the requested rows reach the final norm and the LM head (prefill: the last one).
        let mut h = x.get(first * d..n * d).ok_or_else(|| crate::Error::Backend { reason: "hidden state shorter than the pass".into() })?.to_vec();
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
    fn block_forward_host(&self, il: usize, b: &Block, x: &mut [f32], n: usize, cache: &mut KvCache, rope: &[(Vec<f32>, Vec<f32>); 2]) -> Result<()> {
        let c = &self.cfg;
        let (h, kvh, hd, d) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.hidden_size);
        let mut hn = Buf::new(x.len());
        hn.copy_from_slice(x);
        b.attn_norm.rows_host(&mut hn)?;
        // [n, H·hd] / [n, KV·hd], token-major.
        let (mut q, mut k, v) = {
            let mut input = HostIn::new(&hn, n, d);
            let mut ys = Linear::forward_host_many(&[&b.q, &b.k, &b.v], &mut input)?.into_iter();
            match (ys.next(), ys.next(), ys.next()) {
                (Some(q), Some(k), Some(v)) => (q, k, v),
                _ => return Err(crate::Error::Backend { reason: "q/k/v products missing".into() }),
            }
        };
        let (cos, sin) = if b.sliding { &rope[0] } else { &rope[1] };
        norm_rope_host(&mut q, h, &b.q_norm, cos, sin, Some(c.query_pre_attn_scalar.powf(-0.5)))?;
        norm_rope_host(&mut k, kvh, &b.k_norm, cos, sin, None)?;
        cache.store_host(il, &k, &v)?;
        drop((k, v));
        let attn = {
            let kv = cache.host_view(il, n)?.ok_or_else(|| crate::Error::Backend { reason: "cpu pass without a host cache".into() })?;
            attention_rows(&q, h, n, hd, &kv)?
        };
        drop(q);
        let mut o = b.o.forward_host(&mut HostIn::new(&attn, n, h * hd))?;
        drop(attn);
        b.post_attn_norm.add_host(&mut o, x)?;
        drop(o);
        hn.copy_from_slice(x);
        b.ffn_norm.rows_host(&mut hn)?;
        let (mut gate, up) = {
            let mut input = HostIn::new(&hn, n, d);
            let mut ys = Linear::forward_host_many(&[&b.gate, &b.up], &mut input)?.into_iter();
            match (ys.next(), ys.next()) {
                (Some(g), Some(u)) => (g, u),
                _ => return Err(crate::Error::Backend { reason: "gate/up products missing".into() }),
            }
        };
        geglu_host(&mut gate, &up)?;
        drop(up);
        let ff = gate.len() / n.max(1);
        let mut down = b.down.forward_host(&mut HostIn::new(&gate, n, ff))?;
        b.post_ffn_norm.add_host(&mut down, x)
    }
}

impl Gemma3 {
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
        let mut x = embed_rows(&self.embedding, tokens, self.embed_scale, &self.device)?;
        let rope = self.rope_pair(start, tokens.len());
        for (il, b) in self.blocks.iter().enumerate() {
            x = if self.fused { self.block_forward_fused(il, b, x, cache, &rope)? } else { self.block_forward(il, b, x, cache, &rope)? };
        }
        Ok(x)
    }

    /// Whether a pass over `tokens` can reduce its last logits on the device: the fused GPU path,
    /// and no logit softcap (applied on the host).
    fn reduces_on_device(&self, tokens: &[u32]) -> bool {
        self.fused && !tokens.is_empty() && self.cfg.final_logit_softcapping.is_none()
    }

    /// One pass over `tokens` (on the path [`Gemma3::reduces_on_device`] accepts) whose last
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
        let last = n.checked_sub(1).ok_or_else(|| crate::Error::InvalidParameter { name: "tokens", reason: "empty".into() })?;
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

impl CausalLm for Gemma3 {
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
        self.reduce_last_logits(tokens, cache, |l| gpu_fused::greedy(l).map(|g| (g.token, g.logprob)), |v| super::greedy_of(&v))
    }

    /// On the fused GPU path the `k` largest logits are selected on the device
    /// (`gpu_fused::top_k`); elsewhere, where that kernel does not fit (`gpu_fused::top_k_fits`),
    /// and with a logit softcap (applied on the host), all the logits come back.
    fn forward_top_k(&self, tokens: &[u32], cache: &mut KvCache, k: usize) -> Result<StepLogits> {
        if !self.reduces_on_device(tokens) || !gpu_fused::top_k_fits(self.cfg.vocab_size, k) {
            return Ok(StepLogits::All(self.forward(tokens, cache)?));
        }
        self.reduce_last_logits(tokens, cache, |l| gpu_fused::top_k(l, k).map(StepLogits::Top), |v| Ok(StepLogits::All(v)))
    }

    fn new_cache(&self, max_context: usize, max_chunk: usize) -> Result<KvCache> {
        let c = &self.cfg;
        let layout = CacheLayout {
            layer_windows: (0..c.num_hidden_layers).map(|il| c.is_sliding(il).then_some(c.sliding_window)).collect(),
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
}
