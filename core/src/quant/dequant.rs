//! Reference dequantizers: GGML blocks -> f32.
//!
//! Each `block_*` function decodes one block into `out` (exactly `block_size` values). The
//! arithmetic follows ggml's `dequantize_row_*` (ggml-org/llama.cpp `ggml/src/ggml-quants.c`)
//! operation for operation, so results are bit-identical to llama.cpp's reference path.

use half::{bf16, f16};

use super::GgmlType;
use crate::{Error, Result};

/// Dequantizes `n` elements of type `ty` from `bytes` (which must hold exactly those blocks).
pub fn dequantize(ty: GgmlType, bytes: &[u8], n: usize) -> Result<Vec<f32>> {
    let mut out = vec![0f32; n];
    dequantize_into(ty, bytes, &mut out)?;
    Ok(out)
}

/// Dequantizes row `row` of a `[rows, row_len]` tensor (GGUF shape `[row_len, rows]`).
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], row_len: usize, row: usize) -> Result<Vec<f32>> {
    let row_bytes = ty
        .bytes_for(row_len as u64)
        .ok_or_else(|| Error::UnsupportedType { ty: format!("{ty} row of {row_len}") })? as usize;
    let start = row
        .checked_mul(row_bytes)
        .ok_or_else(|| Error::InvalidParameter { name: "row", reason: "row offset overflows".into() })?;
    let slice = start
        .checked_add(row_bytes)
        .and_then(|end| bytes.get(start..end))
        .ok_or_else(|| Error::InvalidParameter { name: "row", reason: format!("row {row} is out of range") })?;
    dequantize(ty, slice, row_len)
}

/// Dequantizes `bytes` into `out`; `out.len()` elements are decoded.
pub fn dequantize_into(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<()> {
    let n = out.len() as u64;
    let need = ty.bytes_for(n).ok_or_else(|| Error::InvalidParameter {
        name: "n",
        reason: format!("{n} elements is not a whole number of {ty} blocks"),
    })?;
    if need != bytes.len() as u64 {
        return Err(Error::InvalidParameter {
            name: "bytes",
            reason: format!("{n} {ty} elements need {need} bytes, got {}", bytes.len()),
        });
    }
    let ts = ty.type_size() as usize;
    let bs = ty.block_size() as usize;
    let blocks = bytes.chunks_exact(ts).zip(out.chunks_exact_mut(bs));
    use GgmlType::*;
    match ty {
        F32 => blocks.for_each(|(b, o)| o[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        F16 => blocks.for_each(|(b, o)| o[0] = f16_at(b, 0)),
        BF16 => blocks.for_each(|(b, o)| o[0] = bf16::from_le_bytes([b[0], b[1]]).to_f32()),
        Q4_0 => blocks.for_each(|(b, o)| block_q4_0(b, o)),
        Q4_1 => blocks.for_each(|(b, o)| block_q4_1(b, o)),
        Q5_0 => blocks.for_each(|(b, o)| block_q5_0(b, o)),
        Q5_1 => blocks.for_each(|(b, o)| block_q5_1(b, o)),
        Q8_0 => blocks.for_each(|(b, o)| block_q8_0(b, o)),
        Q2_K => blocks.for_each(|(b, o)| block_q2_k(b, o)),
        Q3_K => blocks.for_each(|(b, o)| block_q3_k(b, o)),
        Q4_K => blocks.for_each(|(b, o)| block_q4_k(b, o)),
        Q5_K => blocks.for_each(|(b, o)| block_q5_k(b, o)),
        Q6_K => blocks.for_each(|(b, o)| block_q6_k(b, o)),
        Q8_1 | Q8_K | I8 | I16 | I32 | I64 | F64 => {
            return Err(Error::UnsupportedType { ty: format!("{ty} (no dequantizer)") })
        }
    }
    Ok(())
}

#[inline]
pub(crate) fn f16_at(b: &[u8], i: usize) -> f32 {
    f16::from_le_bytes([b[i], b[i + 1]]).to_f32()
}

/// `{f16 d; u8 qs[16]}`: byte j holds elements j (low nibble) and j+16 (high nibble); x = d·(q−8).
fn block_q4_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..16 {
        o[j] = ((qs[j] & 0x0F) as i32 - 8) as f32 * d;
        o[j + 16] = ((qs[j] >> 4) as i32 - 8) as f32 * d;
    }
}

/// `{f16 d; f16 m; u8 qs[16]}`: x = d·q + m.
fn block_q4_1(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qs = &b[4..20];
    for j in 0..16 {
        o[j] = (qs[j] & 0x0F) as f32 * d + m;
        o[j + 16] = (qs[j] >> 4) as f32 * d + m;
    }
}

/// `{f16 d; u8 qh[4]; u8 qs[16]}`: low 4 bits in qs, bit 5 of element j in bit j of qh; x = d·(q−16).
fn block_q5_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        o[j] = (((qs[j] & 0x0F) | xh0) as i32 - 16) as f32 * d;
        o[j + 16] = (((qs[j] >> 4) | xh1) as i32 - 16) as f32 * d;
    }
}

/// `{f16 d; f16 m; u8 qh[4]; u8 qs[16]}`: x = d·q + m.
fn block_q5_1(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let m = f16_at(b, 2);
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    let qs = &b[8..24];
    for j in 0..16 {
        let xh0 = (((qh >> j) << 4) & 0x10) as u8;
        let xh1 = ((qh >> (j + 12)) & 0x10) as u8;
        o[j] = ((qs[j] & 0x0F) | xh0) as f32 * d + m;
        o[j + 16] = ((qs[j] >> 4) | xh1) as f32 * d + m;
    }
}

/// `{f16 d; i8 qs[32]}`: x = d·q.
fn block_q8_0(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..32 {
        o[j] = (b[2 + j] as i8) as f32 * d;
    }
}

/// `{u8 scales[16]; u8 qs[64]; f16 d; f16 dmin}`: 16 sub-blocks of 16, 4-bit scale and min each.
fn block_q2_k(b: &[u8], o: &mut [f32]) {
    let scales = &b[0..16];
    let d = f16_at(b, 80);
    let min = f16_at(b, 82);
    let mut y = 0;
    let mut is = 0;
    for n in 0..2 {
        let q = &b[16 + n * 32..16 + n * 32 + 32];
        let mut shift = 0;
        for _ in 0..4 {
            for half in 0..2 {
                let sc = scales[is];
                is += 1;
                let dl = d * (sc & 0x0F) as f32;
                let ml = min * (sc >> 4) as f32;
                for l in 0..16 {
                    o[y] = dl * ((q[l + 16 * half] >> shift) & 3) as f32 - ml;
                    y += 1;
                }
            }
            shift += 2;
        }
    }
}

/// `{u8 hmask[32]; u8 qs[64]; u8 scales[12]; f16 d}`: 16 sub-blocks, 6-bit signed scales.
fn block_q3_k(b: &[u8], o: &mut [f32]) {
    const KMASK1: u32 = 0x0303_0303;
    const KMASK2: u32 = 0x0f0f_0f0f;
    let hm = &b[0..32];
    let d_all = f16_at(b, 108);
    let s = &b[96..108];
    let mut aux = [
        u32::from_le_bytes([s[0], s[1], s[2], s[3]]),
        u32::from_le_bytes([s[4], s[5], s[6], s[7]]),
        u32::from_le_bytes([s[8], s[9], s[10], s[11]]),
        0,
    ];
    let tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & KMASK2) | (((tmp >> 4) & KMASK1) << 4);
    aux[3] = ((aux[1] >> 4) & KMASK2) | (((tmp >> 6) & KMASK1) << 4);
    aux[0] = (aux[0] & KMASK2) | ((tmp & KMASK1) << 4);
    aux[1] = (aux[1] & KMASK2) | (((tmp >> 2) & KMASK1) << 4);
    let mut scales = [0i8; 16];
    for (i, w) in aux.iter().enumerate() {
        for (k, byte) in w.to_le_bytes().iter().enumerate() {
            scales[i * 4 + k] = *byte as i8;
        }
    }
    let mut y = 0;
    let mut is = 0;
    let mut m: u8 = 1;
    for n in 0..2 {
        let q = &b[32 + n * 32..32 + n * 32 + 32];
        let mut shift = 0;
        for _ in 0..4 {
            for half in 0..2 {
                let dl = d_all * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in 0..16 {
                    let idx = l + 16 * half;
                    let hbit = if hm[idx] & m != 0 { 0 } else { 4 };
                    o[y] = dl * (((q[idx] >> shift) & 3) as i32 - hbit) as f32;
                    y += 1;
                }
            }
            shift += 2;
            m <<= 1;
        }
    }
}

/// Unpacks the 6-bit scale and min of sub-block `j` from the 12 packed bytes of Q4_K/Q5_K.
#[inline]
pub(crate) fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        ((q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4), (q[j + 4] >> 4) | ((q[j] >> 6) << 4))
    }
}

/// `{f16 d; f16 dmin; u8 scales[12]; u8 qs[128]}`: 8 sub-blocks of 32; x = d·sc·q − dmin·m.
fn block_q4_k(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    let mut y = 0;
    for j in 0..4 {
        let q = &b[16 + j * 32..16 + j * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            o[y + l] = d1 * (q[l] & 0x0F) as f32 - m1;
            o[y + 32 + l] = d2 * (q[l] >> 4) as f32 - m2;
        }
        y += 64;
    }
}

/// `{f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]}`: like Q4_K with a 5th bit in qh.
fn block_q5_k(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 0);
    let min = f16_at(b, 2);
    let scales = &b[4..16];
    let qh = &b[16..48];
    let mut y = 0;
    let (mut u1, mut u2) = (1u8, 2u8);
    for j in 0..4 {
        let ql = &b[48 + j * 32..48 + j * 32 + 32];
        let (sc1, m1) = scale_min_k4(2 * j, scales);
        let (sc2, m2) = scale_min_k4(2 * j + 1, scales);
        let (d1, m1) = (d * sc1 as f32, min * m1 as f32);
        let (d2, m2) = (d * sc2 as f32, min * m2 as f32);
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            o[y + l] = d1 * ((ql[l] & 0x0F) + h1) as f32 - m1;
            o[y + 32 + l] = d2 * ((ql[l] >> 4) + h2) as f32 - m2;
        }
        y += 64;
        u1 <<= 2;
        u2 <<= 2;
    }
}

/// `{u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}`: 16 sub-blocks of 16; x = d·sc·(q−32).
fn block_q6_k(b: &[u8], o: &mut [f32]) {
    let d = f16_at(b, 208);
    for n in 0..2 {
        let ql = &b[n * 64..n * 64 + 64];
        let qh = &b[128 + n * 32..128 + n * 32 + 32];
        let sc = &b[192 + n * 8..192 + n * 8 + 8];
        let y = n * 128;
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0x0F) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0x0F) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            o[y + l] = d * (sc[is] as i8) as f32 * q1 as f32;
            o[y + l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            o[y + l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            o[y + l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q8_0_by_hand() {
        // d = 0.5 (f16 0x3800), q = 0, 1, -1, 2, ...
        let mut b = vec![0x00, 0x38];
        for j in 0..32i8 {
            b.push(if j % 2 == 0 { j } else { -j } as u8);
        }
        let out = dequantize(GgmlType::Q8_0, &b, 32).unwrap();
        assert_eq!(out[0], 0.0);
        assert_eq!(out[1], -0.5);
        assert_eq!(out[2], 1.0);
    }

    #[test]
    fn q4_0_nibble_order() {
        // d = 1.0 (0x3C00); byte j = low nibble (j), high nibble 15 -> elements j and j+16.
        let mut b = vec![0x00, 0x3C];
        for j in 0..16u8 {
            b.push(j | 0xF0);
        }
        let out = dequantize(GgmlType::Q4_0, &b, 32).unwrap();
        assert_eq!(out[3], 3.0 - 8.0);
        assert_eq!(out[16 + 3], 15.0 - 8.0);
    }

    #[test]
    fn wrong_lengths_are_errors_not_panics() {
        assert!(dequantize(GgmlType::Q4_K, &[0u8; 143], 256).is_err());
        assert!(dequantize(GgmlType::Q4_K, &[0u8; 144], 255).is_err());
        assert!(dequantize_row(GgmlType::Q8_0, &[0u8; 34], 32, 1).is_err());
        assert!(dequantize(GgmlType::Q8_K, &[0u8; 292], 256).is_err());
    }
}
