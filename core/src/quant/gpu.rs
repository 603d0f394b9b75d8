//! Quantized matrix products on the GPU (wgpu): GGUF blocks stay quantized in device memory and
//! CubeCL kernels decode them while multiplying (ENGINEERING.md B.5, B.7).
//!
//! Usage:
//! ```ignore
//! let w = QMatrix::upload(GgmlType::Q4_K, bytes, rows, cols, u64::MAX, &device)?; // once, at load
//! let y = w.matmul(x)?; // x: [n, cols] f32 on the same device -> [n, rows]
//! ```
//!
//! - **Layout.** WGSL has no byte loads and GGML blocks (18, 22, 34, 144, 176, 210 bytes) are not
//!   4-byte aligned, so each block is repacked on the host into whole little-endian `u32` words,
//!   with its f16 super-scales widened to f32 (lossless) and every other byte kept as is. Nothing
//!   is re-quantized: decoding a repacked block gives exactly the values of
//!   [`crate::quant::dequantize`]. Word counts per block are in [`Layout`] (B.5's table).
//! - **Kernel.** One workgroup of `WG_X × WG_Y` invocations handles `WG_Y` output rows; the `WG_X`
//!   invocations of a row stride over its 32-element chunks (16 for Q6_K, whose scales change every
//!   16 values), decode each weight, and multiply it with up to `tn` token rows at once, so prefill
//!   decodes each block once per `tn` tokens. Partial sums meet in a shared-memory tree
//!   reduction: lavapipe and many phones have no subgroup operations (B.8). Q8_0 and Q5_0 (the LM
//!   head and most projections of Gemma 3 270M Q4_K_M) decode a whole word at a time.
//! - **Subgroups.** Where the runtime advertises plane (subgroup) operations, a variant gives
//!   each row one plane whose lanes meet in `plane_sum` instead, with no shared memory and no
//!   barrier; it works for any plane size up to 128. `EDGEWISE_GPU_SUBGROUPS=0` forces the
//!   shared-memory variant (A/B runs). cubecl 0.11.3 advertises planes on wgpu only for adapters
//!   with `Features::SUBGROUP` that are not CPU-type, so lavapipe keeps the shared-memory path.
//! - **Prefill.** From `DENSE_PREFILL_MIN` tokens on, a matrix is dequantized into a transient f32
//!   copy and multiplied by burn's matmul (ENGINEERING.md B.7's first prefill version).
//! - **Buffers.** A matrix is split by rows into shards below the adapter's storage-binding limit
//!   (B.6: 128 MiB on lavapipe and many phones); every shard writes its own columns of one output.
//!
//! Activations are f32 and may be strided (a row sliced out of a larger tensor is read in place).

use burn::backend::wgpu::CubeTensor;
use burn::backend::Wgpu;
use burn::tensor::{DType, Device, Shape, Tensor as BurnTensor};
use cubecl::client::Client;
use cubecl::prelude::*;
use cubecl::server::Handle;
use half::f16;

use super::GgmlType;
use crate::{Error, Result};

/// Invocations that share one output row (cooperative variant), and the rows per workgroup.
const WG_X: usize = 32;
/// Output rows per workgroup of the cooperative variant.
const WG_Y: usize = 4;
/// Output rows per workgroup of the one-invocation-per-row variant.
#[cfg_attr(not(test), allow(dead_code))]
const WG_ROWS: usize = 64;
/// Invocations per workgroup of the subgroup variant: 4 planes of 32 lanes (NVIDIA, Apple), 2 of
/// 64, 16 of 8 (Mali, lavapipe). Vulkan caps the plane size at 128, so one plane always fits.
const WG_PLANE: usize = 128;
/// Set to `0` (or `off`, `false`, `no`) to force the shared-memory reduction on a device with
/// subgroups, for A/B runs; read once per process.
pub const SUBGROUPS_ENV: &str = "EDGEWISE_GPU_SUBGROUPS";
/// Tokens multiplied per decoded weight in prefill (decode uses 1).
const PREFILL_TILE: usize = 8;
/// From this many tokens on, a single-buffer matrix is dequantized into a transient f32 copy and
/// multiplied by burn's tiled matmul: decoding once and running a real GEMM beats re-decoding
/// the blocks for every tile of `PREFILL_TILE` tokens.
const DENSE_PREFILL_MIN: usize = 16;
/// Invocations per workgroup of the dequantization kernel.
const WG_DEQUANT: usize = 64;
/// Largest workgroup count per grid dimension that every wgpu adapter accepts.
const MAX_GRID: usize = 65535;
/// Headroom under the binding limit for allocator alignment.
const HEADROOM: u64 = 1 << 20;

/// How one GGML block becomes `words` u32 words on the device.
#[derive(Debug, Clone, Copy)]
struct Layout {
    /// Kernel variant (the GGML type id).
    code: u32,
    /// Elements per block.
    block: usize,
    /// Words per repacked block.
    words: usize,
    /// Elements per chunk (values sharing one scale and minimum).
    chunk: usize,
    /// The block's pieces in order: f16 scales (widened) and byte runs (kept).
    segs: &'static [Seg],
}

/// A piece of a GGML block.
#[derive(Debug, Clone, Copy)]
enum Seg {
    /// An f16 at this byte offset, stored as one f32 word.
    F16(usize),
    /// `len` bytes (a multiple of 4) from this offset, stored as `len / 4` words.
    Bytes(usize, usize),
}

/// The repacked layout of `ty`, or `None` when no kernel exists for it.
///
/// Block formats: ggml-org/llama.cpp `ggml/src/ggml-common.h`. Kernel-side word offsets are
/// written next to each type in [`chunk_q`].
fn layout(ty: GgmlType) -> Option<Layout> {
    use Seg::*;
    let (block, chunk, segs): (usize, usize, &'static [Seg]) = match ty {
        // d | qs[32]
        GgmlType::Q8_0 => (32, 32, &[F16(0), Bytes(2, 32)]),
        // d | qs[16]
        GgmlType::Q4_0 => (32, 32, &[F16(0), Bytes(2, 16)]),
        // d | qh[4] | qs[16]
        GgmlType::Q5_0 => (32, 32, &[F16(0), Bytes(2, 4), Bytes(6, 16)]),
        // d | dmin | scales[12] | qs[128]
        GgmlType::Q4_K => (256, 32, &[F16(0), F16(2), Bytes(4, 12), Bytes(16, 128)]),
        // d | dmin | scales[12] | qh[32] | qs[128]
        GgmlType::Q5_K => (256, 32, &[F16(0), F16(2), Bytes(4, 12), Bytes(16, 32), Bytes(48, 128)]),
        // ql[128] | qh[64] | scales[16] | d
        GgmlType::Q6_K => (256, 16, &[Bytes(0, 128), Bytes(128, 64), Bytes(192, 16), F16(208)]),
        _ => return None,
    };
    let words = segs.iter().map(|s| if let Bytes(_, n) = s { n / 4 } else { 1 }).sum();
    Some(Layout { code: ty.id(), block, words, chunk, segs })
}

/// Whether the GPU kernels handle `ty`.
pub fn supported(ty: GgmlType) -> bool {
    layout(ty).is_some()
}

/// Repacks whole blocks of `ty` into device words (little-endian bytes, 4-byte aligned).
pub fn repack(ty: GgmlType, bytes: &[u8]) -> Result<Vec<u8>> {
    let lay = layout(ty).ok_or_else(|| Error::UnsupportedType { ty: format!("{ty} (gpu kernels)") })?;
    let tsize = ty.type_size() as usize;
    if !bytes.len().is_multiple_of(tsize) {
        return Err(Error::Tensor {
            name: ty.name().into(),
            reason: format!("{} bytes is not a whole number of blocks", bytes.len()),
        });
    }
    let mut out = Vec::with_capacity(bytes.len() / tsize * lay.words * 4);
    for blk in bytes.chunks_exact(tsize) {
        for seg in lay.segs {
            match *seg {
                Seg::F16(at) => {
                    let h = blk.get(at..at + 2).ok_or_else(|| bad_layout(ty))?;
                    out.extend_from_slice(&f16::from_le_bytes([h[0], h[1]]).to_f32().to_le_bytes());
                }
                Seg::Bytes(at, len) => out.extend_from_slice(blk.get(at..at + len).ok_or_else(|| bad_layout(ty))?),
            }
        }
    }
    Ok(out)
}

fn bad_layout(ty: GgmlType) -> Error {
    Error::Tensor { name: ty.name().into(), reason: "gpu layout outside the block".into() }
}

/// Byte `i` of the byte run that starts at word `word0`.
#[cube]
fn byte_at(w: &[u32], word0: usize, i: usize) -> u32 {
    (w[word0 + i / 4] >> (u32::cast_from(i % 4) * 8)) & 0xFF
}

/// Q4_K/Q5_K 6-bit scale of sub-block `s` (ggml `get_scale_min_k4`, first half).
#[cube]
#[allow(unused_assignments)]
fn k_scale(w: &[u32], sc: usize, s: usize) -> u32 {
    let mut v = 0u32;
    if s < 4 {
        v = byte_at(w, sc, s) & 63;
    } else {
        v = (byte_at(w, sc, s + 4) & 0xF) | ((byte_at(w, sc, s - 4) >> 6) << 4);
    }
    v
}

/// Q4_K/Q5_K 6-bit minimum of sub-block `s` (ggml `get_scale_min_k4`, second half).
#[cube]
#[allow(unused_assignments)]
fn k_min(w: &[u32], sc: usize, s: usize) -> u32 {
    let mut v = 0u32;
    if s < 4 {
        v = byte_at(w, sc, s + 4) & 63;
    } else {
        v = (byte_at(w, sc, s + 4) >> 4) | ((byte_at(w, sc, s) >> 6) << 4);
    }
    v
}

/// The scale shared by chunk `s` of the block at word `base`.
#[cube]
#[allow(unused_assignments)]
fn chunk_scale(w: &[u32], base: usize, s: usize, #[comptime] ty: u32) -> f32 {
    let mut v = 0.0f32;
    if comptime![ty == 12 || ty == 13] {
        v = f32::reinterpret(w[base]) * f32::cast_from(k_scale(w, base + 2, s));
    } else if comptime![ty == 14] {
        // 16-value chunk s of 256: half n = s / 8, quarter q = (s % 8) / 2; ggml's scale index
        // is 8n + (l / 16) + 2q, with l / 16 = s % 2.
        let idx = 8 * (s / 8) + s % 2 + 2 * ((s % 8) / 2);
        let sc = f32::cast_from(byte_at(w, base + 48, idx) ^ 0x80) - 128.0;
        v = f32::reinterpret(w[base + 52]) * sc;
    } else {
        v = f32::reinterpret(w[base]);
    }
    v
}

/// The minimum subtracted from every value of chunk `s` (K-quants with an offset; else 0).
#[cube]
fn chunk_min(w: &[u32], base: usize, s: usize, #[comptime] ty: u32) -> f32 {
    let mut v = 0.0f32;
    if comptime![ty == 12 || ty == 13] {
        v = f32::reinterpret(w[base + 1]) * f32::cast_from(k_min(w, base + 2, s));
    }
    v
}

/// The integer value of element `l` of chunk `s` of the block at word `base`, as f32.
#[cube]
#[allow(unused_assignments)]
fn chunk_q(w: &[u32], base: usize, s: usize, l: usize, #[comptime] ty: u32) -> f32 {
    let mut v = 0.0f32;
    if comptime![ty == 8] {
        // Q8_0: d@0 | qs@1. Signed byte via (b ^ 0x80) - 128.
        v = f32::cast_from(byte_at(w, base + 1, l) ^ 0x80) - 128.0;
    } else if comptime![ty == 2] {
        // Q4_0: d@0 | qs@1. Element j pairs with j + 16 in one byte (low, high nibble).
        let b = byte_at(w, base + 1, l % 16);
        v = f32::cast_from((b >> (u32::cast_from(l / 16) * 4)) & 0xF) - 8.0;
    } else if comptime![ty == 6] {
        // Q5_0: d@0 | qh@1 | qs@2. The fifth bit of element l is bit l of qh.
        let b = byte_at(w, base + 2, l % 16);
        let lo = (b >> (u32::cast_from(l / 16) * 4)) & 0xF;
        let hi = (w[base + 1] >> u32::cast_from(l)) & 1;
        v = f32::cast_from(lo | (hi << 4)) - 16.0;
    } else if comptime![ty == 12] {
        // Q4_K: d@0 | dmin@1 | scales@2 | qs@5. Sub-blocks 2j and 2j+1 share qs[32j..32j+32].
        let b = byte_at(w, base + 5, 32 * (s / 2) + l);
        v = f32::cast_from((b >> (u32::cast_from(s % 2) * 4)) & 0xF);
    } else if comptime![ty == 13] {
        // Q5_K: d@0 | dmin@1 | scales@2 | qh@5 | qs@13. Fifth bit: bit s of qh[l].
        let b = byte_at(w, base + 13, 32 * (s / 2) + l);
        let lo = (b >> (u32::cast_from(s % 2) * 4)) & 0xF;
        let hi = (byte_at(w, base + 5, l) >> u32::cast_from(s)) & 1;
        v = f32::cast_from(lo + 16 * hi);
    } else {
        // Q6_K: ql@0 | qh@32 | scales@48 | d@52. Position p = 16s + l = 128n + 32q + l32.
        let n = s / 8;
        let q = (s % 8) / 2;
        let l32 = 16 * (s % 2) + l;
        let ql = byte_at(w, base, 64 * n + l32 + 32 * (q % 2));
        let lo = (ql >> (u32::cast_from(q / 2) * 4)) & 0xF;
        let hi = (byte_at(w, base + 32, 32 * n + l32) >> (u32::cast_from(q) * 2)) & 3;
        v = f32::cast_from(lo | (hi << 4)) - 32.0;
    }
    v
}

/// Adds the four values of qs word `wi` of the Q8_0 block at `base` (scale `scale`; its first
/// element is column `e0`) times x to `acc[t]` for the `tn` tokens from `t0`.
#[cube]
#[allow(clippy::too_many_arguments)]
fn q8_0_word(
    w: &[u32],
    x: &Tensor<f32>,
    acc: &mut Array<f32>,
    base: usize,
    wi: usize,
    scale: f32,
    e0: usize,
    n: usize,
    t0: usize,
    #[comptime] tn: usize,
) {
    let xs0 = x.stride(0);
    let xs1 = x.stride(1);
    let word = w[base + 1 + wi];
    #[unroll]
    for b in 0..4u32 {
        let wv = scale * (f32::cast_from(((word >> (b * 8)) & 0xFF) ^ 0x80) - 128.0);
        let k = (e0 + wi * 4 + b as usize) * xs1;
        #[unroll]
        for t in 0..tn {
            // Tokens past n (last tile) re-read token n-1; their sums are not written.
            let tok = select(t0 + t < n, t0 + t, n - 1);
            acc[t] += wv * x[tok * xs0 + k];
        }
    }
}

/// [`q8_0_word`] for Q5_0: byte j of qs holds elements j and j + 16, whose fifth bits are bits j
/// and j + 16 of the block's `qh` word.
#[cube]
#[allow(clippy::too_many_arguments)]
fn q5_0_word(
    w: &[u32],
    x: &Tensor<f32>,
    acc: &mut Array<f32>,
    base: usize,
    wi: usize,
    scale: f32,
    e0: usize,
    n: usize,
    t0: usize,
    #[comptime] tn: usize,
) {
    let xs0 = x.stride(0);
    let xs1 = x.stride(1);
    let qh = w[base + 1];
    let word = w[base + 2 + wi];
    #[unroll]
    for b in 0..4u32 {
        let byte = (word >> (b * 8)) & 0xFF;
        let j = wi * 4 + b as usize;
        let lo = (byte & 0xF) | (((qh >> u32::cast_from(j)) & 1) << 4);
        let hi = (byte >> 4) | (((qh >> u32::cast_from(j + 16)) & 1) << 4);
        let w0 = scale * (f32::cast_from(lo) - 16.0);
        let w1 = scale * (f32::cast_from(hi) - 16.0);
        let k0 = (e0 + j) * xs1;
        let k1 = k0 + 16 * xs1;
        #[unroll]
        for t in 0..tn {
            let tok = select(t0 + t < n, t0 + t, n - 1);
            acc[t] += w0 * x[tok * xs0 + k0] + w1 * x[tok * xs0 + k1];
        }
    }
}

/// Adds W[row, k] · x[t0 + t, k] over the chunks `first`, `first + stride`, … of `row` to
/// `acc[t]`, for the `tn` tokens of one tile. Tokens past `n` (last tile) re-read token n − 1;
/// their sums are never written.
#[cube]
#[allow(clippy::too_many_arguments)]
fn accumulate_row(
    w: &[u32],
    x: &Tensor<f32>,
    acc: &mut Array<f32>,
    row: usize,
    first: usize,
    stride: usize,
    chunks: usize,
    n: usize,
    t0: usize,
    #[comptime] ty: u32,
    #[comptime] tn: usize,
    #[comptime] cpb: usize,
    #[comptime] bw: usize,
    #[comptime] csz: usize,
) {
    let xs0 = x.stride(0);
    let xs1 = x.stride(1);
    let nb = chunks / cpb;
    let mut c = first;
    while c < chunks {
        let base = (row * nb + c / cpb) * bw;
        let s = c % cpb;
        let scale = chunk_scale(w, base, s, ty);
        let minv = chunk_min(w, base, s, ty);
        if comptime![ty == 8] {
            // Q8_0 (the tied LM head): one word load gives four consecutive values.
            for wi in 0..8usize {
                q8_0_word(w, x, acc, base, wi, scale, c * 32, n, t0, tn);
            }
        } else if comptime![ty == 6] {
            // Q5_0 (most of Gemma 3's projections).
            for wi in 0..4usize {
                q5_0_word(w, x, acc, base, wi, scale, c * 32, n, t0, tn);
            }
        } else {
            for l in 0..csz {
                let wv = scale * chunk_q(w, base, s, l, ty) - minv;
                let k = (c * csz + l) * xs1;
                #[unroll]
                for t in 0..tn {
                    // Tokens past n (last tile) re-read token n-1; their sums are not written.
                    let tok = select(t0 + t < n, t0 + t, n - 1);
                    acc[t] += wv * x[tok * xs0 + k];
                }
            }
        }
        c += stride;
    }
}

/// [`accumulate_row`] for Q8_0 (`ty` 8) and Q5_0 (`ty` 6), by quant word instead of by block:
/// lane `first` takes the row's `qs` words `first`, `first + stride`, …, so neighbouring lanes
/// load neighbouring words (coalesced) rather than words a block (36 or 24 bytes) apart, and a
/// 640-wide row is 80 (Q5_0) or 160 (Q8_0) pieces of work instead of 20 blocks, so a plane of 32
/// keeps every lane busy. On an H200 this made the Q8_0 LM head (262144×640) 4× faster.
#[cube]
#[allow(clippy::too_many_arguments)]
fn accumulate_row_words(
    w: &[u32],
    x: &Tensor<f32>,
    acc: &mut Array<f32>,
    row: usize,
    first: usize,
    stride: usize,
    blocks: usize,
    n: usize,
    t0: usize,
    #[comptime] ty: u32,
    #[comptime] tn: usize,
    #[comptime] bw: usize,
) {
    // qs words per block: 8 (Q8_0: d | qs[8]), 4 (Q5_0: d | qh | qs[4]).
    let qw = comptime![if ty == 8 { 8usize } else { 4usize }];
    let units = blocks * qw;
    let mut u = first;
    while u < units {
        let b = u / qw;
        let wi = u % qw;
        let base = (row * blocks + b) * bw;
        let scale = f32::reinterpret(w[base]);
        if comptime![ty == 8] {
            q8_0_word(w, x, acc, base, wi, scale, b * 32, n, t0, tn);
        } else {
            q5_0_word(w, x, acc, base, wi, scale, b * 32, n, t0, tn);
        }
        u += stride;
    }
}

/// out[t, out_offset + r] = Σ_k W[r, k] · x[t, k] for the rows of one shard.
///
/// w: the shard's repacked blocks, row-major; x: [n, cols] (any strides);
/// out: [n, out_stride] contiguous. Grid: (row groups split over x and y, token tiles on z).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn qmatmul_kernel(
    w: &[u32],
    x: &Tensor<f32>,
    out: &mut [f32],
    rows: usize,
    chunks: usize,
    n: usize,
    out_stride: usize,
    out_offset: usize,
    #[comptime] ty: u32,
    #[comptime] tn: usize,
    #[comptime] cpb: usize,
    #[comptime] bw: usize,
    #[comptime] csz: usize,
    #[comptime] wgx: usize,
    #[comptime] wgy: usize,
) {
    let tx = UNIT_POS_X as usize;
    let ry = UNIT_POS_Y as usize;
    let group = CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize;
    let row = group * wgy + ry;
    let t0 = CUBE_POS_Z as usize * tn;

    let mut acc = Array::<f32>::new(tn);
    #[unroll]
    for t in 0..tn {
        acc[t] = 0.0;
    }
    if row < rows {
        // The wgx invocations of a row take its chunks in turn (stride CUBE_DIM_X = wgx).
        accumulate_row(w, x, &mut acc, row, tx, CUBE_DIM_X as usize, chunks, n, t0, ty, tn, cpb, bw, csz);
    }

    if comptime![wgx == 1] {
        // One invocation per row: the sums are complete.
        if row < rows {
            #[unroll]
            for t in 0..tn {
                if t0 + t < n {
                    out[(t0 + t) * out_stride + out_offset + row] = acc[t];
                }
            }
        }
    } else {
        // Tree reduction over the wgx partial sums of each row, per token.
        let mut sh = Shared::<[f32]>::new_slice(comptime![tn * wgx * wgy]);
        let slot = ry * wgx + tx;
        #[unroll]
        for t in 0..tn {
            sh[t * wgx * wgy + slot] = acc[t];
        }
        sync_cube();
        let mut step = CUBE_DIM_X as usize / 2;
        while step > 0 {
            if tx < step {
                #[unroll]
                for t in 0..tn {
                    let i = t * wgx * wgy + slot;
                    let v = sh[i] + sh[i + step];
                    sh[i] = v;
                }
            }
            sync_cube();
            step /= 2;
        }
        if tx == 0 && row < rows {
            #[unroll]
            for t in 0..tn {
                if t0 + t < n {
                    out[(t0 + t) * out_stride + out_offset + row] = sh[t * wgx * wgy + ry * wgx];
                }
            }
        }
    }
}

/// The subgroup variant of [`qmatmul_kernel`]: one plane per output row. Its lanes take the
/// row's chunks in turn (its quant words for Q8_0 and Q5_0) and meet in one `plane_sum` per
/// token: no shared memory, no barrier.
///
/// Correct for any plane size: rows come from `PLANE_POS` and lanes from `UNIT_POS_PLANE` (never
/// from `UNIT_POS`, as Vulkan does not promise how invocations form subgroups), and each plane
/// walks the workgroup's `rows_per_group` rows in steps of the plane count. So the grid, sized by
/// the host from the smallest plane size, covers every row whatever size the device runs at; a
/// plane with no row left idles. `plane_sum` is only reached in control flow that is uniform
/// across the plane (the row loop depends on the plane's index alone), as WGSL and SPIR-V
/// require (ENGINEERING.md B.8). Same buffers and grid as [`qmatmul_kernel`]; the cube is
/// one-dimensional (WGSL's subgroup builtins assume it).
#[cube(launch_unchecked)]
#[allow(clippy::too_many_arguments)]
fn qmatmul_plane_kernel(
    w: &[u32],
    x: &Tensor<f32>,
    out: &mut [f32],
    rows: usize,
    chunks: usize,
    n: usize,
    out_stride: usize,
    out_offset: usize,
    rows_per_group: usize,
    #[comptime] ty: u32,
    #[comptime] tn: usize,
    #[comptime] cpb: usize,
    #[comptime] bw: usize,
    #[comptime] csz: usize,
) {
    let lane = UNIT_POS_PLANE as usize;
    // Runtime sizes only: mutable variables seeded from comptime values fail CubeCL's verifier.
    let pdim = PLANE_DIM as usize;
    let cdim = CUBE_DIM_X as usize;
    // The host never launches with planes wider than the cube; if one were, the cube would be a
    // single partial plane of cdim lanes, and the loops below would still cover every chunk.
    let wide = pdim > cdim;
    let planes = select(wide, 1, cdim / pdim);
    let lanes = select(wide, cdim, pdim);
    let group = CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize;
    let r0 = group * rows_per_group;
    let r1 = select(r0 + rows_per_group < rows, r0 + rows_per_group, rows);
    let t0 = CUBE_POS_Z as usize * tn;

    let mut acc = Array::<f32>::new(tn);
    let mut row = r0 + PLANE_POS as usize;
    while row < r1 {
        #[unroll]
        for t in 0..tn {
            acc[t] = 0.0;
        }
        if comptime![ty == 8 || ty == 6] {
            // One 32-value block per chunk for these types (cpb = 1).
            accumulate_row_words(w, x, &mut acc, row, lane, lanes, chunks, n, t0, ty, tn, bw);
        } else {
            accumulate_row(w, x, &mut acc, row, lane, lanes, chunks, n, t0, ty, tn, cpb, bw, csz);
        }
        #[unroll]
        for t in 0..tn {
            let sum = plane_sum(acc[t]);
            if lane == 0 && t0 + t < n {
                out[(t0 + t) * out_stride + out_offset + row] = sum;
            }
        }
        row += planes;
    }
}

/// Writes the transposed f32 values of a shard: out[k, row0 + r] = W[r, k], out: [cols, out_rows].
/// One invocation per (row, chunk); grid: the work items split over x and y.
#[cube(launch)]
#[allow(clippy::too_many_arguments)]
fn dequant_t_kernel(
    w: &[u32],
    out: &mut [f32],
    rows: usize,
    chunks: usize,
    out_rows: usize,
    row0: usize,
    #[comptime] ty: u32,
    #[comptime] cpb: usize,
    #[comptime] bw: usize,
    #[comptime] csz: usize,
) {
    let idx = (CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize) * comptime![WG_DEQUANT]
        + UNIT_POS_X as usize;
    if idx < rows * chunks {
        let r = idx / chunks;
        let c = idx % chunks;
        let nb = chunks / cpb;
        let base = (r * nb + c / cpb) * bw;
        let s = c % cpb;
        let scale = chunk_scale(w, base, s, ty);
        let minv = chunk_min(w, base, s, ty);
        for l in 0..csz {
            out[(c * csz + l) * out_rows + row0 + r] = scale * chunk_q(w, base, s, l, ty) - minv;
        }
    }
}

/// Rounds activations to 8 bits per block of 32 as the CPU path's products do
/// ([`crate::quant::cpu::Q8x32::quantize`], llama.cpp's `quantize_row_q8_0`): per block of a row
/// `d = max|x|/127`, `x ← round(x/d)·d`. x: [n, cols] (any strides) -> out: [n, cols]
/// contiguous. One invocation per block.
#[cube(launch)]
fn round_q8_0_kernel(x: &Tensor<f32>, out: &mut [f32], blocks_per_row: usize, total: usize) {
    let idx = (CUBE_POS_X as usize + CUBE_POS_Y as usize * CUBE_COUNT_X as usize) * comptime![WG_DEQUANT]
        + UNIT_POS_X as usize;
    if idx < total {
        let r = idx / blocks_per_row;
        let c0 = (idx % blocks_per_row) * 32;
        let (s0, s1) = (x.stride(0), x.stride(1));
        let mut amax = 0.0f32;
        for l in 0..32usize {
            amax = f32::max(amax, f32::abs(x[r * s0 + (c0 + l) * s1]));
        }
        let d = amax / 127.0;
        let id = select(d > 0.0, 1.0 / d, 0.0);
        let o = r * blocks_per_row * 32 + c0;
        for l in 0..32usize {
            out[o + l] = f32::round(x[r * s0 + (c0 + l) * s1] * id) * d;
        }
    }
}

/// `x: [n, cols]` (cols a multiple of 32) on a wgpu device rounded as the CPU path rounds the
/// activations of its quantized products (see [`round_q8_0_kernel`]): multiplying the result by
/// a [`QMatrix`] of Q8_0 blocks gives what llama.cpp's CPU `Q8_0 × Q8_0` dot products give, up
/// to the order of f32 sums.
pub fn round_q8_0(x: BurnTensor<2>) -> Result<BurnTensor<2>> {
    let [n, cols] = x.dims();
    if cols % 32 != 0 || n == 0 {
        return Err(Error::Backend { reason: format!("q8_0 rounding of [{n}, {cols}]: columns not a multiple of 32") });
    }
    let xt = x
        .try_into_primitive::<Wgpu>()
        .map_err(|e| Error::Backend { reason: format!("q8_0 rounding needs a wgpu tensor: {e:?}") })?;
    if xt.dtype != DType::F32 {
        return Err(Error::Backend { reason: format!("q8_0 rounding needs f32, got {:?}", xt.dtype) });
    }
    let total = n * cols / 32;
    let out = xt.client.empty(n * cols * 4);
    // SAFETY: `out` holds n · cols f32 values; the kernel writes block `idx < total` only.
    let out_arg = unsafe { BufferArg::from_raw_parts(out.clone(), n * cols) };
    round_q8_0_kernel::launch(
        &xt.client,
        grid(total.div_ceil(WG_DEQUANT), 1)?,
        CubeDim::new_1d(WG_DEQUANT as u32),
        xt.clone().into_tensor_arg(),
        out_arg,
        cols / 32,
        total,
    );
    let t = CubeTensor::new_contiguous(xt.client.clone(), xt.device.clone(), Shape::new([n, cols]), out, DType::F32);
    Ok(BurnTensor::<2>::from_primitive::<Wgpu>(t))
}

/// A grid of `groups` workgroups split over x and y, as wgpu caps each dimension.
pub(crate) fn grid(groups: usize, z: usize) -> Result<CubeCount> {
    let gx = groups.clamp(1, MAX_GRID);
    let gy = groups.div_ceil(gx).max(1);
    if gy > MAX_GRID || z > MAX_GRID {
        return Err(Error::Backend { reason: format!("kernel grid too large ({groups} x {z} workgroups)") });
    }
    Ok(CubeCount::Static(gx as u32, gy as u32, z as u32))
}

/// How the invocations that share an output row combine their partial sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reduce {
    /// One invocation per row, `WG_ROWS` rows per workgroup: nothing to combine. Never picked:
    /// [`Reduce::Shared`] measured faster on lavapipe for every shape tried, the LM head included
    /// (2.3 s vs 2.7 s; 640x2048 Q4_K 6 ms vs 35 ms). Kept, and tested, for devices where it wins.
    #[cfg_attr(not(test), allow(dead_code))]
    Row,
    /// `WG_X` invocations per row and `WG_Y` rows per workgroup, combined by a shared-memory tree
    /// with a barrier per level. Runs everywhere.
    Shared,
    /// One plane (subgroup) per row, combined by `plane_sum`: no shared memory, no barrier.
    /// `rows` is the number of rows one workgroup of `WG_PLANE` invocations covers.
    Plane {
        /// Rows per workgroup: `WG_PLANE` over the device's smallest plane size.
        rows: usize,
    },
}

/// Picks the reduction for a device: subgroups where the runtime advertises plane operations
/// with planes of at most `WG_PLANE` lanes, unless `env` (the value of [`SUBGROUPS_ENV`]) turns
/// them off. The second value says why, for the log.
fn choose_reduce(advertised: bool, plane_min: u32, plane_max: u32, env: Option<&str>) -> (Reduce, &'static str) {
    let off = env.map(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "0" | "off" | "false" | "no"));
    if off == Some(true) {
        return (Reduce::Shared, "subgroups disabled by EDGEWISE_GPU_SUBGROUPS");
    }
    if !advertised {
        return (Reduce::Shared, "the device advertises no subgroup operations");
    }
    if plane_min == 0 || plane_max as usize > WG_PLANE || plane_min > plane_max {
        return (Reduce::Shared, "the device's subgroup size is outside 1..=128");
    }
    (Reduce::Plane { rows: WG_PLANE / plane_min as usize }, "the device advertises subgroup operations")
}

/// [`choose_reduce`] for `client`'s device, with [`SUBGROUPS_ENV`] read once; logs the choice
/// once per process.
fn device_reduce(client: &Client) -> Reduce {
    static ENV: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();
    static LOGGED: std::sync::Once = std::sync::Once::new();
    let env = ENV.get_or_init(|| std::env::var(SUBGROUPS_ENV).ok());
    let hw = &client.properties().hardware;
    let advertised = client.features().plane.contains(cubecl::ir::features::Plane::Ops);
    let (reduce, why) = choose_reduce(advertised, hw.plane_size_min, hw.plane_size_max, env.as_deref());
    LOGGED.call_once(|| {
        let kind = if matches!(reduce, Reduce::Plane { .. }) { "subgroup (plane_sum)" } else { "shared-memory" };
        log::info!(
            "gpu quantized matmul: {kind} reduction, {why} (plane size {}..={})",
            hw.plane_size_min,
            hw.plane_size_max
        );
    });
    reduce
}

/// Rows of a matrix held in one device buffer.
#[derive(Debug, Clone)]
struct Shard {
    handle: Handle,
    /// First row of the matrix in this shard.
    row0: usize,
    rows: usize,
    /// Words in the buffer.
    words: usize,
}

/// A `[rows, cols]` weight whose GGUF blocks live on the GPU, repacked (see the module docs).
#[derive(Clone)]
pub struct QMatrix {
    ty: GgmlType,
    rows: usize,
    cols: usize,
    shards: Vec<Shard>,
    client: Client,
    device: cubecl::Device,
    /// The reduction of the product kernel, picked at upload from the device (tests pin it).
    reduce: Reduce,
}

impl std::fmt::Debug for QMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QMatrix")
            .field("ty", &self.ty)
            .field("rows", &self.rows)
            .field("cols", &self.cols)
            .field("shards", &self.shards.len())
            .finish_non_exhaustive()
    }
}

/// The CubeCL client and device behind a burn wgpu `device`.
pub(crate) fn cube_of(device: &Device) -> Result<(Client, cubecl::Device)> {
    let probe = BurnTensor::<1>::zeros([1], device)
        .try_into_primitive::<Wgpu>()
        .map_err(|e| Error::Backend { reason: format!("quantized gpu weights need a wgpu device: {e:?}") })?;
    Ok((probe.client, probe.device))
}

impl QMatrix {
    /// Uploads the `[rows, cols]` blocks of `ty` (`bytes`, row-major as in the file) to `device`,
    /// split into shards of at most `max_bytes` (and below the adapter's own buffer limit).
    pub fn upload(
        ty: GgmlType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
        max_bytes: u64,
        device: &Device,
    ) -> Result<Self> {
        Self::upload_with(ty, bytes, rows, cols, max_bytes, device, &|_| {})
    }

    /// [`QMatrix::upload`], calling `read(range)` with each shard's byte range of `bytes` once
    /// it has been read (repacked), so a caller can hand back the source's pages shard by shard
    /// before the next is read.
    pub fn upload_with(
        ty: GgmlType,
        bytes: &[u8],
        rows: usize,
        cols: usize,
        max_bytes: u64,
        device: &Device,
        read: &dyn Fn(std::ops::Range<usize>),
    ) -> Result<Self> {
        let lay = layout(ty).ok_or_else(|| Error::UnsupportedType { ty: format!("{ty} (gpu kernels)") })?;
        let name = || ty.name().to_string();
        if rows == 0 || cols == 0 || !cols.is_multiple_of(lay.block) {
            return Err(Error::Tensor {
                name: name(),
                reason: format!("[{rows}, {cols}] is not whole blocks of {}", lay.block),
            });
        }
        let row_bytes = ty
            .bytes_for(cols as u64)
            .ok_or_else(|| Error::Tensor { name: name(), reason: "row size".into() })? as usize;
        if rows.checked_mul(row_bytes) != Some(bytes.len()) {
            return Err(Error::Tensor { name: name(), reason: format!("{} bytes for [{rows}, {cols}]", bytes.len()) });
        }
        let (client, cdev) = cube_of(device)?;
        let limit = max_bytes.min(client.properties().memory.max_page_size.saturating_sub(HEADROOM));
        let row_words = cols / lay.block * lay.words;
        let rows_per_shard = ((limit / (row_words as u64 * 4)) as usize).min(rows);
        if rows_per_shard == 0 {
            return Err(Error::Backend { reason: format!("one {ty} row of {cols} exceeds the device buffer limit") });
        }
        let mut shards = Vec::new();
        let mut row0 = 0;
        while row0 < rows {
            let r1 = (row0 + rows_per_shard).min(rows);
            let span = row0 * row_bytes..r1 * row_bytes;
            let src = bytes.get(span.clone()).ok_or_else(|| bad_layout(ty))?;
            let words = repack(ty, src)?;
            // The shard's blocks are in `words` now: the source is not read again.
            read(span);
            let handle = client.create_from_slice(&words);
            shards.push(Shard { handle, row0, rows: r1 - row0, words: words.len() / 4 });
            row0 = r1;
            // One shard in flight at a time: its staging copy is gone before the next is made
            // (the LM head is ~190 MB in two shards). Allocation errors are reported at the
            // next sync point, so they also surface here, at load.
            cubecl::future::block_on(client.sync())
                .map_err(|e| Error::Backend { reason: format!("uploading {ty} weights failed: {e:?}") })?;
        }
        Ok(Self { ty, rows, cols, shards, reduce: device_reduce(&client), client, device: cdev })
    }

    /// Output features.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input features.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Device buffers holding the matrix.
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Bytes held on the device.
    pub fn device_bytes(&self) -> usize {
        self.shards.iter().map(|s| s.words * 4).sum()
    }

    /// x: [n, cols] f32 on this matrix's device -> x · Wᵀ: [n, rows]
    pub fn matmul(&self, x: BurnTensor<2>) -> Result<BurnTensor<2>> {
        let [n, cols] = x.dims();
        if cols != self.cols || n == 0 {
            return Err(Error::Backend {
                reason: format!("quantized matmul: input [{n}, {cols}] for a matrix of {} columns", self.cols),
            });
        }
        let lay = layout(self.ty).ok_or_else(|| Error::UnsupportedType { ty: self.ty.to_string() })?;
        if n >= DENSE_PREFILL_MIN && self.shards.len() == 1 {
            return Ok(x.matmul(self.dequantize_t(&lay)?));
        }
        let xt = x
            .try_into_primitive::<Wgpu>()
            .map_err(|e| Error::Backend { reason: format!("quantized matmul needs a wgpu tensor: {e:?}") })?;
        if xt.dtype != DType::F32 {
            return Err(Error::Backend {
                reason: format!("quantized matmul needs f32 activations, got {:?}", xt.dtype),
            });
        }
        let out = self.client.empty(n * self.rows * 4);
        let tn = if n == 1 { 1 } else { PREFILL_TILE };
        let chunks = cols / lay.chunk;
        for sh in &self.shards {
            // SAFETY: the lengths are the buffers' own: `words` u32 words were uploaded for this
            // shard, and `out` holds n · rows f32 values; the kernels index within both.
            let (w_arg, out_arg) = unsafe {
                (
                    BufferArg::from_raw_parts(sh.handle.clone(), sh.words),
                    BufferArg::from_raw_parts(out.clone(), n * self.rows),
                )
            };
            let x_arg = xt.clone().into_tensor_arg();
            let (code, cpb, bw, csz) = (lay.code, lay.block / lay.chunk, lay.words, lay.chunk);
            // SAFETY (unchecked launch): indices stay in bounds by construction: `upload` checked
            // that the shard holds rows · (cols / block) whole blocks of `words` words, x is
            // [n, cols] (checked above) and token indices are clamped to n - 1, and only rows
            // below `sh.rows` of tokens below n are written, inside the [n, self.rows] output.
            match self.reduce {
                Reduce::Plane { rows: per_group } => unsafe {
                    qmatmul_plane_kernel::launch_unchecked(
                        &self.client,
                        grid(sh.rows.div_ceil(per_group), n.div_ceil(tn))?,
                        CubeDim::new_1d(WG_PLANE as u32),
                        w_arg,
                        x_arg,
                        out_arg,
                        sh.rows,
                        chunks,
                        n,
                        self.rows,
                        sh.row0,
                        per_group,
                        code,
                        tn,
                        cpb,
                        bw,
                        csz,
                    );
                },
                Reduce::Row | Reduce::Shared => {
                    let (wgx, wgy) = if self.reduce == Reduce::Row { (1, WG_ROWS) } else { (WG_X, WG_Y) };
                    unsafe {
                        qmatmul_kernel::launch_unchecked(
                            &self.client,
                            grid(sh.rows.div_ceil(wgy), n.div_ceil(tn))?,
                            CubeDim::new_2d(wgx as u32, wgy as u32),
                            w_arg,
                            x_arg,
                            out_arg,
                            sh.rows,
                            chunks,
                            n,
                            self.rows,
                            sh.row0,
                            code,
                            tn,
                            cpb,
                            bw,
                            csz,
                            wgx,
                            wgy,
                        );
                    }
                }
            }
        }
        let t = CubeTensor::new_contiguous(
            self.client.clone(),
            self.device.clone(),
            Shape::new([n, self.rows]),
            out,
            DType::F32,
        );
        Ok(BurnTensor::<2>::from_primitive::<Wgpu>(t))
    }

    /// A transient f32 copy of Wᵀ, `[cols, rows]` (prefill only; freed when the tensor drops).
    fn dequantize_t(&self, lay: &Layout) -> Result<BurnTensor<2>> {
        let out = self.client.empty(self.rows * self.cols * 4);
        let chunks = self.cols / lay.chunk;
        for sh in &self.shards {
            let count = grid((sh.rows * chunks).div_ceil(WG_DEQUANT), 1)?;
            // SAFETY: as in `matmul`; `out` holds rows · cols f32 values.
            let (w_arg, out_arg) = unsafe {
                (
                    BufferArg::from_raw_parts(sh.handle.clone(), sh.words),
                    BufferArg::from_raw_parts(out.clone(), self.rows * self.cols),
                )
            };
            dequant_t_kernel::launch(
                &self.client,
                count,
                CubeDim::new_1d(WG_DEQUANT as u32),
                w_arg,
                out_arg,
                sh.rows,
                chunks,
                self.rows,
                sh.row0,
                lay.code,
                lay.block / lay.chunk,
                lay.words,
                lay.chunk,
            );
        }
        let t = CubeTensor::new_contiguous(
            self.client.clone(),
            self.device.clone(),
            Shape::new([self.cols, self.rows]),
            out,
            DType::F32,
        );
        Ok(BurnTensor::<2>::from_primitive::<Wgpu>(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::layers::{read_f32, tensor2};

    /// splitmix64: a tiny seeded generator, enough for random blocks.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn f32(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    fn reference(ty: GgmlType, bytes: &[u8], rows: usize, cols: usize, x: &[f32], n: usize) -> Vec<f32> {
        let w = crate::quant::dequantize(ty, bytes, rows * cols).unwrap();
        let mut y = vec![0f32; n * rows];
        for t in 0..n {
            for r in 0..rows {
                y[t * rows + r] =
                    (0..cols).map(|k| w[r * cols + k] as f64 * x[t * cols + k] as f64).sum::<f64>() as f32;
            }
        }
        y
    }

    fn device() -> Option<Device> {
        match crate::backend::gpu() {
            Ok((d, info)) => {
                eprintln!("quant::gpu tests on {} ({})", info.name, info.api);
                Some(d)
            }
            Err(e) => {
                eprintln!("SKIPPED: no wgpu adapter for the quantized gpu kernel tests: {e}");
                None
            }
        }
    }

    /// [`check_variants`] on the two shared-memory-free-of-subgroups variants, which run on any
    /// adapter: one invocation per row, and WG_X invocations reducing in shared memory.
    fn check(ty: GgmlType, rows: usize, cols: usize, n: usize, max_bytes: u64, device: &Device) {
        check_variants(ty, rows, cols, n, max_bytes, device, &[Reduce::Row, Reduce::Shared]);
    }

    /// Compares each kernel variant with dequantize + an f64-accumulated product. Tolerance: the
    /// kernel sums in f32 in another order, so allow 1e-4 of the row's absolute-product sum plus 1e-5.
    fn check_variants(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        n: usize,
        max_bytes: u64,
        device: &Device,
        variants: &[Reduce],
    ) {
        let bytes = crate::quant::random_blocks(
            ty,
            rows * cols / ty.block_size() as usize,
            (rows * 31 + cols * 7 + n) as u64 ^ ty.id() as u64,
        );
        let mut rng = Rng(n as u64 + 99);
        let x: Vec<f32> = (0..n * cols).map(|_| rng.f32()).collect();
        let want = reference(ty, &bytes, rows, cols, &x, n);
        let mut w = QMatrix::upload(ty, &bytes, rows, cols, max_bytes, device).unwrap();
        let wd = crate::quant::dequantize(ty, &bytes, rows * cols).unwrap();
        for &variant in variants {
            w.reduce = variant;
            let got = read_f32(w.matmul(tensor2(x.clone(), n, cols, device)).unwrap()).unwrap();
            assert_eq!(got.len(), n * rows);
            for t in 0..n {
                for r in 0..rows {
                    let mag: f64 = (0..cols).map(|k| (wd[r * cols + k] as f64 * x[t * cols + k] as f64).abs()).sum();
                    let (g, e) = (got[t * rows + r], want[t * rows + r]);
                    let tol = 1e-4 * mag as f32 + 1e-5;
                    assert!(
                        (g - e).abs() <= tol,
                        "{ty} [{rows}x{cols}] n={n} {variant:?} token {t} row {r}: got {g}, want {e} (tol {tol})"
                    );
                }
            }
        }
        eprintln!("{ty} [{rows}x{cols}] n={n} shards={} {variants:?}: ok", w.shard_count());
    }

    /// The subgroup variant to test on `dev`, or `None` after a loud SKIPPED line.
    ///
    /// Where cubecl advertises plane operations this is the variant `upload` picks. lavapipe
    /// (llvmpipe) has subgroup arithmetic in its Vulkan driver (size 8), and cubecl still creates
    /// the wgpu device with `Features::SUBGROUP`, but it advertises no planes on CPU adapters
    /// (cubecl-wgpu 0.11.3 `runtime.rs`): the kernel is run there anyway, so CI checks it too.
    fn plane_variant(dev: &Device) -> Option<Reduce> {
        let (client, _) = cube_of(dev).unwrap();
        let hw = &client.properties().hardware;
        let (min, max) = (hw.plane_size_min, hw.plane_size_max);
        let advertised = client.features().plane.contains(cubecl::ir::features::Plane::Ops);
        let (reduce, why) = choose_reduce(advertised, min, max, None);
        if let Reduce::Plane { .. } = reduce {
            eprintln!("subgroup variant: RUNNING ({why}, plane size {min}..={max}): {reduce:?}");
            return Some(reduce);
        }
        let lavapipe = crate::backend::gpu().map(|(_, i)| i.device_type == "Cpu" && i.name.contains("llvmpipe"));
        if lavapipe.unwrap_or(false) && (1..=WG_PLANE as u32).contains(&min) {
            let reduce = Reduce::Plane { rows: WG_PLANE / min as usize };
            eprintln!(
                "subgroup variant: RUNNING, forced on lavapipe ({why}; its driver has subgroups), \
                 plane size {min}..={max}: {reduce:?}"
            );
            return Some(reduce);
        }
        eprintln!(
            "SKIPPED: the subgroup (plane_sum) variant cannot run on this adapter ({why}, plane size \
             {min}..={max}); run quant::gpu::tests::subgroup_* on a GPU with subgroups"
        );
        None
    }

    /// The subgroup variant against the reference on every block type, for decode (n = 1) and the
    /// prefill tiles (n = 5 and 11: one partial tile, a full tile plus a partial one). Besides the
    /// grid `upload` would use, each shape also runs with 3 rows per workgroup (fewer rows than
    /// planes: idle planes) and 37 (each plane loops over several rows, not evenly): the kernel
    /// must cover every row whatever plane size the device runs at.
    #[test]
    fn subgroup_variant_matches_the_reference() {
        let Some(dev) = device() else { return };
        let Some(plane) = plane_variant(&dev) else { return };
        let variants = [plane, Reduce::Plane { rows: 3 }, Reduce::Plane { rows: 37 }];
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_0] {
            for n in [1, 5, 11] {
                check_variants(ty, 1024, 640, n, u64::MAX, &dev, &variants);
                check_variants(ty, 40, 2048, n, u64::MAX, &dev, &variants);
            }
        }
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_K] {
            for n in [1, 5, 11] {
                check_variants(ty, 640, 2048, n, u64::MAX, &dev, &variants);
                check_variants(ty, 13, 512, n, u64::MAX, &dev, &variants);
            }
        }
    }

    /// [`round_q8_0`] rounds as the CPU path quantizes activations (`Q8x32`), on contiguous and
    /// strided inputs, and its result times Q8_0 blocks gives the CPU's int8 product (llama.cpp's
    /// `Q8_0 × Q8_0`), where the f32 activations do not.
    #[test]
    fn q8_0_activation_rounding_matches_the_cpu_kernels() {
        let Some(dev) = device() else { return };
        let (rows, cols) = (96, 384);
        for n in [1, 5, 20] {
            let mut rng = Rng(n as u64 + 7);
            let mut x: Vec<f32> = (0..n * cols).map(|i| rng.f32() * if i % 97 == 0 { 40.0 } else { 1.0 }).collect();
            x[32..64].fill(0.0);
            x[64..96].iter_mut().for_each(|v| *v *= 1e-6);
            let want = crate::quant::cpu::Q8x32::quantize(&x).values();
            let xt = tensor2(x.clone(), n, cols, &dev);
            // The same values as a strided view (the transpose of a transposed copy).
            let mut tr = vec![0f32; n * cols];
            for t in 0..n {
                for k in 0..cols {
                    tr[k * n + t] = x[t * cols + k];
                }
            }
            let strided = tensor2(tr, cols, n, &dev).swap_dims(0, 1);
            for input in [xt.clone(), strided] {
                let got = read_f32(round_q8_0(input).unwrap()).unwrap();
                // Equal, or one step apart where x/d sits on a rounding tie (division on the
                // GPU need not be correctly rounded).
                let mut off = 0;
                for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                    if g != w {
                        let d = x[i / 32 * 32..][..32].iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
                        assert!((g - w).abs() <= d * 1.0001, "value {i}: {g} vs {w}");
                        off += 1;
                    }
                }
                assert!(off * 1000 <= got.len(), "{off} of {} values differ", got.len());
            }
            let bytes = crate::quant::random_blocks(GgmlType::Q8_0, rows * cols / 32, 3);
            let w = QMatrix::upload(GgmlType::Q8_0, &bytes, rows, cols, u64::MAX, &dev).unwrap();
            let gpu = read_f32(w.matmul(round_q8_0(xt.clone()).unwrap()).unwrap()).unwrap();
            let plain = read_f32(w.matmul(xt).unwrap()).unwrap();
            let mut cpu = vec![0f32; n * rows];
            crate::quant::cpu::Quantized::new(&x, n, cols)
                .unwrap()
                .matmul_into(GgmlType::Q8_0, &bytes, rows, &mut cpu)
                .unwrap();
            let worst =
                |a: &[f32]| a.iter().zip(&cpu).map(|(g, c)| (g - c).abs() / (1.0 + c.abs())).fold(0f32, f32::max);
            let (rounded, f32_acts) = (worst(&gpu), worst(&plain));
            eprintln!(
                "n={n}: rounded activations vs the cpu int8 product {rounded:.2e}, f32 activations {f32_acts:.2e}"
            );
            assert!(rounded < 5e-5, "n={n}: {rounded}");
            assert!(f32_acts > 10.0 * rounded.max(1e-6), "n={n}: the f32 activations should depart ({f32_acts})");
        }
    }

    /// Shards and strided activations through the subgroup variant.
    #[test]
    fn subgroup_variant_shards_and_strides() {
        let Some(dev) = device() else { return };
        let Some(plane) = plane_variant(&dev) else { return };
        check_variants(GgmlType::Q8_0, 1000, 640, 1, 300_000, &dev, &[plane]);
        check_variants(GgmlType::Q8_0, 1000, 640, 5, 300_000, &dev, &[plane]);
        check_variants(GgmlType::Q6_K, 301, 256, 3, 21_200, &dev, &[plane]);
        let (ty, rows, cols) = (GgmlType::Q4_K, 64, 512);
        let bytes = crate::quant::random_blocks(ty, rows * cols / ty.block_size() as usize, 5);
        let mut rng = Rng(3);
        let x: Vec<f32> = (0..4 * cols).map(|_| rng.f32()).collect();
        let mut w = QMatrix::upload(ty, &bytes, rows, cols, u64::MAX, &dev).unwrap();
        w.reduce = plane;
        let xt = tensor2(x.clone(), 4, cols, &dev);
        let got = read_f32(w.matmul(xt.slice([2..3, 0..cols])).unwrap()).unwrap();
        let want = reference(ty, &bytes, rows, cols, &x[2 * cols..3 * cols], 1);
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-3 * e.abs().max(1.0), "got {g}, want {e}");
        }
    }

    /// `upload` picks the variant from the device and the env var.
    #[test]
    fn upload_picks_the_device_variant() {
        let Some(dev) = device() else { return };
        let (client, _) = cube_of(&dev).unwrap();
        let w =
            QMatrix::upload(GgmlType::Q8_0, &crate::quant::random_blocks(GgmlType::Q8_0, 1, 1), 1, 32, u64::MAX, &dev)
                .unwrap();
        let hw = &client.properties().hardware;
        let advertised = client.features().plane.contains(cubecl::ir::features::Plane::Ops);
        let env = std::env::var(SUBGROUPS_ENV).ok();
        let (want, why) = choose_reduce(advertised, hw.plane_size_min, hw.plane_size_max, env.as_deref());
        eprintln!("upload picked {:?} ({why})", w.reduce);
        assert_eq!(w.reduce, want);
    }

    #[test]
    fn reduce_choice_rules() {
        assert_eq!(choose_reduce(true, 32, 32, None).0, Reduce::Plane { rows: 4 });
        assert_eq!(choose_reduce(true, 8, 8, Some("1")).0, Reduce::Plane { rows: 16 });
        // Varying plane sizes (Adreno 64/128, Intel 8..32): the grid is sized for the smallest.
        assert_eq!(choose_reduce(true, 64, 128, None).0, Reduce::Plane { rows: 2 });
        assert_eq!(choose_reduce(true, 8, 32, None).0, Reduce::Plane { rows: 16 });
        for off in ["0", "off", "FALSE", " no "] {
            assert_eq!(choose_reduce(true, 32, 32, Some(off)).0, Reduce::Shared, "{off}");
        }
        assert_eq!(choose_reduce(false, 32, 32, None).0, Reduce::Shared);
        assert_eq!(choose_reduce(true, 0, 0, None).0, Reduce::Shared);
        assert_eq!(choose_reduce(true, 32, 256, None).0, Reduce::Shared);
    }

    #[test]
    fn block_types_match_the_reference() {
        let Some(dev) = device() else { return };
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_0] {
            for n in [1, 5] {
                check(ty, 1024, 640, n, u64::MAX, &dev);
                check(ty, 40, 2048, n, u64::MAX, &dev);
            }
        }
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_K] {
            for n in [1, 5] {
                check(ty, 640, 2048, n, u64::MAX, &dev);
                check(ty, 13, 512, n, u64::MAX, &dev);
            }
        }
    }

    #[test]
    fn prefill_tiles_and_odd_rows() {
        let Some(dev) = device() else { return };
        // 11 tokens: a full tile of 8 plus a partial one; 2048x640 as in the FFN.
        check(GgmlType::Q5_0, 2048, 640, 11, u64::MAX, &dev);
        check(GgmlType::Q4_K, 7, 256, 9, u64::MAX, &dev);
        // From DENSE_PREFILL_MIN tokens on: dequantize + burn matmul.
        for ty in [GgmlType::Q8_0, GgmlType::Q5_0, GgmlType::Q4_0] {
            check(ty, 1024, 640, 20, u64::MAX, &dev);
        }
        for ty in [GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_K] {
            check(ty, 640, 2048, 17, u64::MAX, &dev);
        }
    }

    #[test]
    fn shards_split_rows_and_write_their_columns() {
        let Some(dev) = device() else { return };
        // 1000 rows of 640 Q8_0 = 720 bytes a row on the device; 300 KB shards hold 416 rows, so
        // the boundaries fall inside a workgroup's rows (416 is not a multiple of 4 · 128).
        check(GgmlType::Q8_0, 1000, 640, 1, 300_000, &dev);
        check(GgmlType::Q8_0, 1000, 640, 5, 300_000, &dev);
        check(GgmlType::Q6_K, 301, 256, 3, 21_200, &dev);
    }

    #[test]
    fn strided_rows_are_read_in_place() {
        let Some(dev) = device() else { return };
        let (ty, rows, cols) = (GgmlType::Q4_K, 64, 512);
        let bytes = crate::quant::random_blocks(ty, rows * cols / ty.block_size() as usize, 5);
        let mut rng = Rng(3);
        let x: Vec<f32> = (0..4 * cols).map(|_| rng.f32()).collect();
        let w = QMatrix::upload(ty, &bytes, rows, cols, u64::MAX, &dev).unwrap();
        let xt = tensor2(x.clone(), 4, cols, &dev);
        let got = read_f32(w.matmul(xt.slice([2..3, 0..cols])).unwrap()).unwrap();
        let want = reference(ty, &bytes, rows, cols, &x[2 * cols..3 * cols], 1);
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() <= 1e-3 * e.abs().max(1.0), "got {g}, want {e}");
        }
    }

    /// Kernel timings on the current adapter (not a correctness test):
    /// `cargo test --release -p edgewise-core --lib quant::gpu::tests::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn timing() {
        let Some(dev) = device() else { return };
        // The subgroup variant where it can run, else the shared-memory one alone.
        let mut variants = vec![Reduce::Shared];
        variants.extend(plane_variant(&dev));
        for (ty, rows, cols, n) in [
            (GgmlType::Q8_0, 262144, 640, 1),
            (GgmlType::Q5_0, 2048, 640, 1),
            (GgmlType::Q5_0, 1024, 640, 1),
            (GgmlType::Q4_K, 640, 2048, 1),
            (GgmlType::Q6_K, 640, 2048, 1),
            (GgmlType::Q5_0, 2048, 640, 8),
        ] {
            let bytes = crate::quant::random_blocks(ty, rows * cols / ty.block_size() as usize, 1);
            let mut w = QMatrix::upload(ty, &bytes, rows, cols, 127 << 20, &dev).unwrap();
            let x = tensor2(vec![0.5; n * cols], n, cols, &dev);
            let mut line = format!("{ty} [{rows}x{cols}] n={n}:");
            for &variant in &variants {
                w.reduce = variant;
                read_f32(w.matmul(x.clone()).unwrap()).unwrap();
                // Back-to-back launches and one read: per-call time without a sync per call.
                let reps = 20;
                let t = std::time::Instant::now();
                let mut y = w.matmul(x.clone()).unwrap();
                for _ in 1..reps {
                    y = w.matmul(x.clone()).unwrap();
                }
                read_f32(y).unwrap();
                let ms = t.elapsed().as_secs_f64() * 1e3 / reps as f64;
                let name = if variant == Reduce::Shared { "shared" } else { "subgroup" };
                line += &format!(" {ms:.3} ms {name},");
            }
            let reps = 5;
            let wt = tensor2(vec![0.25; rows.min(32768) * cols], cols, rows.min(32768), &dev);
            read_f32(x.clone().matmul(wt.clone())).unwrap();
            let t = std::time::Instant::now();
            for _ in 0..reps {
                read_f32(x.clone().matmul(wt.clone())).unwrap();
            }
            let dense = t.elapsed().as_secs_f64() * 1e3 / reps as f64 * (rows as f64 / rows.min(32768) as f64);
            eprintln!("{line} {dense:.2} ms f32 matmul (scaled)");
        }
    }

    #[test]
    fn repack_sizes_follow_the_table() {
        for (ty, words) in [
            (GgmlType::Q8_0, 9),
            (GgmlType::Q4_0, 5),
            (GgmlType::Q5_0, 6),
            (GgmlType::Q4_K, 37),
            (GgmlType::Q5_K, 45),
            (GgmlType::Q6_K, 53),
        ] {
            let bytes = crate::quant::random_blocks(ty, 1, 1);
            assert_eq!(repack(ty, &bytes).unwrap().len(), words * 4, "{ty}");
        }
        assert!(repack(GgmlType::Q8_0, &[0u8; 33]).is_err());
        assert!(!supported(GgmlType::F32));
    }
}
