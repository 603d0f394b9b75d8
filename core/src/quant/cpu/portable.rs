//! The portable kernels: plain Rust, one weight row × one token at a time.
//!
//! They compute exactly the integer dots of the SIMD kernels (unsigned weights, the offsets
//! folded in through the activation sums) and are the reference the SIMD paths are tested
//! against. The NEON kernels (`neon.rs`) keep this block structure and the float order.

use super::Acts;
use crate::quant::dequant::{f16_at, scale_min_k4};
use crate::quant::GgmlType;

/// `Σ a·b` over 32 (unsigned weight) × (signed activation) bytes.
#[inline(always)]
fn dot32(a: &[u8; 32], b: &[i8]) -> i32 {
    a.iter().zip(b).map(|(&a, &b)| a as i32 * b as i32).sum()
}

/// One token's slices of the activations.
pub(super) struct Tok<'a> {
    pub(super) q: &'a [i8],
    pub(super) d: &'a [f32],
    pub(super) corr: &'a [i32],
    pub(super) bsums: &'a [i16],
    pub(super) xsum: &'a [f32],
}

impl<'a> Tok<'a> {
    pub(super) fn new(acts: &'a Acts, t: usize) -> Self {
        let cols = acts.cols;
        let q = &acts.q[t * cols..(t + 1) * cols];
        let nd = acts.d.len() / acts.n;
        let d = &acts.d[t * nd..(t + 1) * nd];
        let corr = if acts.corr.is_empty() { &[][..] } else { &acts.corr[t * cols / 32..(t + 1) * cols / 32] };
        let bsums = if acts.bsums.is_empty() { &[][..] } else { &acts.bsums[t * cols / 16..(t + 1) * cols / 16] };
        let xsum = if acts.xsum.is_empty() { &[][..] } else { &acts.xsum[t * cols / 32..(t + 1) * cols / 32] };
        Self { q, d, corr, bsums, xsum }
    }
}

/// Dot product of one weight row (its blocks) with one token.
pub(super) fn row_dot(ty: GgmlType, row: &[u8], x: &Tok) -> f32 {
    let mut acc = 0f32;
    let mut w = [0u8; 32];
    match ty {
        GgmlType::Q8_0 => {
            for (b, blk) in row.chunks_exact(34).enumerate() {
                let xq = &x.q[b * 32..b * 32 + 32];
                let s: i32 = blk[2..34].iter().zip(xq).map(|(&a, &b)| a as i8 as i32 * b as i32).sum();
                acc += f16_at(blk, 0) * x.d[b] * s as f32;
            }
        }
        GgmlType::Q4_0 => {
            for (b, blk) in row.chunks_exact(18).enumerate() {
                for j in 0..16 {
                    w[j] = blk[2 + j] & 0x0F;
                    w[j + 16] = blk[2 + j] >> 4;
                }
                let s = dot32(&w, &x.q[b * 32..b * 32 + 32]) + x.corr[b];
                acc += f16_at(blk, 0) * x.d[b] * s as f32;
            }
        }
        GgmlType::Q4_1 => {
            // `d·q + m`: `d·dx·Σ q·qx + m·(dx·Σ qx)`, the min through the block's real sum.
            for (b, blk) in row.chunks_exact(20).enumerate() {
                for j in 0..16 {
                    w[j] = blk[4 + j] & 0x0F;
                    w[j + 16] = blk[4 + j] >> 4;
                }
                let s = dot32(&w, &x.q[b * 32..b * 32 + 32]);
                acc += f16_at(blk, 0) * x.d[b] * s as f32 + f16_at(blk, 2) * x.xsum[b];
            }
        }
        GgmlType::Q5_0 => {
            for (b, blk) in row.chunks_exact(22).enumerate() {
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                for j in 0..16 {
                    let h0 = ((qh >> j) & 1) as u8;
                    let h1 = ((qh >> (j + 16)) & 1) as u8;
                    w[j] = (blk[6 + j] & 0x0F) | (h0 << 4);
                    w[j + 16] = (blk[6 + j] >> 4) | (h1 << 4);
                }
                let s = dot32(&w, &x.q[b * 32..b * 32 + 32]) + x.corr[b];
                acc += f16_at(blk, 0) * x.d[b] * s as f32;
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (bs, qs_off, has_h) = if ty == GgmlType::Q4_K { (144, 16, false) } else { (176, 48, true) };
            for (sb, blk) in row.chunks_exact(bs).enumerate() {
                let scales = &blk[4..16];
                let (mut sumf, mut summ) = (0f32, 0f32);
                for sub in 0..8 {
                    let qs = &blk[qs_off + (sub / 2) * 32..qs_off + (sub / 2) * 32 + 32];
                    for l in 0..32 {
                        let mut v = if sub % 2 == 0 { qs[l] & 0x0F } else { qs[l] >> 4 };
                        if has_h {
                            v |= ((blk[16 + l] >> sub) & 1) << 4;
                        }
                        w[l] = v;
                    }
                    let (sc, m) = scale_min_k4(sub, scales);
                    let xb = sb * 8 + sub;
                    sumf += x.d[xb] * (sc as i32 * dot32(&w, &x.q[xb * 32..xb * 32 + 32])) as f32;
                    summ += m as f32 * x.xsum[xb];
                }
                acc += f16_at(blk, 0) * sumf - f16_at(blk, 2) * summ;
            }
        }
        GgmlType::Q6_K => {
            for (sb, blk) in row.chunks_exact(210).enumerate() {
                let mut sumf = 0f32;
                for half in 0..2 {
                    let ql = &blk[half * 64..half * 64 + 64];
                    let qh = &blk[128 + half * 32..128 + half * 32 + 32];
                    // Four 32-value groups per 128: elements l, l+32, l+64, l+96.
                    for g in 0..4 {
                        for l in 0..32 {
                            let lo = match g {
                                0 => ql[l] & 0x0F,
                                1 => ql[l + 32] & 0x0F,
                                2 => ql[l] >> 4,
                                _ => ql[l + 32] >> 4,
                            };
                            w[l] = lo | (((qh[l] >> (2 * g)) & 3) << 4);
                        }
                        let e = sb * 256 + half * 128 + g * 32;
                        let mut sumi = 0i32;
                        for h in 0..2 {
                            let s16 = e / 16 + h;
                            let sc = blk[192 + s16 % 16] as i8 as i32;
                            let d: i32 = w[h * 16..h * 16 + 16]
                                .iter()
                                .zip(&x.q[e + h * 16..e + h * 16 + 16])
                                .map(|(&a, &b)| a as i32 * b as i32)
                                .sum();
                            sumi += sc * (d - 32 * x.bsums[s16] as i32);
                        }
                        sumf += x.d[e / 32] * sumi as f32;
                    }
                }
                acc += f16_at(blk, 208) * sumf;
            }
        }
        _ => {}
    }
    acc
}

/// Computes `nr` rows for every token; see `super::chunk`.
///
/// # Safety
/// `w` must hold `nr · row_bytes` readable bytes, and `y` must be valid for writes at
/// `t · ystride + r` for `t < acts.n`, `r < nr`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn chunk(
    ty: GgmlType,
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: std::ops::Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { chunk_with(row_dot, ty, w, row_bytes, nr, acts, toks, y, ystride) }
}

/// [`chunk`] with another row kernel (the NEON one).
///
/// # Safety
/// As [`chunk`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn chunk_with(
    row_dot: fn(GgmlType, &[u8], &Tok) -> f32,
    ty: GgmlType,
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: std::ops::Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    // SAFETY: the caller guarantees `nr · row_bytes` readable bytes at `w`.
    let wb = unsafe { std::slice::from_raw_parts(w, nr * row_bytes) };
    for t in toks.start..toks.end.min(acts.n) {
        let tok = Tok::new(acts, t);
        for (r, row) in wb.chunks_exact(row_bytes).enumerate() {
            // SAFETY: `t < acts.n` and `r < nr`, which the caller guarantees writable.
            unsafe { *y.add(t * ystride + r) = row_dot(ty, row, &tok) };
        }
    }
}
