//! The NEON kernels on a real aarch64 instruction set (qemu), against their scalar emulation.
//!
//! `core/src/quant/cpu/neon_kernels.rs` is compiled twice here: over `std::arch::aarch64` (and
//! the `sdot` encoding of `neon_sdot.rs`) and over `neon_emu.rs`; both flavours (baseline and
//! `sdot`) run, so the CPU qemu emulates must report the dot-product extension (`-cpu max`). The crate's unit tests already check the emulated kernels bit for bit
//! against the portable path (and every matmul test runs them against the reference
//! dequantizer), so equal bits here carry that to the real instructions. Built by `run.sh`
//! with Debian's rustc for `aarch64-unknown-linux-gnu`; no dependencies.

#[allow(unused_unsafe)]
#[path = "../../core/src/quant/cpu/neon_emu.rs"]
mod neon_emu;

/// The f16 at `b[i..i + 2]` (little-endian) as f32: the kernels' block scales. The same
/// function on both sides; only the kernels are compared here.
fn f16_at(b: &[u8], i: usize) -> f32 {
    let h = u16::from_le_bytes([b[i], b[i + 1]]) as u32;
    let (sign, exp, man) = ((h >> 15) << 31, (h >> 10) & 0x1F, h & 0x3FF);
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => return f32::from_bits(sign) + (if sign != 0 { -1.0 } else { 1.0 }) * m as f32 * (2f32).powi(-24),
        (31, m) => sign | 0x7F80_0000 | (m << 13),
        (e, m) => sign | ((e + 112) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

/// Q4_K/Q5_K's 6-bit scale and min of sub-block `j`.
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

#[allow(dead_code)]
mod real {
    use super::{f16_at, scale_min_k4};
    use std::arch::aarch64::*;
    include!("../../core/src/quant/cpu/neon_sdot.rs");
    include!("../../core/src/quant/cpu/neon_kernels.rs");
}

#[allow(dead_code, unused_unsafe)]
mod emulated {
    use super::neon_emu::*;
    use super::{f16_at, scale_min_k4};
    include!("../../core/src/quant/cpu/neon_kernels.rs");
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Random blocks of `size` bytes with sane f16 scales at `scales` (random bits elsewhere).
fn blocks(rng: &mut Rng, n: usize, size: usize, scales: &[usize]) -> Vec<u8> {
    let mut b: Vec<u8> = (0..n * size).map(|_| rng.next() as u8).collect();
    for blk in b.chunks_exact_mut(size) {
        for &o in scales {
            // 2^-10 .. 2^-6 with a random mantissa: exponent field 5..9.
            let h = ((5 + rng.next() % 5) << 10) as u16 | (rng.next() % 1024) as u16;
            blk[o..o + 2].copy_from_slice(&h.to_le_bytes());
        }
    }
    b
}

/// The four results of one row: real baseline, real `sdot`, emulated baseline, emulated `sdot`.
macro_rules! all4 {
    ($f:ident, $($a:expr),*) => {
        [real::$f::<false>($($a),*), real::$f::<true>($($a),*), emulated::$f::<false>($($a),*), emulated::$f::<true>($($a),*)]
    };
}

fn main() {
    if !std::arch::is_aarch64_feature_detected!("dotprod") {
        eprintln!("this CPU has no dot-product extension: run under `qemu-aarch64 -cpu max`");
        std::process::exit(2);
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let cols = 2048;
    let (mut cases, mut bad) = (0usize, 0usize);
    for round in 0..200 {
        // One token's activations as `Acts` holds them: values in [-127, 127], block scales,
        // and the per-type extras computed from them as the crate does.
        let xq: Vec<i8> = (0..cols).map(|_| (rng.next() % 255) as i8 as i32 as i8).map(|v| if v == -128 { -127 } else { v }).collect();
        let xd: Vec<f32> = (0..cols / 32).map(|_| (1 + rng.next() % 1000) as f32 * 1e-4).collect();
        let bsums: Vec<i16> = xq.chunks_exact(16).map(|c| c.iter().map(|&v| v as i16).sum()).collect();
        let sum32: Vec<i32> = bsums.chunks_exact(2).map(|p| p[0] as i32 + p[1] as i32).collect();
        let corr8: Vec<i32> = sum32.iter().map(|s| -8 * s).collect();
        let corr16: Vec<i32> = sum32.iter().map(|s| -16 * s).collect();
        let xsum: Vec<f32> = sum32.iter().zip(&xd).map(|(&s, &d)| d * s as f32).collect();
        let rows: [(&str, Vec<u8>); 7] = [
            ("q8_0", blocks(&mut rng, cols / 32, 34, &[0])),
            ("q4_0", blocks(&mut rng, cols / 32, 18, &[0])),
            ("q4_1", blocks(&mut rng, cols / 32, 20, &[0, 2])),
            ("q5_0", blocks(&mut rng, cols / 32, 22, &[0])),
            ("q4_k", blocks(&mut rng, cols / 256, 144, &[0, 2])),
            ("q5_k", blocks(&mut rng, cols / 256, 176, &[0, 2])),
            ("q6_k", blocks(&mut rng, cols / 256, 210, &[208])),
        ];
        for (name, row) in rows.iter() {
            // SAFETY: NEON is baseline on aarch64; the slices cover the row's blocks.
            // SAFETY: the dot-product extension was detected above.
            let r = unsafe {
                match *name {
                    "q8_0" => all4!(q8_0, row, &xq, &xd),
                    "q4_0" => all4!(q4_0, row, &xq, &xd, &corr8),
                    "q4_1" => all4!(q4_1, row, &xq, &xd, &xsum),
                    "q5_0" => all4!(q5_0, row, &xq, &xd, &corr16),
                    "q4_k" => all4!(q4_k, row, &xq, &xd, &xsum),
                    "q5_k" => all4!(q5_k, row, &xq, &xd, &xsum),
                    _ => all4!(q6_k, row, &xq, &xd, &bsums),
                }
            };
            cases += 1;
            if r.iter().any(|v| v.to_bits() != r[2].to_bits()) || !r[0].is_finite() {
                bad += 1;
                if bad <= 10 {
                    eprintln!("round {} {}: neon {} / sdot {} vs emulated {} / {}", round, name, r[0], r[1], r[2], r[3]);
                }
            }
        }
    }
    println!("neon kernels on aarch64 (qemu), baseline and sdot: {} of {} rows bit-identical to the emulation", cases - bad, cases);
    if bad > 0 || cases == 0 {
        std::process::exit(1);
    }
}
