//! Architecture-neutral layers: linear projections, RMSNorm, RoPE, grouped-query attention over
//! a [`KvCache`], and the LM head. Gemma 3, Llama and Qwen differ only in how they combine these.
//!
//! Shapes: `n` = tokens in this forward pass, `d` = hidden size, `hd` = head dim, `H` query heads,
//! `KV` key/value heads, `S` = cached keys visible to the pass.

use burn::tensor::{activation, Device, Tensor, TensorData};

use crate::kv_cache::KvCache;
use crate::quant::gpu::QMatrix;
use crate::weights::{SharedWeight, WeightId, WeightSource};
use crate::{Error, Result};

/// Uploads `[rows, cols]` row-major f32 values.
pub(crate) fn tensor2(values: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(values, [rows, cols]), device)
}

/// Reads a tensor back to the host, as a typed error on device failure.
pub(crate) fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.try_into_vec_as::<f32>().map_err(|e| Error::Backend { reason: format!("device read-back failed: {e:?}") })
}

/// Transposes a row-major `[rows, cols]` matrix.
fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// Where a layer's weights live and how its products run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightMode {
    /// GGUF blocks read in place by the CPU kernels (`quant::cpu`); falls back to `Dense` for
    /// types without a kernel.
    QuantizedCpu,
    /// GGUF blocks repacked into GPU buffers and multiplied by the CubeCL kernels (`quant::gpu`);
    /// falls back to `Dense` per tensor for types without a kernel.
    QuantizedGpu,
    /// Dequantized f32 on the device (the reference path).
    Dense,
}

/// A bias-free linear projection `y = x·Wᵀ`.
#[derive(Debug, Clone)]
pub enum Linear {
    /// f32 weight held transposed, `[in, out]`, so the product is a plain `matmul`.
    Dense {
        /// `[in, out]`
        wt: Tensor<2>,
        /// Output features.
        out: usize,
    },
    /// The file's blocks, `[out, in]`, multiplied by the CPU kernels.
    Quantized(SharedWeight),
    /// The file's blocks repacked on the GPU, `[out, in]`, multiplied by the CubeCL kernels.
    QuantizedGpu(QMatrix),
}

impl Linear {
    /// Loads weight `id` in the given mode.
    pub fn load(src: &dyn WeightSource, id: WeightId, mode: WeightMode, device: &Device) -> Result<Self> {
        if mode == WeightMode::QuantizedCpu {
            let w = src.shared(id)?;
            if crate::quant::cpu::supported(w.ty) && w.cols % 32 == 0 {
                return Ok(Self::Quantized(w));
            }
        }
        if mode == WeightMode::QuantizedGpu {
            if let Some(w) = upload_gpu(src, id, u64::MAX, device)? {
                return Ok(Self::QuantizedGpu(w));
            }
        }
        let raw = src.raw(id)?;
        let w = raw.to_f32()?;
        let wt = transpose(&w, raw.rows, raw.cols);
        Ok(Self::Dense { wt: tensor2(wt, raw.cols, raw.rows, device), out: raw.rows })
    }

    /// x: [n, in] -> [n, out]
    pub fn forward(&self, x: Tensor<2>) -> Result<Tensor<2>> {
        match self {
            Self::Dense { wt, .. } => Ok(x.matmul(wt.clone())),
            Self::Quantized(w) => {
                let [n, cols] = x.dims();
                let device = x.device();
                let xs = read_f32(x)?;
                let y = crate::quant::cpu::matmul(w.ty, w.bytes(), w.rows, cols, &xs, n)?;
                Ok(tensor2(y, n, w.rows, &device))
            }
            Self::QuantizedGpu(w) => w.matmul(x),
        }
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        match self {
            Self::Dense { out, .. } => *out,
            Self::Quantized(w) => w.rows,
            Self::QuantizedGpu(w) => w.rows(),
        }
    }
}

/// Root-mean-square normalization over the last dimension: `x / sqrt(mean(x²) + eps) · w`.
///
/// GGUF norm weights already include Gemma's `+1` (ENGINEERING.md D.2), so no offset is added.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    w: Tensor<1>,
    /// The weight on the host, for the CPU path.
    w_host: Vec<f32>,
    eps: f32,
}

impl RmsNorm {
    /// Loads a norm weight.
    pub fn load(src: &dyn WeightSource, id: WeightId, eps: f32, device: &Device) -> Result<Self> {
        let raw = src.raw(id)?;
        let v = raw.to_f32()?;
        let n = v.len();
        Ok(Self { w: Tensor::from_data(TensorData::new(v.clone(), [n]), device), w_host: v, eps })
    }

    /// The weight (`1 + w` in HF's terms) and epsilon, for the fused GPU kernel (`gpu_fused`).
    pub fn parts(&self) -> (&Tensor<1>, f32) {
        (&self.w, self.eps)
    }

    /// x: [.., d] -> [.., d]
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        if on_cpu(&x) {
            if let Some(y) = self.forward_host(&x) {
                return y;
            }
        }
        let ms = x.clone().square().mean_dim(D - 1);
        let x = x.div(ms.add_scalar(self.eps).sqrt());
        x.mul(self.w.clone().unsqueeze::<D>())
    }

    /// The CPU path: one pass per row on the host, rows spread over the kernel pool. The sum of
    /// squares is accumulated in f64, as ggml's `rms_norm` does. `None` (caller falls back to
    /// the tensor ops) if the shapes disagree or the read-back fails.
    fn forward_host<const D: usize>(&self, x: &Tensor<D>) -> Option<Tensor<D>> {
        let dims = x.dims();
        let d = dims[D - 1];
        if d == 0 || d != self.w_host.len() {
            return None;
        }
        let mut v = read_f32(x.clone()).ok()?;
        let rows = v.len() / d;
        let (w, eps) = (&self.w_host, self.eps);
        let norm = |row: &mut [f32]| {
            let ss: f64 = row.iter().map(|&a| (a * a) as f64).sum();
            let scale = 1.0 / ((ss / d as f64) as f32 + eps).sqrt();
            for (o, &wi) in row.iter_mut().zip(w) {
                *o = *o * scale * wi;
            }
        };
        par_rows(&mut v, d, rows, norm);
        Some(Tensor::from_data(TensorData::new(v, dims), &x.device()))
    }
}

/// Whether `x` lives on the CPU backend (where the host paths of these layers run).
fn on_cpu<const D: usize>(x: &Tensor<D>) -> bool {
    x.device() == crate::backend::cpu_device()
}

/// Applies `f` to each `d`-long row of `v` (`rows` of them), spread over the kernel pool in
/// blocks of at least 16 K values (below that, one thread: the hand-off would dominate).
fn par_rows(v: &mut [f32], d: usize, rows: usize, f: impl Fn(&mut [f32]) + Sync) {
    let per = (16 * 1024 / d.max(1)).max(1);
    let blocks = rows.div_ceil(per);
    if blocks <= 1 {
        v.chunks_exact_mut(d).for_each(f);
        return;
    }
    let len = v.len();
    let p = crate::quant::cpu::pool::SyncPtr(v.as_mut_ptr());
    crate::quant::cpu::pool::for_each(blocks, &|b| {
        let (r0, r1) = (b * per, ((b + 1) * per).min(rows));
        // SAFETY: block `b` covers rows `r0..r1 ≤ rows`, i.e. values `[r0·d, r1·d) ⊆ [0, len)`,
        // disjoint from every other block; `v` outlives the call.
        let part = unsafe { std::slice::from_raw_parts_mut(p.get().add(r0 * d), (r1 - r0) * d) };
        debug_assert!(r1 * d <= len);
        part.chunks_exact_mut(d).for_each(&f);
    });
}

/// RoPE angles for a run of positions, NEOX style (pairs `(i, i + hd/2)`), computed on the host
/// for just the positions of this pass: no table sized for the model's full context.
///
/// The recurrence mirrors ggml's `rope_cache_init` (`theta *= theta_scale` in f32) so angles match
/// llama.cpp's bit for bit.
pub fn rope_tables(start: usize, n: usize, head_dim: usize, base: f32, scale: f32, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let half = head_dim / 2;
    let theta_scale = base.powf(-2.0 / head_dim as f32);
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in start..start + n {
        let mut theta = p as f32 / scale;
        for _ in 0..half {
            cos.push(theta.cos());
            sin.push(theta.sin());
            theta *= theta_scale;
        }
    }
    (tensor2(cos, n, half, device), tensor2(sin, n, half, device))
}

/// Applies NEOX RoPE. x: [heads, n, hd]; cos, sin: [n, hd/2] -> [heads, n, hd]
pub fn apply_rope(x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<3> {
    if on_cpu(&x) {
        if let Some(y) = rope_host(&x, cos, sin) {
            return y;
        }
    }
    let [h, n, hd] = x.dims();
    let half = hd / 2;
    let x1 = x.clone().slice([0..h, 0..n, 0..half]);
    let x2 = x.slice([0..h, 0..n, half..hd]);
    let c = cos.clone().unsqueeze::<3>();
    let s = sin.clone().unsqueeze::<3>();
    let r1 = x1.clone().mul(c.clone()).sub(x2.clone().mul(s.clone()));
    let r2 = x2.mul(c).add(x1.mul(s));
    Tensor::cat(vec![r1, r2], 2)
}

/// [`apply_rope`] on the host (the same products and sums per element).
fn rope_host(x: &Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>) -> Option<Tensor<3>> {
    let [h, n, hd] = x.dims();
    let half = hd / 2;
    if hd % 2 != 0 || cos.dims() != [n, half] || sin.dims() != [n, half] {
        return None;
    }
    let mut v = read_f32(x.clone()).ok()?;
    let (c, s) = (read_f32(cos.clone()).ok()?, read_f32(sin.clone()).ok()?);
    // Row `r` of `[h·n, hd]` is token `r % n`.
    let rows = h * n;
    let p = crate::quant::cpu::pool::SyncPtr(v.as_mut_ptr());
    let rot = |r: usize| {
        let t = r % n;
        let (c, s) = (&c[t * half..(t + 1) * half], &s[t * half..(t + 1) * half]);
        // SAFETY: row `r < h·n` is `[r·hd, (r+1)·hd)` of `v` (length `h·n·hd`), and each row is
        // visited by exactly one task.
        let row = unsafe { std::slice::from_raw_parts_mut(p.get().add(r * hd), hd) };
        let (x1, x2) = row.split_at_mut(half);
        for i in 0..half {
            let (a, b) = (x1[i], x2[i]);
            x1[i] = a * c[i] - b * s[i];
            x2[i] = b * c[i] + a * s[i];
        }
    };
    if rows * hd >= 32 * 1024 {
        crate::quant::cpu::pool::for_each(rows, &rot);
    } else {
        (0..rows).for_each(rot);
    }
    Some(Tensor::from_data(TensorData::new(v, [h, n, hd]), &x.device()))
}

/// GeGLU: `gelu_tanh(gate) · up` (Gemma's MLP), fused and threaded on the CPU.
///
/// gate, up: [n, ff] -> [n, ff]
pub fn geglu(gate: Tensor<2>, up: Tensor<2>) -> Result<Tensor<2>> {
    if !on_cpu(&gate) || gate.dims() != up.dims() {
        return Ok(activation::gelu_approximate(gate).mul(up));
    }
    let dims = gate.dims();
    let device = gate.device();
    let mut g = read_f32(gate)?;
    let u = read_f32(up)?;
    // burn's `gelu_approximate`: 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).
    const SQRT_2_OVER_PI: f32 = (std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2) as f32;
    const BLOCK: usize = 4096;
    let p = crate::quant::cpu::pool::SyncPtr(g.as_mut_ptr());
    let len = g.len();
    let run = |b: usize| {
        let (i0, i1) = (b * BLOCK, ((b + 1) * BLOCK).min(len));
        // SAFETY: block `b` is `[i0, i1) ⊆ [0, len)` of `g`, disjoint between blocks.
        let gs = unsafe { std::slice::from_raw_parts_mut(p.get().add(i0), i1 - i0) };
        for (x, &y) in gs.iter_mut().zip(&u[i0..i1]) {
            let a = *x;
            let inner = (a + a * a * a * 0.044715) * SQRT_2_OVER_PI;
            *x = a * (inner.tanh() + 1.0) * 0.5 * y;
        }
    };
    crate::quant::cpu::pool::for_each(len.div_ceil(BLOCK), &run);
    Ok(Tensor::from_data(TensorData::new(g, dims), &device))
}

/// Grouped-query attention of `q` over the cache of `layer` (after this pass's k/v were stored).
///
/// q: [H, n, hd] (already scaled) -> [n, H·hd]
pub fn attention(q: Tensor<3>, cache: &KvCache, layer: usize) -> Result<Tensor<2>> {
    let [h, n, hd] = q.dims();
    if let Some(kv) = cache.host_view(layer, n)? {
        return attention_host(q, &kv);
    }
    let (k, v, mask, s) = cache.view(layer, n)?;
    let kv = k.dims()[0];
    let g = h / kv;
    // Query heads h = kv_head * g + j share kv_head: a contiguous reshape groups them.
    let qg = q.reshape([kv, g * n, hd]);
    let scores = qg.matmul(k.swap_dims(1, 2)); // [KV, g·n, S]
    // One [n, S] mask, broadcast over heads and groups.
    let scores = scores.reshape([kv, g, n, s]).add(mask.reshape([1, 1, n, s])).reshape([kv, g * n, s]);
    let p = activation::softmax(scores, 2);
    let o = p.matmul(v); // [KV, g·n, hd]
    Ok(o.reshape([h, n, hd]).swap_dims(0, 1).reshape([n, h * hd]))
}

/// [`attention`] on the CPU, reading the host cache in place.
///
/// Work items are (query head, query token) rows, each split into position chunks when there are
/// too few rows to occupy the pool (decode: 4 rows); a chunk keeps its own running max, sum and
/// weighted value sum (as flash-decoding does), and the chunks of a row are merged afterwards.
/// Masked keys are skipped, so causal prefill does half the work. Query head `j` reads KV head
/// `j / (H / KV)`, as the tensor path's reshape groups them.
fn attention_host(q: Tensor<3>, kv: &crate::kv_cache::HostView<'_>) -> Result<Tensor<2>> {
    use crate::kv_cache::HostView;
    use crate::quant::cpu::{axpy_f32, dot_f32, pool};
    let [h, n, hd] = q.dims();
    let device = q.device();
    let (s, cap, kvh) = (kv.s, kv.cap, kv.kv_heads);
    if kvh == 0 || h % kvh != 0 || hd != kv.head_dim || kv.mask.len() != n * s {
        return Err(Error::Backend { reason: format!("attention: {h} heads of {hd} over {kvh} kv heads of {}", kv.head_dim) });
    }
    let g = h / kvh;
    let qs = read_f32(q)?; // [H, n, hd]
    let rows = h * n;
    let threads = pool::threads();
    // Position chunks per row: enough tasks for every thread, each ≥ 64 keys.
    let pc = if rows >= 2 * threads { 1 } else { (2 * threads).div_ceil(rows).min(s.div_ceil(64)).max(1) };
    let plen = s.div_ceil(pc);
    // Per (row, chunk): max, sum, then `hd` weighted values.
    let stride = hd + 2;
    let mut part = vec![0f32; rows * pc * stride];
    let pp = pool::SyncPtr(part.as_mut_ptr());
    let task = |t: usize| {
        let (r, c) = (t / pc, t % pc);
        let (head, i) = (r / n, r % n);
        let kvhead = head / g;
        let qrow = &qs[r * hd..(r + 1) * hd];
        let mrow = &kv.mask[i * s..(i + 1) * s];
        let (p0, p1) = (c * plen, ((c + 1) * plen).min(s));
        // SAFETY: task `t` owns `part[t·stride, (t+1)·stride)`, inside `rows·pc·stride`.
        let out = unsafe { std::slice::from_raw_parts_mut(pp.get().add(t * stride), stride) };
        let (stat, acc) = out.split_at_mut(2);
        let mut sc: Vec<(usize, f32)> = Vec::with_capacity(p1.saturating_sub(p0));
        let mut mx = f32::NEG_INFINITY;
        for p in p0..p1 {
            let m = mrow[p];
            if HostView::masked(m) {
                continue;
            }
            let k0 = (kvhead * cap + p) * hd;
            let v = dot_f32(qrow, &kv.k[k0..k0 + hd]) + m;
            mx = mx.max(v);
            sc.push((p, v));
        }
        let mut sum = 0f32;
        for &(p, v) in &sc {
            let e = (v - mx).exp();
            sum += e;
            let v0 = (kvhead * cap + p) * hd;
            axpy_f32(acc, e, &kv.v[v0..v0 + hd]);
        }
        stat[0] = mx;
        stat[1] = sum;
    };
    pool::for_each(rows * pc, &task);
    // Merge the chunks of each row into out: [n, H·hd].
    let mut o = vec![0f32; n * h * hd];
    let op = pool::SyncPtr(o.as_mut_ptr());
    let merge = |r: usize| {
        let (head, i) = (r / n, r % n);
        let chunks = &part[r * pc * stride..(r + 1) * pc * stride];
        let mx = chunks.chunks_exact(stride).map(|c| c[0]).fold(f32::NEG_INFINITY, f32::max);
        // SAFETY: row `r` writes `o[(i·H + head)·hd ..][..hd]`, a distinct slot per `(i, head)`.
        let dst = unsafe { std::slice::from_raw_parts_mut(op.get().add((i * h + head) * hd), hd) };
        let mut total = 0f32;
        for c in chunks.chunks_exact(stride) {
            if c[1] > 0.0 {
                let w = (c[0] - mx).exp();
                total += c[1] * w;
                axpy_f32(dst, w, &c[2..]);
            }
        }
        if total > 0.0 {
            let inv = 1.0 / total;
            dst.iter_mut().for_each(|x| *x *= inv);
        }
    };
    if rows * hd >= 32 * 1024 {
        pool::for_each(rows, &merge);
    } else {
        (0..rows).for_each(merge);
    }
    Ok(tensor2(o, n, h * hd, &device))
}

/// The LM head over the (tied) embedding matrix. On the device it is split into row shards so
/// that no buffer exceeds the adapter's storage-binding limit (ENGINEERING.md B.6), as f32 or (in
/// `WeightMode::QuantizedGpu`) as repacked blocks; on the CPU the quantized matrix is read in place.
#[derive(Debug, Clone)]
pub enum LmHead {
    /// Each shard `[d, rows_i]` (transposed slice of the `[vocab, d]` matrix).
    Sharded {
        /// The shards.
        shards: Vec<Tensor<2>>,
        /// Vocabulary size.
        vocab: usize,
    },
    /// The file's blocks.
    Quantized(SharedWeight),
    /// The file's blocks repacked on the GPU, in row shards below the binding limit.
    QuantizedGpu(QMatrix),
}

impl LmHead {
    /// Loads weight `id`; `max_bytes` bounds each device shard's f32 size.
    pub fn load(src: &dyn WeightSource, id: WeightId, mode: WeightMode, max_bytes: u64, device: &Device) -> Result<Self> {
        if mode == WeightMode::QuantizedCpu {
            let w = src.shared(id)?;
            if crate::quant::cpu::supported(w.ty) && w.cols % 32 == 0 {
                return Ok(Self::Quantized(w));
            }
        }
        if mode == WeightMode::QuantizedGpu {
            if let Some(w) = upload_gpu(src, id, max_bytes, device)? {
                log::debug!("lm head: {} rows in {} quantized gpu shards", w.rows(), w.shard_count());
                return Ok(Self::QuantizedGpu(w));
            }
        }
        let raw = src.raw(id)?;
        let d = raw.cols;
        let row_bytes = raw.row_bytes();
        let rows_per_shard = ((max_bytes / (d as u64 * 4)).max(1) as usize).min(raw.rows);
        let mut shards = Vec::new();
        let mut r0 = 0;
        while r0 < raw.rows {
            let r1 = (r0 + rows_per_shard).min(raw.rows);
            let bytes = raw.bytes.get(r0 * row_bytes..r1 * row_bytes).ok_or_else(|| Error::Tensor {
                name: "lm_head".into(),
                reason: "shard outside the weight".into(),
            })?;
            let vals = crate::quant::dequantize(raw.ty, bytes, (r1 - r0) * d)?;
            shards.push(tensor2(transpose(&vals, r1 - r0, d), d, r1 - r0, device));
            r0 = r1;
        }
        log::debug!("lm head: {} rows in {} shards", raw.rows, shards.len());
        Ok(Self::Sharded { shards, vocab: raw.rows })
    }

    /// x: [1, d] -> logits [vocab] on the host
    pub fn logits(&self, x: Tensor<2>) -> Result<Vec<f32>> {
        match self {
            Self::Sharded { shards, vocab } => {
                let parts: Vec<Tensor<2>> = shards.iter().map(|w| x.clone().matmul(w.clone())).collect();
                let v = read_f32(Tensor::cat(parts, 1))?;
                if v.len() != *vocab {
                    return Err(Error::Backend { reason: format!("lm head produced {} logits, expected {vocab}", v.len()) });
                }
                Ok(v)
            }
            Self::Quantized(w) => {
                let [n, cols] = x.dims();
                let xs = read_f32(x)?;
                crate::quant::cpu::matmul(w.ty, w.bytes(), w.rows, cols, &xs, n)
            }
            Self::QuantizedGpu(w) => {
                let v = read_f32(w.matmul(x)?)?;
                if v.len() != w.rows() {
                    return Err(Error::Backend { reason: format!("lm head produced {} logits, expected {}", v.len(), w.rows()) });
                }
                Ok(v)
            }
        }
    }
}

/// Uploads weight `id` for the GPU kernels, or `None` when its type has no kernel (the caller
/// falls back to dense f32). `max_bytes` bounds each device buffer.
fn upload_gpu(src: &dyn WeightSource, id: WeightId, max_bytes: u64, device: &Device) -> Result<Option<QMatrix>> {
    let w = src.shared(id)?;
    if !crate::quant::gpu::supported(w.ty) || w.cols as u64 % w.ty.block_size() != 0 {
        log::debug!("{id:?}: {} has no gpu kernel, using dense f32", w.ty);
        return Ok(None);
    }
    QMatrix::upload(w.ty, w.bytes(), w.rows, w.cols, max_bytes, device).map(Some)
}

/// Embedding rows looked up on the host from the (memory-mapped, quantized) matrix: only the
/// rows of the tokens in the pass are dequantized.
pub fn embed_rows(raw: &SharedWeight, tokens: &[u32], scale: f32, device: &Device) -> Result<Tensor<2>> {
    let d = raw.cols;
    let row_bytes = raw.row_bytes();
    let mut out = Vec::with_capacity(tokens.len() * d);
    for &t in tokens {
        let t = t as usize;
        if t >= raw.rows {
            return Err(Error::InvalidParameter { name: "token", reason: format!("id out of vocabulary of {}", raw.rows) });
        }
        let bytes = raw.bytes().get(t * row_bytes..(t + 1) * row_bytes).ok_or_else(|| Error::Tensor {
            name: "token_embd".into(),
            reason: "row outside the weight".into(),
        })?;
        let row = crate::quant::dequantize(raw.ty, bytes, d)?;
        out.extend(row.into_iter().map(|x| x * scale));
    }
    Ok(tensor2(out, tokens.len(), d, device))
}
