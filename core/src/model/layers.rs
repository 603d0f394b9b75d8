//! Architecture-neutral layers: linear projections, RMSNorm, RoPE, grouped-query attention over
//! a [`KvCache`], and the LM head. Gemma 3, Llama and Qwen differ only in how they combine these.
//!
//! Shapes: `n` = tokens in this forward pass, `d` = hidden size, `hd` = head dim, `H` query heads,
//! `KV` key/value heads, `S` = cached keys visible to the pass.

use burn::tensor::{activation, Device, Tensor, TensorData};

use super::decoder::{Activation, RopeLayout, RopeScaling};
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

/// A host buffer of the CPU path, taken from a per-thread free list and given back on drop, so
/// a pass reuses the same warm memory for every layer and pass: no allocation, page faults or
/// zeroing per product (which were most of the serial time of a prefill). Its values start
/// stale (whatever the last user left); [`Buf::zeroed`] clears them.
pub(crate) struct Buf(Vec<f32>);

thread_local! {
    static FREE: std::cell::RefCell<Vec<Vec<f32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Buf {
    /// `len` values, stale.
    pub(crate) fn new(len: usize) -> Self {
        let v = FREE.with(|f| {
            let mut f = f.borrow_mut();
            // The smallest free buffer that is large enough, else the largest (grown below).
            let fit = f
                .iter()
                .enumerate()
                .filter(|(_, v)| v.capacity() >= len)
                .min_by_key(|(_, v)| v.capacity())
                .map(|(i, _)| i);
            let pick = fit.or_else(|| f.iter().enumerate().max_by_key(|(_, v)| v.capacity()).map(|(i, _)| i));
            pick.map(|i| f.swap_remove(i))
        });
        let mut v = v.unwrap_or_default();
        if v.len() >= len {
            v.truncate(len);
        } else {
            v.resize(len, 0.0);
        }
        Self(v)
    }
}

impl Drop for Buf {
    fn drop(&mut self) {
        let v = std::mem::take(&mut self.0);
        if v.capacity() > 0 {
            // Bounded: a block needs about ten live buffers.
            FREE.with(|f| {
                let mut f = f.borrow_mut();
                if f.len() < 24 {
                    f.push(v);
                }
            });
        }
    }
}

impl std::ops::Deref for Buf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl std::ops::DerefMut for Buf {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

/// Transposes a row-major `[rows, cols]` matrix.
pub(crate) fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
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
// A model holds a few hundred of these; boxing the GPU variant would buy nothing.
#[allow(clippy::large_enum_variant)]
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

    /// The CPU path: `x: [n, in]` on the host -> `[n, out]` on the host. Quantized weights
    /// quantize `x` once per [`HostIn`] (q/k/v, or gate/up, share it); other weights go through
    /// [`Linear::forward`] on the CPU device.
    pub(crate) fn forward_host(&self, x: &mut HostIn<'_>) -> Result<Buf> {
        match self {
            Self::Quantized(w) => {
                if x.q.is_none() {
                    x.q = Some(crate::quant::cpu::Quantized::new(x.x, x.n, x.cols)?);
                }
                // Every value is written by the kernels.
                let mut y = Buf::new(x.n * w.rows);
                if let Some(q) = x.q.as_mut() {
                    q.matmul_into(w.ty, w.bytes(), w.rows, &mut y)?;
                }
                Ok(y)
            }
            _ => {
                let device = crate::backend::cpu_device();
                Ok(Buf(read_f32(self.forward(tensor2(x.x.to_vec(), x.n, x.cols, &device))?)?))
            }
        }
    }

    /// Several products of one input on the CPU path (q/k/v, gate/up): when all are quantized
    /// blocks of one type, one pool job for all of them (one barrier instead of several, for the
    /// ~20–50 µs products of decode); otherwise [`Linear::forward_host`] one after the other.
    pub(crate) fn forward_host_many(ls: &[&Linear], x: &mut HostIn<'_>) -> Result<Vec<Buf>> {
        let blocks: Vec<&SharedWeight> =
            ls.iter().filter_map(|l| if let Self::Quantized(w) = l { Some(w) } else { None }).collect();
        let one_type = blocks.len() == ls.len() && blocks.windows(2).all(|p| p[0].ty == p[1].ty);
        let Some(first) = blocks.first().filter(|_| one_type) else {
            return ls.iter().map(|l| l.forward_host(x)).collect();
        };
        if x.q.is_none() {
            x.q = Some(crate::quant::cpu::Quantized::new(x.x, x.n, x.cols)?);
        }
        // Every value is written by the kernels.
        let mut ys: Vec<Buf> = blocks.iter().map(|w| Buf::new(x.n * w.rows)).collect();
        let mut parts: Vec<(&[u8], usize, &mut [f32])> =
            blocks.iter().zip(ys.iter_mut()).map(|(w, y)| (w.bytes(), w.rows, &mut y[..])).collect();
        if let Some(q) = x.q.as_mut() {
            q.matmul_many_into(first.ty, &mut parts)?;
        }
        drop(parts);
        Ok(ys)
    }

    /// [`Linear::forward_host_many`] for one token with `fused`'s work in the same pool job
    /// ([`crate::quant::cpu::Quantized::matmul_many_fused`]: a LoRA adapter's products split
    /// over the same threads). `None` (nothing computed) unless `x` is one token and every
    /// weight is quantized blocks of one type.
    pub(crate) fn forward_host_fused(
        ls: &[&Linear],
        x: &mut HostIn<'_>,
        fused: &dyn crate::quant::cpu::Fused,
    ) -> Result<Option<Vec<Buf>>> {
        let blocks: Vec<&SharedWeight> =
            ls.iter().filter_map(|l| if let Self::Quantized(w) = l { Some(w) } else { None }).collect();
        let one_type = blocks.len() == ls.len() && blocks.windows(2).all(|p| p[0].ty == p[1].ty);
        let Some(first) = blocks.first().filter(|_| one_type && x.n == 1) else {
            return Ok(None);
        };
        if x.q.is_none() {
            x.q = Some(crate::quant::cpu::Quantized::new(x.x, x.n, x.cols)?);
        }
        // Every value is written by the kernels.
        let mut ys: Vec<Buf> = blocks.iter().map(|w| Buf::new(w.rows)).collect();
        let mut parts: Vec<(&[u8], usize, &mut [f32])> =
            blocks.iter().zip(ys.iter_mut()).map(|(w, y)| (w.bytes(), w.rows, &mut y[..])).collect();
        if let Some(q) = x.q.as_mut() {
            q.matmul_many_fused(first.ty, &mut parts, fused)?;
        }
        drop(parts);
        Ok(Some(ys))
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

/// The input of one or more products on the CPU path: `x: [n, cols]` on the host, quantized
/// (for the CPU kernels) on first use and then reused.
pub(crate) struct HostIn<'a> {
    x: &'a [f32],
    n: usize,
    cols: usize,
    q: Option<crate::quant::cpu::Quantized>,
}

impl<'a> HostIn<'a> {
    /// `x: [n, cols]`, row-major.
    pub(crate) fn new(x: &'a [f32], n: usize, cols: usize) -> Self {
        Self { x, n, cols, q: None }
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

    /// Values of the weight (the normalized width).
    pub fn len(&self) -> usize {
        self.w_host.len()
    }

    /// Whether the weight is empty.
    pub fn is_empty(&self) -> bool {
        self.w_host.is_empty()
    }

    /// The weight (`1 + w` in HF's terms) and epsilon, for the fused GPU kernel (`gpu_fused`).
    pub fn parts(&self) -> (&Tensor<1>, f32) {
        (&self.w, self.eps)
    }

    /// x: [.., d] -> [.., d]
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let ms = x.clone().square().mean_dim(D - 1);
        let x = x.div(ms.add_scalar(self.eps).sqrt());
        x.mul(self.w.clone().unsqueeze::<D>())
    }

    /// Normalizes one row in place. The sum of squares is accumulated in f64, as ggml's
    /// `rms_norm` does.
    fn row(&self, row: &mut [f32]) {
        let d = row.len();
        let ss: f64 = row.iter().map(|&a| (a * a) as f64).sum();
        let scale = 1.0 / ((ss / d as f64) as f32 + self.eps).sqrt();
        for (o, &wi) in row.iter_mut().zip(&self.w_host) {
            *o = *o * scale * wi;
        }
    }

    fn check_host(&self, len: usize) -> Result<usize> {
        let d = self.w_host.len();
        if d == 0 || !len.is_multiple_of(d) {
            return Err(Error::Backend { reason: format!("rms norm of {d} over {len} values") });
        }
        Ok(d)
    }

    /// The CPU path in place: every `d`-long row of `v: [rows, d]`, on the kernel pool.
    pub(crate) fn rows_host(&self, v: &mut [f32]) -> Result<()> {
        let d = self.check_host(v.len())?;
        par_rows(v, d, |_, row| self.row(row));
        Ok(())
    }

    /// The CPU path with the residual: `res += norm(y)` row by row (`y` is overwritten by
    /// `norm(y)`). y, res: [rows, d]
    pub(crate) fn add_host(&self, y: &mut [f32], res: &mut [f32]) -> Result<()> {
        let d = self.check_host(y.len())?;
        if res.len() != y.len() {
            return Err(Error::Backend { reason: format!("residual of {} values for {}", res.len(), y.len()) });
        }
        par_rows2(y, res, d, |a, r| {
            self.row(a);
            for (o, &v) in r.iter_mut().zip(a.iter()) {
                *o += v;
            }
        });
        Ok(())
    }
}

/// A projection's bias `b`, added to every row of its output (Qwen 2's q/k/v).
#[derive(Debug, Clone)]
pub struct Bias {
    b: Tensor<1>,
    b_host: Vec<f32>,
}

impl Bias {
    /// Loads a bias vector.
    pub fn load(src: &dyn WeightSource, id: WeightId, device: &Device) -> Result<Self> {
        let v = src.raw(id)?.to_f32()?;
        let n = v.len();
        Ok(Self { b: Tensor::from_data(TensorData::new(v.clone(), [n]), device), b_host: v })
    }

    /// Values.
    pub fn len(&self) -> usize {
        self.b_host.len()
    }

    /// Whether the bias is empty.
    pub fn is_empty(&self) -> bool {
        self.b_host.is_empty()
    }

    /// x: [n, len] -> x + b
    pub fn add(&self, x: Tensor<2>) -> Tensor<2> {
        x.add(self.b.clone().unsqueeze::<2>())
    }

    /// The CPU path, in place on `x: [rows, len]`.
    pub(crate) fn add_host(&self, x: &mut [f32]) -> Result<()> {
        let d = self.b_host.len();
        if d == 0 || !x.len().is_multiple_of(d) {
            return Err(Error::Backend { reason: format!("bias of {d} over {} values", x.len()) });
        }
        par_rows(x, d, |_, row| row.iter_mut().zip(&self.b_host).for_each(|(v, &b)| *v += b));
        Ok(())
    }
}

/// Rows per pool task: blocks of at least 16 K values (below that the hand-off would dominate).
fn rows_per_block(d: usize) -> usize {
    (16 * 1024 / d.max(1)).max(1)
}

/// Applies `f(r, row)` to each `d`-long row `r` of `v`, spread over the kernel pool in blocks of
/// at least 16 K values (one block runs on the calling thread).
fn par_rows(v: &mut [f32], d: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    let per = rows_per_block(d);
    if d == 0 || v.len() <= per * d {
        v.chunks_exact_mut(d.max(1)).enumerate().for_each(|(r, row)| f(r, row));
        return;
    }
    // One lock per block, each taken once (uncontended): safe disjoint access from the tasks.
    let blocks: Vec<std::sync::Mutex<&mut [f32]>> = v.chunks_mut(per * d).map(std::sync::Mutex::new).collect();
    crate::quant::cpu::pool::for_each(blocks.len(), &|b| {
        if let Ok(mut part) = blocks[b].lock() {
            part.chunks_exact_mut(d).enumerate().for_each(|(i, row)| f(b * per + i, row));
        }
    });
}

/// [`par_rows`] over two buffers of the same shape, row by row: `f(row_a, row_b)`.
fn par_rows2(a: &mut [f32], b: &mut [f32], d: usize, f: impl Fn(&mut [f32], &mut [f32]) + Sync) {
    let per = rows_per_block(d);
    let d = d.max(1);
    if a.len() <= per * d {
        a.chunks_exact_mut(d).zip(b.chunks_exact_mut(d)).for_each(|(x, y)| f(x, y));
        return;
    }
    let blocks: Vec<std::sync::Mutex<(&mut [f32], &mut [f32])>> =
        a.chunks_mut(per * d).zip(b.chunks_mut(per * d)).map(std::sync::Mutex::new).collect();
    crate::quant::cpu::pool::for_each(blocks.len(), &|i| {
        if let Ok(mut g) = blocks[i].lock() {
            let (x, y) = &mut *g;
            x.chunks_exact_mut(d).zip(y.chunks_exact_mut(d)).for_each(|(x, y)| f(x, y));
        }
    });
}

/// RoPE angles for a run of positions (pairs per [`RopeLayout`]; the angles are the same),
/// computed on the host for just the positions of this pass: no table sized for the model's
/// full context.
///
/// The recurrence mirrors ggml's `rope_cache_init` (`theta *= theta_scale` in f32, each angle
/// divided by its frequency factor when there are some) so angles match llama.cpp's bit for bit.
pub fn rope_tables(
    start: usize,
    n: usize,
    head_dim: usize,
    base: f32,
    scaling: &RopeScaling,
    device: &Device,
) -> (Tensor<2>, Tensor<2>) {
    let half = head_dim / 2;
    let (cos, sin) = rope_tables_host(start, n, head_dim, base, scaling);
    (tensor2(cos, n, half, device), tensor2(sin, n, half, device))
}

/// [`rope_tables`] on the host: `(cos, sin)`, each `[n, hd/2]`.
pub(crate) fn rope_tables_host(
    start: usize,
    n: usize,
    head_dim: usize,
    base: f32,
    scaling: &RopeScaling,
) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let theta_scale = base.powf(-2.0 / head_dim as f32);
    let (scale, factors) = match scaling {
        RopeScaling::None => (1.0, None),
        RopeScaling::Linear(f) => (*f, None),
        RopeScaling::Factors(f) => (1.0, Some(f.as_slice())),
    };
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in start..start + n {
        let mut theta = p as f32 / scale;
        for i in 0..half {
            let t = match factors {
                Some(f) => theta / f.get(i).copied().unwrap_or(1.0),
                None => theta,
            };
            cos.push(t.cos());
            sin.push(t.sin());
            theta *= theta_scale;
        }
    }
    (cos, sin)
}

/// The CPU path of q/k: per head, RMSNorm over `hd` (when the model has a q/k norm), RoPE in
/// `layout`, then `· scale`, in place on `x: [n, heads, hd]` (token-major, as the projection
/// wrote it); cos, sin: [n, hd/2]. The same products and sums per element as `RmsNorm::forward`,
/// [`apply_rope`] and `mul_scalar` one after the other.
#[allow(clippy::too_many_arguments)]
pub(crate) fn norm_rope_host(
    x: &mut [f32],
    heads: usize,
    hd: usize,
    norm: Option<&RmsNorm>,
    layout: RopeLayout,
    cos: &[f32],
    sin: &[f32],
    scale: Option<f32>,
) -> Result<()> {
    let half = hd / 2;
    let rows = x.len().checked_div(hd).unwrap_or(0);
    let norm_ok = norm.is_none_or(|nm| nm.w_host.len() == hd);
    if !hd.is_multiple_of(2)
        || heads == 0
        || !rows.is_multiple_of(heads)
        || x.len() != rows * hd
        || cos.len() != rows / heads * half
        || sin.len() != cos.len()
        || !norm_ok
    {
        return Err(Error::Backend {
            reason: format!("rope: {} values of {heads} heads of {hd}, {} angles", x.len(), cos.len()),
        });
    }
    par_rows(x, hd, |r, row| {
        if let Some(nm) = norm {
            nm.row(row);
        }
        let t = r / heads;
        let (c, s) = (&cos[t * half..(t + 1) * half], &sin[t * half..(t + 1) * half]);
        match layout {
            RopeLayout::Neox => {
                let (x1, x2) = row.split_at_mut(half);
                for i in 0..half {
                    let (a, b) = (x1[i], x2[i]);
                    x1[i] = a * c[i] - b * s[i];
                    x2[i] = b * c[i] + a * s[i];
                }
            }
            RopeLayout::Norm => {
                for (i, p) in row.chunks_exact_mut(2).enumerate() {
                    let (a, b) = (p[0], p[1]);
                    p[0] = a * c[i] - b * s[i];
                    p[1] = b * c[i] + a * s[i];
                }
            }
        }
        if let Some(k) = scale {
            row.iter_mut().for_each(|v| *v *= k);
        }
    });
    Ok(())
}

/// Applies RoPE in `layout`. x: [heads, n, hd]; cos, sin: [n, hd/2] -> [heads, n, hd]
pub fn apply_rope(x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>, layout: RopeLayout) -> Tensor<3> {
    let [h, n, hd] = x.dims();
    let half = hd / 2;
    let c = cos.clone().unsqueeze::<3>();
    let s = sin.clone().unsqueeze::<3>();
    match layout {
        RopeLayout::Neox => {
            let x1 = x.clone().slice([0..h, 0..n, 0..half]);
            let x2 = x.slice([0..h, 0..n, half..hd]);
            let r1 = x1.clone().mul(c.clone()).sub(x2.clone().mul(s.clone()));
            let r2 = x2.mul(c).add(x1.mul(s));
            Tensor::cat(vec![r1, r2], 2)
        }
        RopeLayout::Norm => {
            // Adjacent pairs: [h, n, hd/2, 2].
            let x4: Tensor<4> = x.reshape([h, n, half, 2]);
            let x1: Tensor<3> = x4.clone().slice([0..h, 0..n, 0..half, 0..1]).reshape([h, n, half]);
            let x2: Tensor<3> = x4.slice([0..h, 0..n, 0..half, 1..2]).reshape([h, n, half]);
            let r1 = x1.clone().mul(c.clone()).sub(x2.clone().mul(s.clone()));
            let r2 = x2.mul(c).add(x1.mul(s));
            let r1: Tensor<4> = r1.reshape([h, n, half, 1]);
            let r2: Tensor<4> = r2.reshape([h, n, half, 1]);
            Tensor::cat(vec![r1, r2], 3).reshape([h, n, hd])
        }
    }
}

/// `res += y` row by row on the kernel pool (the pre-norm blocks' residual). y, res: [rows, d]
pub(crate) fn add_rows_host(y: &[f32], res: &mut [f32], d: usize) -> Result<()> {
    if res.len() != y.len() || d == 0 || !y.len().is_multiple_of(d) {
        return Err(Error::Backend { reason: format!("residual of {} values for {}", res.len(), y.len()) });
    }
    let per = rows_per_block(d) * d;
    if y.len() <= per {
        res.iter_mut().zip(y).for_each(|(r, &v)| *r += v);
        return Ok(());
    }
    let blocks: Vec<std::sync::Mutex<(&mut [f32], &[f32])>> =
        res.chunks_mut(per).zip(y.chunks(per)).map(std::sync::Mutex::new).collect();
    crate::quant::cpu::pool::for_each(blocks.len(), &|b| {
        if let Ok(mut p) = blocks[b].lock() {
            let (r, y) = &mut *p;
            r.iter_mut().zip(y.iter()).for_each(|(r, &v)| *r += v);
        }
    });
    Ok(())
}

/// The gated MLP's middle on the host: `act(gate) · up` (GeGLU with tanh GELU, or SwiGLU),
/// fused and threaded, in place on `g` (gate, up: [n, ff] flattened).
pub(crate) fn glu_host(act: Activation, g: &mut [f32], u: &[f32]) -> Result<()> {
    if g.len() != u.len() {
        return Err(Error::Backend { reason: format!("gated mlp of {} and {} values", g.len(), u.len()) });
    }
    let f = match act {
        Activation::GeluTanh => crate::quant::cpu::gelu_mul,
        Activation::Silu => crate::quant::cpu::silu_mul,
    };
    const BLOCK: usize = 4096;
    if g.len() <= BLOCK {
        f(g, u);
        return Ok(());
    }
    let blocks: Vec<std::sync::Mutex<(&mut [f32], &[f32])>> =
        g.chunks_mut(BLOCK).zip(u.chunks(BLOCK)).map(std::sync::Mutex::new).collect();
    crate::quant::cpu::pool::for_each(blocks.len(), &|b| {
        if let Ok(mut p) = blocks[b].lock() {
            let (gs, us) = &mut *p;
            f(gs, us);
        }
    });
    Ok(())
}

/// Grouped-query attention of `q` over the cache of `layer` (after this pass's k/v were stored).
///
/// q: [H, n, hd] (already scaled) -> [n, H·hd]
pub fn attention(q: Tensor<3>, cache: &KvCache, layer: usize) -> Result<Tensor<2>> {
    let [h, n, hd] = q.dims();
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

/// Grouped-query attention on the host over the cache view: `q` as `[n, H, hd]` (already scaled,
/// as the q projection writes it) -> `[n, H·hd]`.
///
/// A task is one query token and one KV head with the `H / KV` query heads that read it (so each
/// key and value row is loaded once for all of them), split into position chunks when there are
/// too few tasks to occupy the pool (decode); a chunk keeps its own running max, sum and
/// weighted value sum per head (as flash-decoding does), and the chunks are merged afterwards.
/// With a single chunk per task (prefill) the task writes its normalized rows straight into the
/// output, with no partials buffer. Hidden keys are skipped, so causal prefill does half the
/// work; the latest tokens (the most keys) go first, so the pool's dynamic balancing has small
/// tasks left at the end. Query head `j` reads KV head `j / (H / KV)`, as the tensor path's
/// reshape groups them. Keys and values are f16 in the cache and widened inside the dot and axpy
/// kernels (no f32 copy). Per head the products, sums and exps are the same as one head at a time.
pub(crate) fn attention_rows(
    qs: &[f32],
    h: usize,
    n: usize,
    hd: usize,
    kv: &crate::kv_cache::HostView<'_>,
) -> Result<Buf> {
    use crate::quant::cpu::{axpy_f32, axpy_heads_f16, dot_heads_f16, pool};
    let (s, cap, kvh) = (kv.s, kv.cap, kv.kv_heads);
    let slots_ok = s <= cap && kv.k.len() >= kvh * cap * hd && kv.v.len() >= kvh * cap * hd;
    if kvh == 0
        || !h.is_multiple_of(kvh)
        || hd != kv.head_dim
        || kv.slot_pos.len() != s
        || qs.len() != h * n * hd
        || !slots_ok
    {
        return Err(Error::Backend {
            reason: format!("attention: {h} heads of {hd} over {kvh} kv heads of {}", kv.head_dim),
        });
    }
    let g = h / kvh;
    // The `g` query rows of token `i` that read KV head `kvhead`, back to back.
    let qgroup = |kvhead: usize, i: usize| -> &[f32] {
        let r = i * h + kvhead * g;
        &qs[r * hd..(r + g) * hd]
    };
    let groups = kvh * n;
    let threads = pool::threads();
    // Position chunks per group: enough tasks for every thread, each ≥ 64 keys.
    let pc = if groups >= 2 * threads { 1 } else { (2 * threads).div_ceil(groups).min(s.div_ceil(64)).max(1) };
    let plen = s.div_ceil(pc);
    // Per (task, head of the group): max, sum, then `hd` weighted values (only when chunked).
    let stride = hd + 2;
    // Every value of `o` is written: by its task (one chunk) or by the merge below.
    let mut o = Buf::new(n * h * hd);
    let mut part = if pc > 1 { Buf::new(groups * pc * g * stride) } else { Buf::new(0) };
    let (op, pp) = (pool::SyncPtr(o.as_mut_ptr()), pool::SyncPtr(part.as_mut_ptr()));
    let task = |t: usize| {
        let (gi, c) = (t / pc, t % pc);
        // Latest tokens first (see above).
        let (kvhead, i) = (gi / n, n - 1 - gi % n);
        let (p0, p1) = (c * plen, ((c + 1) * plen).min(s));
        // Scores `[g, p1 − p0]` of the visible keys (`keys` lists them).
        let mut keys: Vec<usize> = Vec::with_capacity(p1.saturating_sub(p0));
        let mut sc: Vec<f32> = Vec::with_capacity(g * p1.saturating_sub(p0));
        let mut mx = vec![f32::NEG_INFINITY; g];
        let mut row = vec![0f32; g];
        let q = qgroup(kvhead, i);
        for p in p0..p1 {
            if !kv.sees(i, p) {
                continue;
            }
            keys.push(p);
            let k0 = (kvhead * cap + p) * hd;
            // 8 rows ahead: the KV cache of all layers does not fit L2, so rows come from L3.
            if let Some(ahead) = kv.k.get(k0 + 8 * hd..k0 + 9 * hd) {
                crate::quant::cpu::prefetch(ahead);
            }
            dot_heads_f16(q, &kv.k[k0..k0 + hd], &mut row);
            for (mj, &v) in mx.iter_mut().zip(&row) {
                *mj = mj.max(v);
            }
            sc.extend_from_slice(&row);
        }
        // The exps in one vectorized pass.
        for row in sc.chunks_exact_mut(g) {
            for (e, &m) in row.iter_mut().zip(&mx) {
                *e -= m;
            }
        }
        crate::quant::cpu::exp_in_place(&mut sc);
        // Where the `g` weighted sums go: `g` rows of `hd` (apart by `step`, from `first`).
        let (out, first, step) = if pc == 1 {
            // SAFETY: task `t` (= group `gi`) owns the `g` contiguous output rows of token `i`,
            // heads `kvhead·g..(kvhead+1)·g`: `o[(i·H + kvhead·g)·hd, +g·hd)`, inside `n·H·hd`.
            (unsafe { std::slice::from_raw_parts_mut(op.get().add((i * h + kvhead * g) * hd), g * hd) }, 0, hd)
        } else {
            // SAFETY: task `t` owns `part[t·g·stride, (t+1)·g·stride)`, inside `groups·pc·g·stride`.
            (unsafe { std::slice::from_raw_parts_mut(pp.get().add(t * g * stride), g * stride) }, 2, stride)
        };
        out.fill(0.0);
        let mut sum = vec![0f32; g];
        for e in sc.chunks_exact(g) {
            for (s, &x) in sum.iter_mut().zip(e) {
                *s += x;
            }
        }
        // This KV head's value rows; `keys` are positions in it (checked against `cap` above).
        let vhead = &kv.v[kvhead * cap * hd..(kvhead + 1) * cap * hd];
        if axpy_heads_f16(&mut out[first..], step, g, &sc, vhead, hd, &keys).is_err() {
            // Not reachable: the shapes were validated before the tasks started.
            log::error!("attention: value rows outside the cache");
        }
        for j in 0..g {
            if pc == 1 {
                // What the merge does with one chunk: weight exp(0) = 1, then `· 1/sum`.
                if sum[j] > 0.0 {
                    let inv = 1.0 / sum[j];
                    out[j * hd..(j + 1) * hd].iter_mut().for_each(|x| *x *= inv);
                }
            } else {
                out[j * stride] = mx[j];
                out[j * stride + 1] = sum[j];
            }
        }
    };
    pool::for_each(groups * pc, &task);
    if pc == 1 {
        return Ok(o);
    }
    // Merge the chunks of each (token, head) row into o: [n, H·hd].
    // Each row is cleared by its merge.
    let merge = |r: usize, dst: &mut [f32]| {
        dst.fill(0.0);
        let (i, head) = (r / h, r % h);
        let (kvhead, j) = (head / g, head % g);
        let gi = kvhead * n + (n - 1 - i);
        let chunk = |c: usize| {
            let off = ((gi * pc + c) * g + j) * stride;
            &part[off..off + stride]
        };
        let mx = (0..pc).map(|c| chunk(c)[0]).fold(f32::NEG_INFINITY, f32::max);
        let mut total = 0f32;
        for c in (0..pc).map(chunk) {
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
    par_rows(&mut o, hd, merge);
    Ok(o)
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
    pub fn load(
        src: &dyn WeightSource,
        id: WeightId,
        mode: WeightMode,
        max_bytes: u64,
        device: &Device,
    ) -> Result<Self> {
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
            let bytes = raw
                .bytes
                .get(r0 * row_bytes..r1 * row_bytes)
                .ok_or_else(|| Error::Tensor { name: "lm_head".into(), reason: "shard outside the weight".into() })?;
            let vals = crate::quant::dequantize(raw.ty, bytes, (r1 - r0) * d)?;
            shards.push(tensor2(transpose(&vals, r1 - r0, d), d, r1 - r0, device));
            r0 = r1;
        }
        log::debug!("lm head: {} rows in {} shards", raw.rows, shards.len());
        Ok(Self::Sharded { shards, vocab: raw.rows })
    }

    /// The CPU path: x: [n, d] on the host -> logits [n, vocab].
    pub(crate) fn logits_host(&self, x: &[f32], n: usize, d: usize) -> Result<Vec<f32>> {
        match self {
            Self::Quantized(w) => crate::quant::cpu::matmul(w.ty, w.bytes(), w.rows, d, x, n),
            _ => self.logits(tensor2(x.to_vec(), n, d, &crate::backend::cpu_device())),
        }
    }

    /// The logits `[n, vocab]` left on the device, for a pick made there (`gpu_fused::greedy`);
    /// `None` for the CPU's in-place quantized head.
    pub fn logits_device(&self, x: Tensor<2>) -> Result<Option<Tensor<2>>> {
        match self {
            Self::Sharded { shards, .. } => {
                Ok(Some(Tensor::cat(shards.iter().map(|w| x.clone().matmul(w.clone())).collect(), 1)))
            }
            Self::QuantizedGpu(w) => Ok(Some(w.matmul(x)?)),
            Self::Quantized(_) => Ok(None),
        }
    }

    /// x: [n, d] -> logits [n, vocab] on the host
    pub fn logits(&self, x: Tensor<2>) -> Result<Vec<f32>> {
        match self {
            Self::Sharded { shards, vocab } => {
                // `logits_host` passes every requested row at once: [n, vocab] come back.
                let rows = x.dims()[0];
                let parts: Vec<Tensor<2>> = shards.iter().map(|w| x.clone().matmul(w.clone())).collect();
                let v = read_f32(Tensor::cat(parts, 1))?;
                if v.len() != *vocab * rows {
                    return Err(Error::Backend {
                        reason: format!("lm head produced {} logits, expected {rows}x{vocab}", v.len()),
                    });
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
                    return Err(Error::Backend {
                        reason: format!("lm head produced {} logits, expected {}", v.len(), w.rows()),
                    });
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
    if !crate::quant::gpu::supported(w.ty) || !(w.cols as u64).is_multiple_of(w.ty.block_size()) {
        log::debug!("{id:?}: {} has no gpu kernel, using dense f32", w.ty);
        return Ok(None);
    }
    // Each shard's file pages are handed back once it has been read (device buffers are system
    // memory on a phone): the source need not stay resident as well.
    let m = QMatrix::upload_with(w.ty, w.bytes(), w.rows, w.cols, max_bytes, device, &|r| {
        src.release(id, r.start, r.len())
    })?;
    Ok(Some(m))
}

/// Embedding rows looked up on the host from the (memory-mapped, quantized) matrix: only the
/// rows of the tokens in the pass are dequantized.
pub fn embed_rows(raw: &SharedWeight, tokens: &[u32], scale: f32, device: &Device) -> Result<Tensor<2>> {
    Ok(tensor2(embed_rows_host(raw, tokens, scale)?, tokens.len(), raw.cols, device))
}

/// [`embed_rows`] on the host: `[n, d]`.
pub(crate) fn embed_rows_host(raw: &SharedWeight, tokens: &[u32], scale: f32) -> Result<Vec<f32>> {
    let d = raw.cols;
    let row_bytes = raw.row_bytes();
    let mut out = Vec::with_capacity(tokens.len() * d);
    for &t in tokens {
        let t = t as usize;
        if t >= raw.rows {
            return Err(Error::InvalidParameter {
                name: "token",
                reason: format!("id out of vocabulary of {}", raw.rows),
            });
        }
        let bytes = raw
            .bytes()
            .get(t * row_bytes..(t + 1) * row_bytes)
            .ok_or_else(|| Error::Tensor { name: "token_embd".into(), reason: "row outside the weight".into() })?;
        let row = crate::quant::dequantize(raw.ty, bytes, d)?;
        out.extend(row.into_iter().map(|x| x * scale));
    }
    Ok(out)
}
