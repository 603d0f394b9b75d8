//! Fused GPU kernels for the per-token glue between the matrix products (wgpu only).
//!
//! burn runs every tensor op as its own kernel: an RMSNorm is six launches, RoPE seven, the
//! tanh-GELU gate nine. Decoding one token of Gemma 3 270M took about 80 launches per layer, and
//! on a real GPU those launches, not arithmetic, set the speed (NVIDIA H200 over Vulkan: 32 ms a
//! token, 31 tok/s). Each function here is one launch computing the same expression in the same
//! order as the op-by-op version it replaces (which stays in use on the CPU, and on the GPU with
//! `EDGEWISE_GPU_UNFUSED=1`); `tests` compare the two on the device.
//!
//! Inputs may be strided views (a reshape or slice of another tensor); outputs are contiguous.
//! No subgroup operations (lavapipe and many phones have none): reductions use shared memory.

use burn::backend::wgpu::CubeTensor;
use burn::backend::Wgpu;
use burn::tensor::{DType, Shape, Tensor as BurnTensor};
use cubecl::prelude::*;

use crate::quant::gpu::{cube_of, grid};
use crate::{Error, Result};

/// Invocations per workgroup of the row-reduction kernel (a power of two).
const WG_NORM: usize = 64;
/// Invocations per workgroup of the elementwise kernels.
const WG_ELEM: usize = 256;

/// Whether the fused kernels are used on the GPU (`EDGEWISE_GPU_UNFUSED=1` turns them off, for
/// comparisons).
pub fn enabled() -> bool {
    std::env::var_os("EDGEWISE_GPU_UNFUSED").is_none()
}

/// Whether `device` is a wgpu device (where these kernels run).
pub fn is_wgpu(device: &burn::tensor::Device) -> bool {
    cube_of(device).is_ok()
}

fn cube<const D: usize>(t: BurnTensor<D>, what: &str) -> Result<CubeTensor> {
    let c = t.try_into_primitive::<Wgpu>().map_err(|e| Error::Backend { reason: format!("{what} needs a wgpu tensor: {e:?}") })?;
    if c.dtype != DType::F32 {
        return Err(Error::Backend { reason: format!("{what} needs f32, got {:?}", c.dtype) });
    }
    Ok(c)
}

fn output<const D: usize>(like: &CubeTensor, dims: [usize; D]) -> CubeTensor {
    let bytes = dims.iter().product::<usize>() * 4;
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), Shape::new(dims), like.client.empty(bytes), DType::F32)
}

fn wrap<const D: usize>(t: CubeTensor) -> BurnTensor<D> {
    BurnTensor::<D>::from_primitive::<Wgpu>(t)
}

/// `out[r] = x[r] / sqrt(mean(x[r]²) + eps) · w` (+ `res[r]`), one workgroup per row.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_kernel(x: &Tensor<f32>, w: &Tensor<f32>, res: &Tensor<f32>, out: &mut Tensor<f32>, d: usize, inv_d: f32, eps: f32, #[comptime] has_res: bool) {
    let row = CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize;
    let tx = UNIT_POS_X as usize;
    let step_all = CUBE_DIM_X as usize;
    let xs0 = x.stride(0);
    let xs1 = x.stride(1);
    let ws = w.stride(0);
    let mut sh = Shared::<[f32]>::new_slice(comptime![WG_NORM]);
    let mut acc = Array::<f32>::new(1usize);
    acc[0] = 0.0;
    let mut i = tx;
    while i < d {
        let v = x[row * xs0 + i * xs1];
        acc[0] += v * v;
        i += step_all;
    }
    sh[tx] = acc[0];
    sync_cube();
    let mut step = step_all / 2;
    while step > 0 {
        if tx < step {
            let v = sh[tx] + sh[tx + step];
            sh[tx] = v;
        }
        sync_cube();
        step /= 2;
    }
    let denom = f32::sqrt(sh[0] * inv_d + eps);
    let mut j = tx;
    while j < d {
        let y = x[row * xs0 + j * xs1] / denom * w[j * ws];
        if comptime![has_res] {
            out[row * d + j] = res[row * res.stride(0) + j * res.stride(1)] + y;
        } else {
            out[row * d + j] = y;
        }
        j += step_all;
    }
}

/// NEOX RoPE of `x: [n, heads, hd]` with `cos`/`sin: [n, hd/2]`, times `scale`; one invocation per
/// rotated pair.
#[cube(launch)]
fn rope_kernel(x: &Tensor<f32>, cos: &Tensor<f32>, sin: &Tensor<f32>, out: &mut Tensor<f32>, heads: usize, half: usize, total: usize, scale: f32) {
    let idx = (CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize) * comptime![WG_ELEM] + UNIT_POS_X as usize;
    if idx < total {
        let i = idx % half;
        let h = (idx / half) % heads;
        let t = idx / (half * heads);
        let base = t * x.stride(0) + h * x.stride(1);
        let x1 = x[base + i * x.stride(2)];
        let x2 = x[base + (i + half) * x.stride(2)];
        let c = cos[t * cos.stride(0) + i * cos.stride(1)];
        let s = sin[t * sin.stride(0) + i * sin.stride(1)];
        let o = (t * heads + h) * half * 2;
        out[o + i] = (x1 * c - x2 * s) * scale;
        out[o + i + half] = (x2 * c + x1 * s) * scale;
    }
}

/// `gelu_tanh(gate) · up` for `[n, f]` operands, as burn's `gelu_approximate` spells it.
#[cube(launch)]
fn gelu_mul_kernel(gate: &Tensor<f32>, up: &Tensor<f32>, out: &mut Tensor<f32>, f: usize, total: usize) {
    let idx = (CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize) * comptime![WG_ELEM] + UNIT_POS_X as usize;
    if idx < total {
        let r = idx / f;
        let c = idx % f;
        let g = gate[r * gate.stride(0) + c * gate.stride(1)];
        let u = up[r * up.stride(0) + c * up.stride(1)];
        let inner = (g + g * g * g * 0.044715) * 0.797_884_6;
        // tanh saturates to ±1 in f32 beyond ±9; clamping keeps drivers' exp-based tanh finite.
        let t = f32::tanh(clamp(inner, -15.0, 15.0));
        out[idx] = g * (t + 1.0) * 0.5 * u;
    }
}

/// Decode attention (one query token) of head `CUBE_POS` over `S` cached keys: scores into
/// `scratch` (each invocation re-reads only its own), softmax with shared-memory max/sum, then
/// `Σ p_j v_j` a tile of `wg` keys at a time. Needs `hd <= wg`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn decode_attention_kernel(
    q: &Tensor<f32>,
    k: &Tensor<f32>,
    v: &Tensor<f32>,
    mask: &Tensor<f32>,
    scratch: &mut Tensor<f32>,
    out: &mut Tensor<f32>,
    s_len: usize,
    group: usize,
    #[comptime] hd: usize,
    #[comptime] wg: usize,
) {
    let head = CUBE_POS_X as usize;
    let tx = UNIT_POS_X as usize;
    let kvh = head / group;
    // Loop bounds and strides as runtime values (mutable variables seeded from comptime values
    // fail CubeCL's verifier).
    let wgr = CUBE_DIM_X as usize;
    let mut qs = Shared::<[f32]>::new_slice(comptime![hd]);
    let mut red = Shared::<[f32]>::new_slice(comptime![wg]);
    let mut tile = Shared::<[f32]>::new_slice(comptime![wg]);
    if tx < hd {
        qs[tx] = q[head * q.stride(0) + tx * q.stride(2)];
    }
    sync_cube();
    let kb = kvh * k.stride(0);
    let vb = kvh * v.stride(0);
    // Scores and their max.
    let mut acc = Array::<f32>::new(4usize);
    acc[0] = -3.0e38f32; // running max
    acc[1] = 0.0; // running sum of p
    acc[2] = 0.0; // Σ p_j v_j[tx]
    let mut j = tx;
    while j < s_len {
        acc[3] = 0.0;
        for d in 0..hd {
            acc[3] += qs[d] * k[kb + j * k.stride(1) + d * k.stride(2)];
        }
        let sc = acc[3] + mask[j * mask.stride(1)];
        scratch[head * s_len + j] = sc;
        acc[0] = f32::max(acc[0], sc);
        j += wgr;
    }
    red[tx] = acc[0];
    sync_cube();
    let mut step = wgr / 2;
    while step > 0 {
        if tx < step {
            let m = f32::max(red[tx], red[tx + step]);
            red[tx] = m;
        }
        sync_cube();
        step /= 2;
    }
    let mx = red[0];
    sync_cube();
    // p_j = exp(s_j - max), a tile of wg keys at a time; each invocation owns dimension tx.
    let mut t0 = 0usize;
    while t0 < s_len {
        let jt = t0 + tx;
        let jc = select(jt < s_len, jt, s_len - 1);
        let p = select(jt < s_len, f32::exp(scratch[head * s_len + jc] - mx), 0.0f32);
        acc[1] += p;
        tile[tx] = p;
        sync_cube();
        if tx < hd {
            let end = select(t0 + wgr < s_len, wgr, s_len - t0);
            for jj in 0..end {
                acc[2] += tile[jj] * v[vb + (t0 + jj) * v.stride(1) + tx * v.stride(2)];
            }
        }
        sync_cube();
        t0 += wgr;
    }
    red[tx] = acc[1];
    sync_cube();
    let mut step2 = wgr / 2;
    while step2 > 0 {
        if tx < step2 {
            let v2 = red[tx] + red[tx + step2];
            red[tx] = v2;
        }
        sync_cube();
        step2 /= 2;
    }
    if tx < hd {
        out[head * hd + tx] = acc[2] / red[0];
    }
}

/// Stage 1 of the device-side greedy pick: workgroup `g` reduces `chunk` logits to (max, first
/// index of the max, Σ exp(x − max)) in `part[3g..3g+3]` (the index as f32 bits via `u32`).
#[cube(launch)]
fn argmax_partial_kernel(x: &Tensor<f32>, part: &mut Tensor<f32>, idx_out: &mut Tensor<u32>, v_len: usize, chunk: usize) {
    let g = CUBE_POS_X as usize;
    let tx = UNIT_POS_X as usize;
    let wgr = CUBE_DIM_X as usize;
    let xs = x.stride(1);
    let start = g * chunk;
    let end = select(start + chunk < v_len, start + chunk, v_len);
    let mut best = Shared::<[f32]>::new_slice(comptime![WG_NORM]);
    let mut besti = Shared::<[u32]>::new_slice(comptime![WG_NORM]);
    let mut acc = Array::<f32>::new(2usize);
    let mut acci = Array::<u32>::new(1usize);
    acc[0] = -3.0e38f32;
    acci[0] = u32::cast_from(end);
    let mut i = start + tx;
    while i < end {
        let v = x[i * xs];
        // Strictly greater: within a thread the indices rise, so the first maximum stays.
        if v > acc[0] {
            acc[0] = v;
            acci[0] = u32::cast_from(i);
        }
        i += wgr;
    }
    best[tx] = acc[0];
    besti[tx] = acci[0];
    sync_cube();
    let mut step = wgr / 2;
    while step > 0 {
        if tx < step {
            let (a, b) = (best[tx], best[tx + step]);
            let (ia, ib) = (besti[tx], besti[tx + step]);
            // The larger value; on a tie the smaller index (llama.cpp's greedy takes the first).
            let take_b = b > a || (b == a && ib < ia);
            best[tx] = select(take_b, b, a);
            besti[tx] = select(take_b, ib, ia);
        }
        sync_cube();
        step /= 2;
    }
    let m = best[0];
    let mi = besti[0];
    sync_cube();
    acc[1] = 0.0;
    let mut j = start + tx;
    while j < end {
        acc[1] += f32::exp(x[j * xs] - m);
        j += wgr;
    }
    best[tx] = acc[1];
    sync_cube();
    let mut step2 = wgr / 2;
    while step2 > 0 {
        if tx < step2 {
            let s2 = best[tx] + best[tx + step2];
            best[tx] = s2;
        }
        sync_cube();
        step2 /= 2;
    }
    if tx == 0 {
        part[g * 2] = m;
        part[g * 2 + 1] = best[0];
        idx_out[g] = mi;
    }
}

/// RMSNorm over the last dimension of `x: [rows, d]` with weight `w: [d]`, plus `residual`
/// (`[rows, d]`) when given: `residual + x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm(x: BurnTensor<2>, w: &BurnTensor<1>, eps: f32, residual: Option<BurnTensor<2>>) -> Result<BurnTensor<2>> {
    let [rows, d] = x.dims();
    if w.dims() != [d] || residual.as_ref().is_some_and(|r| r.dims() != [rows, d]) {
        return Err(Error::Backend { reason: format!("fused rms_norm: shapes [{rows}, {d}] / {:?}", w.dims()) });
    }
    let x = cube(x, "fused rms_norm")?;
    let w = cube(w.clone(), "fused rms_norm")?;
    let has_res = residual.is_some();
    // Without a residual the kernel never reads `res`: pass `x` in its place.
    let res = match residual {
        Some(r) => cube(r, "fused rms_norm")?,
        None => x.clone(),
    };
    let out = output(&x, [rows, d]);
    rms_norm_kernel::launch(
        &x.client,
        grid(rows, 1)?,
        CubeDim::new_1d(WG_NORM as u32),
        x.clone().into_tensor_arg(),
        w.into_tensor_arg(),
        res.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        d,
        1.0 / d as f32,
        eps,
        has_res,
    );
    Ok(wrap(out))
}

/// NEOX RoPE of `x: [n, heads, hd]` (positions along the first dimension) with the pass's
/// `cos`/`sin: [n, hd/2]`, multiplied by `scale` (the query scale, or 1).
pub fn rope(x: BurnTensor<3>, cos: &BurnTensor<2>, sin: &BurnTensor<2>, scale: f32) -> Result<BurnTensor<3>> {
    let [n, heads, hd] = x.dims();
    let half = hd / 2;
    if hd % 2 != 0 || cos.dims() != [n, half] || sin.dims() != [n, half] {
        return Err(Error::Backend { reason: format!("fused rope: x [{n}, {heads}, {hd}], tables {:?}", cos.dims()) });
    }
    let x = cube(x, "fused rope")?;
    let (c, s) = (cube(cos.clone(), "fused rope")?, cube(sin.clone(), "fused rope")?);
    let out = output(&x, [n, heads, hd]);
    let total = n * heads * half;
    rope_kernel::launch(
        &x.client,
        grid(total.div_ceil(WG_ELEM), 1)?,
        CubeDim::new_1d(WG_ELEM as u32),
        x.clone().into_tensor_arg(),
        c.into_tensor_arg(),
        s.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        heads,
        half,
        total,
        scale,
    );
    Ok(wrap(out))
}

/// `gelu_tanh(gate) · up` for `[n, f]` operands (Gemma's GeGLU).
pub fn gelu_mul(gate: BurnTensor<2>, up: BurnTensor<2>) -> Result<BurnTensor<2>> {
    let [n, f] = gate.dims();
    if up.dims() != [n, f] {
        return Err(Error::Backend { reason: format!("fused gelu_mul: [{n}, {f}] vs {:?}", up.dims()) });
    }
    let (g, u) = (cube(gate, "fused gelu_mul")?, cube(up, "fused gelu_mul")?);
    let out = output(&g, [n, f]);
    gelu_mul_kernel::launch(
        &g.client,
        grid((n * f).div_ceil(WG_ELEM), 1)?,
        CubeDim::new_1d(WG_ELEM as u32),
        g.clone().into_tensor_arg(),
        u.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        f,
        n * f,
    );
    Ok(wrap(out))
}

/// Attention of one query token: `q: [H, 1, hd]` (scaled), the layer's visible cache
/// `k`/`v: [KV, S, hd]` and `mask: [1, S]` -> `[1, H·hd]`, in one launch. `None` when the shape
/// is not one this kernel takes (more than one query, or `hd` above 1024).
pub fn decode_attention(q: BurnTensor<3>, k: BurnTensor<3>, v: BurnTensor<3>, mask: BurnTensor<2>) -> Result<Option<BurnTensor<2>>> {
    let [h, n, hd] = q.dims();
    let [kvh, s, khd] = k.dims();
    if n != 1 || hd > 1024 || hd == 0 || khd != hd || v.dims() != [kvh, s, hd] || mask.dims() != [1, s] || kvh == 0 || h % kvh != 0 || s == 0 {
        return Ok(None);
    }
    let wg = hd.next_power_of_two().max(32);
    let (q, k, v, m) = (cube(q, "fused attention")?, cube(k, "fused attention")?, cube(v, "fused attention")?, cube(mask, "fused attention")?);
    let scratch = output(&q, [h, s]);
    let out = output(&q, [1, h * hd]);
    decode_attention_kernel::launch(
        &q.client,
        CubeCount::Static(h as u32, 1, 1),
        CubeDim::new_1d(wg as u32),
        q.clone().into_tensor_arg(),
        k.into_tensor_arg(),
        v.into_tensor_arg(),
        m.into_tensor_arg(),
        scratch.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        s,
        h / kvh,
        hd,
        wg,
    );
    Ok(Some(wrap(out)))
}

/// Logits reduced on the device for a greedy step: the first index of the maximum and its
/// log-probability. Only `3 × groups` numbers cross back to the host instead of the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Greedy {
    /// The chosen token (first maximum, as llama.cpp's greedy sampler).
    pub token: u32,
    /// `log_softmax(logits)[token]`.
    pub logprob: f32,
}

/// Workgroups of the greedy reduction (each takes `vocab / GREEDY_GROUPS` logits).
const GREEDY_GROUPS: usize = 128;

/// The greedy pick of one row of logits (`[1, V]`, on the device).
pub fn greedy(logits: BurnTensor<2>) -> Result<Greedy> {
    let [rows, v] = logits.dims();
    if rows != 1 || v == 0 || v > u32::MAX as usize {
        return Err(Error::Backend { reason: format!("device greedy: logits [{rows}, {v}]") });
    }
    let x = cube(logits, "device greedy")?;
    let groups = GREEDY_GROUPS.min(v.div_ceil(WG_NORM));
    let chunk = v.div_ceil(groups);
    let part = output(&x, [groups, 2]);
    let idx = CubeTensor::new_contiguous(x.client.clone(), x.device.clone(), Shape::new([groups]), x.client.empty(groups * 4), DType::U32);
    argmax_partial_kernel::launch(
        &x.client,
        CubeCount::Static(groups as u32, 1, 1),
        CubeDim::new_1d(WG_NORM as u32),
        x.clone().into_tensor_arg(),
        part.clone().into_tensor_arg(),
        idx.clone().into_tensor_arg(),
        v,
        chunk,
    );
    let part = crate::model::layers::read_f32(wrap::<2>(part))?;
    let idx: Vec<u32> = BurnTensor::<1, burn::tensor::Int>::from_primitive::<Wgpu>(idx)
        .try_into_vec_as::<u32>()
        .map_err(|e| Error::Backend { reason: format!("device greedy read-back: {e:?}") })?;
    // Combine in chunk order: the first chunk holding the maximum has its first index.
    let mut best = (f32::NEG_INFINITY, 0usize);
    for (g, p) in part.chunks_exact(2).enumerate() {
        if p[0] > best.0 {
            best = (p[0], g);
        }
    }
    let m = best.0;
    if !m.is_finite() {
        return Err(Error::Backend { reason: "model produced non-finite logits".into() });
    }
    let total: f64 = part.chunks_exact(2).map(|p| p[1] as f64 * ((p[0] - m) as f64).exp()).sum();
    let token = *idx.get(best.1).ok_or_else(|| Error::Backend { reason: "device greedy: no index".into() })?;
    Ok(Greedy { token, logprob: -(total.ln() as f32) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{apply_rope, read_f32, tensor2};
    use burn::tensor::{activation, Device};

    fn device() -> Option<Device> {
        match crate::backend::gpu() {
            Ok((d, _)) => Some(d),
            Err(e) => {
                eprintln!("SKIPPED: no wgpu device ({e})");
                None
            }
        }
    }

    fn values(n: usize, seed: u32) -> Vec<f32> {
        (0..n).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5) * 8.0).collect()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0f32, f32::max);
        assert!(worst <= tol, "fused differs from the op-by-op version by {worst}");
    }

    #[test]
    fn fused_kernels_match_burn_ops() {
        let Some(dev) = device() else { return };
        let (rows, d) = (5, 640);
        let x = tensor2(values(rows * d, 1), rows, d, &dev);
        let w = BurnTensor::<1>::from_floats(values(d, 2).as_slice(), &dev);
        let r = tensor2(values(rows * d, 3), rows, d, &dev);
        let eps = 1e-6;
        let ms = x.clone().square().mean_dim(1);
        let plain = x.clone().div(ms.add_scalar(eps).sqrt()).mul(w.clone().unsqueeze::<2>());
        close(&read_f32(rms_norm(x.clone(), &w, eps, None).unwrap()).unwrap(), &read_f32(plain.clone()).unwrap(), 1e-5);
        close(&read_f32(rms_norm(x.clone(), &w, eps, Some(r.clone())).unwrap()).unwrap(), &read_f32(r.add(plain)).unwrap(), 1e-5);
        // A strided view (a transposed matrix) as input.
        let xt = tensor2(values(d * rows, 4), d, rows, &dev).swap_dims(0, 1);
        let ms = xt.clone().square().mean_dim(1);
        let plain = xt.clone().div(ms.add_scalar(eps).sqrt()).mul(w.clone().unsqueeze::<2>());
        close(&read_f32(rms_norm(xt, &w, eps, None).unwrap()).unwrap(), &read_f32(plain).unwrap(), 1e-5);

        let (n, heads, hd) = (3, 4, 256);
        let q = BurnTensor::<1>::from_floats(values(n * heads * hd, 5).as_slice(), &dev).reshape([n, heads, hd]);
        let (cos, sin) = crate::model::layers::rope_tables(7, n, hd, 10_000.0, 1.0, &dev);
        let plain = apply_rope(q.clone().swap_dims(0, 1), &cos, &sin).mul_scalar(0.0625).swap_dims(0, 1);
        let fused = rope(q, &cos, &sin, 0.0625).unwrap();
        close(&read_f32(fused.reshape([n * heads, hd])).unwrap(), &read_f32(plain.reshape([n * heads, hd])).unwrap(), 1e-6);

        let (n, f) = (2, 2048);
        let g = tensor2(values(n * f, 6), n, f, &dev);
        let u = tensor2(values(n * f, 7), n, f, &dev);
        let plain = activation::gelu_approximate(g.clone()).mul(u.clone());
        close(&read_f32(gelu_mul(g, u).unwrap()).unwrap(), &read_f32(plain).unwrap(), 1e-5);
    }

    #[test]
    fn decode_attention_matches_burn_ops() {
        let Some(dev) = device() else { return };
        for (h, kvh, hd, s) in [(4, 1, 256, 1), (4, 1, 256, 300), (8, 2, 64, 700)] {
            let q = BurnTensor::<1>::from_floats(values(h * hd, 11).as_slice(), &dev).reshape([h, 1, hd]).mul_scalar(0.1);
            let cap = s + 5; // a ring larger than the visible keys: k/v are strided views
            let k = BurnTensor::<1>::from_floats(values(kvh * cap * hd, 12).as_slice(), &dev).reshape([kvh, cap, hd]).slice([0..kvh, 0..s, 0..hd]);
            let v = BurnTensor::<1>::from_floats(values(kvh * cap * hd, 13).as_slice(), &dev).reshape([kvh, cap, hd]).slice([0..kvh, 0..s, 0..hd]);
            let mvals: Vec<f32> = (0..s).map(|j| if j % 7 == 3 { -1e30 } else { 0.0 }).collect();
            let mask = BurnTensor::<1>::from_floats(mvals.as_slice(), &dev).reshape([1, s]);
            // The op-by-op version (layers::attention's arithmetic).
            let g = h / kvh;
            let scores = q.clone().reshape([kvh, g, hd]).matmul(k.clone().swap_dims(1, 2));
            let scores = scores.reshape([kvh, g, 1, s]).add(mask.clone().reshape([1, 1, 1, s])).reshape([kvh, g, s]);
            let plain = activation::softmax(scores, 2).matmul(v.clone()).reshape([1, h * hd]);
            let fused = decode_attention(q, k, v, mask).unwrap().expect("decode shape");
            close(&read_f32(fused).unwrap(), &read_f32(plain).unwrap(), 1e-5);
        }
    }

    #[test]
    fn device_greedy_matches_the_host_sampler() {
        let Some(dev) = device() else { return };
        for (v, seed) in [(262_144, 21), (1000, 22), (7, 23)] {
            let mut vals = values(v, seed);
            // A tie for the maximum: the first index must win, as on the host.
            let top = vals.iter().cloned().fold(f32::MIN, f32::max) + 1.0;
            vals[v / 2] = top;
            vals[v - 1] = top;
            let got = greedy(tensor2(vals.clone(), 1, v, &dev)).unwrap();
            assert_eq!(got.token as usize, crate::sampling::argmax(&vals));
            let want = crate::sampling::log_softmax_at(&vals, got.token as usize);
            assert!((got.logprob - want).abs() < 1e-4, "{} vs {want}", got.logprob);
        }
        assert!(greedy(tensor2(vec![0.0; 4], 2, 2, &dev)).is_err());
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let Some(dev) = device() else { return };
        let x = tensor2(vec![1.0; 8], 2, 4, &dev);
        assert!(rms_norm(x.clone(), &BurnTensor::<1>::from_floats([1.0f32; 3].as_slice(), &dev), 1e-6, None).is_err());
        assert!(gelu_mul(x.clone(), tensor2(vec![1.0; 6], 2, 3, &dev)).is_err());
        let (cos, sin) = crate::model::layers::rope_tables(0, 3, 4, 10_000.0, 1.0, &dev);
        assert!(rope(x.reshape([2, 1, 4]), &cos, &sin, 1.0).is_err());
    }
}
