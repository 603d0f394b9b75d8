//! x86-64 kernels: AVX2 (`vpmaddubsw` + `vpmaddwd`) and AVX-VNNI (`vpdpbusd`, `vpdpwssd`).
//!
//! One source, two instantiations: every helper is `#[inline(always)]` and generic over
//! `V` (VNNI or not), and the two entry points carry the target features, so the helpers and
//! the intrinsics inside them are compiled into each entry point with its own instructions.
//!
//! A tile is `R` rows × `T` tokens: each weight block is loaded and decoded into a register
//! once per row and dotted with the `T` tokens' activation blocks (prefill); with `T = 1` the
//! `R` rows give independent accumulator chains (decode). 32 weights fill one 256-bit register.
//! On AVX-512, products of 8 tokens or more take `gemm` instead: the rows are repacked, 16 at
//! a time, into a row-interleaved layout (one 32-bit lane per row) and each token's 16 results
//! come out of one register, with no horizontal sums (2.5-4× the tiles' throughput).
//! The K-quants below 8 tokens take `rows_k512` there instead of the tiles: one row at a time,
//! two sub-blocks per 512-bit `vpdpbusd` and one transposition tree per super-block, so the
//! activation scales are applied once per super-block, not once per sub-block.
//! The structure follows llama.cpp's `ggml-cpu` x86 `vec_dot` kernels (unsigned weight bytes ×
//! signed activation bytes, sub-block scales applied to the 16-bit pair sums, K-quant mins
//! through the activation sums per 16).

use std::arch::x86_64::*;
use std::ops::Range;
use std::ptr::read_unaligned;

use super::Acts;
use crate::quant::GgmlType;

/// Whether the AVX2 kernels can run (AVX2, FMA and F16C).
pub(super) fn has_avx2() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && is_x86_feature_detected!("f16c")
}

/// Whether the AVX-VNNI kernels can run.
pub(super) fn has_avx_vnni() -> bool {
    has_avx2() && is_x86_feature_detected!("avxvnni")
}

/// Whether the AVX-512 (VL, BW, VNNI) kernels can run.
pub(super) fn has_avx512_vnni() -> bool {
    has_avx2()
        && is_x86_feature_detected!("avx512f")
        && is_x86_feature_detected!("avx512vl")
        && is_x86_feature_detected!("avx512bw")
        && is_x86_feature_detected!("avx512vnni")
}

// Instruction-set tags for the const generic `V`.
/// `vpmaddubsw` + `vpmaddwd` (AVX2).
const AVX2: u8 = 0;
/// VEX `vpdpbusd` / `vpdpwssd` (AVX-VNNI).
const VNNI: u8 = 1;
/// EVEX `vpdpbusd` / `vpdpwssd` (AVX-512 VL + VNNI): the 256-bit tiles below 8 tokens, the
/// 512-bit row-interleaved `gemm` from 8 tokens on.
const AVX512: u8 = 2;

/// Quantizes `x` in blocks of `bs` values (a multiple of 32): per block `d = max|x|/127` into
/// `d[b]`, `q = round(x/d)` (ties to even, as `vcvtps2dq` does).
///
/// # Safety
/// The CPU must support AVX2; `x` and `q` have the same length, a multiple of `bs`, and `d` has
/// `x.len() / bs` entries.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn quantize(x: &[f32], bs: usize, q: &mut [i8], d: &mut [f32]) {
    // SAFETY: every access is inside block `b < x.len() / bs` of `x`/`q` (lengths checked by
    // the caller), `i + 32 ≤ bs`.
    unsafe {
        let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for (b, db) in d.iter_mut().enumerate().take(x.len() / bs) {
            let xp = x.as_ptr().add(b * bs);
            let qp = q.as_mut_ptr().add(b * bs);
            let mut m = _mm256_setzero_ps();
            for i in (0..bs).step_by(8) {
                m = _mm256_max_ps(m, _mm256_and_ps(_mm256_loadu_ps(xp.add(i)), abs_mask));
            }
            let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
            let amax = _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
            let dd = amax / 127.0;
            *db = dd;
            let id = _mm256_set1_ps(if dd > 0.0 { 1.0 / dd } else { 0.0 });
            for i in (0..bs).step_by(32) {
                let v0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xp.add(i)), id));
                let v1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xp.add(i + 8)), id));
                let v2 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xp.add(i + 16)), id));
                let v3 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(xp.add(i + 24)), id));
                // The packs work per 128-bit lane; the permute restores element order.
                let p = _mm256_packs_epi16(_mm256_packs_epi32(v0, v1), _mm256_packs_epi32(v2, v3));
                _mm256_storeu_si256(qp.add(i) as *mut __m256i, _mm256_permutevar8x32_epi32(p, order));
            }
        }
    }
}

// Type tags for the const generic `TY`.
const Q8_0: u8 = 0;
const Q4_0: u8 = 1;
const Q5_0: u8 = 2;
const Q4_K: u8 = 3;
const Q5_K: u8 = 4;
const Q6_K: u8 = 5;
const Q4_1: u8 = 6;

/// AVX2 entry point; see `super::chunk`.
///
/// # Safety
/// As `super::chunk`, and the CPU must support AVX2, FMA and F16C.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn chunk_avx2(
    ty: GgmlType,
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { chunk_impl::<AVX2>(ty, w, row_bytes, nr, acts, toks, y, ystride) }
}

/// AVX-VNNI entry point; see `super::chunk`.
///
/// # Safety
/// As `super::chunk`, and the CPU must support AVX2, FMA, F16C and AVX-VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avxvnni")]
pub(super) unsafe fn chunk_vnni(
    ty: GgmlType,
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { chunk_impl::<VNNI>(ty, w, row_bytes, nr, acts, toks, y, ystride) }
}

/// AVX-512 entry point (256-bit vectors, 32 registers); see `super::chunk`.
///
/// # Safety
/// As `super::chunk`, and the CPU must support AVX2, FMA, F16C and AVX-512 F/VL/BW/VNNI.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512bw,avx512vnni")]
pub(super) unsafe fn chunk_avx512(
    ty: GgmlType,
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    // SAFETY: forwarded from the caller.
    unsafe { chunk_impl::<AVX512>(ty, w, row_bytes, nr, acts, toks, y, ystride) }
}

/// # Safety
/// As `super::chunk`; inlined only into the entry points above.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn chunk_impl<const V: u8>(
    ty: GgmlType,
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    // SAFETY (all arms): forwarded from the caller; `ty` matches the blocks behind `w`.
    unsafe {
        match ty {
            GgmlType::Q8_0 => drive::<V, Q8_0>(w, row_bytes, nr, acts, toks.clone(), y, ystride),
            GgmlType::Q4_0 => drive::<V, Q4_0>(w, row_bytes, nr, acts, toks.clone(), y, ystride),
            GgmlType::Q4_1 => drive::<V, Q4_1>(w, row_bytes, nr, acts, toks.clone(), y, ystride),
            GgmlType::Q5_0 => drive::<V, Q5_0>(w, row_bytes, nr, acts, toks.clone(), y, ystride),
            GgmlType::Q4_K => drive::<V, Q4_K>(w, row_bytes, nr, acts, toks.clone(), y, ystride),
            GgmlType::Q5_K => drive::<V, Q5_K>(w, row_bytes, nr, acts, toks.clone(), y, ystride),
            GgmlType::Q6_K => drive::<V, Q6_K>(w, row_bytes, nr, acts, toks.clone(), y, ystride),
            _ => {}
        }
    }
}

/// Walks the chunk in token tiles of 4 (then the remainder), each over all rows.
///
/// # Safety
/// As `super::chunk`.
#[inline(always)]
unsafe fn drive<const V: u8, const TY: u8>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    let n = toks.end.min(acts.n);
    let mut t0 = toks.start;
    // SAFETY (all calls): `t0 + T ≤ n`, the rest forwarded from the caller.
    unsafe {
        if V == AVX512 && n.saturating_sub(t0) >= GEMM_MIN_TOKENS {
            gemm::<TY>(w, row_bytes, nr, acts, t0..n, y, ystride);
            return;
        }
        if V == AVX512 && matches!(TY, Q4_K | Q5_K | Q6_K) {
            rows_k512::<TY>(w, row_bytes, nr, acts, t0..n, y, ystride);
            return;
        }
        while t0 + 4 <= n {
            rows::<V, TY, 1, 4>(w, row_bytes, nr, acts, t0, y, ystride);
            t0 += 4;
        }
        match n - t0 {
            3 => rows::<V, TY, 1, 3>(w, row_bytes, nr, acts, t0, y, ystride),
            2 => rows::<V, TY, 2, 2>(w, row_bytes, nr, acts, t0, y, ystride),
            // Decode. The K-quants go one row at a time: a row is one sequential stream the
            // hardware prefetcher follows, where 4 rows side by side are 4 streams that only
            // kept up with software prefetches (see `PF_ROWS_K`).
            1 if matches!(TY, Q4_K | Q5_K | Q6_K) => rows::<V, TY, 1, 1>(w, row_bytes, nr, acts, t0, y, ystride),
            1 => rows::<V, TY, 4, 1>(w, row_bytes, nr, acts, t0, y, ystride),
            _ => {}
        }
    }
}

/// Tokens `t0..t0+T` for all `nr` rows, in tiles of `R` rows (then single rows).
///
/// # Safety
/// As `super::chunk`, with `t0 + T ≤ acts.n`.
#[inline(always)]
unsafe fn rows<const V: u8, const TY: u8, const R: usize, const T: usize>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    t0: usize,
    y: *mut f32,
    ystride: usize,
) {
    let mut r = 0;
    // SAFETY: rows `r..r+R ≤ nr` are inside `w`; the writes `(t0+t)·ystride + r + i` are inside
    // the caller's writable range because `t0 + t < n` and `r + i < nr`.
    unsafe {
        while r + R <= nr {
            let out = tile::<V, TY, R, T>(w.add(r * row_bytes), row_bytes, acts, t0);
            for (i, o) in out.iter().enumerate() {
                for (t, v) in o.iter().enumerate() {
                    *y.add((t0 + t) * ystride + r + i) = *v;
                }
            }
            r += R;
        }
        while r < nr {
            let out = tile::<V, TY, 1, T>(w.add(r * row_bytes), row_bytes, acts, t0);
            for (t, v) in out[0].iter().enumerate() {
                *y.add((t0 + t) * ystride + r) = *v;
            }
            r += 1;
        }
    }
}

/// # Safety
/// `w` holds `R` rows of `row_bytes`; tokens `t0..t0+T` exist in `acts`.
#[inline(always)]
unsafe fn tile<const V: u8, const TY: u8, const R: usize, const T: usize>(
    w: *const u8,
    row_bytes: usize,
    acts: &Acts,
    t0: usize,
) -> [[f32; T]; R] {
    // SAFETY: forwarded.
    unsafe {
        match TY {
            Q8_0 | Q4_0 | Q5_0 | Q4_1 => tile_b32::<V, TY, R, T>(w, row_bytes, acts, t0),
            Q4_K | Q5_K => tile_q45k::<V, TY, R, T>(w, row_bytes, acts, t0),
            _ => tile_q6k::<V, R, T>(w, row_bytes, acts, t0),
        }
    }
}

/// `acc + Σ` of 4 adjacent (unsigned `a`) × (signed `b`) byte products, per 32-bit lane.
#[inline(always)]
unsafe fn dot_u8i8<const V: u8>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: the entry points enable AVX2 (and the VNNI flavour `V` names).
    unsafe {
        if V == AVX512 {
            _mm256_dpbusd_epi32(acc, a, b)
        } else if V == VNNI {
            _mm256_dpbusd_avx_epi32(acc, a, b)
        } else {
            _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(a, b), _mm256_set1_epi16(1)))
        }
    }
}

/// `acc + Σ` of 2 adjacent i16 products, per 32-bit lane.
#[inline(always)]
unsafe fn dot_i16<const V: u8>(acc: __m256i, a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: the entry points enable AVX2 (and the VNNI flavour `V` names).
    unsafe {
        if V == AVX512 {
            _mm256_dpwssd_epi32(acc, a, b)
        } else if V == VNNI {
            _mm256_dpwssd_avx_epi32(acc, a, b)
        } else {
            _mm256_add_epi32(acc, _mm256_madd_epi16(a, b))
        }
    }
}

/// Sum of the 8 lanes.
#[inline(always)]
unsafe fn hsum(v: __m256) -> f32 {
    // SAFETY: AVX is implied by the entry points' AVX2.
    unsafe {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }
}

/// The little-endian f16 at `p`, as f32 (F16C).
#[inline(always)]
unsafe fn f16_scalar(p: *const u8) -> f32 {
    // SAFETY: the caller guarantees 2 readable bytes; F16C is enabled by the entry points.
    unsafe { _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(read_unaligned(p as *const u16) as i32))) }
}

/// The little-endian f16 at `p`, broadcast to 8 f32 lanes (F16C).
#[inline(always)]
unsafe fn f16_splat(p: *const u8) -> __m256 {
    // SAFETY: the caller guarantees 2 readable bytes; F16C is enabled by the entry points.
    unsafe { _mm256_cvtph_ps(_mm_set1_epi16(read_unaligned(p as *const i16))) }
}

/// 32 nibbles (16 bytes at `p`: byte j = elements j (low) and j+16 (high)) as 32 bytes.
#[inline(always)]
unsafe fn nibbles32(p: *const u8) -> __m256i {
    // SAFETY: the caller guarantees 16 readable bytes.
    unsafe {
        let q = _mm_loadu_si128(p as *const __m128i);
        let m4 = _mm_set1_epi8(0x0F);
        _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(q, 4), m4), _mm_and_si128(q, m4))
    }
}

/// Byte i = 0xFF where bit i of `bits` is set, else 0.
#[inline(always)]
unsafe fn bits32(bits: u32) -> __m256i {
    // SAFETY: AVX2 is enabled by the entry points.
    unsafe {
        let v = _mm256_set1_epi32(bits as i32);
        // Byte i takes source byte i/8 ...
        let shuf = _mm256_set_epi64x(0x0303_0303_0303_0303, 0x0202_0202_0202_0202, 0x0101_0101_0101_0101, 0);
        let v = _mm256_shuffle_epi8(v, shuf);
        // ... and all its other bits set, so it is all-ones iff bit i%8 was set.
        let v = _mm256_or_si256(v, _mm256_set1_epi64x(0x7FBF_DFEF_F7FB_FDFEu64 as i64));
        _mm256_cmpeq_epi8(v, _mm256_set1_epi64x(-1))
    }
}

/// How many row tiles ahead the decode tiles (`T = 1`) prefetch. Decode streams every weight
/// once from memory (the Q8_0 LM head alone is ~70% of a token's bytes); on this machine the
/// hardware prefetcher alone reached ~65% of the bandwidth a plain read gets, with this ~95%
/// (LM-head product 26 ms -> 17 ms on one thread).
const PF_TILES: usize = 2;

/// How many rows ahead the K-quant decode tiles (one row each) prefetch, into L2.
///
/// Measured on this project's 2-core EPYC (Zen 4) VM with `kernel_bench`, thread CPU time per
/// product (the machine was shared, so wall times were noise), Llama 3.2 1B shapes, one thread:
/// the Q6_K 128256×2048 head took 16.4 ms with 4-row tiles and `prefetcht0` two tiles ahead,
/// 11.1 ms with 4-row tiles and `prefetcht1`, 10.5 ms one row at a time with no software
/// prefetch, 9.9 ms with this; Q4_K 8192×2048 0.70 -> 0.61 ms, Q6_K 2048×8192 0.72 -> 0.59 ms
/// (4-row tiles with no prefetch: 2.8-4.4× slower). The 32-block types keep their 4-row tiles
/// (there one row at a time made no clear difference: Q8_0 262144×640 8.0 vs 7.7-8.1 ms,
/// Q5_0 2048×640 57.5 vs 63 µs).
const PF_ROWS_K: usize = 4;

/// As [`prefetch_block`], into L2 (`prefetcht1`).
#[inline(always)]
unsafe fn prefetch_block_t1(p: *const u8, len: usize) {
    let mut o = 0;
    while o < len {
        // SAFETY: a hint that does not fault on any address; SSE is baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(o) as *const i8) };
        o += 64;
    }
}

/// Prefetches the cache lines of a `len`-byte block at `p` (never faults, so `p` may lie past
/// the end of the weights).
#[inline(always)]
pub(super) unsafe fn prefetch_block(p: *const u8, len: usize) {
    let mut o = 0;
    while o < len {
        // SAFETY: `prefetcht0` is a hint that does not fault on any address; SSE is baseline.
        unsafe { _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(o) as *const i8) };
        o += 64;
    }
}

/// The bytes of one 32-block of a 32-block type.
const fn b32_bytes(ty: u8) -> usize {
    match ty {
        Q8_0 => 34,
        Q4_0 => 18,
        Q4_1 => 20,
        _ => 22,
    }
}

/// Q8_0 / Q4_0 / Q5_0 (blocks of 32 with one f16 scale) and Q4_1 (scale and min) against
/// 32-blocks of activations.
///
/// # Safety
/// `w` holds `R` rows of `row_bytes`; tokens `t0..t0+T` exist in `acts`.
#[inline(always)]
unsafe fn tile_b32<const V: u8, const TY: u8, const R: usize, const T: usize>(
    w: *const u8,
    row_bytes: usize,
    acts: &Acts,
    t0: usize,
) -> [[f32; T]; R] {
    let bs = b32_bytes(TY);
    let cols = acts.cols;
    let nb = cols / 32;
    // SAFETY: every block read is `r · row_bytes + b · bs + [0, bs)` with `r < R`, `b < nb`,
    // inside the `R` rows; every activation read is token `t0 + t < n`, block `b < nb` (the
    // activations of 32-block types carry `corr`).
    unsafe {
        let xq = acts.q.as_ptr().add(t0 * cols);
        let xd = acts.d.as_ptr().add(t0 * nb);
        // Q4_1 reads `xsum` (its min term) instead of `corr`.
        let xc = acts.corr.as_ptr().add(if TY == Q4_1 { 0 } else { t0 * nb });
        let xs = acts.xsum.as_ptr().add(if TY == Q4_1 { t0 * nb } else { 0 });
        let zero = _mm256_setzero_si256();
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        // Q4_1: `Σ_b m·(dx·Σ qx)` per row and token, added after the horizontal sum.
        let mut mins = [[0f32; T]; R];
        for b in 0..nb {
            for (r, accr) in acc.iter_mut().enumerate() {
                let blk = w.add(r * row_bytes + b * bs);
                if T == 1 {
                    // Decode streams the weights once (the LM head is most of a token's
                    // bytes): ask for the same place in a tile further on. A prefetch never
                    // faults, so running past the end of the weights is harmless.
                    // Into L2 (`prefetcht1`): more misses in flight than L1's fill buffers
                    // allow (LM-head product ~18 -> ~16.7 ms of CPU on one thread).
                    _mm_prefetch::<_MM_HINT_T1>(blk.wrapping_add(PF_TILES * R * row_bytes) as *const i8);
                }
                let dw = f16_splat(blk);
                // Unsigned weights `wu`; for Q8_0 `ws` carries the signs moved onto x.
                let (wu, ws) = match TY {
                    Q8_0 => {
                        let q = _mm256_loadu_si256(blk.add(2) as *const __m256i);
                        (_mm256_sign_epi8(q, q), q)
                    }
                    Q4_0 => (nibbles32(blk.add(2)), zero),
                    Q4_1 => (nibbles32(blk.add(4)), zero),
                    _ => {
                        let hb =
                            _mm256_and_si256(bits32(read_unaligned(blk.add(2) as *const u32)), _mm256_set1_epi8(0x10));
                        (_mm256_or_si256(nibbles32(blk.add(6)), hb), zero)
                    }
                };
                for (t, a) in accr.iter_mut().enumerate() {
                    let xv = _mm256_loadu_si256(xq.add(t * cols + b * 32) as *const __m256i);
                    let dot = if TY == Q8_0 {
                        dot_u8i8::<V>(zero, wu, _mm256_sign_epi8(xv, ws))
                    } else if TY == Q4_1 {
                        mins[r][t] += f16_scalar(blk.add(2)) * *xs.add(t * nb + b);
                        dot_u8i8::<V>(zero, wu, xv)
                    } else {
                        // The offset correction `−off·Σq` rides in lane 0 of the accumulator.
                        dot_u8i8::<V>(_mm256_setr_epi32(*xc.add(t * nb + b), 0, 0, 0, 0, 0, 0, 0), wu, xv)
                    };
                    let s = _mm256_mul_ps(dw, _mm256_set1_ps(*xd.add(t * nb + b)));
                    *a = _mm256_fmadd_ps(s, _mm256_cvtepi32_ps(dot), *a);
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for ((o, a), m) in out.iter_mut().zip(&acc).zip(&mins) {
            for ((o, a), m) in o.iter_mut().zip(a).zip(m) {
                *o = hsum(*a) + *m;
            }
        }
        out
    }
}

/// Rows per interleaved group: one 32-bit lane of a 512-bit register each.
const G: usize = 16;

/// From this many tokens on, the AVX-512 path repacks the weights into row-interleaved
/// groups (the repack is paid once per row, the saving once per row and token).
/// (At 8 tokens it matches the register tiles, above it wins: Q5_0 2048×640 at 12 tokens
/// 407 -> 221 µs on one thread.)
const GEMM_MIN_TOKENS: usize = 8;

/// Decodes one 32-block of weights into 32 unsigned bytes (Q8_0 biased by 128, Q4_0 / Q5_0
/// as stored; `Acts::corr` holds the matching `−off·Σq`).
///
/// # Safety
/// A whole block of `TY` readable at `blk`; AVX2 enabled by the entry point.
#[inline(always)]
unsafe fn b32_unsigned<const TY: u8>(blk: *const u8) -> __m256i {
    // SAFETY: forwarded.
    unsafe {
        match TY {
            Q8_0 => _mm256_xor_si256(_mm256_loadu_si256(blk.add(2) as *const __m256i), _mm256_set1_epi8(-128)),
            Q4_0 => nibbles32(blk.add(2)),
            Q4_1 => nibbles32(blk.add(4)),
            _ => {
                let hb = _mm256_and_si256(bits32(read_unaligned(blk.add(2) as *const u32)), _mm256_set1_epi8(0x10));
                _mm256_or_si256(nibbles32(blk.add(6)), hb)
            }
        }
    }
}

/// Prefill on AVX-512, after llama.cpp's repacked (`q4_0_8x8`-style) GEMMs: each group of
/// `G` rows is decoded once into unsigned bytes laid out `[32-block][4-byte step k][row]`, so
/// one `vpdpbusd` with a token's 4 activation bytes broadcast advances all `G` rows, and each
/// scale is applied once per `G` rows and token (the rows' scales as a vector × the token's
/// `dx`). No horizontal sums; each token's `G` results are one store.
///
/// Per 32-block and row the pack keeps: 32-block types `dw` (offsets through `Acts::corr`;
/// Q4_1 its min `m` too, through `Acts::xsum`);
/// Q4_K / Q5_K `d·sc` and `dmin·m` (mins through `Acts::xsum`); Q6_K `d·sc` of both 16-halves
/// (offset 32 through `Acts::bsums`).
///
/// # Safety
/// As `super::chunk`.
#[inline(always)]
unsafe fn gemm<const TY: u8>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    let nb = acts.cols / 32;
    let n = toks.end.min(acts.n);
    // Scale entries per 32-block and row.
    let ns = if TY == Q6_K { 2 } else { 1 };
    let mut pw = vec![0u32; nb * 8 * G];
    let mut ps = vec![0f32; nb * ns * G];
    let mut pm = vec![0f32; if matches!(TY, Q4_K | Q5_K | Q4_1) { nb * G } else { 0 }];
    // SAFETY: rows `g0 + i < nr` lie inside `w` and every block read stays inside its row;
    // the packed writes are `(b · 8 + k) · G + i`, `(b · ns + h) · G + i` and `b · G + i` with
    // `b < nb`, `i < G`; the tiles get `t0 + T ≤ n` and write rows `g0 .. g0 + gr ≤ nr`.
    unsafe {
        let mut tmp = [0u32; 8];
        let mut put = |pw: &mut [u32], b: usize, i: usize, v: __m256i| {
            _mm256_storeu_si256(tmp.as_mut_ptr() as *mut __m256i, v);
            for (k, v) in tmp.iter().enumerate() {
                *pw.get_unchecked_mut((b * 8 + k) * G + i) = *v;
            }
        };
        for g0 in (0..nr).step_by(G) {
            let gr = (nr - g0).min(G);
            for i in 0..gr {
                let row = w.add((g0 + i) * row_bytes);
                match TY {
                    Q8_0 | Q4_0 | Q5_0 | Q4_1 => {
                        let bs = b32_bytes(TY);
                        for b in 0..nb {
                            let blk = row.add(b * bs);
                            put(&mut pw, b, i, b32_unsigned::<TY>(blk));
                            *ps.get_unchecked_mut(b * G + i) = f16_scalar(blk);
                            if TY == Q4_1 {
                                *pm.get_unchecked_mut(b * G + i) = f16_scalar(blk.add(2));
                            }
                        }
                    }
                    Q4_K | Q5_K => {
                        let (bs, qs_off) = if TY == Q4_K { (144, 16) } else { (176, 48) };
                        let m4 = _mm256_set1_epi8(0x0F);
                        let h4 = _mm256_set1_epi8(0x10);
                        for sb in 0..nb / 8 {
                            let blk = row.add(sb * bs);
                            let (d, dmin) = (f16_scalar(blk), f16_scalar(blk.add(2)));
                            let (sc, mn) = k4_scales(blk.add(4));
                            let mut hm = if TY == Q5_K {
                                _mm256_loadu_si256(blk.add(16) as *const __m256i)
                            } else {
                                _mm256_setzero_si256()
                            };
                            for j in 0..4 {
                                let q = _mm256_loadu_si256(blk.add(qs_off + 32 * j) as *const __m256i);
                                let mut lo = _mm256_and_si256(q, m4);
                                let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                                if TY == Q5_K {
                                    lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hm, 4), h4));
                                    hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hm, 3), h4));
                                    hm = _mm256_srli_epi16(hm, 2);
                                }
                                put(&mut pw, sb * 8 + 2 * j, i, lo);
                                put(&mut pw, sb * 8 + 2 * j + 1, i, hi);
                            }
                            for s in 0..8 {
                                *ps.get_unchecked_mut((sb * 8 + s) * G + i) = d * ((sc >> (8 * s)) & 0xFF) as f32;
                                *pm.get_unchecked_mut((sb * 8 + s) * G + i) = dmin * ((mn >> (8 * s)) & 0xFF) as f32;
                            }
                        }
                    }
                    _ => {
                        let m4 = _mm256_set1_epi8(0x0F);
                        let m3 = _mm256_set1_epi8(0x03);
                        let m30 = _mm256_set1_epi8(0x30);
                        for sb in 0..nb / 8 {
                            let blk = row.add(sb * 210);
                            let d = f16_scalar(blk.add(208));
                            for h in 0..2 {
                                let ql0 = _mm256_loadu_si256(blk.add(64 * h) as *const __m256i);
                                let ql1 = _mm256_loadu_si256(blk.add(64 * h + 32) as *const __m256i);
                                let qh = _mm256_loadu_si256(blk.add(128 + 32 * h) as *const __m256i);
                                let qs = [
                                    _mm256_or_si256(
                                        _mm256_and_si256(ql0, m4),
                                        _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4),
                                    ),
                                    _mm256_or_si256(
                                        _mm256_and_si256(ql1, m4),
                                        _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30),
                                    ),
                                    _mm256_or_si256(
                                        _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                        _mm256_and_si256(qh, m30),
                                    ),
                                    _mm256_or_si256(
                                        _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                        _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                                    ),
                                ];
                                for (g, q) in qs.into_iter().enumerate() {
                                    let b = sb * 8 + 4 * h + g;
                                    put(&mut pw, b, i, q);
                                    for half in 0..2 {
                                        let sc = *blk.add(192 + 2 * (4 * h + g) + half) as i8;
                                        *ps.get_unchecked_mut((b * 2 + half) * G + i) = d * sc as f32;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            // Rows past `gr` hold an earlier group's weights; their lanes are not stored.
            let mask: __mmask16 = if gr == G { 0xFFFF } else { (1u16 << gr) - 1 };
            let yg = y.add(g0);
            let mut t0 = toks.start;
            while t0 + 8 <= n {
                gemm_tile::<TY, 8>(&pw, &ps, &pm, acts, t0, yg, ystride, mask);
                t0 += 8;
            }
            match n - t0 {
                7 => gemm_tile::<TY, 7>(&pw, &ps, &pm, acts, t0, yg, ystride, mask),
                6 => gemm_tile::<TY, 6>(&pw, &ps, &pm, acts, t0, yg, ystride, mask),
                5 => gemm_tile::<TY, 5>(&pw, &ps, &pm, acts, t0, yg, ystride, mask),
                4 => gemm_tile::<TY, 4>(&pw, &ps, &pm, acts, t0, yg, ystride, mask),
                3 => gemm_tile::<TY, 3>(&pw, &ps, &pm, acts, t0, yg, ystride, mask),
                2 => gemm_tile::<TY, 2>(&pw, &ps, &pm, acts, t0, yg, ystride, mask),
                1 => gemm_tile::<TY, 1>(&pw, &ps, &pm, acts, t0, yg, ystride, mask),
                _ => {}
            }
        }
    }
}

/// Tokens `t0..t0+T` against one packed group of `G` rows (see `gemm`).
///
/// # Safety
/// `pw`/`ps`/`pm` hold a packed group of `TY` for `acts.cols / 32` blocks; `t0 + T ≤ acts.n`;
/// `y` is writable at `(t0 + t) · ystride + i` for the lanes `i` set in `mask`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_tile<const TY: u8, const T: usize>(
    pw: &[u32],
    ps: &[f32],
    pm: &[f32],
    acts: &Acts,
    t0: usize,
    y: *mut f32,
    ystride: usize,
    mask: __mmask16,
) {
    let cols = acts.cols;
    let nb = cols / 32;
    // SAFETY: packed reads `b · 8 · G + [0, 8·G)`, `b · ns · G + [0, ns·G)`, `b · G + [0, G)`
    // with `b < nb`; activation reads token `t0 + t < n`, values `b·32 + [0, 32)`, block `b` of
    // `d` and of the type's correction (`corr`, `xsum`, or 16-sums `2b, 2b+1` of `bsums`).
    unsafe {
        let xq = acts.q.as_ptr().add(t0 * cols) as *const u8;
        let xd = acts.d.as_ptr().add(t0 * nb);
        let mut acc = [_mm512_setzero_ps(); T];
        for b in 0..nb {
            let wp = pw.as_ptr().add(b * 8 * G);
            let mut wk = [_mm512_setzero_si512(); 8];
            for (k, v) in wk.iter_mut().enumerate() {
                *v = _mm512_loadu_si512(wp.add(k * G) as *const _);
            }
            let ns = if TY == Q6_K { 2 } else { 1 };
            let sv = _mm512_loadu_ps(ps.as_ptr().add(b * ns * G));
            let sv1 = if TY == Q6_K { _mm512_loadu_ps(ps.as_ptr().add(b * ns * G + G)) } else { sv };
            let mv = if matches!(TY, Q4_K | Q5_K | Q4_1) { _mm512_loadu_ps(pm.as_ptr().add(b * G)) } else { sv };
            for (t, a) in acc.iter_mut().enumerate() {
                let xp = xq.add(t * cols + b * 32);
                // Two chains (the two 16-halves) halve the `vpdpbusd` latency chain; each starts
                // from its integer offset correction where the type has one.
                let (mut d0, mut d1) = match TY {
                    Q8_0 | Q4_0 | Q5_0 => {
                        (_mm512_set1_epi32(*acts.corr.as_ptr().add((t0 + t) * nb + b)), _mm512_setzero_si512())
                    }
                    Q6_K => {
                        let bsum = acts.bsums.as_ptr().add((t0 + t) * (cols / 16) + 2 * b);
                        (_mm512_set1_epi32(-32 * *bsum as i32), _mm512_set1_epi32(-32 * *bsum.add(1) as i32))
                    }
                    _ => (_mm512_setzero_si512(), _mm512_setzero_si512()),
                };
                for k in 0..4 {
                    d0 = _mm512_dpbusd_epi32(d0, wk[k], _mm512_set1_epi32(read_unaligned(xp.add(4 * k) as *const i32)));
                    d1 = _mm512_dpbusd_epi32(
                        d1,
                        wk[k + 4],
                        _mm512_set1_epi32(read_unaligned(xp.add(4 * k + 16) as *const i32)),
                    );
                }
                let dx = _mm512_set1_ps(*xd.add(t * nb + b));
                if TY == Q6_K {
                    let f = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d1), sv1, _mm512_mul_ps(_mm512_cvtepi32_ps(d0), sv));
                    *a = _mm512_fmadd_ps(f, dx, *a);
                } else {
                    *a = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_add_epi32(d0, d1)), _mm512_mul_ps(sv, dx), *a);
                    if matches!(TY, Q4_K | Q5_K) {
                        *a = _mm512_fnmadd_ps(mv, _mm512_set1_ps(*acts.xsum.as_ptr().add((t0 + t) * nb + b)), *a);
                    } else if TY == Q4_1 {
                        *a = _mm512_fmadd_ps(mv, _mm512_set1_ps(*acts.xsum.as_ptr().add((t0 + t) * nb + b)), *a);
                    }
                }
            }
        }
        for (t, a) in acc.iter().enumerate() {
            _mm512_mask_storeu_ps(y.add((t0 + t) * ystride), mask, *a);
        }
    }
}

/// Unpacks the 12 packed scale bytes of Q4_K/Q5_K into (8 scales, 8 mins), one byte each.
#[inline(always)]
unsafe fn k4_scales(p: *const u8) -> (u64, u64) {
    const M1: u32 = 0x3F3F_3F3F;
    const M2: u32 = 0x0F0F_0F0F;
    const M3: u32 = 0x0303_0303;
    // SAFETY: the caller guarantees 12 readable bytes.
    let (a, b, c) = unsafe {
        (
            read_unaligned(p as *const u32),
            read_unaligned(p.add(4) as *const u32),
            read_unaligned(p.add(8) as *const u32),
        )
    };
    // Scales 0..4 and mins 0..4 are the low 6 bits of bytes 0..4 and 4..8; scales and mins
    // 4..8 are the nibbles of bytes 8..12 with the top 2 bits of bytes 0..4 / 4..8 above them.
    let sc_lo = a & M1;
    let mn_lo = b & M1;
    let sc_hi = (c & M2) | (((a >> 6) & M3) << 4);
    let mn_hi = ((c >> 4) & M2) | (((b >> 6) & M3) << 4);
    (sc_lo as u64 | (sc_hi as u64) << 32, mn_lo as u64 | (mn_hi as u64) << 32)
}

/// A byte-shuffle pattern that broadcasts 16-bit lane `s` (of each 128-bit half).
#[inline(always)]
unsafe fn splat16_pattern(s: i32) -> __m256i {
    // SAFETY: AVX is enabled by the entry points.
    unsafe { _mm256_set1_epi16((((2 * s + 1) << 8) | (2 * s)) as i16) }
}

/// Q4_K / Q5_K against 32-blocks of activations.
///
/// # Safety
/// `w` holds `R` rows of `row_bytes`; tokens `t0..t0+T` exist in `acts`.
#[inline(always)]
unsafe fn tile_q45k<const V: u8, const TY: u8, const R: usize, const T: usize>(
    w: *const u8,
    row_bytes: usize,
    acts: &Acts,
    t0: usize,
) -> [[f32; T]; R] {
    let (bs, qs_off) = if TY == Q4_K { (144, 16) } else { (176, 48) };
    let cols = acts.cols;
    let nsb = cols / 256;
    let nb = cols / 32;
    // SAFETY: block reads stay inside superblock `sb < nsb` of row `r < R`; activation reads
    // are token `t0 + t < n`, values `sb·256 + [0, 256)`, scales and sums `sb·8 + [0, 8)` (the
    // activations of these types carry `xsum`).
    unsafe {
        let xq = acts.q.as_ptr().add(t0 * cols);
        let xd = acts.d.as_ptr().add(t0 * nb);
        let xs = acts.xsum.as_ptr().add(t0 * nb);
        let m4 = _mm256_set1_epi8(0x0F);
        let h4 = _mm256_set1_epi8(0x10);
        let zero = _mm256_setzero_si256();
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for sb in 0..nsb {
            for (r, accr) in acc.iter_mut().enumerate() {
                let blk = w.add(r * row_bytes + sb * bs);
                if T == 1 {
                    prefetch_block_t1(blk.wrapping_add(PF_ROWS_K * R * row_bytes), bs);
                }
                let (sc, mn) = k4_scales(blk.add(4));
                let sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(sc as i64)));
                let minsf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mn as i64)));
                let mut hm = if TY == Q5_K { _mm256_loadu_si256(blk.add(16) as *const __m256i) } else { zero };
                // Per token: Σ_s dx_s · sc_s · Σ u·qx over the superblock's 8 sub-blocks.
                let mut fsb = [_mm256_setzero_ps(); T];
                for j in 0..4 {
                    let q = _mm256_loadu_si256(blk.add(qs_off + 32 * j) as *const __m256i);
                    let mut lo = _mm256_and_si256(q, m4);
                    let mut hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
                    if TY == Q5_K {
                        // Bit 2j (low sub-block) and 2j+1 (high) of each qh byte become bit 4.
                        lo = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hm, 4), h4));
                        hi = _mm256_or_si256(hi, _mm256_and_si256(_mm256_slli_epi16(hm, 3), h4));
                        hm = _mm256_srli_epi16(hm, 2);
                    }
                    let sa = _mm256_shuffle_epi8(sc16, splat16_pattern(2 * j as i32));
                    let sbv = _mm256_shuffle_epi8(sc16, splat16_pattern(2 * j as i32 + 1));
                    for (t, f) in fsb.iter_mut().enumerate() {
                        let x = xq.add(t * cols + sb * 256 + 64 * j);
                        let x0 = _mm256_loadu_si256(x as *const __m256i);
                        let x1 = _mm256_loadu_si256(x.add(32) as *const __m256i);
                        let p0 = dot_i16::<V>(zero, _mm256_maddubs_epi16(lo, x0), sa);
                        let p1 = dot_i16::<V>(zero, _mm256_maddubs_epi16(hi, x1), sbv);
                        let xb = xd.add(t * nb + sb * 8 + 2 * j);
                        *f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(*xb), *f);
                        *f = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(*xb.add(1)), *f);
                    }
                }
                let dv = _mm256_set1_ps(f16_scalar(blk));
                let dminv = _mm256_set1_ps(f16_scalar(blk.add(2)));
                for (t, a) in accr.iter_mut().enumerate() {
                    // The mins: dmin · Σ_s m_s · (dx_s·Σ qx), one sub-block per lane.
                    let xsv = _mm256_loadu_ps(xs.add(t * nb + sb * 8));
                    *a = _mm256_fmadd_ps(dv, fsb[t], *a);
                    *a = _mm256_fnmadd_ps(dminv, _mm256_mul_ps(minsf, xsv), *a);
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (o, a) in o.iter_mut().zip(a) {
                *o = hsum(*a);
            }
        }
        out
    }
}

/// Q6_K against 32-blocks of activations.
///
/// # Safety
/// `w` holds `R` rows of `row_bytes`; tokens `t0..t0+T` exist in `acts`.
#[inline(always)]
unsafe fn tile_q6k<const V: u8, const R: usize, const T: usize>(
    w: *const u8,
    row_bytes: usize,
    acts: &Acts,
    t0: usize,
) -> [[f32; T]; R] {
    let cols = acts.cols;
    let nsb = cols / 256;
    // SAFETY: as in `tile_q45k` (sums: `sb·16 + [0, 16)` of `bsums`, which Q6_K activations
    // carry); a Q6_K block is 210 bytes (ql 0..128, qh 128..192, scales 192..208, d 208..210).
    unsafe {
        let xq = acts.q.as_ptr().add(t0 * cols);
        let nb = cols / 32;
        let xd = acts.d.as_ptr().add(t0 * nb);
        let xs = acts.bsums.as_ptr().add(t0 * cols / 16);
        let m4 = _mm256_set1_epi8(0x0F);
        let m3 = _mm256_set1_epi8(0x03);
        let m30 = _mm256_set1_epi8(0x30);
        let mut acc = [[_mm256_setzero_ps(); T]; R];
        for sb in 0..nsb {
            for (r, accr) in acc.iter_mut().enumerate() {
                let blk = w.add(r * row_bytes + sb * 210);
                if T == 1 {
                    prefetch_block_t1(blk.wrapping_add(PF_ROWS_K * R * row_bytes), 210);
                }
                let d = f16_scalar(blk.add(208));
                let sc8 = _mm_loadu_si128(blk.add(192) as *const __m128i);
                let scb = _mm256_broadcastsi128_si256(sc8);
                let sc16 = _mm256_cvtepi8_epi16(sc8);
                // Per token: Σ_g dx_g · Σ_16 sc·Σ u·qx over the superblock's 8 groups of 32.
                let mut fsb = [_mm256_setzero_ps(); T];
                for h in 0..2 {
                    let ql0 = _mm256_loadu_si256(blk.add(64 * h) as *const __m256i);
                    let ql1 = _mm256_loadu_si256(blk.add(64 * h + 32) as *const __m256i);
                    let qh = _mm256_loadu_si256(blk.add(128 + 32 * h) as *const __m256i);
                    for g in 0..4 {
                        // Group g of half h: elements 128h + 32g + [0, 32), 6-bit unsigned.
                        let q = match g {
                            0 => _mm256_or_si256(
                                _mm256_and_si256(ql0, m4),
                                _mm256_slli_epi16(_mm256_and_si256(qh, m3), 4),
                            ),
                            1 => _mm256_or_si256(
                                _mm256_and_si256(ql1, m4),
                                _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30),
                            ),
                            2 => _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_and_si256(qh, m30),
                            ),
                            _ => _mm256_or_si256(
                                _mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30),
                            ),
                        };
                        // Scales 2k (elements 0..16, low half) and 2k+1 (16..32, high half),
                        // k = 4h + g, sign-extended to 16 bits: shuffled into the high byte of
                        // each 16-bit lane, then shifted down arithmetically.
                        let k = (4 * h + g) as i16;
                        let pat = _mm256_set_m128i(
                            _mm_set1_epi16(((2 * k + 1) << 8) | 0x80),
                            _mm_set1_epi16((2 * k) << 8 | 0x80),
                        );
                        let scv = _mm256_srai_epi16(_mm256_shuffle_epi8(scb, pat), 8);
                        for (t, f) in fsb.iter_mut().enumerate() {
                            let x =
                                _mm256_loadu_si256(xq.add(t * cols + sb * 256 + 128 * h + 32 * g) as *const __m256i);
                            let p = dot_i16::<V>(_mm256_setzero_si256(), _mm256_maddubs_epi16(q, x), scv);
                            *f = _mm256_fmadd_ps(
                                _mm256_cvtepi32_ps(p),
                                _mm256_set1_ps(*xd.add(t * nb + sb * 8 + 4 * h + g)),
                                *f,
                            );
                        }
                    }
                }
                let dv = _mm256_set1_ps(d);
                for (t, a) in accr.iter_mut().enumerate() {
                    // The offset, Σ_g dx_g · 32·Σ_16 sc·Σ qx: lane g of the `madd` is group g's
                    // two 16-sums weighted by their scales.
                    let bsum = _mm256_loadu_si256(xs.add(t * cols / 16 + sb * 16) as *const __m256i);
                    let corr = _mm256_cvtepi32_ps(_mm256_slli_epi32(_mm256_madd_epi16(sc16, bsum), 5));
                    let f = _mm256_fnmadd_ps(corr, _mm256_loadu_ps(xd.add(t * nb + sb * 8)), fsb[t]);
                    *a = _mm256_fmadd_ps(dv, f, *a);
                }
            }
        }
        let mut out = [[0f32; T]; R];
        for (o, a) in out.iter_mut().zip(&acc) {
            for (o, a) in o.iter_mut().zip(a) {
                *o = hsum(*a);
            }
        }
        out
    }
}

/// The K-quants (Q4_K, Q5_K, Q6_K) on AVX-512 below `GEMM_MIN_TOKENS` tokens: one row at a
/// time (a single memory stream, prefetched `PF_ROWS_K` rows ahead into L2), every token of
/// the chunk against the row while it is in L1.
///
/// Where the 256-bit tiles apply each 32-block's activation scale to every partial lane
/// (`cvt` + `fma` per sub-block), these kernels keep each sub-block's integer dot in the
/// lanes of one 512-bit `vpdpbusd` per 64 weights (two sub-blocks), sum the lanes of a
/// super-block's four results in one transposition tree (`chunk_sums`) and then scale all its
/// sub-blocks at once: one `cvt` and a few multiplies per super-block. The integer parts are
/// the portable kernel's exactly (sub-block scales in integers or in exact float products),
/// so results differ from the tiles only in the order of the float sums.
///
/// Measured on this project's 2-core EPYC (Zen 4) VM, thread CPU time per product, one
/// thread, in a standalone copy of both kernels (random blocks): Q4_K 8192×2048 0.62-0.67 ms
/// -> 0.41-0.43 ms, Q6_K 2048×8192 0.60-0.61 -> 0.47 ms. An 8-row variant that transposes the
/// weights in registers (lanes = rows, activations broadcast) was about as fast for Q4_K
/// (0.42 ms) with eight memory streams instead of one, and was not taken.
///
/// # Safety
/// As `super::chunk`, with `toks.end ≤ acts.n`; inlined into the AVX-512 entry point only.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_k512<const TY: u8>(
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    // SAFETY: row `r < nr` lies inside `w`; the writes `t·ystride + r` with `t` in `toks` and
    // `r < nr` are the caller's; tokens `t < toks.end ≤ acts.n` exist in `acts`.
    unsafe {
        for r in 0..nr {
            let row = w.add(r * row_bytes);
            for t in toks.clone() {
                // The first token's pass prefetches; the others find the row in L1.
                let pf = t == toks.start;
                let v = if TY == Q6_K {
                    row_q6k_512(row, row_bytes, acts, t, pf)
                } else {
                    row_q45k_512::<TY>(row, row_bytes, acts, t, pf)
                };
                *y.add(t * ystride + r) = v;
            }
        }
    }
}

/// Per 128-bit chunk `c` and lane `k` of the result, the sum of the 4 lanes of chunk `c` of
/// `z[k]` (an unpack-and-add transposition tree: 6 unpacks and 3 adds for 64 lanes).
#[inline(always)]
unsafe fn chunk_sums(z: &[__m512i; 4]) -> __m512i {
    // SAFETY: AVX-512 F is enabled by the entry point.
    unsafe {
        // Per chunk: [z0 lanes 0+2, z1 0+2, z0 1+3, z1 1+3], and the same for z2, z3.
        let p01 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[0], z[1]), _mm512_unpackhi_epi32(z[0], z[1]));
        let p23 = _mm512_add_epi32(_mm512_unpacklo_epi32(z[2], z[3]), _mm512_unpackhi_epi32(z[2], z[3]));
        _mm512_add_epi32(_mm512_unpacklo_epi64(p01, p23), _mm512_unpackhi_epi64(p01, p23))
    }
}

/// One Q4_K / Q5_K row against token `t`: `d·Σ_s dx_s·(sc_s·Σ u·qx) − dmin·Σ_s m_s·xsum_s`
/// over each super-block's 8 sub-blocks `s` (as `portable::row_dot`).
///
/// # Safety
/// `row` holds `row_bytes` of `TY` blocks for `acts.cols` values; token `t` exists in `acts`,
/// whose `xsum` is filled (`Acts::prepare`).
#[inline(always)]
unsafe fn row_q45k_512<const TY: u8>(row: *const u8, row_bytes: usize, acts: &Acts, t: usize, pf: bool) -> f32 {
    let (bs, qs_off) = if TY == Q4_K { (144, 16) } else { (176, 48) };
    let cols = acts.cols;
    let nb = cols / 32;
    // SAFETY: block reads stay inside super-block `sb < cols/256` of the row; activation
    // reads are token `t`'s values `sb·256 + [0, 256)` and its scales and sums `sb·8 + [0, 8)`.
    unsafe {
        let xq = acts.q.as_ptr().add(t * cols);
        let xd = acts.d.as_ptr().add(t * nb);
        let xs = acts.xsum.as_ptr().add(t * nb);
        let zero = _mm512_setzero_si512();
        // A 32-byte group `j` of quants, broadcast to both halves of a 512-bit register: its
        // low nibbles are sub-block 2j (lower half), its high nibbles sub-block 2j+1 (upper).
        // Q4_K masks the high nibbles in place (16× their value; the 1/16 goes into the scale,
        // exactly); Q5_K shifts them down to add its fifth bit.
        let nib = _mm512_inserti64x4::<1>(_mm512_set1_epi8(0x0F), _mm256_set1_epi8(0xF0u8 as i8));
        let m4 = _mm512_set1_epi8(0x0F);
        let nib_shift = _mm512_setr_epi64(0, 0, 0, 0, 4, 4, 4, 4);
        let h4 = _mm512_set1_epi8(0x10);
        let unscale = if TY == Q4_K {
            _mm256_setr_ps(1.0, 0.0625, 1.0, 0.0625, 1.0, 0.0625, 1.0, 0.0625)
        } else {
            _mm256_set1_ps(1.0)
        };
        // `chunk_sums` leaves sub-blocks [0 2 4 6 | 1 3 5 7]; this restores their order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        let mut acc = _mm256_setzero_ps();
        for sb in 0..cols / 256 {
            let blk = row.add(sb * bs);
            if pf {
                prefetch_block_t1(blk.wrapping_add(PF_ROWS_K * row_bytes), bs);
            }
            let qh = if TY == Q5_K {
                _mm512_broadcast_i64x4(_mm256_loadu_si256(blk.add(16) as *const __m256i))
            } else {
                zero
            };
            let mut z = [zero; 4];
            for (j, zj) in z.iter_mut().enumerate() {
                let q = _mm512_broadcast_i64x4(_mm256_loadu_si256(blk.add(qs_off + 32 * j) as *const __m256i));
                let u = if TY == Q4_K {
                    _mm512_and_si512(q, nib)
                } else {
                    let lo = _mm512_and_si512(_mm512_srlv_epi64(q, nib_shift), m4);
                    // Bit s of each qh byte (s = 2j below, 2j+1 above) to bit 4 of the same
                    // byte: each 64-bit lane rotated left by 4 − s (mod 64).
                    let (a, b) = ((68 - 2 * j as i64) % 64, (67 - 2 * j as i64) % 64);
                    let hb = _mm512_rolv_epi64(qh, _mm512_setr_epi64(a, a, a, a, b, b, b, b));
                    // lo | (hb & 0x10)
                    _mm512_ternarylogic_epi32::<0xEA>(h4, hb, lo)
                };
                *zj = _mm512_dpbusd_epi32(zero, u, _mm512_loadu_si512(xq.add(sb * 256 + 64 * j) as *const __m512i));
            }
            // Chunks [c0 c1 | c2 c3] of lane j: sub-block 2j's lanes, then 2j+1's.
            let r = chunk_sums(&z);
            let r = _mm512_shuffle_i64x2::<0b11_01_10_00>(r, r);
            let sums = _mm256_permutevar8x32_epi32(
                _mm256_add_epi32(_mm512_castsi512_si256(r), _mm512_extracti64x4_epi64::<1>(r)),
                order,
            );
            let (sc, mn) = k4_scales(blk.add(4));
            let scf = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(sc as i64))), unscale);
            let minsf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(mn as i64)));
            // sc·Σ u·qx is an integer below 2^24 (63·32·31·127 for Q5_K), exact in f32.
            let f = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(sums), scf), _mm256_loadu_ps(xd.add(sb * 8)));
            acc = _mm256_fmadd_ps(_mm256_set1_ps(f16_scalar(blk)), f, acc);
            acc = _mm256_fnmadd_ps(
                _mm256_set1_ps(f16_scalar(blk.add(2))),
                _mm256_mul_ps(minsf, _mm256_loadu_ps(xs.add(sb * 8))),
                acc,
            );
        }
        hsum(acc)
    }
}

/// One Q6_K row against token `t`: `d·Σ_g dx_g·Σ_16 sc·(Σ u·qx − 32·Σ qx)` over each
/// super-block's 8 groups `g` of 32 (two scales of 16 each), as `portable::row_dot`.
///
/// # Safety
/// `row` holds `row_bytes` of Q6_K blocks for `acts.cols` values; token `t` exists in `acts`,
/// whose `bsums` are filled.
#[inline(always)]
unsafe fn row_q6k_512(row: *const u8, row_bytes: usize, acts: &Acts, t: usize, pf: bool) -> f32 {
    let cols = acts.cols;
    let nb = cols / 32;
    // SAFETY: a Q6_K block is 210 bytes (ql 0..128, qh 128..192, scales 192..208, d
    // 208..210) and every read stays inside super-block `sb < cols/256`; activation reads are
    // token `t`'s values `sb·256 + [0, 256)`, scales `sb·8 + [0, 8)`, sums `sb·16 + [0, 16)`.
    unsafe {
        let xq = acts.q.as_ptr().add(t * cols);
        let xd = acts.d.as_ptr().add(t * nb);
        let xs = acts.bsums.as_ptr().add(t * cols / 16);
        let zero = _mm512_setzero_si512();
        let m4 = _mm512_set1_epi8(0x0F);
        let m6 = _mm512_set1_epi8(0x3F);
        // qh as is below, shifted down 2 bits above: the upper half's group takes the next
        // 2-bit field of each qh byte.
        let qh_shift = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
        // `chunk_sums` leaves the sum for scale 4k + c in lane 4c + k; these gather them in
        // scale order, and repeat each 32-block's activation scale for its two 16-halves.
        let order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        let pairs = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
        let mut acc = _mm512_setzero_ps();
        for sb in 0..cols / 256 {
            let blk = row.add(sb * 210);
            if pf {
                prefetch_block_t1(blk.wrapping_add(PF_ROWS_K * row_bytes), 210);
            }
            let mut z = [zero; 4];
            for h in 0..2 {
                // Half h: ql[64h..64h+64] and qh[32h..32h+32] hold groups 4h..4h+4 (elements
                // 128h + 32g + l: low nibble of ql[l] / ql[32+l] for g = 0 / 1, high nibble for
                // 2 / 3; bits 2g, 2g+1 of qh[l] above them). One register holds two groups.
                let l = _mm512_loadu_si512(blk.add(64 * h) as *const __m512i);
                let qh = _mm512_srlv_epi64(
                    _mm512_broadcast_i64x4(_mm256_loadu_si256(blk.add(128 + 32 * h) as *const __m256i)),
                    qh_shift,
                );
                // (m4 ? a : b) & 0x3F: the low nibble from a, bits 4-5 from b.
                let u01 = _mm512_and_si512(_mm512_ternarylogic_epi32::<0xAC>(m4, _mm512_slli_epi16(qh, 4), l), m6);
                let u23 = _mm512_and_si512(_mm512_ternarylogic_epi32::<0xAC>(m4, qh, _mm512_srli_epi16(l, 4)), m6);
                let x = xq.add(sb * 256 + 128 * h);
                z[2 * h] = _mm512_dpbusd_epi32(zero, u01, _mm512_loadu_si512(x as *const __m512i));
                z[2 * h + 1] = _mm512_dpbusd_epi32(zero, u23, _mm512_loadu_si512(x.add(64) as *const __m512i));
            }
            // Σ u·qx per 16 (z[k] chunk c holds scale 4k + c), in scale order.
            let s = _mm512_permutexvar_epi32(order, chunk_sums(&z));
            let bsum = _mm512_cvtepi16_epi32(_mm256_loadu_si256(xs.add(sb * 16) as *const __m256i));
            let sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(blk.add(192) as *const __m128i));
            // sc·(Σ u·qx − 32·Σ qx) = sc·Σ (u − 32)·qx: |·| ≤ 128·16·32·127 < 2^24, exact in f32.
            let p = _mm512_mullo_epi32(_mm512_sub_epi32(s, _mm512_slli_epi32(bsum, 5)), sc);
            let dx = _mm512_permutexvar_ps(pairs, _mm512_castps256_ps512(_mm256_loadu_ps(xd.add(sb * 8))));
            acc = _mm512_fmadd_ps(
                _mm512_set1_ps(f16_scalar(blk.add(208))),
                _mm512_mul_ps(_mm512_cvtepi32_ps(p), dx),
                acc,
            );
        }
        _mm512_reduce_add_ps(acc)
    }
}

/// `y[i] += a·x[i]` over `min(len)` values.
///
/// `Σ a[i]·b[i]` over the common length, in two 8-lane accumulators.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: every access is `[i, i + 16)`, `[i, i + 8)` or element `i`, below `n`, inside both slices.
    unsafe {
        let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        while i + 16 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            s1 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)), s1);
            i += 16;
        }
        if i + 8 <= n {
            s0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), s0);
            i += 8;
        }
        let s = _mm256_add_ps(s0, s1);
        let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
        let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
        let mut total = _mm_cvtss_f32(h);
        while i < n {
            total += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        total
    }
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
    let n = y.len().min(x.len());
    let (py, px) = (y.as_mut_ptr(), x.as_ptr());
    let mut i = 0;
    // SAFETY: every access is `[i, i + 8)` with `i + 8 ≤ n` (or `i < n`), inside both slices.
    unsafe {
        let va = _mm256_set1_ps(a);
        while i + 8 <= n {
            _mm256_storeu_ps(py.add(i), _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i))));
            i += 8;
        }
        while i < n {
            *py.add(i) += a * *px.add(i);
            i += 1;
        }
    }
}

/// The horizontal sum of `s0 + s1`, in [`dot_f32`]'s order.
#[target_feature(enable = "avx2,fma")]
#[inline]
fn hsum2(s0: __m256, s1: __m256) -> f32 {
    let s = _mm256_add_ps(s0, s1);
    let h = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    _mm_cvtss_f32(h)
}

/// One token of the gated delta rule over the `S_v` rows of `s` (rows of `n = k.len()` values,
/// `n` a multiple of 16, `q` at least `n` long): per row, the decay and `row·k` in one pass, the
/// update and `row·q` in a second. The same operations in the same order as `row *= decay`,
/// [`dot_f32`], [`axpy_f32`], [`dot_f32`] one after the other, so the same values bit for bit,
/// with two passes over each row instead of four and no dispatch per row.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `n` must be a multiple of 16 and `q.len() ≥ n`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn delta_rows16(
    s: &mut [f32],
    q: &[f32],
    k: &[f32],
    v: &[f32],
    decay: f32,
    beta: f32,
    o: &mut [f32],
) {
    let n = k.len();
    let (pk, pq) = (k.as_ptr(), q.as_ptr());
    let vd = _mm256_set1_ps(decay);
    for ((row, &vj), oj) in s.chunks_exact_mut(n.max(1)).zip(v).zip(o.iter_mut()) {
        let p = row.as_mut_ptr();
        // SAFETY: every access is `[i, i + 16)` with `i + 16 ≤ n` (a multiple of 16), inside
        // the row, `k` and `q` (`q.len() ≥ n`, the caller's contract).
        unsafe {
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= n {
                let a0 = _mm256_mul_ps(_mm256_loadu_ps(p.add(i)), vd);
                let a1 = _mm256_mul_ps(_mm256_loadu_ps(p.add(i + 8)), vd);
                _mm256_storeu_ps(p.add(i), a0);
                _mm256_storeu_ps(p.add(i + 8), a1);
                s0 = _mm256_fmadd_ps(a0, _mm256_loadu_ps(pk.add(i)), s0);
                s1 = _mm256_fmadd_ps(a1, _mm256_loadu_ps(pk.add(i + 8)), s1);
                i += 16;
            }
            let va = _mm256_set1_ps((vj - hsum2(s0, s1)) * beta);
            let (mut s0, mut s1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            let mut i = 0;
            while i + 16 <= n {
                let y0 = _mm256_fmadd_ps(va, _mm256_loadu_ps(pk.add(i)), _mm256_loadu_ps(p.add(i)));
                let y1 = _mm256_fmadd_ps(va, _mm256_loadu_ps(pk.add(i + 8)), _mm256_loadu_ps(p.add(i + 8)));
                _mm256_storeu_ps(p.add(i), y0);
                _mm256_storeu_ps(p.add(i + 8), y1);
                s0 = _mm256_fmadd_ps(y0, _mm256_loadu_ps(pq.add(i)), s0);
                s1 = _mm256_fmadd_ps(y1, _mm256_loadu_ps(pq.add(i + 8)), s1);
                i += 16;
            }
            *oj = hsum2(s0, s1);
        }
    }
}

/// `C[m×n] += A[m×k]·B[k×n]` (row-major, leading dimensions `lda`, `ldb`, `ldc`) over the
/// first `n − n % 16` columns: 16-column panels of B (at most `k × 16` values, in L1 for the
/// DeltaNet chunk's `k ≤ 128`) against tiles of 6 rows of A, 12 accumulators in registers,
/// one broadcast of A and two loads of B per 12 FMAs. The caller does the other columns.
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` must hold `m` rows of `k` values `lda` apart, `b`
/// `k` rows of `n` values `ldb` apart, `c` `m` rows of `n` values `ldc` apart.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn gemm_f32_16(
    m: usize,
    n: usize,
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    let mut j = 0;
    while j + 16 <= n {
        let mut i = 0;
        // SAFETY: every tile reads rows `i..i + R < m` of A (`k` values) and C (columns
        // `j..j + 16 ≤ n`) and rows `0..k` of B at those columns: inside the caller's bounds.
        unsafe {
            while i + 6 <= m {
                sgemm_tile::<6>(k, a.add(i * lda), lda, b.add(j), ldb, c.add(i * ldc + j), ldc);
                i += 6;
            }
            let (a, c) = (a.add(i * lda), c.add(i * ldc + j));
            match m - i {
                5 => sgemm_tile::<5>(k, a, lda, b.add(j), ldb, c, ldc),
                4 => sgemm_tile::<4>(k, a, lda, b.add(j), ldb, c, ldc),
                3 => sgemm_tile::<3>(k, a, lda, b.add(j), ldb, c, ldc),
                2 => sgemm_tile::<2>(k, a, lda, b.add(j), ldb, c, ldc),
                1 => sgemm_tile::<1>(k, a, lda, b.add(j), ldb, c, ldc),
                _ => {}
            }
        }
        j += 16;
    }
}

/// One `R × 16` tile of [`gemm_f32_16`]: C's tile loaded, `k` rank-1 updates, stored.
///
/// # Safety
/// As [`gemm_f32_16`], for `R` rows of A and C and 16 columns of B and C.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn sgemm_tile<const R: usize>(
    k: usize,
    a: *const f32,
    lda: usize,
    b: *const f32,
    ldb: usize,
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY: the caller's bounds (R rows of A and C, 16 columns, k rows of B).
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for (r, t) in acc.iter_mut().enumerate() {
            t[0] = _mm256_loadu_ps(c.add(r * ldc));
            t[1] = _mm256_loadu_ps(c.add(r * ldc + 8));
        }
        for p in 0..k {
            let b0 = _mm256_loadu_ps(b.add(p * ldb));
            let b1 = _mm256_loadu_ps(b.add(p * ldb + 8));
            for (r, t) in acc.iter_mut().enumerate() {
                let av = _mm256_set1_ps(*a.add(r * lda + p));
                t[0] = _mm256_fmadd_ps(av, b0, t[0]);
                t[1] = _mm256_fmadd_ps(av, b1, t[1]);
            }
        }
        for (r, t) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * ldc), t[0]);
            _mm256_storeu_ps(c.add(r * ldc + 8), t[1]);
        }
    }
}

/// Attention scores of `G` query heads against one f16 key row: `Σ_i q[j·qstride + i]·k[i]` for
/// each head `j`, over `hd` values. Each 8 key values are widened by `vcvtph2ps` once for all the
/// heads (no f32 copy of the row).
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `q` holds `G` rows of `hd` values `qstride` apart
/// and `k` holds `hd` values.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn dot_heads_f16<const G: usize>(
    q: *const f32,
    qstride: usize,
    k: *const half::f16,
    hd: usize,
) -> [f32; G] {
    let mut i = 0;
    // SAFETY: every load reads `[i, i + 16)`, `[i, i + 8)` or element `i`, below `hd`, of a
    // `q` row or of `k`; an f16 is 2 bytes, so 8 of them are one unaligned 128-bit load.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; G];
        while i + 16 <= hd {
            let k0 = _mm256_cvtph_ps(_mm_loadu_si128(k.add(i) as *const __m128i));
            let k1 = _mm256_cvtph_ps(_mm_loadu_si128(k.add(i + 8) as *const __m128i));
            for (j, a) in acc.iter_mut().enumerate() {
                let qj = q.add(j * qstride + i);
                a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(qj), k0, a[0]);
                a[1] = _mm256_fmadd_ps(_mm256_loadu_ps(qj.add(8)), k1, a[1]);
            }
            i += 16;
        }
        if i + 8 <= hd {
            let k0 = _mm256_cvtph_ps(_mm_loadu_si128(k.add(i) as *const __m128i));
            for (j, a) in acc.iter_mut().enumerate() {
                a[0] = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(j * qstride + i)), k0, a[0]);
            }
            i += 8;
        }
        let mut out = [0f32; G];
        for (j, (o, a)) in out.iter_mut().zip(&acc).enumerate() {
            *o = hsum(_mm256_add_ps(a[0], a[1]));
            for t in i..hd {
                *o += *q.add(j * qstride + t) * f16_scalar(k.add(t) as *const u8);
            }
        }
        out
    }
}

/// Keys per block of [`axpy_heads_f16`]: the outputs are loaded and stored once per block, and
/// a block's value rows (32 × 512 bytes at head dim 256) stay in L1 across the passes over them.
const AXPY_KEYS: usize = 32;

/// Attention's weighted value sums of `G` query heads: `y[j·ystride + i] += w[n·wstride + j] ·
/// v[keys[n]·hd + i]` for every head `j`, key `n` (in order) and `i < hd`. For each output the
/// same fused multiply-adds in the same order as one `y += w·row` per head and key, but each
/// f16 value is widened once for all the heads and the outputs stay in registers over a block of
/// keys.
///
/// # Safety
/// The CPU must support AVX2, FMA and F16C; `y` holds `G` rows of `hd` values `ystride` apart,
/// `w` holds `keys.len()` rows of at least `G` weights `wstride` apart, and `v` holds
/// `(keys[n] + 1)·hd` values for every `n`.
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn axpy_heads_f16<const G: usize>(
    y: *mut f32,
    ystride: usize,
    w: *const f32,
    wstride: usize,
    v: *const half::f16,
    hd: usize,
    keys: &[usize],
) {
    // SAFETY: every access is inside the ranges the caller guarantees: output `[i, i + 16)`,
    // `[i, i + 8)` or element `i` below `hd` of a `y` row, the same of a listed `v` row, and
    // weight `n·wstride + j` with `n < keys.len()`, `j < G`.
    unsafe {
        for (b, block) in keys.chunks(AXPY_KEYS).enumerate() {
            let wb = w.add(b * AXPY_KEYS * wstride);
            // The next block's rows, while this one is summed (they come from L3).
            for &p in keys.iter().skip((b + 1) * AXPY_KEYS).take(AXPY_KEYS) {
                prefetch_block(v.add(p * hd) as *const u8, hd * 2);
            }
            let mut i = 0;
            while i + 16 <= hd {
                let mut acc = [[_mm256_setzero_ps(); 2]; G];
                for (j, a) in acc.iter_mut().enumerate() {
                    a[0] = _mm256_loadu_ps(y.add(j * ystride + i));
                    a[1] = _mm256_loadu_ps(y.add(j * ystride + i + 8));
                }
                for (n, &p) in block.iter().enumerate() {
                    let r = v.add(p * hd + i);
                    let v0 = _mm256_cvtph_ps(_mm_loadu_si128(r as *const __m128i));
                    let v1 = _mm256_cvtph_ps(_mm_loadu_si128(r.add(8) as *const __m128i));
                    for (j, a) in acc.iter_mut().enumerate() {
                        let s = _mm256_set1_ps(*wb.add(n * wstride + j));
                        a[0] = _mm256_fmadd_ps(s, v0, a[0]);
                        a[1] = _mm256_fmadd_ps(s, v1, a[1]);
                    }
                }
                for (j, a) in acc.iter().enumerate() {
                    _mm256_storeu_ps(y.add(j * ystride + i), a[0]);
                    _mm256_storeu_ps(y.add(j * ystride + i + 8), a[1]);
                }
                i += 16;
            }
            // The rest (head dims that are not a multiple of 16), one value at a time.
            for t in i..hd {
                for (n, &p) in block.iter().enumerate() {
                    let x = f16_scalar(v.add(p * hd + t) as *const u8);
                    for j in 0..G {
                        let o = y.add(j * ystride + t);
                        *o = (*wb.add(n * wstride + j)).mul_add(x, *o);
                    }
                }
            }
        }
    }
}
