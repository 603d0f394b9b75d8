//! aarch64 NEON kernels (phones): the portable path's block structure and integer dots with
//! the per-block work in 16-byte vectors (`neon_kernels.rs`).
//!
//! Two flavours: baseline NEON (`vmull_s8` + `vpadalq_s16`, [`super::Isa::Neon`]), which every
//! aarch64 CPU has, and the dot-product extension's `sdot` ([`super::Isa::NeonDot`], one
//! instruction per 16 bytes instead of four), picked when the CPU reports `dotprod` at run time.
//! Results are bit-identical to the portable path's: the same integer dots and the same float
//! operations in the same order.
//!
//! How it is tested without an aarch64 machine: the kernel source is included twice, over
//! `core::arch::aarch64` on aarch64 and over `neon_emu` (a scalar emulation of the same
//! intrinsics) in this crate's unit tests on other CPUs, where [`super::Isa::Neon`] then runs
//! in every matmul test next to the x86 paths. `tests/neon/run.sh` compiles the kernels for
//! aarch64 (Debian's rustc and cross linker) and runs them under qemu against the emulation.

use super::portable::{self, Tok};
use super::Acts;
use crate::quant::dequant::{f16_at, scale_min_k4};
use crate::quant::GgmlType;

/// The kernels over the real intrinsics.
#[cfg(target_arch = "aarch64")]
#[allow(unused_unsafe)]
mod hw {
    use super::{f16_at, scale_min_k4};
    use core::arch::aarch64::*;
    include!("neon_sdot.rs");
    include!("neon_kernels.rs");
}

/// The kernels over the scalar emulation (unit tests on other CPUs).
#[cfg(all(test, not(target_arch = "aarch64")))]
mod hw {
    use super::super::neon_emu::*;
    use super::{f16_at, scale_min_k4};
    include!("neon_kernels.rs");
}

/// Whether this CPU has the dot-product extension (always, for the emulation).
pub(super) fn has_dotprod() -> bool {
    #[cfg(target_arch = "aarch64")]
    return std::arch::is_aarch64_feature_detected!("dotprod");
    #[cfg(not(target_arch = "aarch64"))]
    true
}

/// One weight row against one token's activations.
///
/// # Safety
/// With `DOT`, the CPU must have the dot-product extension ([`has_dotprod`]).
unsafe fn row_dot<const DOT: bool>(ty: GgmlType, row: &[u8], x: &Tok) -> f32 {
    // SAFETY: NEON is part of every aarch64 target (elsewhere this is the emulation), `sdot` is
    // the caller's; `Tok` covers the row's blocks (`Acts` was quantized for this product's
    // columns and prepared for `ty`), and the kernels only read through bounds-checked slices.
    unsafe {
        match ty {
            GgmlType::Q8_0 => hw::q8_0::<DOT>(row, x.q, x.d),
            GgmlType::Q4_0 => hw::q4_0::<DOT>(row, x.q, x.d, x.corr),
            GgmlType::Q4_1 => hw::q4_1::<DOT>(row, x.q, x.d, x.xsum),
            GgmlType::Q5_0 => hw::q5_0::<DOT>(row, x.q, x.d, x.corr),
            GgmlType::Q4_K => hw::q4_k::<DOT>(row, x.q, x.d, x.xsum),
            GgmlType::Q5_K => hw::q5_k::<DOT>(row, x.q, x.d, x.xsum),
            GgmlType::Q6_K => hw::q6_k::<DOT>(row, x.q, x.d, x.bsums),
            _ => 0.0,
        }
    }
}

/// Baseline NEON rows (safe: every aarch64 CPU has NEON).
fn row_dot_neon(ty: GgmlType, row: &[u8], x: &Tok) -> f32 {
    // SAFETY: no `sdot`.
    unsafe { row_dot::<false>(ty, row, x) }
}

/// Computes `nr` rows for the tokens `toks`; see `super::chunk`. `dot`: use `sdot`.
///
/// # Safety
/// As `portable::chunk`, and with `dot` the CPU must have the dot-product extension.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn chunk(
    dot: bool,
    ty: GgmlType,
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: std::ops::Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    /// `sdot` rows; only ever passed below, under the caller's guarantee.
    fn row_dot_sdot(ty: GgmlType, row: &[u8], x: &Tok) -> f32 {
        // SAFETY: reached only through `chunk(true, …)`, whose caller guarantees `dotprod`.
        unsafe { row_dot::<true>(ty, row, x) }
    }
    let f: fn(GgmlType, &[u8], &Tok) -> f32 = if dot { row_dot_sdot } else { row_dot_neon };
    // SAFETY: forwarded from the caller.
    unsafe { portable::chunk_with(f, ty, w, row_bytes, nr, acts, toks, y, ystride) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::random_blocks;

    /// The matmul tests of `super::super` loop over `Isa::available()`: both NEON flavours must
    /// be in it (emulated on other CPUs), so they run these kernels through the whole product.
    #[test]
    fn neon_is_among_the_tested_paths() {
        let a = super::super::Isa::available();
        assert!(a.contains(&super::super::Isa::Neon) && a.contains(&super::super::Isa::NeonDot));
    }

    /// Every type, row by row, against the portable path: the same bits, not just close.
    #[test]
    fn neon_rows_equal_the_portable_ones_bit_for_bit() {
        let (rows_n, cols, n) = (9, 1024, 3);
        let x: Vec<f32> =
            (0..n * cols).map(|i| ((i * 7919 % 1013) as f32 / 506.0 - 1.0) * (1.0 + (i / 32 % 5) as f32)).collect();
        for ty in [
            GgmlType::Q8_0,
            GgmlType::Q4_0,
            GgmlType::Q4_1,
            GgmlType::Q5_0,
            GgmlType::Q4_K,
            GgmlType::Q5_K,
            GgmlType::Q6_K,
        ] {
            let mut acts = Acts::quantize(super::super::Isa::Portable, &x, n, cols);
            acts.prepare(ty);
            let row_bytes = ty.bytes_for(cols as u64).unwrap() as usize;
            let w = random_blocks(ty, rows_n * row_bytes / ty.type_size() as usize, 0xA5A5 + ty.id() as u64);
            for t in 0..n {
                let tok = Tok::new(&acts, t);
                for row in w.chunks_exact(row_bytes) {
                    let want = portable::row_dot(ty, row, &tok);
                    // SAFETY: the emulation's `sdot` runs anywhere.
                    for got in [row_dot_neon(ty, row, &tok), unsafe { row_dot::<true>(ty, row, &tok) }] {
                        assert_eq!(got.to_bits(), want.to_bits(), "{ty} t{t}: {got} vs {want}");
                    }
                }
            }
        }
    }
}
