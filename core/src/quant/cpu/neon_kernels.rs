// The aarch64 NEON row dots: included (`include!`) by `neon.rs` twice, over the real
// intrinsics (`core::arch::aarch64`, aarch64 only) and over their scalar emulation
// (`neon_emu.rs`, so the x86 unit tests run this very code), and by `tests/neon/main.rs`,
// which compiles it for aarch64 and compares the two under qemu. The includer brings the
// intrinsics, `sdot` (the dot-product instruction, see below) and `f16_at`/`scale_min_k4` into
// scope. Plain Rust 2021 that Debian's rustc 1.63 (the harness's compiler) accepts.
//
// Every kernel comes in two flavours, `DOT = false`: baseline NEON (`vmull_s8` +
// `vpadalq_s16`, as llama.cpp does without `__ARM_FEATURE_DOTPROD`), which every aarch64 CPU
// runs; `DOT = true`: the dot-product extension's `sdot` (one instruction per 16 bytes instead
// of four; ARMv8.2+, most phones since 2018), for CPUs that report it at run time. Its intrinsic
// `vdotq_s32` is not stable Rust, so the includer supplies `sdot` (inline assembly on aarch64).
//
// Each function is the portable path's `row_dot` for one type, with the same integer dots
// and the same float operations in the same order, so its results are bit-identical to it.
// Weights stay unsigned (< 64, the offsets folded in through the activations, as on x86),
// which fits the signed byte multiply.

/// `acc + Σ w·x` over 16 bytes into four 32-bit lanes: `sdot` when `DOT`, else widening
/// multiplies added pairwise (the lanes differ, their sum does not).
#[inline(always)]
unsafe fn mla16<const DOT: bool>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    if DOT {
        return sdot(acc, w, x);
    }
    let lo = vmull_s8(vget_low_s8(w), vget_low_s8(x));
    let hi = vmull_high_s8(w, x);
    vpadalq_s16(vpadalq_s16(acc, lo), hi)
}

/// Loads 16 activation bytes (a bounds-checked slice: no read past `x`).
#[inline(always)]
unsafe fn load_x(x: &[i8]) -> int8x16_t {
    vld1q_s8(x[..16].as_ptr())
}

/// Loads 16 weight bytes.
#[inline(always)]
unsafe fn load_w(w: &[u8]) -> uint8x16_t {
    vld1q_u8(w[..16].as_ptr())
}

/// `Σ w·x` over 16 weights `w` (each < 128) and the first 16 values of `x`.
#[inline(always)]
unsafe fn dot16<const DOT: bool>(w: uint8x16_t, x: &[i8]) -> i32 {
    vaddvq_s32(mla16::<DOT>(vdupq_n_s32(0), vreinterpretq_s8_u8(w), load_x(x)))
}

/// `Σ w·x` over 32 weights (`w0` then `w1`, each < 128) and the first 32 values of `x`.
#[inline(always)]
unsafe fn dot32<const DOT: bool>(w0: uint8x16_t, w1: uint8x16_t, x: &[i8]) -> i32 {
    let acc = mla16::<DOT>(vdupq_n_s32(0), vreinterpretq_s8_u8(w0), load_x(x));
    vaddvq_s32(mla16::<DOT>(acc, vreinterpretq_s8_u8(w1), load_x(&x[16..])))
}

/// Bit `i % 8` of each byte `i`: spreads 16 bits over 16 lanes.
const BIT_OF_LANE: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];

/// `0x10` in lane `i` where bit `i` of `bits` (16 bits) is set, else 0: Q5_0's fifth bits.
#[inline(always)]
unsafe fn fifth_bits(bits: u32) -> uint8x16_t {
    let v = vcombine_u8(vdup_n_u8(bits as u8), vdup_n_u8((bits >> 8) as u8));
    vandq_u8(vtstq_u8(v, vld1q_u8(BIT_OF_LANE.as_ptr())), vdupq_n_u8(0x10))
}

/// A Q8_0 row (34-byte blocks) against one token's quantized values `xq` and block scales `xd`.
///
/// # Safety
/// NEON must be available (every aarch64 target has it). `xq`/`xd` must cover the row's blocks
/// (else a bounds check panics).
pub(crate) unsafe fn q8_0<const DOT: bool>(row: &[u8], xq: &[i8], xd: &[f32]) -> f32 {
    let mut acc = 0f32;
    for (b, blk) in row.chunks_exact(34).enumerate() {
        let x = &xq[b * 32..b * 32 + 32];
        let w0 = vld1q_s8(blk[2..18].as_ptr() as *const i8);
        let w1 = vld1q_s8(blk[18..34].as_ptr() as *const i8);
        let s = vaddvq_s32(mla16::<DOT>(mla16::<DOT>(vdupq_n_s32(0), w0, load_x(x)), w1, load_x(&x[16..])));
        acc += f16_at(blk, 0) * xd[b] * s as f32;
    }
    acc
}

/// A Q4_0 row (18-byte blocks); `corr` is `−8·Σ xq` per block.
///
/// # Safety
/// As [`q8_0`], and `corr` must cover the row's blocks.
pub(crate) unsafe fn q4_0<const DOT: bool>(row: &[u8], xq: &[i8], xd: &[f32], corr: &[i32]) -> f32 {
    let mut acc = 0f32;
    let low = vdupq_n_u8(0x0F);
    for (b, blk) in row.chunks_exact(18).enumerate() {
        let v = load_w(&blk[2..18]);
        let s = dot32::<DOT>(vandq_u8(v, low), vshrq_n_u8::<4>(v), &xq[b * 32..b * 32 + 32]) + corr[b];
        acc += f16_at(blk, 0) * xd[b] * s as f32;
    }
    acc
}

/// A Q4_1 row (20-byte blocks: scale, min, 16 nibble bytes); `xsum` is `xd·Σ xq` per block
/// (the min's term).
///
/// # Safety
/// As [`q8_0`], and `xsum` must cover the row's blocks.
pub(crate) unsafe fn q4_1<const DOT: bool>(row: &[u8], xq: &[i8], xd: &[f32], xsum: &[f32]) -> f32 {
    let mut acc = 0f32;
    let low = vdupq_n_u8(0x0F);
    for (b, blk) in row.chunks_exact(20).enumerate() {
        let v = load_w(&blk[4..20]);
        let s = dot32::<DOT>(vandq_u8(v, low), vshrq_n_u8::<4>(v), &xq[b * 32..b * 32 + 32]);
        acc += f16_at(blk, 0) * xd[b] * s as f32 + f16_at(blk, 2) * xsum[b];
    }
    acc
}

/// A Q5_0 row (22-byte blocks: scale, 32 fifth bits, 16 nibble bytes); `corr` is `−16·Σ xq`.
///
/// # Safety
/// As [`q4_0`].
pub(crate) unsafe fn q5_0<const DOT: bool>(row: &[u8], xq: &[i8], xd: &[f32], corr: &[i32]) -> f32 {
    let mut acc = 0f32;
    let low = vdupq_n_u8(0x0F);
    for (b, blk) in row.chunks_exact(22).enumerate() {
        let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
        let v = load_w(&blk[6..22]);
        let w0 = vorrq_u8(vandq_u8(v, low), fifth_bits(qh));
        let w1 = vorrq_u8(vshrq_n_u8::<4>(v), fifth_bits(qh >> 16));
        let s = dot32::<DOT>(w0, w1, &xq[b * 32..b * 32 + 32]) + corr[b];
        acc += f16_at(blk, 0) * xd[b] * s as f32;
    }
    acc
}

/// A Q4_K (`five == false`, 144-byte super-blocks) or Q5_K (176 bytes) row; `xsum` is
/// `xd·Σ xq` per 32-block.
///
/// # Safety
/// As [`q8_0`], and `xsum` must cover the row's 32-blocks.
unsafe fn k4<const DOT: bool>(row: &[u8], xq: &[i8], xd: &[f32], xsum: &[f32], five: bool) -> f32 {
    let (bs, qs_off) = if five { (176, 48) } else { (144, 16) };
    let low = vdupq_n_u8(0x0F);
    let mut acc = 0f32;
    for (sb, blk) in row.chunks_exact(bs).enumerate() {
        let scales = &blk[4..16];
        let (mut sumf, mut summ) = (0f32, 0f32);
        for sub in 0..8 {
            let qs = &blk[qs_off + (sub / 2) * 32..qs_off + (sub / 2) * 32 + 32];
            let (v0, v1) = (load_w(qs), load_w(&qs[16..]));
            let (mut w0, mut w1) = if sub % 2 == 0 { (vandq_u8(v0, low), vandq_u8(v1, low)) } else { (vshrq_n_u8::<4>(v0), vshrq_n_u8::<4>(v1)) };
            if five {
                let (h0, h1) = (load_w(&blk[16..32]), load_w(&blk[32..48]));
                let bit = vdupq_n_u8(1 << sub);
                let five_bit = vdupq_n_u8(0x10);
                w0 = vorrq_u8(w0, vandq_u8(vtstq_u8(h0, bit), five_bit));
                w1 = vorrq_u8(w1, vandq_u8(vtstq_u8(h1, bit), five_bit));
            }
            let (sc, m) = scale_min_k4(sub, scales);
            let xb = sb * 8 + sub;
            sumf += xd[xb] * (sc as i32 * dot32::<DOT>(w0, w1, &xq[xb * 32..xb * 32 + 32])) as f32;
            summ += m as f32 * xsum[xb];
        }
        acc += f16_at(blk, 0) * sumf - f16_at(blk, 2) * summ;
    }
    acc
}

/// A Q4_K row; see `k4`.
///
/// # Safety
/// As `k4`.
pub(crate) unsafe fn q4_k<const DOT: bool>(row: &[u8], xq: &[i8], xd: &[f32], xsum: &[f32]) -> f32 {
    k4::<DOT>(row, xq, xd, xsum, false)
}

/// A Q5_K row; see `k4`.
///
/// # Safety
/// As `k4`.
pub(crate) unsafe fn q5_k<const DOT: bool>(row: &[u8], xq: &[i8], xd: &[f32], xsum: &[f32]) -> f32 {
    k4::<DOT>(row, xq, xd, xsum, true)
}

/// A Q6_K row (210-byte super-blocks: 128 low-nibble bytes, 64 bytes of 2-bit highs, 16
/// signed scales, the f16 scale); `bsums` holds `Σ xq` per 16 values.
///
/// # Safety
/// As [`q8_0`], and `bsums` must cover the row's 16-groups.
pub(crate) unsafe fn q6_k<const DOT: bool>(row: &[u8], xq: &[i8], xd: &[f32], bsums: &[i16]) -> f32 {
    let low = vdupq_n_u8(0x0F);
    let (three, high) = (vdupq_n_u8(3), vdupq_n_u8(0x30));
    let mut acc = 0f32;
    for (sb, blk) in row.chunks_exact(210).enumerate() {
        let mut sumf = 0f32;
        for half in 0..2 {
            let ql = &blk[half * 64..half * 64 + 64];
            let qh = &blk[128 + half * 32..128 + half * 32 + 32];
            let l = [load_w(ql), load_w(&ql[16..]), load_w(&ql[32..]), load_w(&ql[48..])];
            let h = [load_w(qh), load_w(&qh[16..])];
            // Four 32-value groups per 128: elements l, l+32, l+64, l+96; group g takes its
            // low nibbles from bytes 0..32 (g even) or 32..64 (g odd) of `ql`, low (g < 2)
            // or high halves, and bits 2g, 2g+1 of `qh` as bits 4, 5.
            for g in 0..4 {
                let (a, b) = if g % 2 == 0 { (l[0], l[1]) } else { (l[2], l[3]) };
                let (a, b) = if g < 2 { (vandq_u8(a, low), vandq_u8(b, low)) } else { (vshrq_n_u8::<4>(a), vshrq_n_u8::<4>(b)) };
                let hi = |v: uint8x16_t| match g {
                    0 => vshlq_n_u8::<4>(vandq_u8(v, three)),
                    1 => vandq_u8(vshlq_n_u8::<2>(v), high),
                    2 => vandq_u8(v, high),
                    _ => vandq_u8(vshrq_n_u8::<2>(v), high),
                };
                let w = [vorrq_u8(a, hi(h[0])), vorrq_u8(b, hi(h[1]))];
                let e = sb * 256 + half * 128 + g * 32;
                let mut sumi = 0i32;
                for (k, &wk) in w.iter().enumerate() {
                    let s16 = e / 16 + k;
                    let sc = blk[192 + s16 % 16] as i8 as i32;
                    sumi += sc * (dot16::<DOT>(wk, &xq[e + k * 16..e + k * 16 + 16]) - 32 * bsums[s16] as i32);
                }
                sumf += xd[e / 32] * sumi as f32;
            }
        }
        acc += f16_at(blk, 208) * sumf;
    }
    acc
}
