//! CPU kernels over GGUF blocks kept as they are in the file (no f32 copy of the weights).
//!
//! As in llama.cpp, the activation row is quantized once per product to 8-bit blocks of 32
//! (`Q8x32`: one f32 scale and the block sum per 32 values), and each weight block is decoded to
//! small integers and combined with integer dot products:
//!
//! | weight | value | dot with an activation block (scale `dx`, values `qx`) |
//! |---|---|---|
//! | Q8_0, Q4_0, Q5_0 | `d·q` (q centred) | `d·dx·Σ q·qx` |
//! | Q4_K, Q5_K | `d·sc·q − dmin·m` per 32 | `d·sc·dx·Σ q·qx − dmin·m·dx·Σ qx` |
//! | Q6_K | `d·sc·(q−32)` per 16 | two 16-wide halves with their own scales |
//!
//! Rows are split across rayon's pool. The inner loops are written so that the compiler
//! vectorizes them; on x86-64 they are compiled a second time with AVX2 enabled and picked at
//! run time, so one binary runs everywhere (NEON is baseline on aarch64 phones).

use rayon::prelude::*;

use super::dequant::{f16_at, scale_min_k4};
use super::GgmlType;
use crate::{Error, Result};

/// An activation row quantized to blocks of 32.
#[derive(Debug, Clone, Default)]
pub struct Q8x32 {
    q: Vec<i8>,
    d: Vec<f32>,
    sum: Vec<i32>,
}

impl Q8x32 {
    /// Quantizes `x` (length a multiple of 32): per block `d = max|x|/127`, `q = round(x/d)`.
    pub fn quantize(x: &[f32]) -> Self {
        let nb = x.len() / 32;
        let mut out = Self { q: vec![0; nb * 32], d: vec![0.0; nb], sum: vec![0; nb] };
        for (b, xs) in x.chunks_exact(32).enumerate() {
            let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
            let d = amax / 127.0;
            let id = if d > 0.0 { 1.0 / d } else { 0.0 };
            let mut s = 0i32;
            for (j, v) in xs.iter().enumerate() {
                let q = (v * id).round() as i32;
                out.q[b * 32 + j] = q as i8;
                s += q;
            }
            out.d[b] = d;
            out.sum[b] = s;
        }
        out
    }
}

#[inline(always)]
fn dot32(a: &[i8; 32], b: &[i8]) -> i32 {
    let mut s = 0i32;
    for i in 0..32 {
        s += a[i] as i32 * b[i] as i32;
    }
    s
}

#[inline(always)]
fn dot16(a: &[i8], b: &[i8]) -> i32 {
    let mut s = 0i32;
    for i in 0..16 {
        s += a[i] as i32 * b[i] as i32;
    }
    s
}

/// Dot product of one weight row (its blocks) with a quantized activation.
#[inline(always)]
fn row_dot(ty: GgmlType, row: &[u8], x: &Q8x32) -> f32 {
    let mut acc = 0f32;
    let mut w = [0i8; 32];
    match ty {
        GgmlType::Q8_0 => {
            for (b, blk) in row.chunks_exact(34).enumerate() {
                for i in 0..32 {
                    w[i] = blk[2 + i] as i8;
                }
                acc += f16_at(blk, 0) * x.d[b] * dot32(&w, &x.q[b * 32..b * 32 + 32]) as f32;
            }
        }
        GgmlType::Q4_0 => {
            for (b, blk) in row.chunks_exact(18).enumerate() {
                for j in 0..16 {
                    w[j] = (blk[2 + j] & 0x0F) as i8 - 8;
                    w[j + 16] = (blk[2 + j] >> 4) as i8 - 8;
                }
                acc += f16_at(blk, 0) * x.d[b] * dot32(&w, &x.q[b * 32..b * 32 + 32]) as f32;
            }
        }
        GgmlType::Q5_0 => {
            for (b, blk) in row.chunks_exact(22).enumerate() {
                let qh = u32::from_le_bytes([blk[2], blk[3], blk[4], blk[5]]);
                for j in 0..16 {
                    let h0 = ((qh >> j) & 1) as u8;
                    let h1 = ((qh >> (j + 16)) & 1) as u8;
                    w[j] = ((blk[6 + j] & 0x0F) | (h0 << 4)) as i8 - 16;
                    w[j + 16] = ((blk[6 + j] >> 4) | (h1 << 4)) as i8 - 16;
                }
                acc += f16_at(blk, 0) * x.d[b] * dot32(&w, &x.q[b * 32..b * 32 + 32]) as f32;
            }
        }
        GgmlType::Q4_K | GgmlType::Q5_K => {
            let (bs, qs_off, has_h) = if ty == GgmlType::Q4_K { (144, 16, false) } else { (176, 48, true) };
            for (sb, blk) in row.chunks_exact(bs).enumerate() {
                let d = f16_at(blk, 0);
                let dmin = f16_at(blk, 2);
                let scales = &blk[4..16];
                for j in 0..4 {
                    let qs = &blk[qs_off + j * 32..qs_off + j * 32 + 32];
                    for half in 0..2 {
                        let sub = 2 * j + half;
                        let (sc, m) = scale_min_k4(sub, scales);
                        for l in 0..32 {
                            let mut v = if half == 0 { qs[l] & 0x0F } else { qs[l] >> 4 };
                            if has_h {
                                let qh = blk[16 + l];
                                v |= ((qh >> sub) & 1) << 4;
                            }
                            w[l] = v as i8;
                        }
                        let xb = sb * 8 + sub;
                        let xq = &x.q[xb * 32..xb * 32 + 32];
                        acc += x.d[xb] * (d * sc as f32 * dot32(&w, xq) as f32 - dmin * m as f32 * x.sum[xb] as f32);
                    }
                }
            }
        }
        GgmlType::Q6_K => {
            for (sb, blk) in row.chunks_exact(210).enumerate() {
                let d = f16_at(blk, 208);
                for n in 0..2 {
                    let ql = &blk[n * 64..n * 64 + 64];
                    let qh = &blk[128 + n * 32..128 + n * 32 + 32];
                    let sc = &blk[192 + n * 8..192 + n * 8 + 8];
                    // Four 32-value groups per 128: elements l, l+32, l+64, l+96.
                    for g in 0..4 {
                        for l in 0..32 {
                            let lo = match g {
                                0 => ql[l] & 0x0F,
                                1 => ql[l + 32] & 0x0F,
                                2 => ql[l] >> 4,
                                _ => ql[l + 32] >> 4,
                            };
                            let hi = (qh[l] >> (2 * g)) & 3;
                            w[l] = (lo | (hi << 4)) as i8 - 32;
                        }
                        let xb = sb * 8 + n * 4 + g;
                        let xq = &x.q[xb * 32..xb * 32 + 32];
                        let s0 = sc[2 * g] as i8 as f32 * dot16(&w[..16], &xq[..16]) as f32;
                        let s1 = sc[2 * g + 1] as i8 as f32 * dot16(&w[16..], &xq[16..]) as f32;
                        acc += d * x.d[xb] * (s0 + s1);
                    }
                }
            }
        }
        _ => {}
    }
    acc
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn rows_avx2(ty: GgmlType, w: &[u8], row_bytes: usize, x: &Q8x32, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = row_dot(ty, row, x);
    }
}

fn rows_generic(ty: GgmlType, w: &[u8], row_bytes: usize, x: &Q8x32, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(w.chunks_exact(row_bytes)) {
        *o = row_dot(ty, row, x);
    }
}

fn rows(ty: GgmlType, w: &[u8], row_bytes: usize, x: &Q8x32, out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports the features the function was compiled for.
            unsafe { rows_avx2(ty, w, row_bytes, x, out) };
            return;
        }
    }
    rows_generic(ty, w, row_bytes, x, out)
}

/// Whether `ty` has a CPU kernel.
pub fn supported(ty: GgmlType) -> bool {
    matches!(ty, GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 | GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K)
}

/// `y[t, r] = Σ_k W[r, k] · x[t, k]` for a `[rows, cols]` weight in GGUF blocks and `n` activation
/// rows `x: [n, cols]` (row-major). Returns `[n, rows]`.
pub fn matmul(ty: GgmlType, w: &[u8], rows_n: usize, cols: usize, x: &[f32], n: usize) -> Result<Vec<f32>> {
    if !supported(ty) {
        return Err(Error::UnsupportedType { ty: format!("{ty} (no CPU kernel)") });
    }
    let row_bytes = ty.bytes_for(cols as u64).ok_or_else(|| Error::UnsupportedType { ty: format!("{ty} row of {cols}") })? as usize;
    if cols % 32 != 0 || w.len() != rows_n * row_bytes || x.len() != n * cols {
        return Err(Error::InvalidParameter { name: "matmul", reason: format!("shape mismatch: {rows_n}x{cols} {ty}, x of {}", x.len()) });
    }
    let xq: Vec<Q8x32> = x.chunks_exact(cols).map(Q8x32::quantize).collect();
    let mut y = vec![0f32; n * rows_n];
    // Split the weight rows into chunks; each chunk is computed for every token so its blocks
    // stay in cache across tokens.
    let chunk_rows = (rows_n / (rayon::current_num_threads() * 8)).clamp(16, 1024);
    let mut yt = vec![0f32; rows_n * n]; // [rows, n], transposed back below
    yt.par_chunks_mut(chunk_rows * n).enumerate().for_each(|(ci, out)| {
        let r0 = ci * chunk_rows;
        let nr = out.len() / n;
        let wc = &w[r0 * row_bytes..(r0 + nr) * row_bytes];
        let mut tmp = vec![0f32; nr];
        for (t, xt) in xq.iter().enumerate() {
            rows(ty, wc, row_bytes, xt, &mut tmp);
            for (r, v) in tmp.iter().enumerate() {
                out[r * n + t] = *v;
            }
        }
    });
    for r in 0..rows_n {
        for t in 0..n {
            y[t * rows_n + r] = yt[r * n + t];
        }
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::dequantize;

    /// Random blocks with sane f16 scales (xorshift, seeded).
    fn random_blocks(ty: GgmlType, nblocks: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let ts = ty.type_size() as usize;
        let mut b: Vec<u8> = (0..nblocks * ts).map(|_| next() as u8).collect();
        let scale_offsets: &[usize] = match ty {
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => &[0],
            GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            _ => &[],
        };
        for blk in b.chunks_exact_mut(ts) {
            for &o in scale_offsets {
                let v = half::f16::from_f32(0.001 + (next() % 1000) as f32 * 1e-5);
                blk[o..o + 2].copy_from_slice(&v.to_le_bytes());
            }
        }
        b
    }

    #[test]
    fn kernels_match_the_reference_dequantizer() {
        let (rows_n, cols, n) = (24, 512, 3);
        for ty in [GgmlType::Q8_0, GgmlType::Q4_0, GgmlType::Q5_0, GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
            let nb = rows_n * cols / ty.block_size() as usize;
            let w = random_blocks(ty, nb, 0x9E37_79B9 + ty.id() as u64);
            let wf = dequantize(ty, &w, rows_n * cols).unwrap();
            let x: Vec<f32> = (0..n * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.7).collect();
            let got = matmul(ty, &w, rows_n, cols, &x, n).unwrap();
            for t in 0..n {
                for r in 0..rows_n {
                    let want: f32 = (0..cols).map(|k| wf[r * cols + k] * x[t * cols + k]).sum();
                    let scale: f32 = (0..cols).map(|k| (wf[r * cols + k] * x[t * cols + k]).abs()).sum();
                    // The activation is rounded to 8 bits: error ~ 1/254 of each |w·x| term.
                    assert!((got[t * rows_n + r] - want).abs() <= 0.01 * scale + 1e-5, "{ty} t{t} r{r}: {} vs {want}", got[t * rows_n + r]);
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(matmul(GgmlType::Q8_0, &[0; 34], 1, 32, &[0.0; 31], 1).is_err());
        assert!(matmul(GgmlType::Q2_K, &[0; 84], 1, 256, &[0.0; 256], 1).is_err());
    }
}
