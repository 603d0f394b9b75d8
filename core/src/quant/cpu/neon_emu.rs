//! A scalar emulation of the NEON intrinsics `neon_kernels.rs` uses (and of `sdot`), with their signatures and
//! lane semantics (wrapping integer arithmetic, logical shifts), so that the NEON kernels run
//! and are tested on any CPU; `tests/neon` checks the emulation against the real instructions
//! under qemu. Test-only: nothing ships on it.
#![allow(non_camel_case_types, clippy::missing_safety_doc)]

/// 16 × u8.
#[derive(Clone, Copy, Debug)]
pub struct uint8x16_t([u8; 16]);
/// 8 × u8.
#[derive(Clone, Copy, Debug)]
pub struct uint8x8_t([u8; 8]);
/// 16 × i8.
#[derive(Clone, Copy, Debug)]
pub struct int8x16_t([i8; 16]);
/// 8 × i8.
#[derive(Clone, Copy, Debug)]
pub struct int8x8_t([i8; 8]);
/// 8 × i16.
#[derive(Clone, Copy, Debug)]
pub struct int16x8_t([i16; 8]);
/// 4 × i32.
#[derive(Clone, Copy, Debug)]
pub struct int32x4_t([i32; 4]);

/// Loads 16 bytes.
pub unsafe fn vld1q_u8(p: *const u8) -> uint8x16_t {
    // SAFETY: the caller passes 16 readable bytes, as the real intrinsic requires.
    uint8x16_t(unsafe { std::ptr::read_unaligned(p as *const [u8; 16]) })
}

/// Loads 16 signed bytes.
pub unsafe fn vld1q_s8(p: *const i8) -> int8x16_t {
    // SAFETY: as `vld1q_u8`.
    int8x16_t(unsafe { std::ptr::read_unaligned(p as *const [i8; 16]) })
}

/// Every lane `v`.
pub unsafe fn vdupq_n_u8(v: u8) -> uint8x16_t {
    uint8x16_t([v; 16])
}

/// Every lane `v` (8 lanes).
pub unsafe fn vdup_n_u8(v: u8) -> uint8x8_t {
    uint8x8_t([v; 8])
}

/// Every lane `v`.
pub unsafe fn vdupq_n_s32(v: i32) -> int32x4_t {
    int32x4_t([v; 4])
}

/// `lo` then `hi`.
pub unsafe fn vcombine_u8(lo: uint8x8_t, hi: uint8x8_t) -> uint8x16_t {
    let mut o = [0u8; 16];
    o[..8].copy_from_slice(&lo.0);
    o[8..].copy_from_slice(&hi.0);
    uint8x16_t(o)
}

fn map2(a: uint8x16_t, b: uint8x16_t, f: impl Fn(u8, u8) -> u8) -> uint8x16_t {
    let mut o = [0u8; 16];
    for (i, v) in o.iter_mut().enumerate() {
        *v = f(a.0[i], b.0[i]);
    }
    uint8x16_t(o)
}

/// Lane-wise and.
pub unsafe fn vandq_u8(a: uint8x16_t, b: uint8x16_t) -> uint8x16_t {
    map2(a, b, |x, y| x & y)
}

/// Lane-wise or.
pub unsafe fn vorrq_u8(a: uint8x16_t, b: uint8x16_t) -> uint8x16_t {
    map2(a, b, |x, y| x | y)
}

/// `0xFF` where `a & b != 0`, else 0.
pub unsafe fn vtstq_u8(a: uint8x16_t, b: uint8x16_t) -> uint8x16_t {
    map2(a, b, |x, y| if x & y != 0 { 0xFF } else { 0 })
}

/// Logical right shift by `N` (1..=8).
pub unsafe fn vshrq_n_u8<const N: i32>(a: uint8x16_t) -> uint8x16_t {
    map2(a, a, |x, _| if N >= 8 { 0 } else { x >> N })
}

/// Left shift by `N` (0..=7), bits shifted out are lost.
pub unsafe fn vshlq_n_u8<const N: i32>(a: uint8x16_t) -> uint8x16_t {
    map2(a, a, |x, _| x << N)
}

/// The same bits as signed lanes.
pub unsafe fn vreinterpretq_s8_u8(a: uint8x16_t) -> int8x16_t {
    int8x16_t(a.0.map(|v| v as i8))
}

/// The low 8 lanes.
pub unsafe fn vget_low_s8(a: int8x16_t) -> int8x8_t {
    let mut o = [0i8; 8];
    o.copy_from_slice(&a.0[..8]);
    int8x8_t(o)
}

/// Widening multiply of 8 lanes.
pub unsafe fn vmull_s8(a: int8x8_t, b: int8x8_t) -> int16x8_t {
    let mut o = [0i16; 8];
    for (i, v) in o.iter_mut().enumerate() {
        *v = a.0[i] as i16 * b.0[i] as i16;
    }
    int16x8_t(o)
}

/// Widening multiply of the high 8 lanes.
pub unsafe fn vmull_high_s8(a: int8x16_t, b: int8x16_t) -> int16x8_t {
    let mut o = [0i16; 8];
    for (i, v) in o.iter_mut().enumerate() {
        *v = a.0[8 + i] as i16 * b.0[8 + i] as i16;
    }
    int16x8_t(o)
}

/// `acc[i] + b[2i] + b[2i+1]`, widened, wrapping.
pub unsafe fn vpadalq_s16(acc: int32x4_t, b: int16x8_t) -> int32x4_t {
    let mut o = acc.0;
    for (i, v) in o.iter_mut().enumerate() {
        *v = v.wrapping_add(b.0[2 * i] as i32 + b.0[2 * i + 1] as i32);
    }
    int32x4_t(o)
}

/// The sum of the lanes, wrapping.
pub unsafe fn vaddvq_s32(a: int32x4_t) -> i32 {
    a.0.iter().fold(0i32, |s, &v| s.wrapping_add(v))
}

/// `acc[i] + Σ_{j<4} a[4i+j]·b[4i+j]` (the dot-product extension's `sdot`), wrapping.
pub unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut o = acc.0;
    for (i, v) in o.iter_mut().enumerate() {
        let s: i32 = (0..4).map(|j| a.0[4 * i + j] as i32 * b.0[4 * i + j] as i32).sum();
        *v = v.wrapping_add(s);
    }
    int32x4_t(o)
}
