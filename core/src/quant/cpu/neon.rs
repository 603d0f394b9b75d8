//! aarch64 NEON kernels (phones): the portable path's block structure and integer dots with
//! the per-block work in 16-byte vectors (`neon_kernels.rs`).
//!
//! Baseline NEON only (`vmull_s8` + `vpadalq_s16`), which every aarch64 CPU has; the
//! dot-product extension (`vdotq_s32`, 4× fewer instructions per 16 bytes) needs run-time
//! detection and is not used yet. Results are bit-identical to the portable path's: the same
//! integer dots and the same float operations in the same order.
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
    include!("neon_kernels.rs");
}

/// The kernels over the scalar emulation (unit tests on other CPUs).
#[cfg(all(test, not(target_arch = "aarch64")))]
mod hw {
    use super::super::neon_emu::*;
    use super::{f16_at, scale_min_k4};
    include!("neon_kernels.rs");
}

/// One weight row against one token's activations.
fn row_dot(ty: GgmlType, row: &[u8], x: &Tok) -> f32 {
    // SAFETY: NEON is part of every aarch64 target (elsewhere this is the emulation); `Tok`
    // covers the row's blocks (`Acts` was quantized for this product's columns and prepared for
    // `ty`), and the kernels only read through bounds-checked slices.
    unsafe {
        match ty {
            GgmlType::Q8_0 => hw::q8_0(row, x.q, x.d),
            GgmlType::Q4_0 => hw::q4_0(row, x.q, x.d, x.corr),
            GgmlType::Q5_0 => hw::q5_0(row, x.q, x.d, x.corr),
            GgmlType::Q4_K => hw::q4_k(row, x.q, x.d, x.xsum),
            GgmlType::Q5_K => hw::q5_k(row, x.q, x.d, x.xsum),
            GgmlType::Q6_K => hw::q6_k(row, x.q, x.d, x.bsums),
            _ => 0.0,
        }
    }
}

/// Computes `nr` rows for the tokens `toks`; see `super::chunk`.
///
/// # Safety
/// As `portable::chunk`.
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn chunk(ty: GgmlType, w: *const u8, row_bytes: usize, nr: usize, acts: &Acts, toks: std::ops::Range<usize>, y: *mut f32, ystride: usize) {
    // SAFETY: forwarded from the caller.
    unsafe { portable::chunk_with(row_dot, ty, w, row_bytes, nr, acts, toks, y, ystride) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::random_blocks;

    /// The matmul tests of `super::super` loop over `Isa::available()`: NEON must be in it
    /// (emulated on other CPUs), so they run these kernels through the whole product too.
    #[test]
    fn neon_is_among_the_tested_paths() {
        assert!(super::super::Isa::available().contains(&super::super::Isa::Neon));
    }

    /// Every type, row by row, against the portable path: the same bits, not just close.
    #[test]
    fn neon_rows_equal_the_portable_ones_bit_for_bit() {
        let (rows_n, cols, n) = (9, 1024, 3);
        let x: Vec<f32> = (0..n * cols).map(|i| ((i * 7919 % 1013) as f32 / 506.0 - 1.0) * (1.0 + (i / 32 % 5) as f32)).collect();
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let mut acts = Acts::quantize(super::super::Isa::Portable, &x, n, cols);
            acts.prepare(ty);
            let row_bytes = ty.bytes_for(cols as u64).unwrap() as usize;
            let w = random_blocks(ty, rows_n * row_bytes / ty.type_size() as usize, 0xA5A5 + ty.id() as u64);
            for t in 0..n {
                let tok = Tok::new(&acts, t);
                for row in w.chunks_exact(row_bytes) {
                    let (got, want) = (row_dot(ty, row, &tok), portable::row_dot(ty, row, &tok));
                    assert_eq!(got.to_bits(), want.to_bits(), "{ty} t{t}: {got} vs {want}");
                }
            }
        }
    }
}
