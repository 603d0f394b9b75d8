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

use super::decoder::{Activation, RopeLayout};
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

pub(crate) fn cube<const D: usize>(t: BurnTensor<D>, what: &str) -> Result<CubeTensor> {
    let c = t
        .try_into_primitive::<Wgpu>()
        .map_err(|e| Error::Backend { reason: format!("{what} needs a wgpu tensor: {e:?}") })?;
    if c.dtype != DType::F32 {
        return Err(Error::Backend { reason: format!("{what} needs f32, got {:?}", c.dtype) });
    }
    Ok(c)
}

pub(crate) fn output<const D: usize>(like: &CubeTensor, dims: [usize; D]) -> CubeTensor {
    let bytes = dims.iter().product::<usize>() * 4;
    CubeTensor::new_contiguous(
        like.client.clone(),
        like.device.clone(),
        Shape::new(dims),
        like.client.empty(bytes),
        DType::F32,
    )
}

pub(crate) fn wrap<const D: usize>(t: CubeTensor) -> BurnTensor<D> {
    BurnTensor::<D>::from_primitive::<Wgpu>(t)
}

/// `out[r] = x[r] / sqrt(mean(x[r]²) + eps) · w` (+ `res[r]`), one workgroup per row.
/// Sums `sh[0..CUBE_DIM_X]` (one value per invocation, already stored) into `sh[0]`: a tree with
/// a barrier per level (no subgroup operations). Every invocation of the cube must call it;
/// `CUBE_DIM_X` must be a power of two.
#[cube]
fn tree_sum(sh: &mut Shared<[f32]>, tx: usize) {
    sync_cube();
    let mut step = CUBE_DIM_X as usize / 2;
    while step > 0 {
        if tx < step {
            let v = sh[tx] + sh[tx + step];
            sh[tx] = v;
        }
        sync_cube();
        step /= 2;
    }
}

#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rms_norm_kernel(
    x: &Tensor<f32>,
    w: &Tensor<f32>,
    res: &Tensor<f32>,
    out: &mut Tensor<f32>,
    d: usize,
    inv_d: f32,
    eps: f32,
    #[comptime] has_res: bool,
) {
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
    tree_sum(&mut sh, tx);
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

/// RoPE of `x: [n, heads, hd]` with `cos`/`sin: [n, hd/2]`, times `scale`; one invocation per
/// rotated pair: `(i, i + hd/2)` with `neox`, else llama.cpp's adjacent `(2i, 2i + 1)`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn rope_kernel(
    x: &Tensor<f32>,
    cos: &Tensor<f32>,
    sin: &Tensor<f32>,
    out: &mut Tensor<f32>,
    heads: usize,
    half: usize,
    total: usize,
    scale: f32,
    #[comptime] neox: bool,
) {
    let idx =
        (CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize) * comptime![WG_ELEM] + UNIT_POS_X as usize;
    if idx < total {
        let i = idx % half;
        let h = (idx / half) % heads;
        let t = idx / (half * heads);
        let base = t * x.stride(0) + h * x.stride(1);
        let c = cos[t * cos.stride(0) + i * cos.stride(1)];
        let s = sin[t * sin.stride(0) + i * sin.stride(1)];
        let o = (t * heads + h) * half * 2;
        if comptime![neox] {
            let x1 = x[base + i * x.stride(2)];
            let x2 = x[base + (i + half) * x.stride(2)];
            out[o + i] = (x1 * c - x2 * s) * scale;
            out[o + i + half] = (x2 * c + x1 * s) * scale;
        } else {
            let x1 = x[base + 2 * i * x.stride(2)];
            let x2 = x[base + (2 * i + 1) * x.stride(2)];
            out[o + 2 * i] = (x1 * c - x2 * s) * scale;
            out[o + 2 * i + 1] = (x2 * c + x1 * s) * scale;
        }
    }
}

/// `silu(gate) · up` for `[n, f]` operands (SwiGLU), as burn's `silu` spells it.
#[cube(launch)]
fn silu_mul_kernel(gate: &Tensor<f32>, up: &Tensor<f32>, out: &mut Tensor<f32>, f: usize, total: usize) {
    let idx =
        (CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize) * comptime![WG_ELEM] + UNIT_POS_X as usize;
    if idx < total {
        let r = idx / f;
        let c = idx % f;
        let g = gate[r * gate.stride(0) + c * gate.stride(1)];
        let u = up[r * up.stride(0) + c * up.stride(1)];
        // exp overflows to +inf below −88, where g / inf = −0 is the right limit.
        out[idx] = g / (f32::exp(-g) + 1.0) * u;
    }
}

/// `gelu_tanh(gate) · up` for `[n, f]` operands, as burn's `gelu_approximate` spells it.
#[cube(launch)]
fn gelu_mul_kernel(gate: &Tensor<f32>, up: &Tensor<f32>, out: &mut Tensor<f32>, f: usize, total: usize) {
    let idx =
        (CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize) * comptime![WG_ELEM] + UNIT_POS_X as usize;
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
/// index of the max) and Σ exp(x − max) in `part[2g..2g+2]` and `idx_out[g]`. With `masked`,
/// only the logits whose bit is set in `words` take part (bit `i % 32` of word `i / 32`, LSB
/// first; ids past the words are forbidden): a chunk with none gives (−3e38, `end`) and a sum
/// of 0. Without it `words` is never read.
#[cube(launch)]
fn argmax_partial_kernel(
    x: &Tensor<f32>,
    words: &Tensor<u32>,
    part: &mut Tensor<f32>,
    idx_out: &mut Tensor<u32>,
    v_len: usize,
    chunk: usize,
    n_words: usize,
    #[comptime] masked: bool,
) {
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
        let mut allowed = true;
        if comptime![masked] {
            let w = i / 32;
            allowed = w < n_words && ((words[select(w < n_words, w, 0)] >> u32::cast_from(i % 32)) & 1u32) == 1u32;
        }
        // Strictly greater: within a thread the indices rise, so the first maximum stays.
        if allowed && v > acc[0] {
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
        let mut allowed = true;
        if comptime![masked] {
            let w = j / 32;
            allowed = w < n_words && ((words[select(w < n_words, w, 0)] >> u32::cast_from(j % 32)) & 1u32) == 1u32;
        }
        if allowed {
            acc[1] += f32::exp(x[j * xs] - m);
        }
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

/// The order key of a logit: unsigned comparison of keys is `>` on the floats, with −0 taken as
/// +0 (the sampler's order; NaN is rejected on the host).
#[cube]
fn order_key(v: f32) -> u32 {
    let b = u32::reinterpret(v);
    let b = select(b == 0x8000_0000u32, 0u32, b);
    select(b >= 0x8000_0000u32, 0xFFFF_FFFFu32 - b, b + 0x8000_0000u32)
}

/// The logit of an order key (−0 comes back as +0).
#[cube]
fn key_value(k: u32) -> f32 {
    f32::reinterpret(select(k >= 0x8000_0000u32, k - 0x8000_0000u32, 0xFFFF_FFFFu32 - k))
}

/// Whether `(ak, ai)` comes before `(bk, bi)`: the larger key, then the smaller index.
#[cube]
fn ranks_before(ak: u32, ai: u32, bk: u32, bi: u32) -> bool {
    ak > bk || (ak == bk && ai < bi)
}

/// One round of the top-k's selection: the first, in the order, of the `fan²` pairs the
/// invocations hold (`hk`, `hi`), into `win[0..2]` of every invocation. Two barriers: `fan`
/// invocations each take the first of `fan` pairs, then every invocation takes the first of
/// those. Shared memory is not touched again before the next round's first barrier.
#[cube]
#[allow(clippy::too_many_arguments)]
fn select_first(
    sk: &mut Shared<[u32]>,
    si: &mut Shared<[u32]>,
    pk: &mut Shared<[u32]>,
    pi: &mut Shared<[u32]>,
    win: &mut Array<u32>,
    hk: u32,
    hi: u32,
    tx: usize,
    #[comptime] fan: usize,
) {
    sk[tx] = hk;
    si[tx] = hi;
    sync_cube();
    if tx < fan {
        win[0] = sk[tx * fan];
        win[1] = si[tx * fan];
        #[unroll]
        for j in 1..fan {
            let (ck, ci) = (sk[tx * fan + j], si[tx * fan + j]);
            if ranks_before(ck, ci, win[0], win[1]) {
                win[0] = ck;
                win[1] = ci;
            }
        }
        pk[tx] = win[0];
        pi[tx] = win[1];
    }
    sync_cube();
    win[0] = pk[0];
    win[1] = pi[0];
    #[unroll]
    for j in 1..fan {
        let (ck, ci) = (pk[j], pi[j]);
        if ranks_before(ck, ci, win[0], win[1]) {
            win[0] = ck;
            win[1] = ci;
        }
    }
}

/// The pair after `(wk, wi)` among the `per` pairs one invocation holds (`ks`, `is`), into
/// `head[0..2]` (key 0, index `u32::MAX` when none is left).
#[cube]
fn next_after(ks: &Array<u32>, is: &Array<u32>, head: &mut Array<u32>, wk: u32, wi: u32, #[comptime] per: usize) {
    head[0] = 0u32;
    head[1] = u32::MAX;
    #[unroll]
    for j in 0..per {
        let (kk, ii) = (ks[j], is[j]);
        if ranks_before(wk, wi, kk, ii) && ranks_before(kk, ii, head[0], head[1]) {
            head[0] = kk;
            head[1] = ii;
        }
    }
}

/// Device top-k, stage 1 (one pass over the logits): invocation `t` of workgroup `g` owns the
/// group of `TOP_K_PER` logits `g·TOP_K_CHUNK + t + j·TOP_K_FAN²` and writes the group's first
/// pair (key, index) in the sampler's order to `gk`/`gi[g·TOP_K_FAN² + t]` (key 0, index
/// `u32::MAX` for a group past the end); the workgroup writes (max, Σ exp(x − max)) to
/// `stats[2g..2g+2]`.
#[cube(launch)]
fn top_k_scan_kernel(
    x: &Tensor<f32>,
    gk: &mut Tensor<u32>,
    gi: &mut Tensor<u32>,
    stats: &mut Tensor<f32>,
    v_len: usize,
) {
    let g = CUBE_POS_X as usize;
    let tx = UNIT_POS_X as usize;
    let xs = x.stride(1);
    let start = g * comptime![TOP_K_CHUNK] + tx;
    let mut sk = Shared::<[u32]>::new_slice(comptime![TOP_K_FAN * TOP_K_FAN]);
    let mut si = Shared::<[u32]>::new_slice(comptime![TOP_K_FAN * TOP_K_FAN]);
    let mut pk = Shared::<[u32]>::new_slice(comptime![TOP_K_FAN]);
    let mut pi = Shared::<[u32]>::new_slice(comptime![TOP_K_FAN]);
    let mut sf = Shared::<[f32]>::new_slice(comptime![TOP_K_FAN * TOP_K_FAN]);
    let mut ks = Array::<u32>::new(comptime![TOP_K_PER]);
    let mut head = Array::<u32>::new(2usize);
    let mut win = Array::<u32>::new(2usize);
    head[0] = 0u32;
    head[1] = u32::MAX;
    #[unroll]
    for j in 0..comptime![TOP_K_PER] {
        let i = start + j * comptime![TOP_K_FAN * TOP_K_FAN];
        let kk = select(i < v_len, order_key(x[select(i < v_len, i, 0usize) * xs]), 0u32);
        ks[j] = kk;
        if i < v_len && ranks_before(kk, u32::cast_from(i), head[0], head[1]) {
            head[0] = kk;
            head[1] = u32::cast_from(i);
        }
    }
    gk[g * comptime![TOP_K_FAN * TOP_K_FAN] + tx] = head[0];
    gi[g * comptime![TOP_K_FAN * TOP_K_FAN] + tx] = head[1];
    // Σ exp(x − max) over the chunk (a chunk is never empty), as the greedy kernel sums it.
    select_first(&mut sk, &mut si, &mut pk, &mut pi, &mut win, head[0], head[1], tx, comptime![TOP_K_FAN]);
    let m = key_value(win[0]);
    let mut acc = Array::<f32>::new(1usize);
    acc[0] = 0.0;
    #[unroll]
    for j in 0..comptime![TOP_K_PER] {
        if start + j * comptime![TOP_K_FAN * TOP_K_FAN] < v_len {
            acc[0] += f32::exp(key_value(ks[j]) - m);
        }
    }
    sf[tx] = acc[0];
    tree_sum(&mut sf, tx);
    if tx == 0 {
        stats[g * 2] = m;
        stats[g * 2 + 1] = sf[0];
    }
}

/// Device top-k, stage 2 (one workgroup of `TOP_K_MERGE_FAN²`): the first `k` of the `n` group
/// maxima, in the sampler's order; writes their indices to `sel[0..k]` (`u32::MAX` past `n`).
/// Invocation `t` holds pairs `t + j·TOP_K_MERGE_FAN²` in registers; each of `k` rounds selects
/// the first held pair and its owner finds its next.
#[cube(launch)]
fn top_k_groups_kernel(
    gk: &Tensor<u32>,
    gi: &Tensor<u32>,
    sel: &mut Tensor<u32>,
    n: usize,
    k: usize,
    #[comptime] per: usize,
) {
    let tx = UNIT_POS_X as usize;
    let mut sk = Shared::<[u32]>::new_slice(comptime![TOP_K_MERGE_FAN * TOP_K_MERGE_FAN]);
    let mut si = Shared::<[u32]>::new_slice(comptime![TOP_K_MERGE_FAN * TOP_K_MERGE_FAN]);
    let mut pk = Shared::<[u32]>::new_slice(comptime![TOP_K_MERGE_FAN]);
    let mut pi = Shared::<[u32]>::new_slice(comptime![TOP_K_MERGE_FAN]);
    let mut ks = Array::<u32>::new(comptime![per]);
    let mut is = Array::<u32>::new(comptime![per]);
    let mut head = Array::<u32>::new(2usize);
    let mut win = Array::<u32>::new(2usize);
    #[unroll]
    for j in 0..comptime![per] {
        let p = tx + j * comptime![TOP_K_MERGE_FAN * TOP_K_MERGE_FAN];
        let q = select(p < n, p, 0usize);
        ks[j] = select(p < n, gk[q], 0u32);
        is[j] = select(p < n, gi[q], u32::MAX);
    }
    // The first held pair: every pair ranks after (key MAX, index 0) but a NaN's.
    next_after(&ks, &is, &mut head, u32::MAX, 0u32, comptime![per]);
    for r in 0..k {
        select_first(&mut sk, &mut si, &mut pk, &mut pi, &mut win, head[0], head[1], tx, comptime![TOP_K_MERGE_FAN]);
        let (wk, wi) = (win[0], win[1]);
        if tx == 0 {
            sel[r] = wi;
        }
        if head[0] == wk && head[1] == wi {
            next_after(&ks, &is, &mut head, wk, wi, comptime![per]);
        }
    }
}

/// Device top-k, stage 3 (one workgroup of `TOP_K_MERGE_FAN²`): invocation `t < k` loads the
/// group whose maximum is at `sel[t]`; `k` rounds select the first `k` of those logits. Writes
/// `out[0..k]` = token ids, `out[k..2k]` = their logits (f32 bits read from `x`, so a zero keeps
/// its sign), `out[2k]` = the largest logit and `out[2k+1]` = Σ exp(x − largest) over the whole
/// row, from the `chunks` stage-1 sums.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn top_k_final_kernel(
    x: &Tensor<f32>,
    sel: &Tensor<u32>,
    stats: &Tensor<f32>,
    out: &mut Tensor<u32>,
    v_len: usize,
    chunks: usize,
    k: usize,
) {
    let tx = UNIT_POS_X as usize;
    let xs = x.stride(1);
    let mut sk = Shared::<[u32]>::new_slice(comptime![TOP_K_MERGE_FAN * TOP_K_MERGE_FAN]);
    let mut si = Shared::<[u32]>::new_slice(comptime![TOP_K_MERGE_FAN * TOP_K_MERGE_FAN]);
    let mut pk = Shared::<[u32]>::new_slice(comptime![TOP_K_MERGE_FAN]);
    let mut pi = Shared::<[u32]>::new_slice(comptime![TOP_K_MERGE_FAN]);
    let mut sf = Shared::<[f32]>::new_slice(comptime![TOP_K_MERGE_FAN * TOP_K_MERGE_FAN]);
    let mut ks = Array::<u32>::new(comptime![TOP_K_PER]);
    let mut is = Array::<u32>::new(comptime![TOP_K_PER]);
    let mut head = Array::<u32>::new(2usize);
    let mut win = Array::<u32>::new(2usize);
    // The group of the maximum at `m`: its chunk, and its lane within the chunk.
    let m = select(tx < k, usize::cast_from(sel[select(tx < k, tx, 0usize)]), v_len);
    let base = (m / comptime![TOP_K_CHUNK]) * comptime![TOP_K_CHUNK] + m % comptime![TOP_K_FAN * TOP_K_FAN];
    #[unroll]
    for j in 0..comptime![TOP_K_PER] {
        let i = base + j * comptime![TOP_K_FAN * TOP_K_FAN];
        let ok = m < v_len && i < v_len;
        ks[j] = select(ok, order_key(x[select(ok, i, 0usize) * xs]), 0u32);
        is[j] = select(ok, u32::cast_from(i), u32::MAX);
    }
    // The first held pair: every pair ranks after (key MAX, index 0) but a NaN's.
    next_after(&ks, &is, &mut head, u32::MAX, 0u32, comptime![TOP_K_PER]);
    // The first pick (the overall maximum), kept by every invocation: a barrier orders shared
    // memory only, so `out` is not read back here.
    let mut first = Array::<u32>::new(1usize);
    first[0] = 0u32;
    for r in 0..k {
        select_first(&mut sk, &mut si, &mut pk, &mut pi, &mut win, head[0], head[1], tx, comptime![TOP_K_MERGE_FAN]);
        let (wk, wi) = (win[0], win[1]);
        if r == 0 {
            first[0] = wi;
        }
        if tx == 0 {
            out[r] = wi;
            out[k + r] = u32::reinterpret(x[select(usize::cast_from(wi) < v_len, usize::cast_from(wi), 0usize) * xs]);
        }
        if head[0] == wk && head[1] == wi {
            next_after(&ks, &is, &mut head, wk, wi, comptime![TOP_K_PER]);
        }
    }
    // Log-sum-exp: rescale each chunk's sum to the overall maximum (the first pick's logit).
    let top = x[select(usize::cast_from(first[0]) < v_len, usize::cast_from(first[0]), 0usize) * xs];
    sf[tx] = 0.0;
    if tx < chunks {
        sf[tx] = stats[tx * 2 + 1] * f32::exp(stats[tx * 2] - top);
    }
    tree_sum(&mut sf, tx);
    if tx == 0 {
        out[2 * k] = u32::reinterpret(top);
        out[2 * k + 1] = u32::reinterpret(sf[0]);
    }
}

/// RMSNorm over the last dimension of `x: [rows, d]` with weight `w: [d]`, plus `residual`
/// (`[rows, d]`) when given: `residual + x / sqrt(mean(x²) + eps) · w`.
pub fn rms_norm(
    x: BurnTensor<2>,
    w: &BurnTensor<1>,
    eps: f32,
    residual: Option<BurnTensor<2>>,
) -> Result<BurnTensor<2>> {
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

/// RoPE in `layout` of `x: [n, heads, hd]` (positions along the first dimension) with the
/// pass's `cos`/`sin: [n, hd/2]`, multiplied by `scale` (the query scale, or 1).
pub fn rope(
    x: BurnTensor<3>,
    cos: &BurnTensor<2>,
    sin: &BurnTensor<2>,
    scale: f32,
    layout: RopeLayout,
) -> Result<BurnTensor<3>> {
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
        layout == RopeLayout::Neox,
    );
    Ok(wrap(out))
}

/// `act(gate) · up` for `[n, f]` operands: GeGLU (tanh GELU) or SwiGLU.
pub fn glu(act: Activation, gate: BurnTensor<2>, up: BurnTensor<2>) -> Result<BurnTensor<2>> {
    let [n, f] = gate.dims();
    if up.dims() != [n, f] {
        return Err(Error::Backend { reason: format!("fused glu: [{n}, {f}] vs {:?}", up.dims()) });
    }
    let (g, u) = (cube(gate, "fused glu")?, cube(up, "fused glu")?);
    let out = output(&g, [n, f]);
    let (grid_, dim) = (grid((n * f).div_ceil(WG_ELEM), 1)?, CubeDim::new_1d(WG_ELEM as u32));
    let (ga, ua, oa) = (g.clone().into_tensor_arg(), u.into_tensor_arg(), out.clone().into_tensor_arg());
    match act {
        Activation::GeluTanh => gelu_mul_kernel::launch(&g.client, grid_, dim, ga, ua, oa, f, n * f),
        Activation::Silu => silu_mul_kernel::launch(&g.client, grid_, dim, ga, ua, oa, f, n * f),
    }
    Ok(wrap(out))
}

/// Attention of one query token: `q: [H, 1, hd]` (scaled), the layer's visible cache
/// `k`/`v: [KV, S, hd]` and `mask: [1, S]` -> `[1, H·hd]`, in one launch. `None` when the shape
/// is not one this kernel takes (more than one query, or `hd` above 1024).
pub fn decode_attention(
    q: BurnTensor<3>,
    k: BurnTensor<3>,
    v: BurnTensor<3>,
    mask: BurnTensor<2>,
) -> Result<Option<BurnTensor<2>>> {
    let [h, n, hd] = q.dims();
    let [kvh, s, khd] = k.dims();
    if n != 1
        || hd > 1024
        || hd == 0
        || khd != hd
        || v.dims() != [kvh, s, hd]
        || mask.dims() != [1, s]
        || kvh == 0
        || h % kvh != 0
        || s == 0
    {
        return Ok(None);
    }
    let wg = hd.next_power_of_two().max(32);
    let (q, k, v, m) = (
        cube(q, "fused attention")?,
        cube(k, "fused attention")?,
        cube(v, "fused attention")?,
        cube(mask, "fused attention")?,
    );
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
    argmax(logits, None)?.ok_or_else(|| Error::Backend { reason: "model produced non-finite logits".into() })
}

/// [`greedy`] among the tokens allowed by a constraint's mask `words` (bit `i % 32` of word
/// `i / 32`, LSB first; ids past the words are forbidden): the first index of the largest
/// allowed logit and its log-probability among the allowed tokens — what the host's
/// `sampling::greedy_masked` returns on the same logits. The mask goes up (`V / 8` bytes, 32 KiB
/// for 262144 tokens) and `3 × groups` numbers come back instead of the vocabulary's logits.
/// `None` when no allowed token has a logit above −3e38 (the caller reads the logits back).
pub fn greedy_masked(logits: BurnTensor<2>, words: &[u32]) -> Result<Option<Greedy>> {
    if words.is_empty() {
        return Ok(None);
    }
    argmax(logits, Some(words))
}

fn argmax(logits: BurnTensor<2>, words: Option<&[u32]>) -> Result<Option<Greedy>> {
    let [rows, v] = logits.dims();
    if rows != 1 || v == 0 || v > u32::MAX as usize {
        return Err(Error::Backend { reason: format!("device greedy: logits [{rows}, {v}]") });
    }
    let x = cube(logits, "device greedy")?;
    let groups = GREEDY_GROUPS.min(v.div_ceil(WG_NORM));
    let chunk = v.div_ceil(groups);
    let part = output(&x, [groups, 2]);
    let u32s = |n: usize, handle| {
        CubeTensor::new_contiguous(x.client.clone(), x.device.clone(), Shape::new([n]), handle, DType::U32)
    };
    let idx = u32s(groups, x.client.empty(groups * 4));
    // Without a mask the kernel never reads `words`: a one-word stand-in.
    let (mask, n_words) = match words {
        Some(w) => {
            let bytes: Vec<u8> = w.iter().flat_map(|x| x.to_le_bytes()).collect();
            (u32s(w.len(), x.client.create_from_slice(&bytes)), w.len())
        }
        None => (u32s(1, x.client.empty(4)), 0),
    };
    argmax_partial_kernel::launch(
        &x.client,
        CubeCount::Static(groups as u32, 1, 1),
        CubeDim::new_1d(WG_NORM as u32),
        x.clone().into_tensor_arg(),
        mask.into_tensor_arg(),
        part.clone().into_tensor_arg(),
        idx.clone().into_tensor_arg(),
        v,
        chunk,
        n_words,
        words.is_some(),
    );
    let part = crate::model::layers::read_f32(wrap::<2>(part))?;
    let idx: Vec<u32> = BurnTensor::<1, burn::tensor::Int>::from_primitive::<Wgpu>(idx)
        .try_into_vec_as::<u32>()
        .map_err(|e| Error::Backend { reason: format!("device greedy read-back: {e:?}") })?;
    // Combine in chunk order: the first chunk holding the maximum has its first index. A chunk
    // without an allowed token (or without a logit above −3e38) has a sum of 0.
    let mut best: Option<(f32, usize)> = None;
    for (g, p) in part.chunks_exact(2).enumerate() {
        if p[1] > 0.0 && best.is_none_or(|(m, _)| p[0] > m) {
            best = Some((p[0], g));
        }
    }
    let Some((m, g)) = best.filter(|(m, _)| m.is_finite()) else { return Ok(None) };
    let total: f64 = part.chunks_exact(2).filter(|p| p[1] > 0.0).map(|p| p[1] as f64 * ((p[0] - m) as f64).exp()).sum();
    let token = *idx.get(g).ok_or_else(|| Error::Backend { reason: "device greedy: no index".into() })?;
    if token as usize >= v {
        return Err(Error::Backend { reason: "device greedy: index out of range".into() });
    }
    Ok(Some(Greedy { token, logprob: -(total.ln() as f32) }))
}

/// The most candidates [`top_k`] selects (the sampler asks for top-k plus the penalized tokens).
pub const TOP_K_MAX: usize = 128;
/// Device top-k, stage 1: `TOP_K_FAN²` invocations a workgroup, each owning a group of
/// `TOP_K_PER` logits (held in registers): `TOP_K_CHUNK` logits a workgroup.
const TOP_K_FAN: usize = 8;
const TOP_K_PER: usize = 32;
const TOP_K_CHUNK: usize = TOP_K_FAN * TOP_K_FAN * TOP_K_PER;
/// Stages 2 and 3: one workgroup of `TOP_K_MERGE_FAN²` invocations (at least [`TOP_K_MAX`]; one
/// per stage-1 workgroup for the log-sum-exp, so vocabularies up to 524288).
const TOP_K_MERGE_FAN: usize = 16;

/// Whether [`top_k`] takes `k` candidates of a `vocab`-logit row.
pub fn top_k_fits(vocab: usize, k: usize) -> bool {
    (1..=TOP_K_MAX).contains(&k) && vocab.div_ceil(TOP_K_CHUNK) <= TOP_K_MERGE_FAN * TOP_K_MERGE_FAN
}

/// The `k` largest logits of one row (`[1, V]`, on the device) in the sampler's order (larger
/// first, equal logits by token id), with the log-sum-exp of the whole row: `2k + 2` numbers
/// cross back instead of `V`. `k` is clamped to `V`; where [`top_k_fits`] says no, an error.
///
/// Three launches, no subgroup operations and no atomics. (1) One pass splits the row into
/// groups of `TOP_K_PER` logits and writes each group's first logit (and each workgroup's
/// log-sum-exp terms). (2) The first `k` of those group maxima. (3) The first `k` logits of
/// those `k` groups. Exact: a logit in any other group has behind it its group's maximum,
/// itself behind `k` group maxima, so it is not among the first `k`.
pub fn top_k(logits: BurnTensor<2>, k: usize) -> Result<crate::model::TopLogits> {
    let [rows, v] = logits.dims();
    if rows != 1 || v == 0 || !top_k_fits(v, k) {
        return Err(Error::Backend { reason: format!("device top-k: logits [{rows}, {v}], k {k}") });
    }
    let k = k.min(v);
    let x = cube(logits, "device top-k")?;
    let chunks = v.div_ceil(TOP_K_CHUNK);
    let n = chunks * TOP_K_FAN * TOP_K_FAN;
    let u32s = |n: usize| {
        CubeTensor::new_contiguous(
            x.client.clone(),
            x.device.clone(),
            Shape::new([n]),
            x.client.empty(n * 4),
            DType::U32,
        )
    };
    let (gk, gi, sel, out) = (u32s(n), u32s(n), u32s(k), u32s(2 * k + 2));
    let stats = output(&x, [chunks, 2]);
    top_k_scan_kernel::launch(
        &x.client,
        CubeCount::Static(chunks as u32, 1, 1),
        CubeDim::new_1d((TOP_K_FAN * TOP_K_FAN) as u32),
        x.clone().into_tensor_arg(),
        gk.clone().into_tensor_arg(),
        gi.clone().into_tensor_arg(),
        stats.clone().into_tensor_arg(),
        v,
    );
    let merge = TOP_K_MERGE_FAN * TOP_K_MERGE_FAN;
    top_k_groups_kernel::launch(
        &x.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(merge as u32),
        gk.into_tensor_arg(),
        gi.into_tensor_arg(),
        sel.clone().into_tensor_arg(),
        n,
        k,
        n.div_ceil(merge).next_power_of_two(),
    );
    top_k_final_kernel::launch(
        &x.client,
        CubeCount::Static(1, 1, 1),
        CubeDim::new_1d(merge as u32),
        x.clone().into_tensor_arg(),
        sel.into_tensor_arg(),
        stats.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        v,
        chunks,
        k,
    );
    let out: Vec<u32> = BurnTensor::<1, burn::tensor::Int>::from_primitive::<Wgpu>(out)
        .try_into_vec_as::<u32>()
        .map_err(|e| Error::Backend { reason: format!("device top-k read-back: {e:?}") })?;
    let (ids, rest) = out.split_at(k.min(out.len()));
    let (vals, lse) = rest.split_at(k.min(rest.len()));
    let [top, sum] = lse else {
        return Err(Error::Backend { reason: format!("device top-k: {} numbers read back for k {k}", out.len()) });
    };
    if ids.iter().any(|&t| t as usize >= v) {
        // Only NaN logits rank behind the padding.
        return Err(Error::Backend { reason: "device top-k: fewer candidates than asked (non-finite logits?)".into() });
    }
    let entries = ids.iter().zip(vals).map(|(&t, &b)| (t, f32::from_bits(b))).collect();
    let log_sum_exp = f32::from_bits(*top) as f64 + (f32::from_bits(*sum) as f64).ln();
    Ok(crate::model::TopLogits { entries, log_sum_exp })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decoder::RopeScaling;
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
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1 << 24) as f32 - 0.5) * 8.0
            })
            .collect()
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
        close(
            &read_f32(rms_norm(x.clone(), &w, eps, Some(r.clone())).unwrap()).unwrap(),
            &read_f32(r.add(plain)).unwrap(),
            1e-5,
        );
        // A strided view (a transposed matrix) as input.
        let xt = tensor2(values(d * rows, 4), d, rows, &dev).swap_dims(0, 1);
        let ms = xt.clone().square().mean_dim(1);
        let plain = xt.clone().div(ms.add_scalar(eps).sqrt()).mul(w.clone().unsqueeze::<2>());
        close(&read_f32(rms_norm(xt, &w, eps, None).unwrap()).unwrap(), &read_f32(plain).unwrap(), 1e-5);

        let (n, heads, hd) = (3, 4, 256);
        let q = BurnTensor::<1>::from_floats(values(n * heads * hd, 5).as_slice(), &dev).reshape([n, heads, hd]);
        let (cos, sin) = crate::model::layers::rope_tables(7, n, hd, 10_000.0, &RopeScaling::None, &dev);
        for layout in [RopeLayout::Neox, RopeLayout::Norm] {
            let plain = apply_rope(q.clone().swap_dims(0, 1), &cos, &sin, layout).mul_scalar(0.0625).swap_dims(0, 1);
            let fused = rope(q.clone(), &cos, &sin, 0.0625, layout).unwrap();
            close(
                &read_f32(fused.reshape([n * heads, hd])).unwrap(),
                &read_f32(plain.reshape([n * heads, hd])).unwrap(),
                1e-6,
            );
        }

        let (n, f) = (2, 2048);
        let g = tensor2(values(n * f, 6), n, f, &dev);
        let u = tensor2(values(n * f, 7), n, f, &dev);
        let plain = activation::gelu_approximate(g.clone()).mul(u.clone());
        close(
            &read_f32(glu(Activation::GeluTanh, g.clone(), u.clone()).unwrap()).unwrap(),
            &read_f32(plain).unwrap(),
            1e-5,
        );
        let plain = activation::silu(g.clone()).mul(u.clone());
        close(&read_f32(glu(Activation::Silu, g, u).unwrap()).unwrap(), &read_f32(plain).unwrap(), 1e-5);
    }

    #[test]
    fn decode_attention_matches_burn_ops() {
        let Some(dev) = device() else { return };
        for (h, kvh, hd, s) in [(4, 1, 256, 1), (4, 1, 256, 300), (8, 2, 64, 700)] {
            let q =
                BurnTensor::<1>::from_floats(values(h * hd, 11).as_slice(), &dev).reshape([h, 1, hd]).mul_scalar(0.1);
            let cap = s + 5; // a ring larger than the visible keys: k/v are strided views
            let k = BurnTensor::<1>::from_floats(values(kvh * cap * hd, 12).as_slice(), &dev)
                .reshape([kvh, cap, hd])
                .slice([0..kvh, 0..s, 0..hd]);
            let v = BurnTensor::<1>::from_floats(values(kvh * cap * hd, 13).as_slice(), &dev)
                .reshape([kvh, cap, hd])
                .slice([0..kvh, 0..s, 0..hd]);
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

    /// The device pick under a constraint's mask equals the host's (`sampling::greedy_masked`,
    /// which the CPU path uses) on the same logits: the largest logits sit on forbidden ids right
    /// next to the allowed ones (a mask ignored, or read one bit off, picks them), the best
    /// allowed id is in turn at a word's first and last bit, across chunks, the vocabulary's last
    /// id, a tie (the first wins), and ids past a short mask are forbidden.
    #[test]
    fn device_masked_greedy_matches_the_host_mask() {
        let Some(dev) = device() else { return };
        let words_of = |ids: &[usize], n_words: usize| {
            let mut w = vec![0u32; n_words];
            for &i in ids {
                w[i / 32] |= 1 << (i % 32);
            }
            w
        };
        let v = 262_144;
        let allowed = [5usize, 31, 32, 63, 64, 100_000, 131_071, 200_033, v - 1];
        for (case, &best) in allowed.iter().enumerate() {
            let mut vals = values(v, 50 + case as u32);
            let top = vals.iter().cloned().fold(f32::MIN, f32::max);
            for &a in &allowed {
                vals[a] = top + 1.0 + (a % 7) as f32 * 0.01;
                // Forbidden neighbours above every allowed logit.
                for n in [a.wrapping_sub(1), a + 1] {
                    if n < v && !allowed.contains(&n) {
                        vals[n] = top + 5.0;
                    }
                }
            }
            vals[best] = top + 3.0;
            let words = words_of(&allowed, v / 32);
            let got = greedy_masked(tensor2(vals.clone(), 1, v, &dev), &words).unwrap().expect("a pick");
            let want = crate::sampling::greedy_masked(&mut vals.clone(), &words).unwrap().unwrap();
            assert_eq!(got.token as usize, best);
            assert_eq!(got.token, want.0, "case {case}");
            assert!((got.logprob - want.1).abs() < 1e-4, "{} vs {}", got.logprob, want.1);
            // The unmasked pick is a forbidden neighbour: the mask matters here.
            assert!(!allowed.contains(&(greedy(tensor2(vals.clone(), 1, v, &dev)).unwrap().token as usize)));
        }
        // A tie between allowed ids in different chunks: the first wins.
        let mut vals = values(v, 60);
        let top = vals.iter().cloned().fold(f32::MIN, f32::max);
        vals[70_000] = top + 1.0;
        vals[9_000] = top + 1.0;
        vals[9_001] = top + 2.0;
        let words = words_of(&[9_000, 70_000, 150_000], v / 32);
        let got = greedy_masked(tensor2(vals.clone(), 1, v, &dev), &words).unwrap().unwrap();
        assert_eq!(got.token, 9_000);
        assert_eq!(got.token, crate::sampling::greedy_masked(&mut vals.clone(), &words).unwrap().unwrap().0);
        // A mask shorter than the vocabulary forbids the ids past it; a small vocabulary.
        let (v, mut vals) = (1000, values(1000, 61));
        vals[999] = 100.0;
        vals[40] = 50.0;
        let words = vec![u32::MAX; 31];
        let got = greedy_masked(tensor2(vals.clone(), 1, v, &dev), &words).unwrap().unwrap();
        assert_eq!(got.token, crate::sampling::greedy_masked(&mut vals.clone(), &words).unwrap().unwrap().0);
        assert_eq!(got.token, 40);
        // Nothing allowed: no pick.
        assert_eq!(greedy_masked(tensor2(vals.clone(), 1, v, &dev), &[0u32; 32]).unwrap(), None);
        assert_eq!(greedy_masked(tensor2(vals, 1, v, &dev), &[]).unwrap(), None);
    }

    /// The cost of a constrained greedy pick from logits on the device (not asserted; run with
    /// `--nocapture`): the old path (read all 262144 logits back, the host's `greedy_masked`)
    /// against the device pick under the uploaded mask. Each rep recomputes the logits (a
    /// scale), so neither reads a cached result.
    #[test]
    fn masked_pick_cost_read_back_vs_device() {
        let Some(dev) = device() else { return };
        let v = 262_144;
        let base = tensor2(values(v, 70), 1, v, &dev);
        let mut words = vec![0u32; v / 32];
        for i in (0..v).step_by(997) {
            words[i / 32] |= 1 << (i % 32);
        }
        let median = |mut t: Vec<f64>| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        };
        let (mut host, mut device) = (Vec::new(), Vec::new());
        for rep in 0..15 {
            let scale = 1.0 + rep as f32 * 1e-3;
            // Both start from a finished tensor: only the pick is timed.
            let l = base.clone().mul_scalar(scale);
            let _ = read_f32(l.clone().slice([0..1, 0..1])).unwrap();
            let t0 = std::time::Instant::now();
            let mut all = read_f32(l.clone()).unwrap();
            let a = crate::sampling::greedy_masked(&mut all, &words).unwrap().unwrap();
            host.push(t0.elapsed().as_secs_f64() * 1e3);
            let t0 = std::time::Instant::now();
            let b = greedy_masked(l, &words).unwrap().unwrap();
            device.push(t0.elapsed().as_secs_f64() * 1e3);
            assert_eq!(a.0, b.token);
        }
        eprintln!(
            "masked greedy pick, median of 15: read back + host {:.2} ms, device {:.2} ms",
            median(host),
            median(device)
        );
    }

    /// The first `k` of `vals` in the sampler's order, by an independent route: a stable sort of
    /// all indices by value, descending (equal values, ±0 alike, keep ascending indices).
    fn host_top(vals: &[f32], k: usize) -> Vec<(u32, u32)> {
        let mut order: Vec<usize> = (0..vals.len()).collect();
        order.sort_by(|&a, &b| vals[b].partial_cmp(&vals[a]).unwrap());
        order.iter().take(k).map(|&i| (i as u32, vals[i].to_bits())).collect()
    }

    #[test]
    fn device_top_k_matches_the_host_sampler() {
        use crate::sampling::{Sampler, SamplingParams};
        let Some(dev) = device() else { return };
        // Vocabularies that are and are not multiples of the chunk, k at both ends and above v.
        for (v, k, seed) in [
            (262_144, 40, 31),
            (262_144, TOP_K_MAX, 32),
            (262_143, 104, 33),
            (1000, 64, 34),
            (4097, 1, 35),
            (7, 10, 36),
        ] {
            let mut vals = values(v, seed);
            let sorted = host_top(&vals, v);
            // Ties at the top, across chunks, and a run of equal logits straddling place k.
            let best = f32::from_bits(sorted[0].1) + 1.0;
            for i in [v - 1, v / 2, v / 3, 1] {
                vals[i] = best;
            }
            let at_k = f32::from_bits(host_top(&vals, k)[k.min(v) - 1].1);
            let run: Vec<usize> = (5..v).step_by((v / 9).max(1)).filter(|&i| vals[i] != best).collect();
            for &i in &run {
                vals[i] = at_k;
            }
            // The run of equal logits is cut by place k (unless k reaches the vocabulary).
            let cut = host_top(&vals, v).iter().filter(|e| f32::from_bits(e.1) == at_k).count();
            assert!(
                k >= v || (cut > 1 && host_top(&vals, k).iter().filter(|e| f32::from_bits(e.1) == at_k).count() < cut)
            );
            let got = top_k(tensor2(vals.clone(), 1, v, &dev), k).unwrap();
            let ids: Vec<(u32, u32)> = got.entries.iter().map(|&(t, l)| (t, l.to_bits())).collect();
            assert_eq!(ids, host_top(&vals, k), "v {v}, k {k}");
            let lse = vals[ids[0].0 as usize] as f64 - crate::sampling::log_softmax_at(&vals, ids[0].0 as usize) as f64;
            assert!((got.log_sum_exp - lse).abs() < 1e-4, "log-sum-exp {} vs {lse}", got.log_sum_exp);
        }
        // The largest logits crowded into one stage-1 group (every 64th logit of a chunk) and one
        // contiguous run, ties among them: most of the k come from a few groups.
        let v = 262_144;
        let mut vals = values(v, 40);
        for j in 0..32 {
            vals[3 * 2048 + 5 + 64 * j] = 10.0 + (j / 2) as f32;
        }
        for (i, x) in vals.iter_mut().enumerate().take(100_090).skip(100_000) {
            *x = 9.0 + (i % 7) as f32;
        }
        for k in [TOP_K_MAX, 33, 7] {
            let got = top_k(tensor2(vals.clone(), 1, v, &dev), k).unwrap();
            let ids: Vec<(u32, u32)> = got.entries.iter().map(|&(t, l)| (t, l.to_bits())).collect();
            assert_eq!(ids, host_top(&vals, k), "crowded, k {k}");
        }
        // +0 and −0 are equal logits: the smaller id first, each with its own sign.
        let mut vals: Vec<f32> = values(300, 37).iter().map(|x| x - 10.0).collect();
        (vals[250], vals[17], vals[120]) = (0.0, -0.0, 0.0);
        let got = top_k(tensor2(vals.clone(), 1, 300, &dev), 4).unwrap();
        let ids: Vec<(u32, u32)> = got.entries.iter().map(|&(t, l)| (t, l.to_bits())).collect();
        assert_eq!(ids[..3], [(17, (-0.0f32).to_bits()), (120, 0), (250, 0)]);
        assert_eq!(ids, host_top(&vals, 4));

        // The sampler finishes on the device's candidates exactly as on all the logits, with a
        // penalty on some of the largest (it asks for k plus the penalized tokens).
        let v = 262_144;
        let vals = values(v, 38);
        let top: Vec<u32> = host_top(&vals, 8).iter().map(|e| e.0).collect();
        let logits = tensor2(vals.clone(), 1, v, &dev);
        for sampling in [
            SamplingParams { temperature: 0.9, top_k: 40, seed: 1, ..Default::default() },
            SamplingParams {
                temperature: 1.5,
                top_k: 64,
                top_p: 1.0,
                min_p: 0.0,
                repetition_penalty: 1.3,
                seed: 2,
                ..Default::default()
            },
            SamplingParams { repetition_penalty: 2.0, ..SamplingParams::greedy() },
        ] {
            let (mut host, mut device) = (Sampler::new(sampling.clone()).unwrap(), Sampler::new(sampling).unwrap());
            let mut history = vec![top[0], top[2], top[5], 9, 9, 77];
            for _ in 0..12 {
                let k = device.candidates_needed(&history, v).expect("an exact case");
                let want = host.sample(&vals, &history).unwrap();
                let got = device.sample_top(&top_k(logits.clone(), k).unwrap(), &history).unwrap();
                assert_eq!(got.0, want.0);
                assert!((got.1 - want.1).abs() < 1e-4, "{} vs {}", got.1, want.1);
                history.push(got.0);
            }
        }
    }

    #[test]
    fn device_top_k_rejects_what_it_cannot_select() {
        let Some(dev) = device() else { return };
        let x = tensor2(values(64, 39), 1, 64, &dev);
        assert!(top_k(x.clone(), 0).is_err());
        assert!(top_k(x.clone(), TOP_K_MAX + 1).is_err());
        assert!(top_k(tensor2(vec![0.0; 4], 2, 2, &dev), 1).is_err());
        assert_eq!(top_k(x, 100).unwrap().entries.len(), 64);
    }

    #[test]
    fn mismatched_shapes_are_errors() {
        let Some(dev) = device() else { return };
        let x = tensor2(vec![1.0; 8], 2, 4, &dev);
        assert!(rms_norm(x.clone(), &BurnTensor::<1>::from_floats([1.0f32; 3].as_slice(), &dev), 1e-6, None).is_err());
        assert!(glu(Activation::Silu, x.clone(), tensor2(vec![1.0; 6], 2, 3, &dev)).is_err());
        let (cos, sin) = crate::model::layers::rope_tables(0, 3, 4, 10_000.0, &RopeScaling::None, &dev);
        assert!(rope(x.reshape([2, 1, 4]), &cos, &sin, 1.0, RopeLayout::Neox).is_err());
    }
}
