//! Qwen 3.5 on the GPU backend (wgpu). The same expressions as the CPU pass, with burn tensor
//! ops and the CubeCL quantized products on the device:
//! - every projection (quantized blocks repacked on the device, or f32 for types without a
//!   kernel), the RMSNorms, the SwiGLU MLP and the residual adds;
//! - the gated attention layers: q and its output gate split per head, per-head q/k RMSNorm,
//!   NEOX RoPE on the first `rope.dimension_count` dims of each head (partial rotary), the shared
//!   grouped-query attention over the device KV cache ([`attention`]), `· sigmoid(gate)`;
//! - the LM head in row shards, each under the adapter's storage-binding limit (the tied
//!   248320 × 1024 embedding of the 0.8B is ~200 MiB at Q6_K, over lavapipe's 128 MiB); the
//!   embedding rows of a pass are looked up on the host, as for the other architectures.
//!
//! The DeltaNet layers' four products run on the device, then everything up to the output
//! projection (causal conv, SiLU, L2 norms, gates, delta rule, gated norm: [`super::delta_gpu`],
//! chunked with a triangular solve in prefill, one kernel token by token in decode) on the
//! recurrent state kept in device buffers by the session's cache
//! ([`KvCache::with_device_recurrent`]): nothing crosses to the host per layer. A cache with the
//! state on the host (heads wider than the kernel takes, `EDGEWISE_GPU_DELTA_HOST=1`) runs the
//! previous form instead: the four outputs read back in one transfer, [`Qwen35::delta_mix`] (the
//! CPU path's own code) on the host state, the gated output uploaded again.
//!
//! Before each product with quantized blocks the activations are rounded as the CPU kernels
//! (and llama.cpp's) quantize them — 8 bits per value in blocks of 32 with an f32 scale
//! ([`q8_round`]) — so the two backends compute the same numbers up to summation order. With f32
//! activations this path equals the CPU's f32 path (`EDGEWISE_CPU_DENSE`) within 0.002 logit,
//! but both depart from llama.cpp's greedy tokens beyond near-ties on 3 of the 7 golden prompts
//! of the synthesized model, whose crowded logits amplify that rounding.

use burn::tensor::{activation, Device, Tensor};

use super::{backend, Fault, Mixer, Qwen35, Qwen35Config};
use crate::kv_cache::KvCache;
use crate::lora::{DeviceLoraSet, Proj};
use crate::model::decoder::{RopeLayout, RopeScaling};
use crate::model::layers::{
    apply_rope, attention, embed_rows, read_f32, rope_tables, tensor2, Linear, LmHead, WeightMode,
};
use crate::weights::WeightSource;
use crate::Result;

/// Loads the model on the wgpu device: quantized weights repacked for the GPU kernels (or f32
/// with `EDGEWISE_GPU_DENSE`, and as a fallback when that fails, as the engine does for the
/// other architectures).
pub(super) fn load(cfg: Qwen35Config, src: &dyn WeightSource) -> Result<Qwen35> {
    let (device, info) = crate::backend::gpu()?;
    // Headroom under the binding limit for alignment and allocator rounding (as the engine's).
    let max_buffer = info.max_storage_binding.saturating_sub(1 << 20).max(1 << 20);
    let mode =
        if std::env::var_os("EDGEWISE_GPU_DENSE").is_none() { WeightMode::QuantizedGpu } else { WeightMode::Dense };
    load_on(cfg, src, mode, &device, max_buffer)
}

/// [`load`] on a given device and mode.
pub(super) fn load_on(
    cfg: Qwen35Config,
    src: &dyn WeightSource,
    mode: WeightMode,
    device: &Device,
    max_buffer: u64,
) -> Result<Qwen35> {
    // Device allocation failures inside burn surface as panics; keep them from escaping.
    let try_load = |mode: WeightMode| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Qwen35::load_on(cfg.clone(), src, mode, device, max_buffer)
        }))
        .unwrap_or_else(|_| Err(backend("loading the qwen35 model on the gpu backend panicked")))
    };
    match try_load(mode) {
        Err(e) if mode == WeightMode::QuantizedGpu => {
            log::warn!("qwen35: quantized gpu weights failed ({e}); falling back to dense f32 weights");
            try_load(WeightMode::Dense)
        }
        r => r,
    }
}

/// NEOX RoPE on the first `n_rot` dims of each head, the rest passed through.
/// x: [heads, n, hd]; cos, sin: [n, n_rot/2]
fn partial_rope(x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>, n_rot: usize) -> Tensor<3> {
    let [h, n, hd] = x.dims();
    if n_rot >= hd {
        return apply_rope(x, cos, sin, RopeLayout::Neox);
    }
    let rotated = apply_rope(x.clone().slice([0..h, 0..n, 0..n_rot]), cos, sin, RopeLayout::Neox);
    Tensor::cat(vec![rotated, x.slice([0..h, 0..n, n_rot..hd])], 2)
}

/// `x: [n, cols]` rounded as the CPU kernels quantize activations (`quant::cpu::Q8x32`): per
/// block of 32, `d = max|x| / 127`, `x ≈ d · round(x / d)` (an all-zero block stays zero) — the
/// shared device kernel [`crate::quant::gpu::round_q8_0`], as the sentence encoder uses it.
/// Rows whose length is not a multiple of 32 are left as they are.
pub(super) fn q8_round(x: Tensor<2>) -> Result<Tensor<2>> {
    let [n, cols] = x.dims();
    if n == 0 || cols == 0 || !cols.is_multiple_of(32) {
        return Ok(x);
    }
    crate::quant::gpu::round_q8_0(x)
}

/// One input of several products (q/k/v, the four DeltaNet products, gate/up): rounded once
/// ([`q8_round`]) for those whose weights are quantized blocks on the device.
struct Act {
    x: Tensor<2>,
    rounded: Option<Tensor<2>>,
}

impl Act {
    fn new(x: Tensor<2>) -> Self {
        Self { x, rounded: None }
    }

    fn quantized_input(&mut self) -> Result<Tensor<2>> {
        if let Some(r) = &self.rounded {
            return Ok(r.clone());
        }
        let r = q8_round(self.x.clone())?;
        self.rounded = Some(r.clone());
        Ok(r)
    }

    /// `l · x`, with the activations rounded when `l` is quantized.
    fn mm(&mut self, l: &Linear) -> Result<Tensor<2>> {
        match l {
            Linear::QuantizedGpu(_) => l.forward(self.quantized_input()?),
            _ => l.forward(self.x.clone()),
        }
    }

    /// [`Act::mm`] plus the adapters' `s·B·(A·x)` for projection `p` of layer `il` (of the
    /// unrounded `x`, two thin device matmuls each: [`DeviceLoraSet::apply`]).
    fn mm_lora(&mut self, l: &Linear, lora: &DeviceLoraSet, il: usize, p: Proj) -> Result<Tensor<2>> {
        let y = self.mm(l)?;
        if lora.is_empty() {
            return Ok(y);
        }
        lora.apply(il, p, &self.x, y)
    }
}

impl Qwen35 {
    /// The device pass from embedding to the logits of tokens `first..n`, inside `cache`'s pass.
    pub(super) fn forward_device(
        &self,
        tokens: &[u32],
        cache: &mut KvCache,
        start: usize,
        first: usize,
    ) -> Result<Vec<Vec<f32>>> {
        let (n, d) = (tokens.len(), self.cfg.base.hidden_size);
        let mut x = embed_rows(&self.embedding, tokens, 1.0, &self.device)?;
        let rope = rope_tables(start, n, self.cfg.n_rot, self.cfg.base.rope_theta, &RopeScaling::None, &self.device);
        // The set's adapters on this device (uploaded at their first pass here, then shared).
        let lora = cache.adapters().on_device(&self.device)?;
        for (il, l) in self.layers.iter().enumerate() {
            let hn = l.attn_norm.forward(x.clone());
            let y = match &l.mixer {
                Mixer::Attn(a) => self.attention_device(il, a, hn, cache, &rope, &lora)?,
                Mixer::Delta(dl) => self.delta_net_device(il, dl, hn, cache, &lora)?,
            };
            x = x.add(y);
            let mut hn = Act::new(l.post_norm.forward(x.clone()));
            let ff = activation::silu(hn.mm_lora(&l.gate, &lora, il, Proj::Gate)?).mul(hn.mm_lora(
                &l.up,
                &lora,
                il,
                Proj::Up,
            )?);
            x = x.add(Act::new(ff).mm_lora(&l.down, &lora, il, Proj::Down)?);
        }
        // Only the requested rows reach the final norm and the LM head (prefill: the last one).
        let mut out = Vec::with_capacity(n - first);
        for i in first..n {
            let row = self.output_norm.forward(x.clone().slice([i..i + 1, 0..d]));
            let row = if matches!(self.lm_head, LmHead::QuantizedGpu(_)) { q8_round(row)? } else { row };
            out.push(self.lm_head.logits(row)?);
        }
        Ok(out)
    }

    /// A gated full-attention layer on the device: `hn: [n, d]` -> `[n, d]`.
    fn attention_device(
        &self,
        il: usize,
        a: &super::AttnLayer,
        hn: Tensor<2>,
        cache: &mut KvCache,
        rope: &(Tensor<2>, Tensor<2>),
        lora: &DeviceLoraSet,
    ) -> Result<Tensor<2>> {
        let c = &self.cfg.base;
        let [n, _] = hn.dims();
        let (h, kvh, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        // Per head: hd query values, then hd gate values.
        let mut hn = Act::new(hn);
        let qg = hn.mm_lora(&a.q, lora, il, Proj::Q)?.reshape([n, h, 2 * hd]);
        let q = qg.clone().slice([0..n, 0..h, 0..hd]);
        let gate = qg.slice([0..n, 0..h, hd..2 * hd]).reshape([n, h * hd]);
        let k = hn.mm_lora(&a.k, lora, il, Proj::K)?.reshape([n, kvh, hd]);
        let v = hn.mm_lora(&a.v, lora, il, Proj::V)?.reshape([n, kvh, hd]).swap_dims(0, 1);
        // q/k RMSNorm over head_dim, then RoPE, on [heads, n, hd].
        let q = a.q_norm.forward(q).swap_dims(0, 1);
        let k = a.k_norm.forward(k).swap_dims(0, 1);
        let (cos, sin) = rope;
        let q = partial_rope(q, cos, sin, self.cfg.n_rot).mul_scalar(c.attn_scale);
        let k = partial_rope(k, cos, sin, self.cfg.n_rot);
        cache.store(a.slot, k, v)?;
        let attn = attention(q, cache, a.slot)?;
        let attn = if self.fault() == Fault::NoAttnGate { attn } else { attn.mul(activation::sigmoid(gate)) };
        Act::new(attn).mm_lora(&a.o, lora, il, Proj::O)
    }

    /// A gated DeltaNet layer: its products on the device, then the conv, norms, gates, delta
    /// rule and gated norm in device kernels on the device state ([`super::delta_gpu`]) when the
    /// cache holds it there, else on the host ([`Qwen35::delta_mix`]); the output projection on
    /// the device. `hn: [n, d]` -> `[n, d]`.
    fn delta_net_device(
        &self,
        il: usize,
        l: &super::DeltaLayer,
        hn: Tensor<2>,
        cache: &mut KvCache,
        lora: &DeviceLoraSet,
    ) -> Result<Tensor<2>> {
        let [n, _] = hn.dims();
        let mut hn = Act::new(hn);
        if cache.has_device_recurrent() {
            let (Some(shape), Some(w)) = (self.delta_device.as_ref(), l.dev.as_ref()) else {
                return Err(backend("a device DeltaNet state for a model that runs the DeltaNet on the host"));
            };
            let flags = match self.fault() {
                Fault::NoConvState => super::delta_gpu::NO_CONV_STATE,
                Fault::NoBeta => super::delta_gpu::NO_BETA,
                Fault::NoConvRoll => super::delta_gpu::NO_CONV_ROLL,
                Fault::NoChunkDecay => super::delta_gpu::NO_CHUNK_DECAY,
                _ => 0,
            };
            let qkv = hn.mm_lora(&l.qkv, lora, il, Proj::DeltaQkv)?;
            let z = hn.mm_lora(&l.gate, lora, il, Proj::DeltaZ)?;
            let beta = hn.mm_lora(&l.beta, lora, il, Proj::DeltaBeta)?;
            let alpha = hn.mm_lora(&l.alpha, lora, il, Proj::DeltaAlpha)?;
            let layers = cache.device_recurrent_layers()?;
            let state = layers.get_mut(l.slot).ok_or_else(|| backend("recurrent layer out of range"))?;
            let out = super::delta_gpu::delta_net(qkv, z, beta, alpha, w, state, shape, flags)?;
            return Act::new(out).mm_lora(&l.out, lora, il, Proj::DeltaOut);
        }
        let parts = vec![
            hn.mm_lora(&l.qkv, lora, il, Proj::DeltaQkv)?,
            hn.mm_lora(&l.gate, lora, il, Proj::DeltaZ)?,
            hn.mm_lora(&l.beta, lora, il, Proj::DeltaBeta)?,
            hn.mm_lora(&l.alpha, lora, il, Proj::DeltaAlpha)?,
        ];
        let widths: Vec<usize> = parts.iter().map(|p| p.dims()[1]).collect();
        let total: usize = widths.iter().sum();
        // One read-back for the four: [n, qkv | z | beta | alpha].
        let all = read_f32(Tensor::cat(parts, 1))?;
        if all.len() != n * total {
            return Err(backend("DeltaNet products of the wrong size"));
        }
        let mut split: Vec<Vec<f32>> = widths.iter().map(|w| Vec::with_capacity(n * w)).collect();
        for row in all.chunks_exact(total) {
            let mut off = 0;
            for (dst, &w) in split.iter_mut().zip(&widths) {
                dst.extend_from_slice(&row[off..off + w]);
                off += w;
            }
        }
        let [qkv, z, beta, alpha] =
            <[Vec<f32>; 4]>::try_from(split).map_err(|_| backend("DeltaNet products missing"))?;
        let out = self.delta_mix(l, &qkv, &z, &beta, &alpha, n, cache)?;
        let inner = self.cfg.v_heads * self.cfg.head_v;
        Act::new(tensor2(out, n, inner, &self.device)).mm_lora(&l.out, lora, il, Proj::DeltaOut)
    }
}
