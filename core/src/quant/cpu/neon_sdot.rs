// `sdot` on aarch64: included (`include!`) next to the NEON kernels by `neon.rs` and by
// `tests/neon/main.rs`. Its intrinsic `vdotq_s32` is not stable Rust, and naming the
// instruction would need the assembler's dot-product flag, so it is emitted as its encoding on
// fixed registers.

/// `acc + Σ a·b` per group of four bytes: `sdot v2.4s, v0.16b, v1.16b`.
///
/// # Safety
/// The CPU must have the dot-product extension (`is_aarch64_feature_detected!("dotprod")`).
#[inline(always)]
unsafe fn sdot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // 0x4e809400 | Rm << 16 | Rn << 5 | Rd, with Rm = v1, Rn = v0, Rd = v2.
    core::arch::asm!(".inst 0x4e819402", in("v0") a, in("v1") b, inout("v2") acc, options(pure, nomem, nostack, preserves_flags));
    acc
}
