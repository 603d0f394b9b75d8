//! f32 × f32 products on the kernels' pool: `y[t, r] = Σ_k W[r, k]·x[t, k] + b[r]` with `W`
//! row-major `[rows, cols]` as the checkpoint stores it (no transposed or packed copy), for the
//! encoder's f32 weights.
//!
//! Why not burn `flex`'s matmul (the `gemm` crate): a short text is 16 tokens, and for
//! `[16, 384] × [384, 1152]` it ran on one thread whatever the thread count (rayon's split
//! threshold), plus a copy of the activations into a tensor and of the result out of it per
//! product: one 16-token MiniLM text took as long on 2 threads as on 1 (11.5 vs 12.3 ms, llama.cpp
//! 9.5 / 5.1 ms). Here a product is one pool job (about a microsecond to hand out), split by
//! blocks of weight rows (and of tokens for long inputs), so every thread streams its own rows.
//!
//! The tile follows llama.cpp's `llamafile_sgemm` (tinyBLAS): `RM` weight rows × `RN` tokens of
//! 8-lane accumulators, both operands read along `k` (contiguous), one horizontal sum per output
//! at the end. Each output's arithmetic is the same whatever the tile shape, the block split or
//! the thread count (lanes over `k mod 8`, then a fixed horizontal order, then the `k` tail), so
//! a text gives bit-identical outputs alone or inside a batch, on 1 thread or many.

use super::pool::{self, SyncPtr};
use super::Isa;
use crate::{Error, Result};

/// Tokens per task block (the block's activations stay in L2 while the weight rows stream).
const TOKEN_BLOCK: usize = 64;

/// `y[t·rows + r] = Σ_k w[r·cols + k]·x[t·cols + k] + b[r]` (`b` absent: no bias), `y: [n, rows]`
/// overwritten.
pub(crate) fn matmul_f32(
    w: &[f32],
    rows: usize,
    cols: usize,
    b: Option<&[f32]>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) -> Result<()> {
    matmul_f32_with(Isa::best(), w, rows, cols, b, x, n, y)
}

/// [`matmul_f32`] with the kernels of `isa` (tests compare them).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_f32_with(
    isa: Isa,
    w: &[f32],
    rows: usize,
    cols: usize,
    b: Option<&[f32]>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) -> Result<()> {
    let bad = |what: &str, expected: Option<usize>, found: usize| Error::InvalidParameter {
        name: "matmul_f32",
        reason: format!(
            "{what} of {found} values, expected {}",
            expected.map_or("an overflow-free size".into(), |e| e.to_string())
        ),
    };
    let wl = rows.checked_mul(cols);
    if wl != Some(w.len()) {
        return Err(bad("weight", wl, w.len()));
    }
    let xl = n.checked_mul(cols);
    if xl != Some(x.len()) {
        return Err(bad("input", xl, x.len()));
    }
    let yl = n.checked_mul(rows);
    if yl != Some(y.len()) {
        return Err(bad("output", yl, y.len()));
    }
    if let Some(b) = b {
        if b.len() != rows {
            return Err(bad("bias", Some(rows), b.len()));
        }
    }
    if n == 0 || rows == 0 {
        return Ok(());
    }
    let kernel = Kernel::of(isa);
    let (rm, _) = kernel.tile();
    // Row blocks: a multiple of the tile's rows, about 8 tasks per thread, 12..=96 rows each.
    let token_blocks = n.div_ceil(TOKEN_BLOCK);
    let want = (rows * token_blocks).div_ceil(pool::threads() * 8);
    let row_block = want.clamp(12, 96).div_ceil(rm) * rm;
    let row_blocks = rows.div_ceil(row_block);
    let out = SyncPtr(y.as_mut_ptr());
    let task = |t: usize| {
        let (rb, tb) = (t / token_blocks, t % token_blocks);
        let (r0, t0) = (rb * row_block, tb * TOKEN_BLOCK);
        let (r1, t1) = ((r0 + row_block).min(rows), (t0 + TOKEN_BLOCK).min(n));
        // SAFETY: this task writes outputs (t, r) for t in t0..t1, r in r0..r1 only, which no
        // other task writes (blocks are disjoint); `y` outlives `for_each`; the reads are inside
        // `w` and `x` (lengths checked above).
        unsafe { kernel.block(w, cols, b, x, r0..r1, t0..t1, out.get(), rows) };
    };
    pool::for_each(row_blocks * token_blocks, &task);
    Ok(())
}

/// Calls `$f::<M, N>` for the runtime tile shape `(m, n)` (1..=4 rows, 1..=6 tokens).
macro_rules! dispatch {
    ($f:ident, $m:expr, $n:expr, $t:expr) => {
        match $m {
            1 => dispatch!(@n $f, 1, $n, $t),
            2 => dispatch!(@n $f, 2, $n, $t),
            3 => dispatch!(@n $f, 3, $n, $t),
            _ => dispatch!(@n $f, 4, $n, $t),
        }
    };
    (@n $f:ident, $m:literal, $n:expr, $t:expr) => {
        match $n {
            1 => $f::<$m, 1>($t),
            2 => $f::<$m, 2>($t),
            3 => $f::<$m, 3>($t),
            4 => $f::<$m, 4>($t),
            5 => $f::<$m, 5>($t),
            _ => $f::<$m, 6>($t),
        }
    };
}

/// Which tile code runs.
#[derive(Clone, Copy)]
enum Kernel {
    Portable,
    /// AVX2 + FMA: 3 rows × 4 tokens (12 accumulators of 16 registers).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512 VL: the same 256-bit code with 32 registers, 4 rows × 6 tokens.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    fn of(isa: Isa) -> Self {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Kernel::Avx512,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::AvxVnni => Kernel::Avx2,
            _ => Kernel::Portable,
        }
    }

    /// Rows × tokens of a full tile.
    fn tile(self) -> (usize, usize) {
        match self {
            Kernel::Portable => (3, 4),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => (3, 4),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => (4, 6),
        }
    }

    /// The outputs of rows `rs` × tokens `ts`, tile by tile.
    ///
    /// # Safety
    /// `w` holds the rows `rs` (`cols` each), `x` the tokens `ts`, `b` (if any) the rows `rs`;
    /// `y` points at `[n, ldy]` outputs that the caller may write at `(ts, rs)`.
    #[allow(clippy::too_many_arguments)]
    unsafe fn block(
        self,
        w: &[f32],
        cols: usize,
        b: Option<&[f32]>,
        x: &[f32],
        rs: std::ops::Range<usize>,
        ts: std::ops::Range<usize>,
        y: *mut f32,
        ldy: usize,
    ) {
        let (rm, rn) = self.tile();
        let mut r = rs.start;
        while r < rs.end {
            let m = rm.min(rs.end - r);
            let mut t = ts.start;
            while t < ts.end {
                let k = rn.min(ts.end - t);
                // The first token tile of a row tile reads its rows from memory (the weights
                // do not stay in cache from one call to the next: 42 MB for MiniLM), and
                // fetches the next row tile's meanwhile; the other token tiles find them in L1.
                let wr = w[r * cols..].as_ptr();
                let pf = if t == ts.start && (r + m + 1) * cols <= w.len() { w[(r + m) * cols..].as_ptr() } else { wr };
                let at = Tile {
                    w: wr,
                    x: x[t * cols..].as_ptr(),
                    cols,
                    b: b.map(|b| b[r..].as_ptr()),
                    y: y.wrapping_add(t * ldy + r),
                    ldy,
                    pf,
                };
                // SAFETY: rows r..r+m and tokens t..t+k are inside the ranges the caller vouched for.
                unsafe {
                    match self {
                        Kernel::Portable => dispatch!(portable_tile, m, k, at),
                        #[cfg(target_arch = "x86_64")]
                        Kernel::Avx2 => dispatch!(avx2_tile, m, k, at),
                        #[cfg(target_arch = "x86_64")]
                        Kernel::Avx512 => dispatch!(avx512_tile, m, k, at),
                    }
                }
                t += k;
            }
            r += m;
        }
    }
}

/// One tile's operands: `RM` weight rows from `w` and `RN` tokens from `x` (`cols` apart),
/// outputs at `y[t·ldy + r]`.
#[derive(Clone, Copy)]
struct Tile {
    w: *const f32,
    x: *const f32,
    cols: usize,
    b: Option<*const f32>,
    y: *mut f32,
    ldy: usize,
    /// The weight rows to bring into cache meanwhile (the next tile's, `4·cols` values from
    /// here; a hint, never read), or `w` itself when there is nothing to fetch.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    pf: *const f32,
}

/// `a·b + c`, fused where the CPU always has it (aarch64), so the loop vectorizes to `fmla`.
#[inline(always)]
fn madd(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(target_arch = "aarch64")]
    return a.mul_add(b, c);
    #[cfg(not(target_arch = "aarch64"))]
    return a * b + c;
}

/// The horizontal sum of 8 lanes in the x86 kernels' order: halves, then pairs, then the last two.
#[inline(always)]
fn hsum8(l: [f32; 8]) -> f32 {
    let h = [l[0] + l[4], l[1] + l[5], l[2] + l[6], l[3] + l[7]];
    let h = [h[0] + h[2], h[1] + h[3]];
    h[0] + h[1]
}

/// The tile in plain Rust (8 lanes the compiler vectorizes).
///
/// # Safety
/// As [`Kernel::block`] for this tile's `M` rows and `N` tokens.
unsafe fn portable_tile<const M: usize, const N: usize>(t: Tile) {
    let mut acc = [[[0f32; 8]; N]; M];
    let k8 = t.cols / 8 * 8;
    // SAFETY: rows (`M`) and tokens (`N`) of `cols` values each, as the caller vouched.
    let (w, x) = unsafe {
        (
            std::array::from_fn::<&[f32], M, _>(|r| std::slice::from_raw_parts(t.w.add(r * t.cols), t.cols)),
            std::array::from_fn::<&[f32], N, _>(|j| std::slice::from_raw_parts(t.x.add(j * t.cols), t.cols)),
        )
    };
    let mut i = 0;
    while i < k8 {
        for r in 0..M {
            let wr = &w[r][i..i + 8];
            for j in 0..N {
                let xj = &x[j][i..i + 8];
                for l in 0..8 {
                    acc[r][j][l] = madd(wr[l], xj[l], acc[r][j][l]);
                }
            }
        }
        i += 8;
    }
    for r in 0..M {
        for j in 0..N {
            let mut s = hsum8(acc[r][j]);
            for k in k8..t.cols {
                s = madd(w[r][k], x[j][k], s);
            }
            // SAFETY: as above.
            unsafe {
                if let Some(b) = t.b {
                    s += *b.add(r);
                }
                *t.y.add(j * t.ldy + r) = s;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
use x86_tile::{avx2_tile, avx512_tile};

#[cfg(target_arch = "x86_64")]
mod x86_tile {
    use super::Tile;
    use std::arch::x86_64::*;

    /// The tile body, compiled into each entry point below with its features.
    ///
    /// # Safety
    /// AVX2 and FMA; as [`super::Kernel::block`] for `M` rows and `N` tokens.
    #[inline(always)]
    unsafe fn body<const M: usize, const N: usize>(t: Tile) {
        let k8 = t.cols / 8 * 8;
        // SAFETY: every load is `[i, i + 8)` with `i + 8 ≤ cols` of a row or token the caller
        // vouched for; the outputs likewise.
        unsafe {
            let mut acc = [[_mm256_setzero_ps(); N]; M];
            let mut i = 0;
            while i < k8 {
                let mut wv = [_mm256_setzero_ps(); M];
                for (r, v) in wv.iter_mut().enumerate() {
                    *v = _mm256_loadu_ps(t.w.add(r * t.cols + i));
                }
                for j in 0..N {
                    let xv = _mm256_loadu_ps(t.x.add(j * t.cols + i));
                    for r in 0..M {
                        acc[r][j] = _mm256_fmadd_ps(wv[r], xv, acc[r][j]);
                    }
                }
                // Two cache lines of the next tile's rows per step: `4·cols` values over the
                // loop, at least the `M ≤ 4` rows (prefetches never fault).
                _mm_prefetch::<_MM_HINT_T0>(t.pf.wrapping_add(4 * i) as *const i8);
                _mm_prefetch::<_MM_HINT_T0>(t.pf.wrapping_add(4 * i + 16) as *const i8);
                i += 8;
            }
            // The horizontal sums first, in a loop the compiler unrolls whole, so that `acc`
            // lives in registers (with the `k` tail in the same loop it stayed an array in
            // memory, stored back on every step of the loop above).
            let mut sums = [[0f32; N]; M];
            for r in 0..M {
                for j in 0..N {
                    let a = acc[r][j];
                    // The same order as `super::hsum8`.
                    let h = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
                    let h = _mm_add_ps(h, _mm_movehl_ps(h, h));
                    let h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
                    sums[r][j] = _mm_cvtss_f32(h);
                }
            }
            for r in 0..M {
                for j in 0..N {
                    let mut s = sums[r][j];
                    for k in k8..t.cols {
                        s = _mm_cvtss_f32(_mm_fmadd_ss(
                            _mm_set_ss(*t.w.add(r * t.cols + k)),
                            _mm_set_ss(*t.x.add(j * t.cols + k)),
                            _mm_set_ss(s),
                        ));
                    }
                    if let Some(b) = t.b {
                        s += *b.add(r);
                    }
                    *t.y.add(j * t.ldy + r) = s;
                }
            }
        }
    }

    /// # Safety
    /// AVX2 and FMA detected; as [`body`].
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2_tile<const M: usize, const N: usize>(t: Tile) {
        // SAFETY: as this function's contract.
        unsafe { body::<M, N>(t) }
    }

    /// # Safety
    /// AVX2, FMA, AVX-512 F and VL detected (32 vector registers); as [`body`].
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl")]
    pub(super) unsafe fn avx512_tile<const M: usize, const N: usize>(t: Tile) {
        // SAFETY: as this function's contract.
        unsafe { body::<M, N>(t) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u32) -> Vec<f32> {
        (0..len)
            .map(|i| {
                (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) as f32 / (1u32 << 24) as f32) - 0.5
            })
            .collect()
    }

    #[test]
    fn matches_f64_reference_on_odd_shapes_every_isa() {
        for isa in Isa::available() {
            for &(rows, cols, n) in &[(1, 1, 1), (7, 13, 5), (13, 40, 7), (97, 384, 16), (24, 9, 130), (200, 64, 67)] {
                let (w, x, b) = (data(rows * cols, 1), data(n * cols, 2), data(rows, 3));
                let mut y = vec![f32::NAN; n * rows];
                matmul_f32_with(isa, &w, rows, cols, Some(&b), &x, n, &mut y).expect("matmul");
                for t in 0..n {
                    for r in 0..rows {
                        let want: f64 = b[r] as f64
                            + (0..cols).map(|k| w[r * cols + k] as f64 * x[t * cols + k] as f64).sum::<f64>();
                        let got = y[t * rows + r] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * (1.0 + cols as f64).sqrt(),
                            "{} {rows}x{cols}x{n} ({t},{r}): {got} vs {want}",
                            isa.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_token_gets_the_same_bits_alone_or_in_a_batch() {
        // The encoder's promise (batch == one at a time) rests on this.
        for isa in Isa::available() {
            let (rows, cols, n) = (101, 392, 131);
            let (w, x) = (data(rows * cols, 5), data(n * cols, 6));
            let mut all = vec![0f32; n * rows];
            matmul_f32_with(isa, &w, rows, cols, None, &x, n, &mut all).expect("batch");
            for t in [0, 5, 64, 130] {
                let mut one = vec![0f32; rows];
                matmul_f32_with(isa, &w, rows, cols, None, &x[t * cols..][..cols], 1, &mut one).expect("one");
                assert_eq!(one, all[t * rows..][..rows], "{} token {t}", isa.name());
            }
        }
    }

    #[test]
    fn wrong_sizes_are_typed_errors() {
        let w = vec![0f32; 6];
        let mut y = vec![0f32; 2];
        assert!(matmul_f32(&w, 2, 3, None, &[0.0; 4], 1, &mut y).is_err());
        assert!(matmul_f32(&w, 3, 3, None, &[0.0; 3], 1, &mut y).is_err());
        assert!(matmul_f32(&w, 2, 3, Some(&[0.0]), &[0.0; 3], 1, &mut y).is_err());
        assert!(matmul_f32(&w, 2, 3, None, &[0.0; 3], 1, &mut y[..1]).is_err());
        assert!(matmul_f32(&w, 2, 3, None, &[0.0; 3], 1, &mut y).is_ok());
    }
}
