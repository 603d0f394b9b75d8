//! Qwen 3.5's gated DeltaNet mixer on the GPU (wgpu): everything between the layer's four
//! products and its output projection, in one CubeCL launch per layer and pass, on the
//! recurrent state kept in device buffers ([`crate::kv_cache::DeviceRecurrentLayer`]).
//!
//! One workgroup per value head `h`, one invocation per row `j` of its state (`S` invocations,
//! `S = S_k = S_v`). Invocation `j` holds row `j` of the head's `S × S` state in registers for the
//! whole pass (as ggml-cuda's `gated_delta_net` gives each thread one column) and, per token, in
//! order:
//! 1. the causal depthwise conv (kernel `K`, the previous `K − 1` inputs from the conv state or
//!    the pass's earlier tokens) and SiLU of its q and k channel (key head `h mod H_k`) and of
//!    its v channel;
//! 2. q and k into shared memory; each invocation sums their squares itself (L2 norms, q also
//!    scaled by `1/sqrt(S)`): no reduction tree, one barrier;
//! 3. the gates `g = softplus(α + dt)·a`, `β = sigmoid(b)`, and the delta rule on its row:
//!    `s ← s·e^g`, `u = β(v_j − s·k)`, `s ← s + u·k`, `o_j = s·q`;
//! 4. the gated RMSNorm over the head's outputs (shared memory, a second barrier):
//!    `o_j / sqrt(mean(o²) + eps) · w_j · SiLU(z_j)`.
//!
//! The tokens of a prefill run one after the other inside the launch (the token-serial form of
//! the recurrence, not the CPU's chunked triangular solve: the same values up to f32 rounding,
//! see `chunked_delta_rule_equals_token_by_token`); the state is read once and written once per
//! pass. The kernel never writes its inputs: the new conv and matrix state go to new buffers,
//! so a session's checkpoint is a handle to the old ones. No subgroup operations (lavapipe and
//! many phones have none); the workgroup must fit the adapter's invocation limit (256 in
//! WebGPU's defaults), so heads wider than 256 stay on the host path.

use burn::tensor::Tensor as BurnTensor;
use cubecl::prelude::*;

use crate::kv_cache::DeviceRecurrentLayer;
use crate::model::gpu_fused::{cube, output, wrap};
use crate::{Error, Result};

/// The widest head the kernel takes (one invocation per state row, WebGPU's default limit of
/// invocations per workgroup).
pub(crate) const MAX_HEAD: usize = 256;

/// Deliberately wrong variants for the tests (bits of the kernel's `flags`; 0 in release).
pub(crate) const NO_CONV_STATE: u32 = 1;
/// The beta gate left out (`β = 1`).
pub(crate) const NO_BETA: u32 = 2;
/// The conv state not rolled: the pass leaves the old one.
pub(crate) const NO_CONV_ROLL: u32 = 4;

#[cube]
fn silu(x: f32) -> f32 {
    x / (1.0 + f32::exp(-x))
}

#[cube]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + f32::exp(-x))
}

/// The causal conv of channel `c` at token `t` of the pass: `x_t·w[K−1] + Σ_{i<K−1} in(t+i)·w[i]`
/// over `in = [conv state (K − 1 rows), x_0 .. x_{n−1}]` (the CPU path's order of terms).
#[cube]
#[allow(clippy::too_many_arguments)]
fn conv_at(qkv: &Tensor<f32>, conv_in: &Tensor<f32>, w: &Tensor<f32>, t: usize, c: usize, ch: usize, kk: usize, carry: bool) -> f32 {
    let xs0 = qkv.stride(0);
    let xs1 = qkv.stride(1);
    let mut acc = qkv[t * xs0 + c * xs1] * w[c * kk + kk - 1];
    if carry {
        for i in 0..kk - 1 {
            let r = t + i;
            if r < kk - 1 {
                acc += conv_in[r * ch + c] * w[c * kk + i];
            } else {
                acc += qkv[(r + 1 - kk) * xs0 + c * xs1] * w[c * kk + i];
            }
        }
    }
    acc
}

/// Channel `c` of the conv state after the pass: the last `K − 1` rows of `[conv state, x]`
/// (`roll` false: the old state, a wrong variant for the tests).
#[cube]
#[allow(clippy::too_many_arguments)]
fn conv_keep(qkv: &Tensor<f32>, conv_in: &Tensor<f32>, conv_out: &mut Tensor<f32>, n: usize, c: usize, ch: usize, kk: usize, roll: bool) {
    for r in 0..kk - 1 {
        let src = select(roll, n + r, r);
        if src < kk - 1 {
            conv_out[r * ch + c] = conv_in[src * ch + c];
        } else {
            conv_out[r * ch + c] = qkv[(src + 1 - kk) * qkv.stride(0) + c * qkv.stride(1)];
        }
    }
}

/// See the module docs. `qkv: [n, ch]`, `z: [n, H_v·S]`, `beta`, `alpha: [n, H_v]` (any
/// strides); `conv_w: [ch·K]`, `dt`, `a: [H_v]`, `norm_w: [S]`, `conv_in: [(K−1)·ch]`,
/// `state_in: [H_v·S·S]` contiguous; writes `out: [n, H_v·S]`, `conv_out`, `state_out`.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn delta_net_kernel(
    qkv: &Tensor<f32>,
    z: &Tensor<f32>,
    beta: &Tensor<f32>,
    alpha: &Tensor<f32>,
    conv_w: &Tensor<f32>,
    dt: &Tensor<f32>,
    a: &Tensor<f32>,
    norm_w: &Tensor<f32>,
    conv_in: &Tensor<f32>,
    state_in: &Tensor<f32>,
    out: &mut Tensor<f32>,
    conv_out: &mut Tensor<f32>,
    state_out: &mut Tensor<f32>,
    n: usize,
    hk: usize,
    ch: usize,
    kk: usize,
    eps: f32,
    q_scale: f32,
    inv_s: f32,
    flags: u32,
    #[comptime] s: usize,
) {
    let h = CUBE_POS_X as usize;
    let j = UNIT_POS_X as usize;
    let hv = CUBE_COUNT_X as usize;
    let kh = h % hk;
    let cq = kh * s + j;
    let ck = (hk + kh) * s + j;
    let cv = 2 * hk * s + h * s + j;
    let carry = (flags & 1u32) == 0u32;
    let use_beta = (flags & 2u32) == 0u32;
    let roll = (flags & 4u32) == 0u32;

    let mut shq = Shared::<[f32]>::new_slice(comptime![s]);
    let mut shk = Shared::<[f32]>::new_slice(comptime![s]);
    let mut sho = Shared::<[f32]>::new_slice(comptime![s]);
    let mut row = Array::<f32>::new(s);
    let base = (h * s + j) * s;
    for i in 0..s {
        row[i] = state_in[base + i];
    }
    let dh = dt[h];
    let ah = a[h];
    let nw = norm_w[j];
    for t in 0..n {
        shq[j] = silu(conv_at(qkv, conv_in, conv_w, t, cq, ch, kk, carry));
        shk[j] = silu(conv_at(qkv, conv_in, conv_w, t, ck, ch, kk, carry));
        let vj = silu(conv_at(qkv, conv_in, conv_w, t, cv, ch, kk, carry));
        sync_cube();
        // L2 norms of q and k (ggml: x / sqrt(Σx² + eps)); q also scaled by 1/sqrt(S).
        let mut ssq = 0.0f32;
        let mut ssk = 0.0f32;
        for i in 0..s {
            ssq += shq[i] * shq[i];
            ssk += shk[i] * shk[i];
        }
        let invq = q_scale / f32::sqrt(ssq + eps);
        let invk = 1.0 / f32::sqrt(ssk + eps);
        // The gates of this token and head.
        let x = alpha[t * alpha.stride(0) + h * alpha.stride(1)] + dh;
        let sp = select(x > 20.0, x, f32::log1p(f32::exp(x)));
        let decay = f32::exp(sp * ah);
        let b = select(use_beta, sigmoid(beta[t * beta.stride(0) + h * beta.stride(1)]), 1.0f32);
        // The delta rule on row j: decay, then u = β(v_j − s·k), s += u·k, o_j = s·q.
        let mut sk = 0.0f32;
        for i in 0..s {
            let v = row[i] * decay;
            row[i] = v;
            sk += v * shk[i];
        }
        let ku = (vj - sk * invk) * b * invk;
        let mut o = 0.0f32;
        for i in 0..s {
            let v = row[i] + shk[i] * ku;
            row[i] = v;
            o += v * shq[i];
        }
        let oj = o * invq;
        sho[j] = oj;
        sync_cube();
        // Gated RMSNorm over the head: o / sqrt(mean(o²) + eps) · w · SiLU(z).
        let mut sso = 0.0f32;
        for i in 0..s {
            sso += sho[i] * sho[i];
        }
        let zj = z[t * z.stride(0) + (h * s + j) * z.stride(1)];
        out[t * (hv * s) + h * s + j] = oj / f32::sqrt(sso * inv_s + eps) * nw * silu(zj);
    }
    for i in 0..s {
        state_out[base + i] = row[i];
    }
    // The new conv state: each v channel by its head, each q/k channel by the head of that
    // key head's index (value head h < H_k reads key head h).
    conv_keep(qkv, conv_in, conv_out, n, cv, ch, kk, roll);
    if h < hk {
        conv_keep(qkv, conv_in, conv_out, n, cq, ch, kk, roll);
        conv_keep(qkv, conv_in, conv_out, n, ck, ch, kk, roll);
    }
}

/// A DeltaNet layer's shapes and constants.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DeltaShape {
    pub(crate) k_heads: usize,
    pub(crate) v_heads: usize,
    /// `S_k = S_v`.
    pub(crate) head: usize,
    pub(crate) conv_kernel: usize,
    pub(crate) eps: f32,
}

impl DeltaShape {
    pub(crate) fn channels(&self) -> usize {
        (2 * self.k_heads + self.v_heads) * self.head
    }

    /// Whether the kernel takes this shape (else the DeltaNet runs on the host).
    pub(crate) fn supported(&self) -> bool {
        (1..=MAX_HEAD).contains(&self.head) && self.k_heads > 0 && self.v_heads.is_multiple_of(self.k_heads) && self.v_heads <= 65535 && self.conv_kernel >= 2
    }
}

/// A DeltaNet layer's small weights on the device.
#[derive(Debug, Clone)]
pub(crate) struct DeltaWeights {
    /// `[channels · K]`.
    pub(crate) conv: BurnTensor<1>,
    pub(crate) dt_bias: BurnTensor<1>,
    /// `−exp(A_log)` per value head.
    pub(crate) a: BurnTensor<1>,
    /// The gated RMSNorm's weight `[S]`.
    pub(crate) norm: BurnTensor<1>,
}

/// Runs the mixer of one layer over a pass of `n` tokens (see the module docs) and replaces
/// `state`'s buffers with the new ones. Returns the gated, normed output `[n, H_v·S]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn delta_net(
    qkv: BurnTensor<2>,
    z: BurnTensor<2>,
    beta: BurnTensor<2>,
    alpha: BurnTensor<2>,
    w: &DeltaWeights,
    state: &mut DeviceRecurrentLayer,
    shape: &DeltaShape,
    flags: u32,
) -> Result<BurnTensor<2>> {
    let [n, ch] = qkv.dims();
    let (hv, s, kk) = (shape.v_heads, shape.head, shape.conv_kernel);
    let inner = hv * s;
    let fits = shape.supported()
        && n > 0
        && ch == shape.channels()
        && z.dims() == [n, inner]
        && beta.dims() == [n, hv]
        && alpha.dims() == [n, hv]
        && w.conv.dims() == [ch * kk]
        && w.dt_bias.dims() == [hv]
        && w.a.dims() == [hv]
        && w.norm.dims() == [s]
        && state.conv.dims() == [(kk - 1) * ch]
        && state.state.dims() == [inner * s];
    if !fits {
        return Err(Error::Backend { reason: format!("gpu DeltaNet: shapes do not match (qkv [{n}, {ch}], {hv} heads of {s})") });
    }
    let what = "gpu DeltaNet";
    let (qkv, z, beta, alpha) = (cube(qkv, what)?, cube(z, what)?, cube(beta, what)?, cube(alpha, what)?);
    let (cw, dt, a, nw) = (cube(w.conv.clone(), what)?, cube(w.dt_bias.clone(), what)?, cube(w.a.clone(), what)?, cube(w.norm.clone(), what)?);
    let (conv_in, state_in) = (cube(state.conv.clone(), what)?, cube(state.state.clone(), what)?);
    let out = output(&qkv, [n, inner]);
    let conv_out = output(&qkv, [(kk - 1) * ch]);
    let state_out = output(&qkv, [inner * s]);
    delta_net_kernel::launch(
        &qkv.client,
        CubeCount::Static(hv as u32, 1, 1),
        CubeDim::new_1d(s as u32),
        qkv.clone().into_tensor_arg(),
        z.into_tensor_arg(),
        beta.into_tensor_arg(),
        alpha.into_tensor_arg(),
        cw.into_tensor_arg(),
        dt.into_tensor_arg(),
        a.into_tensor_arg(),
        nw.into_tensor_arg(),
        conv_in.into_tensor_arg(),
        state_in.into_tensor_arg(),
        out.clone().into_tensor_arg(),
        conv_out.clone().into_tensor_arg(),
        state_out.clone().into_tensor_arg(),
        n,
        shape.k_heads,
        ch,
        kk,
        shape.eps,
        1.0 / (s as f32).sqrt(),
        1.0 / s as f32,
        flags,
        s,
    );
    state.conv = wrap(conv_out);
    state.state = wrap(state_out);
    Ok(wrap(out))
}
