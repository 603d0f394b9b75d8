//! CPU kernels over GGUF blocks kept as they are in the file (no f32 copy of the weights).
//!
//! As in llama.cpp, the activations are quantized once per product to 8 bits (blocks of 32, an
//! f32 scale each), and each weight block is combined with them through integer dot products:
//!
//! | weight | dot with one 32-block of activations (scale `dx`, values `qx`) |
//! |---|---|
//! | Q8_0 | `d·dx·Σ q·qx` (q signed) |
//! | Q4_0, Q5_0 | `d·dx·(Σ u·qx − off·Σ qx)`, `u = q + off` unsigned (off 8 / 16) |
//! | Q4_1 | `d·dx·Σ u·qx + m·(dx·Σ qx)` (`u` the unsigned nibble, `m` the block's min) |
//! | Q4_K, Q5_K | `d·sc·dx·Σ u·qx − dmin·m·(dx·Σ qx)` per 32 |
//! | Q6_K | `d·dx·Σ_16 sc·(Σ u·qx − 32·Σ_16 qx)`, two 16-wide halves |
//!
//! Keeping the weight unsigned is what the x86 byte-dot instructions want (`vpmaddubsw`,
//! `vpdpbusd`: unsigned × signed); the offsets are folded in through the activation sums.
//!
//! Work is tiled: a tile is `R` weight rows × `T` tokens, so each weight block is decoded once
//! per `T` tokens (prefill: `T` = 4) and the accumulator
//! chains are independent (decode: `R` = 4, `T` = 1, with software prefetch, because decode
//! streams every weight from memory once). On AVX-512, prefill (8 tokens or more) repacks each
//! group of 16 rows into a row-interleaved layout instead (`x86::gemm`, after llama.cpp's
//! repacked GEMMs), so one `vpdpbusd` advances 16 rows and block scales are applied once per
//! 16 rows and token. Tasks (row chunks, and token chunks in prefill; see `plan`) run on the
//! kernels' own pool (`pool`: the caller plus spinning workers, ~1 µs per fork/join) and write
//! straight into the `[n, rows]` output, without a transpose.
//!
//! Instruction sets, picked once at run time (`Isa::best`): AVX2 (+FMA, F16C), AVX-VNNI
//! (the same kernels with `vpdpbusd`/`vpdpwssd`), AVX-512 VL/VNNI (the same on 256-bit
//! vectors for decode, 512-bit row-interleaved GEMMs for prefill), NEON on aarch64 (`neon`: the
//! portable path's structure on 16-byte vectors, no tiling yet; `neondot` with `sdot` where the
//! CPU has the dot-product extension), and a portable path in plain
//! Rust that runs everywhere. `EDGEWISE_CPU_KERNELS=portable|neon|neondot|avx2|avxvnni|avx512` forces a
//! path for comparisons.

pub(crate) mod dense;
#[cfg(any(target_arch = "aarch64", test))]
mod neon;
#[cfg(all(test, not(target_arch = "aarch64")))]
mod neon_emu;
pub(crate) mod pool;
mod portable;
#[cfg(target_arch = "x86_64")]
mod x86;

use pool::SyncPtr;

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
            let (d, s) = quantize_block(xs, &mut out.q[b * 32..b * 32 + 32]);
            out.d[b] = d;
            out.sum[b] = s;
        }
        out
    }

    /// The rounded values `d·q`, block after block (tests).
    #[cfg(test)]
    pub(crate) fn values(&self) -> Vec<f32> {
        self.q.iter().enumerate().map(|(i, &q)| self.d[i / 32] * q as f32).collect()
    }

    /// Number of 32-blocks.
    pub fn blocks(&self) -> usize {
        self.d.len()
    }

    /// The scale of block `b` (`x ≈ d·q`), if it exists.
    pub fn scale(&self, b: usize) -> Option<f32> {
        self.d.get(b).copied()
    }

    /// The sum of the quantized values of block `b`, if it exists.
    pub fn sum(&self, b: usize) -> Option<i32> {
        self.sum.get(b).copied()
    }
}

/// Quantizes `xs` (any length) with one scale `max|x|/127`; returns `(d, Σq)`.
fn quantize_block(xs: &[f32], q: &mut [i8]) -> (f32, i32) {
    let amax = xs.iter().fold(0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let mut s = 0i32;
    for (o, v) in q.iter_mut().zip(xs) {
        let v = (v * id).round() as i32;
        *o = v as i8;
        s += v;
    }
    (d, s)
}

/// Activations of a whole product, `[n, cols]`, quantized for one weight type.
///
/// Every type gets 32-blocks with an f32 scale (finer than llama.cpp's 256-blocks for the K
/// types, which cost up to 1.4 in a logit on sensitive prompts of the engine golden test);
/// what the offsets and mins need comes precomputed per type.
#[derive(Debug, Clone)]
pub(crate) struct Acts {
    /// Tokens.
    n: usize,
    /// Values per token.
    cols: usize,
    /// `[n, cols]` quantized values.
    q: Vec<i8>,
    /// `[n, cols / 32]` block scales.
    d: Vec<f32>,
    /// Q4_0 / Q5_0 / Q8_0: `[n, cols/32]` offset correction `−off·Σq` (for Q8_0 only the
    /// row-interleaved AVX-512 kernel, which biases the weights by 128, uses it).
    corr: Vec<i32>,
    /// The offset `corr` was computed for.
    corr_off: Option<i32>,
    /// `[n, cols/16]` sums of each 16 quantized values (Q6_K reads them; the other extras
    /// derive from them).
    bsums: Vec<i16>,
    /// Q4_K / Q5_K / Q4_1: `[n, cols/32]` `d·Σq`, the block's sum in real units.
    xsum: Vec<f32>,
}

/// The unsigned offset of a 32-block type's weights (Q8_0: the bias that makes them unsigned
/// in the row-interleaved kernel; the others move Q8_0's signs onto x instead).
fn offset(ty: GgmlType) -> i32 {
    match ty {
        GgmlType::Q4_0 => 8,
        GgmlType::Q5_0 => 16,
        GgmlType::Q8_0 => 128,
        _ => 0,
    }
}

impl Acts {
    /// Quantizes `x: [n, cols]` (`cols` a multiple of 32, checked by the caller) and sums each
    /// 16 quantized values, all on the pool (split by tokens); the per-type extras derive from
    /// those sums in [`Acts::prepare`].
    fn quantize(isa: Isa, x: &[f32], n: usize, cols: usize) -> Self {
        let mut q = vec![0i8; n * cols];
        let mut d = vec![0f32; n * cols / 32];
        let mut bsums = vec![0i16; n * cols / 16];
        // Prefill quantizes up to 512 × 2048 values per product: tasks of 16 tokens.
        const TOKS: usize = 16;
        let (qp, dp, bp) = (SyncPtr(q.as_mut_ptr()), SyncPtr(d.as_mut_ptr()), SyncPtr(bsums.as_mut_ptr()));
        let nbr = cols / 32;
        let task = |c: usize| {
            let (t0, t1) = (c * TOKS, ((c + 1) * TOKS).min(n));
            // SAFETY: task `c` covers tokens `t0..t1 ≤ n`: values `[t0·cols, t1·cols)` of `x`
            // and `q`, blocks `[t0·nbr, t1·nbr)` of `d` and `[2·t0·nbr, 2·t1·nbr)` of `bsums`,
            // disjoint between tasks and inside the buffers (`q` has `n·cols` entries, `d`
            // `n·cols/32`, `bsums` `n·cols/16`).
            let (qs, ds, bs) = unsafe {
                (
                    std::slice::from_raw_parts_mut(qp.get().add(t0 * cols), (t1 - t0) * cols),
                    std::slice::from_raw_parts_mut(dp.get().add(t0 * nbr), (t1 - t0) * nbr),
                    std::slice::from_raw_parts_mut(bp.get().add(2 * t0 * nbr), 2 * (t1 - t0) * nbr),
                )
            };
            let xs = &x[t0 * cols..t1 * cols];
            let scalar = |qs: &mut [i8], ds: &mut [f32]| {
                for ((xb, qb), db) in xs.chunks_exact(32).zip(qs.chunks_exact_mut(32)).zip(ds.iter_mut()) {
                    *db = quantize_block(xb, qb).0;
                }
            };
            match isa {
                Isa::Portable => scalar(qs, ds),
                #[cfg(any(target_arch = "aarch64", test))]
                Isa::Neon | Isa::NeonDot => scalar(qs, ds),
                // SAFETY: these imply AVX2 was detected; the lengths match as `x86::quantize`
                // requires.
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni => unsafe { x86::quantize(xs, 32, qs, ds) },
            }
            for (o, qb) in bs.iter_mut().zip(qs.chunks_exact(16)) {
                *o = qb.iter().map(|&v| v as i16).sum::<i16>();
            }
        };
        if n * cols >= 16 * 1024 {
            pool::for_each(n.div_ceil(TOKS), &task);
        } else {
            (0..n.div_ceil(TOKS)).for_each(task);
        }
        Self { n, cols, q, d, corr: Vec::new(), corr_off: None, bsums, xsum: Vec::new() }
    }

    /// Fills what weights of type `ty` need besides `q`, `d` and `bsums`: `xsum` (Q4_K,
    /// Q5_K) or `corr` for the type's offset (32-block types). Cheap (one value per 32-block),
    /// and done once when several products share the activations.
    fn prepare(&mut self, ty: GgmlType) {
        let pair = |bs: &[i16]| bs[0] as i32 + bs[1] as i32;
        match ty {
            GgmlType::Q6_K => {}
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q4_1 => {
                if self.xsum.is_empty() {
                    self.xsum = self.bsums.chunks_exact(2).zip(&self.d).map(|(bs, &d)| d * pair(bs) as f32).collect();
                }
            }
            _ => {
                let off = offset(ty);
                if self.corr_off != Some(off) {
                    self.corr = self.bsums.chunks_exact(2).map(|bs| -off * pair(bs)).collect();
                    self.corr_off = Some(off);
                }
            }
        }
    }
}

/// Activations quantized once and shared by several products with the same input (q/k/v, or
/// gate/up): `[n, cols]`.
#[derive(Debug)]
pub(crate) struct Quantized {
    isa: Isa,
    acts: Acts,
}

impl Quantized {
    /// Quantizes `x: [n, cols]`; `cols` must be a multiple of 32 and `x` `n·cols` long.
    pub(crate) fn new(x: &[f32], n: usize, cols: usize) -> Result<Self> {
        if !cols.is_multiple_of(32) || n.checked_mul(cols) != Some(x.len()) {
            return Err(Error::InvalidParameter {
                name: "matmul",
                reason: format!("activations of {} values are not {n} rows of {cols} (a multiple of 32)", x.len()),
            });
        }
        let isa = Isa::best();
        Ok(Self { isa, acts: Acts::quantize(isa, x, n, cols) })
    }

    /// `y[t, r] = Σ_k W[r, k] · x[t, k]` for a `[rows, cols]` weight in GGUF blocks, written to
    /// `y: [n, rows]`.
    pub(crate) fn matmul_into(&mut self, ty: GgmlType, w: &[u8], rows_n: usize, y: &mut [f32]) -> Result<()> {
        let (n, cols) = (self.acts.n, self.acts.cols);
        let row_bytes = check_weight(ty, w, rows_n, cols)?;
        if n.checked_mul(rows_n) != Some(y.len()) {
            return Err(Error::InvalidParameter {
                name: "matmul",
                reason: format!("output of {} for {n}x{rows_n}", y.len()),
            });
        }
        if n == 0 || rows_n == 0 {
            return Ok(());
        }
        self.acts.prepare(ty);
        run(self.isa, ty, w, rows_n, row_bytes, &self.acts, y);
        Ok(())
    }

    /// Several products of this input with weights of one type, `(w, rows_n, y)` each (as
    /// [`Quantized::matmul_into`]), as one pool job.
    pub(crate) fn matmul_many_into(&mut self, ty: GgmlType, parts: &mut [(&[u8], usize, &mut [f32])]) -> Result<()> {
        let (n, cols) = (self.acts.n, self.acts.cols);
        let mut row_bytes = 0;
        for (w, rows_n, y) in parts.iter() {
            row_bytes = check_weight(ty, w, *rows_n, cols)?;
            if n.checked_mul(*rows_n) != Some(y.len()) {
                return Err(Error::InvalidParameter {
                    name: "matmul",
                    reason: format!("output of {} for {n}x{rows_n}", y.len()),
                });
            }
        }
        if n == 0 || parts.is_empty() {
            return Ok(());
        }
        self.acts.prepare(ty);
        run_many(self.isa, ty, row_bytes, &self.acts, parts, None);
        Ok(())
    }

    /// [`Quantized::matmul_many_into`] for one token (`n = 1`) with `fused`'s work in the same
    /// pool job: its pre tasks first, then each row chunk of product `k` runs
    /// [`Fused::post`] on the rows it wrote. One fork/join, and the fused work is split over
    /// the same threads as the products.
    pub(crate) fn matmul_many_fused(
        &mut self,
        ty: GgmlType,
        parts: &mut [(&[u8], usize, &mut [f32])],
        fused: &dyn Fused,
    ) -> Result<()> {
        if self.acts.n != 1 {
            return Err(Error::InvalidParameter {
                name: "matmul",
                reason: format!("fused work runs with one token, not {}", self.acts.n),
            });
        }
        let cols = self.acts.cols;
        let mut row_bytes = 0;
        for (w, rows_n, y) in parts.iter() {
            row_bytes = check_weight(ty, w, *rows_n, cols)?;
            if *rows_n != y.len() {
                return Err(Error::InvalidParameter {
                    name: "matmul",
                    reason: format!("output of {} for 1x{rows_n}", y.len()),
                });
            }
        }
        if parts.is_empty() {
            return Ok(());
        }
        self.acts.prepare(ty);
        run_many(self.isa, ty, row_bytes, &self.acts, parts, Some(fused));
        Ok(())
    }
}

/// Work fused into the pool job of one token's products ([`Quantized::matmul_many_fused`]),
/// e.g. a LoRA adapter's `y += B·(s·A·x)`: [`Fused::pre`] tasks (`A·x`) are handed out before
/// any product task, and [`Fused::post`] (`B` rows) runs after a product's row chunk is written,
/// once every pre task has finished. Neither may wait on anything (a pre task that waited could
/// deadlock the job).
pub(crate) trait Fused: Sync {
    /// How many pre tasks.
    fn pre_tasks(&self) -> usize;
    /// Runs pre task `task` (`< pre_tasks()`).
    fn pre(&self, task: usize);
    /// Updates rows `r0..r0 + y.len()` of product `product` (its index in the `parts`), which
    /// the base product has just written.
    fn post(&self, product: usize, r0: usize, y: &mut [f32]);
}

/// Checks a `[rows_n, cols]` weight of type `ty` (kernel, block multiple, byte length); returns
/// its row size in bytes.
fn check_weight(ty: GgmlType, w: &[u8], rows_n: usize, cols: usize) -> Result<usize> {
    if !supported(ty) {
        return Err(Error::UnsupportedType { ty: format!("{ty} (no CPU kernel)") });
    }
    let row_bytes =
        ty.bytes_for(cols as u64).ok_or_else(|| Error::UnsupportedType { ty: format!("{ty} row of {cols}") })? as usize;
    if !cols.is_multiple_of(32) || rows_n.checked_mul(row_bytes) != Some(w.len()) {
        return Err(Error::InvalidParameter {
            name: "matmul",
            reason: format!("shape mismatch: {rows_n}x{cols} {ty} in {} bytes", w.len()),
        });
    }
    Ok(row_bytes)
}

/// An instruction set the kernels are compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Isa {
    /// Plain Rust, every target.
    Portable,
    /// aarch64 NEON (baseline, every aarch64 CPU); in this crate's unit tests on other CPUs,
    /// the same kernels over a scalar emulation of the intrinsics.
    #[cfg(any(target_arch = "aarch64", test))]
    Neon,
    /// aarch64 NEON with the dot-product extension (`sdot`, ARMv8.2+), detected at run time;
    /// emulated in the unit tests as `Neon` is.
    #[cfg(any(target_arch = "aarch64", test))]
    NeonDot,
    /// x86-64 AVX2 + FMA + F16C (`vpmaddubsw`).
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// x86-64 AVX2 + AVX-VNNI (`vpdpbusd`, `vpdpwssd`).
    #[cfg(target_arch = "x86_64")]
    AvxVnni,
    /// x86-64 AVX-512 VL/BW/VNNI on 256-bit vectors: 32 registers, wider token tiles.
    #[cfg(target_arch = "x86_64")]
    Avx512Vnni,
}

impl Isa {
    /// Every instruction set this CPU can run, portable first.
    pub(crate) fn available() -> Vec<Isa> {
        let all = [
            Isa::Portable,
            #[cfg(any(target_arch = "aarch64", test))]
            Isa::Neon,
            #[cfg(any(target_arch = "aarch64", test))]
            Isa::NeonDot,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni,
        ];
        all.into_iter().filter(|i| i.runs_here()).collect()
    }

    /// Whether this CPU can run the instruction set.
    pub(crate) fn runs_here(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(any(target_arch = "aarch64", test))]
            Isa::Neon => true,
            #[cfg(any(target_arch = "aarch64", test))]
            Isa::NeonDot => neon::has_dotprod(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => x86::has_avx2(),
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => x86::has_avx_vnni(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => x86::has_avx512_vnni(),
        }
    }

    /// Whether this is one of the x86 SIMD paths (all imply AVX2, FMA and F16C).
    pub(crate) fn is_x86_simd(self) -> bool {
        match self {
            Isa::Portable => false,
            #[cfg(any(target_arch = "aarch64", test))]
            Isa::Neon | Isa::NeonDot => false,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 | Isa::AvxVnni | Isa::Avx512Vnni => true,
        }
    }

    /// The short name (`portable`, `neon`, `neondot`, `avx2`, `avxvnni`, `avx512`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(any(target_arch = "aarch64", test))]
            Isa::Neon => "neon",
            #[cfg(any(target_arch = "aarch64", test))]
            Isa::NeonDot => "neondot",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::AvxVnni => "avxvnni",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => "avx512",
        }
    }

    /// The fastest instruction set this CPU can run (detected once), unless the environment
    /// variable `EDGEWISE_CPU_KERNELS` names another available one.
    pub(crate) fn best() -> Isa {
        static BEST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| {
            // The unit tests' emulated NEON (off aarch64) is for correctness only.
            let available: Vec<Isa> = Isa::available()
                .into_iter()
                .filter(|i| cfg!(target_arch = "aarch64") || !i.name().starts_with("neon"))
                .collect();
            let mut isa = available.last().copied().unwrap_or(Isa::Portable);
            // `EDGEWISE_CPU_KERNELS=portable|neon|neondot|avx2|avxvnni|avx512` picks a slower path (to
            // compare them); a name this CPU cannot run is ignored.
            if let Ok(want) = std::env::var("EDGEWISE_CPU_KERNELS") {
                match available.iter().find(|i| i.name() == want.to_ascii_lowercase()) {
                    Some(&i) => isa = i,
                    None => log::warn!("EDGEWISE_CPU_KERNELS={want} not available here; using {}", isa.name()),
                }
            }
            log::debug!("quant::cpu kernels: {}", isa.name());
            isa
        })
    }
}

/// Whether `ty` has a CPU kernel.
pub fn supported(ty: GgmlType) -> bool {
    matches!(
        ty,
        GgmlType::Q8_0
            | GgmlType::Q4_0
            | GgmlType::Q4_1
            | GgmlType::Q5_0
            | GgmlType::Q4_K
            | GgmlType::Q5_K
            | GgmlType::Q6_K
    )
}

/// `y[t, r] = Σ_k W[r, k] · x[t, k]` for a `[rows, cols]` weight in GGUF blocks and `n` activation
/// rows `x: [n, cols]` (row-major). Returns `[n, rows]`.
pub fn matmul(ty: GgmlType, w: &[u8], rows_n: usize, cols: usize, x: &[f32], n: usize) -> Result<Vec<f32>> {
    matmul_with(Isa::best(), ty, w, rows_n, cols, x, n)
}

/// [`matmul`] on a given instruction set (the tests force each one); an error if this CPU
/// cannot run it.
pub(crate) fn matmul_with(
    isa: Isa,
    ty: GgmlType,
    w: &[u8],
    rows_n: usize,
    cols: usize,
    x: &[f32],
    n: usize,
) -> Result<Vec<f32>> {
    let row_bytes = check_weight(ty, w, rows_n, cols)?;
    if n.checked_mul(cols) != Some(x.len()) {
        return Err(Error::InvalidParameter {
            name: "matmul",
            reason: format!("shape mismatch: {rows_n}x{cols} {ty}, x of {}", x.len()),
        });
    }
    if !isa.runs_here() {
        return Err(Error::InvalidParameter {
            name: "isa",
            reason: format!("{} kernels need CPU features this machine lacks", isa.name()),
        });
    }
    let len = n
        .checked_mul(rows_n)
        .ok_or_else(|| Error::InvalidParameter { name: "matmul", reason: format!("{n}x{rows_n} output overflows") })?;
    let mut y = vec![0f32; len];
    if n == 0 || rows_n == 0 || cols == 0 {
        return Ok(y);
    }
    let mut acts = Acts::quantize(isa, x, n, cols);
    acts.prepare(ty);
    run(isa, ty, w, rows_n, row_bytes, &acts, &mut y);
    Ok(y)
}

/// Runs the product on the pool (see `plan`), writing `y: [n, rows_n]`. The caller checked the
/// shapes (`w` is `rows_n · row_bytes` bytes of `ty`, `acts` matches, `y` has `n · rows_n`
/// values) and prepared `acts` for `ty`.
fn run(isa: Isa, ty: GgmlType, w: &[u8], rows_n: usize, row_bytes: usize, acts: &Acts, y: &mut [f32]) {
    run_many(isa, ty, row_bytes, acts, &mut [(w, rows_n, y)], None);
}

/// [`run`] for several products of one type and one input, `(w, rows_n, y)` each, as one pool
/// job (q/k/v, gate/up: one barrier instead of three or two). Products whose shapes do not
/// hold are skipped (the callers checked them). With `fused` (one token only, checked by the
/// caller), its pre tasks come first in the same job and each row chunk then runs its post.
fn run_many(
    isa: Isa,
    ty: GgmlType,
    row_bytes: usize,
    acts: &Acts,
    parts: &mut [(&[u8], usize, &mut [f32])],
    fused: Option<&dyn Fused>,
) {
    let n = acts.n;
    let threads = pool::threads();
    // Per product: its index, weights, rows, output, rows and tokens per task, row and token chunks.
    struct Split<'a> {
        k: usize,
        w: &'a [u8],
        rows_n: usize,
        out: SyncPtr<f32>,
        chunk_rows: usize,
        chunk_toks: usize,
        row_chunks: usize,
        tasks: usize,
    }
    let splits: Vec<Split<'_>> = parts
        .iter_mut()
        .enumerate()
        .filter(|(_, (w, rows_n, y))| n > 0 && *rows_n > 0 && w.len() >= rows_n * row_bytes && y.len() >= n * rows_n)
        .map(|(k, (w, rows_n, y))| {
            let (chunk_rows, chunk_toks) = plan(*rows_n, row_bytes, n, threads);
            let row_chunks = rows_n.div_ceil(chunk_rows);
            let tasks = row_chunks * n.div_ceil(chunk_toks);
            Split { k, w, rows_n: *rows_n, out: SyncPtr(y.as_mut_ptr()), chunk_rows, chunk_toks, row_chunks, tasks }
        })
        .collect();
    let fused = fused.filter(|_| n == 1);
    let pre = fused.map_or(0, |f| f.pre_tasks());
    // Pre tasks finished (counted also when one unwinds, so that no post waits forever).
    let done = std::sync::atomic::AtomicUsize::new(0);
    struct Count<'a>(&'a std::sync::atomic::AtomicUsize);
    impl Drop for Count<'_> {
        fn drop(&mut self) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
    }
    let total: usize = splits.iter().map(|s| s.tasks).sum::<usize>() + pre;
    pool::for_each(total, &|task| {
        // Tasks are handed out in increasing order, so every pre task is taken (and runs
        // without waiting) before any product task starts: the wait below ends.
        if task < pre {
            let _count = Count(&done);
            if let Some(f) = fused {
                f.pre(task);
            }
            return;
        }
        let mut task = task - pre;
        let Some(sp) = splits.iter().find(|s| {
            let here = task < s.tasks;
            if !here {
                task -= s.tasks;
            }
            here
        }) else {
            return;
        };
        let (rc, tc) = (task % sp.row_chunks, task / sp.row_chunks);
        let r0 = rc * sp.chunk_rows;
        let r1 = (r0 + sp.chunk_rows).min(sp.rows_n);
        let t0 = tc * sp.chunk_toks;
        let t1 = (t0 + sp.chunk_toks).min(n);
        // SAFETY: `w` holds `rows_n · row_bytes` bytes and `r0 < r1 ≤ rows_n`; `out` points to
        // `n · rows_n` floats (filtered above) and the task writes only `[t0..t1, r0..r1]` of
        // its product, disjoint from every other task's; `acts` has `n ≥ t1` tokens of `cols`
        // values; `isa` was detected on this CPU (or is the portable path).
        unsafe {
            chunk(
                isa,
                ty,
                sp.w.as_ptr().add(r0 * row_bytes),
                row_bytes,
                r1 - r0,
                acts,
                t0..t1,
                sp.out.get().add(r0),
                sp.rows_n,
            )
        };
        if let Some(f) = fused {
            let mut spins = 0u32;
            while done.load(std::sync::atomic::Ordering::Acquire) < pre {
                spins = spins.wrapping_add(1);
                if spins.is_multiple_of(256) {
                    std::thread::yield_now();
                } else {
                    std::hint::spin_loop();
                }
            }
            // SAFETY: one token (`n = 1`, so `t0 = 0`): this task alone wrote and owns
            // `out[r0..r1]`, inside the `rows_n` floats of its product.
            let y = unsafe { std::slice::from_raw_parts_mut(sp.out.get().add(r0), r1 - r0) };
            f.post(sp.k, r0, y);
        }
    });
}

/// How a product is split into tasks: `(rows, tokens)` per task.
///
/// Decode (`n ≤ 4`) streams each weight once: row chunks of at least 16 KiB of weights (a few
/// microseconds, well above the pool's ~1 µs hand-off), and 2 per thread so that every thread
/// gets work and the atomic task counter balances them. Not more: each task starts a new stream
/// (its first rows wait on memory before the prefetch runs ahead), and 4 per thread decoded
/// ~3.5 % slower than 2 here (77.1 vs 79.9 tok/s, three alternating runs each; 1 per thread:
/// 78.9). Prefill keeps each row chunk
/// (≤ 96 KiB of weights, whole 16-row groups for the AVX-512 repack) in L2 while token tiles
/// pass over it, and splits the tokens too (≥ 32 per task, which keeps the repack below a few
/// percent) when the rows alone give fewer than 4 tasks per thread: a 256-row K projection is
/// only 2 row chunks.
fn plan(rows_n: usize, row_bytes: usize, n: usize, threads: usize) -> (usize, usize) {
    if n <= 4 {
        let balance = rows_n.div_ceil(threads * 2);
        let work = 16 * 1024 / (row_bytes * n).max(1);
        return (balance.max(work).max(4).next_multiple_of(4), n.max(1));
    }
    let balance = rows_n.div_ceil(threads * 4);
    let l2 = (96 * 1024 / row_bytes.max(1)).max(16);
    let rows = l2.min(balance.max(16)).next_multiple_of(16);
    let row_chunks = rows_n.div_ceil(rows);
    let want = (threads * 4).div_ceil(row_chunks);
    let toks = n.div_ceil(want).max(32).next_multiple_of(8).min(n);
    (rows, toks.max(1))
}

/// Computes `nr` rows (from `w`) for the tokens `toks` of `acts`, writing `y[t · ystride + r]`.
///
/// # Safety
/// `w` must hold `nr · row_bytes` readable bytes of `ty` blocks, `y` must be valid for writes at
/// `t · ystride + r` for `t` in `toks` (`toks.end ≤ acts.n`), `r < nr`, and `isa` must be
/// supported by this CPU.
#[allow(clippy::too_many_arguments)]
unsafe fn chunk(
    isa: Isa,
    ty: GgmlType,
    w: *const u8,
    row_bytes: usize,
    nr: usize,
    acts: &Acts,
    toks: std::ops::Range<usize>,
    y: *mut f32,
    ystride: usize,
) {
    match isa {
        // SAFETY: forwarded from the caller.
        Isa::Portable => unsafe { portable::chunk(ty, w, row_bytes, nr, acts, toks, y, ystride) },
        // SAFETY: forwarded from the caller.
        #[cfg(any(target_arch = "aarch64", test))]
        Isa::Neon => unsafe { neon::chunk(false, ty, w, row_bytes, nr, acts, toks, y, ystride) },
        // SAFETY: forwarded from the caller; `dotprod` was detected.
        #[cfg(any(target_arch = "aarch64", test))]
        Isa::NeonDot => unsafe { neon::chunk(true, ty, w, row_bytes, nr, acts, toks, y, ystride) },
        // SAFETY: forwarded from the caller; AVX2/FMA/F16C were detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::chunk_avx2(ty, w, row_bytes, nr, acts, toks, y, ystride) },
        // SAFETY: forwarded from the caller; AVX-VNNI (and AVX2) were detected.
        #[cfg(target_arch = "x86_64")]
        Isa::AvxVnni => unsafe { x86::chunk_vnni(ty, w, row_bytes, nr, acts, toks, y, ystride) },
        // SAFETY: forwarded from the caller; AVX-512 F/VL/BW/VNNI (and AVX2) were detected.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512Vnni => unsafe { x86::chunk_avx512(ty, w, row_bytes, nr, acts, toks, y, ystride) },
    }
}

/// `g[i] = gelu_tanh(g[i]) · u[i]` over the common length (Gemma's GeGLU), vectorized.
///
/// `0.5·x·(1 + tanh(z))` is computed as the equal `x / (1 + e^(−2z))`, `z = √(2/π)·(x +
/// 0.044715·x³)`, with a branch-free `exp` (Cephes' polynomial, ~1 ulp) the compiler turns into
/// SIMD: libm's `tanhf` per element was a sixth of a prefill.
pub(crate) fn gelu_mul(g: &mut [f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected.
        return unsafe { gelu_mul_avx2(g, u) };
    }
    gelu_mul_body(g, u)
}

/// [`gelu_mul`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_mul_avx2(g: &mut [f32], u: &[f32]) {
    gelu_mul_body(g, u)
}

#[inline(always)]
fn gelu_mul_body(g: &mut [f32], u: &[f32]) {
    const SQRT_2_OVER_PI: f32 = (std::f64::consts::FRAC_2_SQRT_PI * std::f64::consts::FRAC_1_SQRT_2) as f32;
    for (x, &y) in g.iter_mut().zip(u) {
        let a = *x;
        let z = (a + a * a * a * 0.044715) * SQRT_2_OVER_PI;
        *x = a / (1.0 + exp_approx(-2.0 * z)) * y;
    }
}

/// `x[i] = 0.5·x·(1 + erf(x/√2))` (GELU with erf, BERT's), vectorized: `erf` from Numerical
/// Recipes' `erfc` Chebyshev fit (fractional error < 1.2e-7) evaluated in f32 with the
/// branch-free [`exp_approx`]; absolute error of `erf` below 4e-7 (test; 3.1e-7 measured). The per-element f64
/// version was ~10 % of a one-text embedding.
pub(crate) fn gelu_erf(x: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected.
        return unsafe { gelu_erf_avx2(x) };
    }
    gelu_erf_body(x)
}

/// [`gelu_erf`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gelu_erf_avx2(x: &mut [f32]) {
    gelu_erf_body(x)
}

#[inline(always)]
fn gelu_erf_body(x: &mut [f32]) {
    for v in x.iter_mut() {
        let a = *v;
        *v = 0.5 * a * (1.0 + erf_approx(a * std::f32::consts::FRAC_1_SQRT_2));
    }
}

/// erf(x) without branches (see [`gelu_erf`]).
#[inline(always)]
pub(crate) fn erf_approx(x: f32) -> f32 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let e = 1.0 - t * exp_approx(p - z * z);
    if x < 0.0 {
        -e
    } else {
        e
    }
}

/// `g[i] = silu(g[i]) · u[i] = g[i] / (1 + e^(−g[i])) · u[i]` over the common length (SwiGLU),
/// vectorized with the same branch-free `exp` as [`gelu_mul`].
pub(crate) fn silu_mul(g: &mut [f32], u: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected.
        return unsafe { silu_mul_avx2(g, u) };
    }
    silu_mul_body(g, u)
}

/// [`silu_mul`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn silu_mul_avx2(g: &mut [f32], u: &[f32]) {
    silu_mul_body(g, u)
}

#[inline(always)]
fn silu_mul_body(g: &mut [f32], u: &[f32]) {
    for (x, &y) in g.iter_mut().zip(u) {
        let a = *x;
        *x = a / (1.0 + exp_approx(-a)) * y;
    }
}

/// `v[i] = e^v[i]` with [`exp_approx`], vectorized (attention's softmax).
pub(crate) fn exp_in_place(v: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected.
        return unsafe { exp_in_place_avx2(v) };
    }
    v.iter_mut().for_each(|x| *x = exp_approx(*x));
}

/// [`exp_in_place`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_in_place_avx2(v: &mut [f32]) {
    v.iter_mut().for_each(|x| *x = exp_approx(*x));
}

/// `Σ e^(v[i] − m)` with [`exp_approx`] in 8 f32 lanes, each lane's partial sums added in f64
/// per 1024 values (softmax normalizers over a whole vocabulary: 262144 libm `exp`s a token were
/// ~3 % of decode).
pub(crate) fn sum_exp(v: &[f32], m: f32) -> f64 {
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected.
        return unsafe { sum_exp_avx2(v, m) };
    }
    sum_exp_body(v, m)
}

/// [`sum_exp`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn sum_exp_avx2(v: &[f32], m: f32) -> f64 {
    sum_exp_body(v, m)
}

#[inline(always)]
fn sum_exp_body(v: &[f32], m: f32) -> f64 {
    // The exps as a plain map into a small buffer (a loop the compiler vectorizes, as in
    // `exp_in_place`), then vertical adds into 8 lanes.
    let mut buf = [0f32; 64];
    let mut total = 0f64;
    for block in v.chunks(1024) {
        let mut lanes = [0f32; 8];
        for piece in block.chunks(64) {
            let e = &mut buf[..piece.len()];
            for (o, &x) in e.iter_mut().zip(piece) {
                *o = exp_approx(x - m);
            }
            let mut it = e.chunks_exact(8);
            for c in &mut it {
                for k in 0..8 {
                    lanes[k] += c[k];
                }
            }
            total += it.remainder().iter().map(|&x| x as f64).sum::<f64>();
        }
        total += lanes.iter().map(|&l| l as f64).sum::<f64>();
    }
    total
}

/// `e^x` without branches (so loops over it vectorize): Cephes `expf`'s range reduction and
/// polynomial, ~1 ulp on `[-87, 88]`; the input is clamped to that range (below it the result
/// is ~1e-38 instead of 0, above it ~1.6e38 instead of ∞).
#[inline(always)]
pub(crate) fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // Adding and subtracting 1.5·2^23 rounds to the nearest integer (|x·log2e| < 2^22).
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let k = (x * LOG2E + ROUND) - ROUND;
    let r = x - k * 0.693_359_4 - k * -2.121_944_4e-4;
    let r2 = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 0.166_666_65) * r
        + 0.5;
    let e = p * r2 + r + 1.0;
    // 2^k through the exponent bits: k ∈ [-126, 127] after the clamp, so k + 127 ∈ [1, 254] is
    // the low mantissa byte of the exact float k + 127 + 2^23 (bit operations that vectorize;
    // `k as i32` saturates, which the compiler did lane by lane: a quarter of GELU's time).
    let pow2 = f32::from_bits(((k + (127.0 + 8_388_608.0)).to_bits() & 0xff) << 23);
    e * pow2
}

/// `y[i] += a·x[i]` over the common length (attention's weighted sum of values).
pub(crate) fn axpy_f32(y: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected.
        return unsafe { x86::axpy_f32(y, a, x) };
    }
    for (o, v) in y.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// `Σ a[i]·b[i]` over the common length (the DeltaNet recurrence's row products); SIMD where
/// the CPU has it, else 8 lanes the compiler vectorizes.
pub(crate) fn dot_f32(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected.
        return unsafe { x86::dot_f32(a, b) };
    }
    let n = a.len().min(b.len());
    let mut lanes = [0f32; 8];
    let (ca, cb) = (a[..n].chunks_exact(8), b[..n].chunks_exact(8));
    let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..8 {
            lanes[k] += x[k] * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `C[m×n] += A[m×k]·B[k×n]`, row-major with leading dimensions `lda`, `ldb`, `ldc` (the
/// DeltaNet chunk's small products: 64-token chunks against 128-wide heads). On x86 SIMD a
/// register-tiled AVX2/FMA kernel takes the 16-column panels (also with the AVX-512 `Isa`: a
/// 512-bit variant was 1.3× slower on this Xeon, 3.1–3.2 vs 2.37–2.39 ms per 0.8B layer and
/// chunk, and slowed the rest of the process); rank-1 row updates the compiler vectorizes take
/// the other columns, and every column elsewhere. Shapes that do not fit the slices panic (a
/// caller's bug, as indexing).
#[allow(clippy::too_many_arguments)]
pub(crate) fn gemm_f32(
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    let fits = |len: usize, rows: usize, cols: usize, ld: usize| cols <= ld && len >= (rows - 1) * ld + cols;
    assert!(
        fits(a.len(), m, k, lda) && fits(b.len(), k, n, ldb) && fits(c.len(), m, n, ldc),
        "gemm_f32: shapes do not fit the slices"
    );
    gemm_f32_with(Isa::best(), m, n, k, a, lda, b, ldb, c, ldc);
}

/// [`gemm_f32`] on the given instruction set (the tests try each); the shapes already checked.
#[allow(clippy::too_many_arguments)]
fn gemm_f32_with(
    isa: Isa,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let mut j0 = 0;
    #[cfg(target_arch = "x86_64")]
    if isa.is_x86_simd() && n - j0 >= 16 {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected; columns `j0..n` of the
        // checked shapes (B and C offset by `j0`, inside their slices).
        unsafe { x86::gemm_f32_16(m, n - j0, k, a.as_ptr(), lda, b[j0..].as_ptr(), ldb, c[j0..].as_mut_ptr(), ldc) };
        j0 = n - n % 16;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = isa;
    gemm_f32_cols(m, j0..n, k, a, lda, b, ldb, c, ldc);
}

/// [`gemm_f32`] over the columns `cols` only, portable: tiles of 4 rows × 16 columns with the
/// accumulators in locals (NEON's or SSE's registers once vectorized), rank-1 row updates for
/// a last panel narrower than 16.
#[allow(clippy::too_many_arguments)]
fn gemm_f32_cols(
    m: usize,
    cols: std::ops::Range<usize>,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let mut j = cols.start;
    while j + 16 <= cols.end {
        let mut i = 0;
        while i + 4 <= m {
            gemm_tile_portable::<4>(k, &a[i * lda..], lda, &b[j..], ldb, &mut c[i * ldc + j..], ldc);
            i += 4;
        }
        match m - i {
            3 => gemm_tile_portable::<3>(k, &a[i * lda..], lda, &b[j..], ldb, &mut c[i * ldc + j..], ldc),
            2 => gemm_tile_portable::<2>(k, &a[i * lda..], lda, &b[j..], ldb, &mut c[i * ldc + j..], ldc),
            1 => gemm_tile_portable::<1>(k, &a[i * lda..], lda, &b[j..], ldb, &mut c[i * ldc + j..], ldc),
            _ => {}
        }
        j += 16;
    }
    if j >= cols.end {
        return;
    }
    for i in 0..m {
        let ci = &mut c[i * ldc + j..i * ldc + cols.end];
        for (p, &ap) in a[i * lda..i * lda + k].iter().enumerate() {
            let bp = &b[p * ldb + j..p * ldb + cols.end];
            for (o, &x) in ci.iter_mut().zip(bp) {
                *o += ap * x;
            }
        }
    }
}

/// One `R × 16` tile of [`gemm_f32_cols`] (`a`, `b`, `c` start at the tile's corner).
#[inline(always)]
fn gemm_tile_portable<const R: usize>(
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    c: &mut [f32],
    ldc: usize,
) {
    let mut acc = [[0f32; 16]; R];
    for (r, t) in acc.iter_mut().enumerate() {
        t.copy_from_slice(&c[r * ldc..r * ldc + 16]);
    }
    for p in 0..k {
        let bp = &b[p * ldb..p * ldb + 16];
        for (r, t) in acc.iter_mut().enumerate() {
            let av = a[r * lda + p];
            for (y, &x) in t.iter_mut().zip(bp) {
                *y += av * x;
            }
        }
    }
    for (r, t) in acc.iter().enumerate() {
        c[r * ldc..r * ldc + 16].copy_from_slice(t);
    }
}

/// One token of the gated delta rule (Qwen 3.5's DeltaNet) for one head, in place on its state
/// `s` (`v.len()` rows of `k.len()` values), with `decay = e^g`: per row, `row *= decay`,
/// `δ = (v_j − row·k)·β`, `row += δ·k`, `o_j = row·q`. On x86 SIMD with rows a multiple of 16
/// wide, one fused kernel (two passes per row, bit-identical to these steps with [`dot_f32`] and
/// [`axpy_f32`]); otherwise those steps one after the other.
pub(crate) fn delta_rows(s: &mut [f32], q: &[f32], k: &[f32], v: &[f32], decay: f32, beta: f32, o: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() && !k.is_empty() && k.len().is_multiple_of(16) && q.len() >= k.len() {
        // SAFETY: the x86 SIMD `Isa`s imply AVX2 and FMA were detected; the width and `q` were
        // just checked.
        return unsafe { x86::delta_rows16(s, q, k, v, decay, beta, o) };
    }
    delta_rows_steps(s, q, k, v, decay, beta, o);
}

/// [`delta_rows`] step by step (the reference the fused kernel equals).
fn delta_rows_steps(s: &mut [f32], q: &[f32], k: &[f32], v: &[f32], decay: f32, beta: f32, o: &mut [f32]) {
    for ((row, &vj), oj) in s.chunks_exact_mut(k.len().max(1)).zip(v).zip(o.iter_mut()) {
        row.iter_mut().for_each(|a| *a *= decay);
        let delta = (vj - dot_f32(row, k)) * beta;
        axpy_f32(row, delta, k);
        *oj = dot_f32(row, q);
    }
}

/// Asks the CPU to bring `row` into cache ahead of its use (attention's keys and values come
/// from L3: the KV cache of all layers does not fit L2). A hint: never faults, no-op off x86.
#[inline(always)]
pub(crate) fn prefetch<T>(row: &[T]) {
    // SAFETY: prefetches never fault; SSE is baseline on x86-64.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        x86::prefetch_block(row.as_ptr() as *const u8, std::mem::size_of_val(row))
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

/// Attention scores of a group of query heads against one f16 key row (the host KV cache's
/// keys): `out[j] = Σ_i q[j·hd + i]·k[i]` with `hd = k.len()`, for the `out.len()` heads whose
/// rows lie back to back in `q`. The key is widened on the fly, once for all the heads; SIMD
/// where the CPU has it.
pub(crate) fn dot_heads_f16(q: &[f32], k: &[half::f16], out: &mut [f32]) {
    let hd = k.len();
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() && q.len() >= out.len() * hd {
        let mut j = 0;
        while j < out.len() {
            let qj = q[j * hd..].as_ptr();
            let o = &mut out[j..];
            let g = o.len().min(4);
            // No allocation: this runs once per key, head group and layer.
            // SAFETY: the x86 SIMD `Isa`s imply AVX2, FMA and F16C; heads `j..j + G` of `q`
            // (checked above) and the `hd` values of `k` are in bounds.
            unsafe {
                match g {
                    1 => o[..1].copy_from_slice(&x86::dot_heads_f16::<1>(qj, hd, k.as_ptr(), hd)),
                    2 => o[..2].copy_from_slice(&x86::dot_heads_f16::<2>(qj, hd, k.as_ptr(), hd)),
                    3 => o[..3].copy_from_slice(&x86::dot_heads_f16::<3>(qj, hd, k.as_ptr(), hd)),
                    _ => o[..4].copy_from_slice(&x86::dot_heads_f16::<4>(qj, hd, k.as_ptr(), hd)),
                }
            }
            j += g;
        }
        return;
    }
    dot_heads_f16_portable(q, k, out);
}

/// Values widened per step of the portable attention kernels (a stack buffer).
const WIDEN: usize = 64;

/// [`dot_heads_f16`] without SIMD intrinsics (aarch64 phones, x86 without AVX2): the key is
/// widened `WIDEN` values at a time by `half`'s slice conversion (`fcvtl` on aarch64 CPUs with
/// FP16, F16C on x86), then each head's dot runs in 8 f32 lanes, which the compiler vectorizes.
fn dot_heads_f16_portable(q: &[f32], k: &[half::f16], out: &mut [f32]) {
    use half::slice::HalfFloatSliceExt;
    let hd = k.len();
    let mut kf = [0f32; WIDEN];
    for (o, qj) in out.iter_mut().zip(q.chunks(hd.max(1))) {
        let mut acc = [0f32; 8];
        let mut tail = 0f32;
        for (kc, qc) in k.chunks(WIDEN).zip(qj.chunks(WIDEN)) {
            let kw = &mut kf[..kc.len()];
            kc.convert_to_f32_slice(kw);
            let (cq, ck) = (qc.chunks_exact(8), kw.chunks_exact(8));
            let (rq, rk) = (cq.remainder(), ck.remainder());
            for (x, y) in cq.zip(ck) {
                for t in 0..8 {
                    acc[t] += x[t] * y[t];
                }
            }
            tail += rq.iter().zip(rk).map(|(x, y)| x * y).sum::<f32>();
        }
        *o = acc.iter().sum::<f32>() + tail;
    }
}

/// Attention's weighted sum of f16 value rows (the host KV cache's values) for a group of `g`
/// query heads: for each head `j < g`, `y[j·ystride..][..hd] += Σ_n w[n·g + j] · v[keys[n]·hd..][..hd]`,
/// keys in order. Each value row is widened once for all the heads; per output the sum runs in
/// key order, as one `axpy` per head and key would. A shape that does not fit is an error.
pub(crate) fn axpy_heads_f16(
    y: &mut [f32],
    ystride: usize,
    g: usize,
    w: &[f32],
    v: &[half::f16],
    hd: usize,
    keys: &[usize],
) -> Result<()> {
    let rows_fit =
        keys.iter().all(|&p| p.checked_add(1).and_then(|q| q.checked_mul(hd)).is_some_and(|end| end <= v.len()));
    let y_fits = g == 0
        || ((g - 1).checked_mul(ystride).and_then(|o| o.checked_add(hd)).is_some_and(|end| end <= y.len())
            && ystride >= hd);
    if !rows_fit || !y_fits || w.len() < keys.len() * g {
        return Err(Error::Backend { reason: format!("attention values: {g} heads of {hd} over {} keys", keys.len()) });
    }
    #[cfg(target_arch = "x86_64")]
    if Isa::best().is_x86_simd() {
        let mut j = 0;
        while j < g {
            let (yj, wj) = (y[j * ystride..].as_mut_ptr(), w[j..].as_ptr());
            // SAFETY: the x86 SIMD `Isa`s imply AVX2, FMA and F16C; rows `j..j + G` of `y`,
            // weights `n·g + j + G − 1 < keys.len()·g` and every listed value row were checked
            // above.
            let step = unsafe {
                match g - j {
                    1 => x86::axpy_heads_f16::<1>(yj, ystride, wj, g, v.as_ptr(), hd, keys),
                    2 => x86::axpy_heads_f16::<2>(yj, ystride, wj, g, v.as_ptr(), hd, keys),
                    3 => x86::axpy_heads_f16::<3>(yj, ystride, wj, g, v.as_ptr(), hd, keys),
                    _ => x86::axpy_heads_f16::<4>(yj, ystride, wj, g, v.as_ptr(), hd, keys),
                }
                (g - j).min(4)
            };
            j += step;
        }
        return Ok(());
    }
    axpy_heads_f16_portable(y, ystride, g, w, v, hd, keys);
    Ok(())
}

/// [`axpy_heads_f16`] without SIMD intrinsics, on shapes it has checked: each value row is
/// widened `WIDEN` values at a time (as in [`dot_heads_f16_portable`]) once for all the heads.
fn axpy_heads_f16_portable(
    y: &mut [f32],
    ystride: usize,
    g: usize,
    w: &[f32],
    v: &[half::f16],
    hd: usize,
    keys: &[usize],
) {
    use half::slice::HalfFloatSliceExt;
    let mut vf = [0f32; WIDEN];
    for (n, &p) in keys.iter().enumerate() {
        let row = &v[p * hd..(p + 1) * hd];
        for (c, vc) in row.chunks(WIDEN).enumerate() {
            let vw = &mut vf[..vc.len()];
            vc.convert_to_f32_slice(vw);
            for j in 0..g {
                let a = w[n * g + j];
                let o = &mut y[j * ystride + c * WIDEN..j * ystride + c * WIDEN + vw.len()];
                for (o, &x) in o.iter_mut().zip(vw.iter()) {
                    *o += a * x;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn erf_approx_matches_f64_erf() {
        // Against the f64 evaluation of the same fit (itself within 1.2e-7 of erf, checked
        // against tables in embed::bert), over [-6, 6].
        let mut worst = 0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 / 10_000.0;
            let d = (erf_approx(x) as f64 - crate::embed::bert::erf(x) as f64).abs();
            worst = worst.max(d);
        }
        assert!(worst < 4e-7, "erf_approx off by {worst}");
        let mut g = vec![-3.0f32, -0.5, 0.0, 0.7, 2.5, 10.0, -10.0];
        let want: Vec<f32> =
            g.iter().map(|&a| 0.5 * a * (1.0 + crate::embed::bert::erf(a * std::f32::consts::FRAC_1_SQRT_2))).collect();
        gelu_erf(&mut g);
        for (a, b) in g.iter().zip(&want) {
            assert!((a - b).abs() <= 4e-7 * (1.0 + b.abs()), "{a} vs {b}");
        }
    }

    use super::*;

    /// The f16 attention kernels against plain f64 sums of the widened values, on head dims that
    /// exercise the 16-, 8- and 1-wide paths and on 1 to 7 heads (the 4-, then 3/2/1-head tiles).
    /// Tolerance: f32 accumulation order (relative 1e-5).
    #[test]
    fn f16_attention_kernels_match_scalar() {
        for hd in [1usize, 7, 8, 31, 32, 33, 256, 259] {
            for g in 1..=7 {
                let q: Vec<f32> = (0..g * hd).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.031).collect();
                let rows = 70;
                let v: Vec<half::f16> =
                    (0..rows * hd).map(|i| half::f16::from_f32(((i * 53 % 89) as f32 - 44.0) * 0.017)).collect();
                let mut got = vec![0f32; g];
                let mut portable = vec![0f32; g];
                dot_heads_f16(&q, &v[5 * hd..6 * hd], &mut got);
                dot_heads_f16_portable(&q, &v[5 * hd..6 * hd], &mut portable);
                for j in 0..g {
                    let want: f64 = (0..hd).map(|i| q[j * hd + i] as f64 * v[5 * hd + i].to_f32() as f64).sum();
                    assert!(
                        (portable[j] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "portable dot hd {hd} head {j}"
                    );
                }
                for j in 0..g {
                    let want: f64 = (0..hd).map(|i| q[j * hd + i] as f64 * v[5 * hd + i].to_f32() as f64).sum();
                    assert!(
                        (got[j] as f64 - want).abs() <= 1e-5 * want.abs().max(1.0),
                        "dot hd {hd} head {j}: {} vs {want}",
                        got[j]
                    );
                }
                // Keys out of order and repeated, more than one block; outputs `hd + 2` apart.
                let keys: Vec<usize> = (0..45).map(|n| (n * 17 + 3) % rows).collect();
                let w: Vec<f32> = (0..keys.len() * g).map(|i| ((i * 29 % 31) as f32) / 31.0).collect();
                let stride = hd + 2;
                let mut y: Vec<f32> = (0..g * stride).map(|i| (i % 5) as f32 * 0.1).collect();
                let y0 = y.clone();
                let mut yp = y.clone();
                axpy_heads_f16_portable(&mut yp, stride, g, &w, &v, hd, &keys);
                axpy_heads_f16(&mut y, stride, g, &w, &v, hd, &keys).unwrap();
                // The same multiply-adds in the same order (fused or not: within 1e-6).
                for (a, b) in yp.iter().zip(&y) {
                    assert!((a - b).abs() <= 1e-6 * a.abs().max(1.0), "portable axpy hd {hd}: {a} vs {b}");
                }
                for j in 0..g {
                    for i in 0..hd {
                        let want = y0[j * stride + i] as f64
                            + keys
                                .iter()
                                .enumerate()
                                .map(|(n, &p)| w[n * g + j] as f64 * v[p * hd + i].to_f32() as f64)
                                .sum::<f64>();
                        let got = y[j * stride + i] as f64;
                        assert!(
                            (got - want).abs() <= 1e-5 * want.abs().max(1.0),
                            "axpy hd {hd} head {j} at {i}: {got} vs {want}"
                        );
                    }
                    // The two gap values between rows are untouched.
                    assert_eq!(&y[j * stride + hd..(j + 1) * stride], &y0[j * stride + hd..(j + 1) * stride]);
                }
                assert!(axpy_heads_f16(&mut y, stride, g, &w, &v, hd, &[rows]).is_err(), "a key past the cache");
            }
        }
    }
    use crate::quant::{dequantize, random_blocks};

    /// Activations whose magnitude changes from one 32-block to the next (so a kernel that
    /// applies a neighbouring block's scale is caught), with a few outliers.
    fn activations(len: usize, seed: u64) -> Vec<f32> {
        (0..len)
            .map(|i| {
                let u = (((i * 7919 + seed as usize) % 1000) as f32 / 500.0 - 1.0) * 0.7;
                let block_scale = 0.05 + ((i / 32 * 37 + seed as usize) % 11) as f32 * 0.4;
                if i % 97 == 5 {
                    u * 20.0
                } else {
                    u * block_scale
                }
            })
            .collect()
    }

    const TYPES: [GgmlType; 7] = [
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
    ];

    fn check(isa: Isa, ty: GgmlType, rows_n: usize, cols: usize, n: usize, seed: u64) {
        let nb = rows_n * cols / ty.block_size() as usize;
        let w = random_blocks(ty, nb, seed + ty.id() as u64);
        let wf = dequantize(ty, &w, rows_n * cols).unwrap();
        let x = activations(n * cols, seed);
        let got = matmul_with(isa, ty, &w, rows_n, cols, &x, n).unwrap();
        assert_eq!(got.len(), n * rows_n);
        for t in 0..n {
            for r in 0..rows_n {
                let want: f32 = (0..cols).map(|k| wf[r * cols + k] * x[t * cols + k]).sum();
                let scale: f32 = (0..cols).map(|k| (wf[r * cols + k] * x[t * cols + k]).abs()).sum();
                // The activation is rounded to 8 bits: error ~ 1/254 of each |w·x| term.
                let g = got[t * rows_n + r];
                assert!(
                    (g - want).abs() <= 0.01 * scale + 1e-5,
                    "{isa:?} {ty} {rows_n}x{cols} n{n} t{t} r{r}: {g} vs {want}"
                );
            }
        }
    }

    #[test]
    fn kernels_match_the_reference_dequantizer() {
        for isa in Isa::available() {
            for ty in TYPES {
                check(isa, ty, 24, 512, 3, 0x9E37_79B9);
            }
        }
    }

    #[test]
    fn every_isa_type_and_tile_shape_matches_the_reference() {
        // Odd row counts exercise the row-tile remainders, token counts the token tiles
        // (1..4 and their remainders), and the biggest case spans several row chunks.
        let shapes: &[(usize, usize, usize)] = &[
            (1, 256, 1),
            (7, 256, 3),
            (13, 512, 7),
            (5, 768, 1),
            (9, 2048, 2),
            (33, 1024, 5),
            (3, 256, 64),
            (301, 256, 4),
            (37, 512, 19),
            (16, 256, 16),
            (18, 256, 8),
            (5, 512, 12),
        ];
        for isa in Isa::available() {
            for ty in TYPES {
                for &(rows_n, cols, n) in shapes {
                    check(isa, ty, rows_n, cols, n, 0xC0FF_EE00 + (rows_n * cols + n) as u64);
                }
            }
        }
    }

    /// A decoded token (one-row tiles for the K-quants on x86) gets bit for bit the values the
    /// same token gets in a 2-token product (2-row × 2-token tiles): the tile shape changes the
    /// memory order only, not the arithmetic of a row.
    #[test]
    fn decode_rows_equal_the_small_tiles_bit_for_bit() {
        let (rows_n, cols) = (37, 1024);
        for ty in TYPES {
            let w = random_blocks(ty, rows_n * cols / ty.block_size() as usize, 0xD0 + ty.id() as u64);
            let x = activations(2 * cols, 17);
            for isa in Isa::available() {
                let one = matmul_with(isa, ty, &w, rows_n, cols, &x[..cols], 1).unwrap();
                let two = matmul_with(isa, ty, &w, rows_n, cols, &x, 2).unwrap();
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one), bits(&two[..rows_n]), "{isa:?} {ty}");
            }
        }
    }

    /// The K-quant kernels for 1 to 7 tokens (on AVX-512 the 512-bit rows, one transposition
    /// tree per super-block; the 256-bit tiles elsewhere) compute the portable kernel's integer
    /// dots and scales, so they agree with it within f32 rounding: 1e-5 of Σ|w·x|. A kernel
    /// that paired sub-block sums with their neighbours' scales (what a wrong lane order in the
    /// tree computes) fails that: emulated by exchanging the values of neighbouring sub-blocks
    /// (Q4_K/Q5_K: the two nibbles of each quant byte and bits 2j ↔ 2j+1 of qh; Q6_K: groups
    /// 2k ↔ 2k+1, `ql[0..32]` ↔ `ql[32..64]` of each half and qh's 2-bit fields).
    #[test]
    fn k_quants_for_few_tokens_equal_the_portable_kernel_within_rounding() {
        for (rows_n, cols) in [(19usize, 2048usize), (5, 256)] {
            for ty in [GgmlType::Q4_K, GgmlType::Q5_K, GgmlType::Q6_K] {
                let w = random_blocks(ty, rows_n * cols / 256, 0xAB + ty.id() as u64);
                let wf = dequantize(ty, &w, rows_n * cols).unwrap();
                let mut swapped = w.clone();
                let ts = ty.type_size() as usize;
                for blk in swapped.chunks_exact_mut(ts) {
                    match ty {
                        GgmlType::Q6_K => {
                            for h in 0..2 {
                                for l in 0..32 {
                                    blk.swap(64 * h + l, 64 * h + 32 + l);
                                }
                            }
                            for b in &mut blk[128..192] {
                                *b = ((*b & 0x33) << 2) | ((*b >> 2) & 0x33);
                            }
                        }
                        _ => {
                            let qs = if ty == GgmlType::Q4_K { 16 } else { 48 };
                            for b in &mut blk[qs..] {
                                *b = b.rotate_left(4);
                            }
                            if ty == GgmlType::Q5_K {
                                for b in &mut blk[16..48] {
                                    *b = ((*b & 0x55) << 1) | ((*b >> 1) & 0x55);
                                }
                            }
                        }
                    }
                }
                for n in 1..=7 {
                    let x = activations(n * cols, 3 + n as u64);
                    let base = matmul_with(Isa::Portable, ty, &w, rows_n, cols, &x, n).unwrap();
                    let within = |y: &[f32]| {
                        (0..n * rows_n)
                            .filter(|&i| {
                                let (t, r) = (i / rows_n, i % rows_n);
                                let scale: f32 = (0..cols).map(|k| (wf[r * cols + k] * x[t * cols + k]).abs()).sum();
                                (y[i] - base[i]).abs() <= 1e-5 * scale
                            })
                            .count()
                    };
                    for isa in Isa::available() {
                        let got = matmul_with(isa, ty, &w, rows_n, cols, &x, n).unwrap();
                        assert_eq!(within(&got), n * rows_n, "{isa:?} {ty} {rows_n}x{cols} n{n}");
                        let bad = within(&matmul_with(isa, ty, &swapped, rows_n, cols, &x, n).unwrap());
                        assert!(
                            bad < n * rows_n / 4 + 1,
                            "{isa:?} {ty} n{n}: {bad} of {} outputs with exchanged sub-blocks still pass",
                            n * rows_n
                        );
                    }
                }
            }
        }
    }

    /// Q4_1's min term is checked: the same blocks with their mins zeroed (what a kernel that
    /// dropped the term computes) fail the tolerance that every real kernel passes.
    #[test]
    fn q4_1_without_its_min_term_fails_the_reference_check() {
        let ty = GgmlType::Q4_1;
        let (rows_n, cols, n) = (24, 512, 3);
        let w = random_blocks(ty, rows_n * cols / 32, 0x5151);
        let wf = dequantize(ty, &w, rows_n * cols).unwrap();
        let x = activations(n * cols, 9);
        let mut no_min = w.clone();
        for blk in no_min.chunks_exact_mut(20) {
            blk[2..4].copy_from_slice(&[0, 0]);
        }
        // How many outputs are within `check`'s tolerance of the f32 product.
        let within = |y: &[f32]| {
            (0..n * rows_n)
                .filter(|&i| {
                    let (t, r) = (i / rows_n, i % rows_n);
                    let want: f32 = (0..cols).map(|k| wf[r * cols + k] * x[t * cols + k]).sum();
                    let scale: f32 = (0..cols).map(|k| (wf[r * cols + k] * x[t * cols + k]).abs()).sum();
                    (y[i] - want).abs() <= 0.01 * scale + 1e-5
                })
                .count()
        };
        for isa in Isa::available() {
            assert_eq!(within(&matmul_with(isa, ty, &w, rows_n, cols, &x, n).unwrap()), n * rows_n, "{isa:?}");
            let bad = within(&matmul_with(isa, ty, &no_min, rows_n, cols, &x, n).unwrap());
            assert!(bad < n * rows_n / 4, "{isa:?}: {bad} of {} outputs without the min still pass", n * rows_n);
        }
    }

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn simd_paths_are_tested_where_the_cpu_has_them() {
        // The tests above loop over `Isa::available()`; make sure that is not just `Portable`
        // on a CPU that has the SIMD paths.
        let a = Isa::available();
        let has = |f: &[bool]| f.iter().all(|&b| b);
        use std::arch::is_x86_feature_detected as d;
        assert_eq!(a.contains(&Isa::Avx2), has(&[d!("avx2"), d!("fma"), d!("f16c")]));
        assert_eq!(a.contains(&Isa::AvxVnni), has(&[d!("avx2"), d!("fma"), d!("f16c"), d!("avxvnni")]));
        assert_eq!(
            a.contains(&Isa::Avx512Vnni),
            has(&[d!("avx2"), d!("fma"), d!("f16c"), d!("avx512f"), d!("avx512vl"), d!("avx512bw"), d!("avx512vnni")])
        );
    }

    #[test]
    fn isas_agree_closely() {
        // All paths compute the same integer dots; only the float summation order differs.
        let (rows_n, cols, n) = (37, 1024, 5);
        for ty in TYPES {
            let nb = rows_n * cols / ty.block_size() as usize;
            let w = random_blocks(ty, nb, 77 + ty.id() as u64);
            let x = activations(n * cols, 31);
            let base = matmul_with(Isa::Portable, ty, &w, rows_n, cols, &x, n).unwrap();
            for isa in Isa::available() {
                let got = matmul_with(isa, ty, &w, rows_n, cols, &x, n).unwrap();
                for (a, b) in got.iter().zip(&base) {
                    assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{isa:?} {ty}: {a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn many_rows_spread_over_chunks() {
        // Enough rows for many chunks: every row must be written exactly once.
        let (rows_n, cols, n) = (4099, 64, 1);
        let ty = GgmlType::Q8_0;
        let w = random_blocks(ty, rows_n * cols / 32, 5);
        let x = vec![0.5f32; cols];
        let wf = dequantize(ty, &w, rows_n * cols).unwrap();
        for isa in Isa::available() {
            let got = matmul_with(isa, ty, &w, rows_n, cols, &x, n).unwrap();
            for r in 0..rows_n {
                let want: f32 = (0..cols).map(|k| wf[r * cols + k] * 0.5).sum();
                let scale: f32 = (0..cols).map(|k| (wf[r * cols + k] * 0.5).abs()).sum();
                assert!((got[r] - want).abs() <= 0.01 * scale + 1e-5, "{isa:?} r{r}");
            }
        }
    }

    /// Several products of one input as one pool job give exactly the separate products.
    #[test]
    fn products_in_one_job_match_separate_ones() {
        // A multiple of the K-quants' 256.
        let cols = 768;
        for ty in TYPES {
            for n in [1usize, 3, 12] {
                let x = activations(n * cols, 5);
                let shapes = [1024usize, 256, 96];
                let ws: Vec<Vec<u8>> = shapes
                    .iter()
                    .enumerate()
                    .map(|(i, &r)| random_blocks(ty, r * cols / ty.block_size() as usize, 40 + i as u64))
                    .collect();
                let want: Vec<Vec<f32>> =
                    ws.iter().zip(shapes).map(|(w, r)| matmul(ty, w, r, cols, &x, n).unwrap()).collect();
                let mut ys: Vec<Vec<f32>> = shapes.iter().map(|&r| vec![f32::NAN; n * r]).collect();
                let mut q = Quantized::new(&x, n, cols).unwrap();
                let mut parts: Vec<(&[u8], usize, &mut [f32])> =
                    ws.iter().zip(shapes).zip(ys.iter_mut()).map(|((w, r), y)| (&w[..], r, &mut y[..])).collect();
                q.matmul_many_into(ty, &mut parts).unwrap();
                assert_eq!(ys, want, "{ty} n={n}");
                let mut short = [0f32; 3];
                assert!(q.matmul_many_into(ty, &mut [(&ws[0][..], 1024, &mut short[..])]).is_err());
            }
        }
    }

    /// Fused work: every pre task has finished before any post runs (slow pre tasks, so a
    /// worker reaches its first row chunk while the caller is still in one), each post sees
    /// exactly the rows its chunk wrote, every row once, and the products are unchanged.
    #[test]
    fn fused_posts_run_after_every_pre_task_on_their_own_rows() {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::Mutex;
        struct Probe {
            pre: Vec<AtomicBool>,
            early: AtomicUsize,
            seen: Mutex<Vec<(usize, usize, Vec<f32>)>>,
        }
        impl Fused for Probe {
            fn pre_tasks(&self) -> usize {
                self.pre.len()
            }
            fn pre(&self, task: usize) {
                std::thread::sleep(std::time::Duration::from_millis(3));
                self.pre[task].store(true, Ordering::SeqCst);
            }
            fn post(&self, product: usize, r0: usize, y: &mut [f32]) {
                if !self.pre.iter().all(|p| p.load(Ordering::SeqCst)) {
                    self.early.fetch_add(1, Ordering::SeqCst);
                }
                self.seen.lock().unwrap().push((product, r0, y.to_vec()));
                y.iter_mut().for_each(|v| *v += 1.0);
            }
        }
        let cols = 768;
        let x = activations(cols, 9);
        let shapes = [1024usize, 256, 96];
        for ty in [GgmlType::Q4_K, GgmlType::Q8_0] {
            let ws: Vec<Vec<u8>> = shapes
                .iter()
                .enumerate()
                .map(|(i, &r)| random_blocks(ty, r * cols / ty.block_size() as usize, 60 + i as u64))
                .collect();
            let want: Vec<Vec<f32>> =
                ws.iter().zip(shapes).map(|(w, r)| matmul(ty, w, r, cols, &x, 1).unwrap()).collect();
            let probe = Probe {
                pre: (0..5).map(|_| AtomicBool::new(false)).collect(),
                early: AtomicUsize::new(0),
                seen: Mutex::new(Vec::new()),
            };
            let mut ys: Vec<Vec<f32>> = shapes.iter().map(|&r| vec![f32::NAN; r]).collect();
            let mut q = Quantized::new(&x, 1, cols).unwrap();
            let mut parts: Vec<(&[u8], usize, &mut [f32])> =
                ws.iter().zip(shapes).zip(ys.iter_mut()).map(|((w, r), y)| (&w[..], r, &mut y[..])).collect();
            q.matmul_many_fused(ty, &mut parts, &probe).unwrap();
            assert_eq!(probe.early.load(Ordering::SeqCst), 0, "{ty}: a post ran before the pre tasks finished");
            let seen = probe.seen.into_inner().unwrap();
            for (k, w) in want.iter().enumerate() {
                let mut covered = vec![0; w.len()];
                for (_, r0, y) in seen.iter().filter(|s| s.0 == k) {
                    assert_eq!(&y[..], &w[*r0..r0 + y.len()], "{ty}: product {k} rows at {r0}");
                    covered[*r0..r0 + y.len()].iter_mut().for_each(|c| *c += 1);
                }
                assert!(covered.iter().all(|&c| c == 1), "{ty}: product {k}: every row in exactly one post");
                assert_eq!(ys[k], w.iter().map(|v| v + 1.0).collect::<Vec<_>>(), "{ty}: the posts' updates are kept");
            }
        }
        // More than one token is refused.
        let x3 = activations(3 * cols, 2);
        let w = random_blocks(GgmlType::Q8_0, 96 * cols / 32, 1);
        let mut y = vec![0f32; 3 * 96];
        let probe = Probe { pre: Vec::new(), early: AtomicUsize::new(0), seen: Mutex::new(Vec::new()) };
        assert!(Quantized::new(&x3, 3, cols)
            .unwrap()
            .matmul_many_fused(GgmlType::Q8_0, &mut [(&w[..], 96, &mut y[..])], &probe)
            .is_err());
    }

    /// The fused delta-rule kernel equals the step-by-step rule bit for bit (state and outputs),
    /// over several tokens, at the widths it takes (16, 128) and one it leaves to the steps (40).
    #[test]
    fn fused_delta_rows_equal_the_steps() {
        for (sk, sv) in [(128usize, 128usize), (16, 5), (40, 3)] {
            let mut seed = 11u64;
            let mut next = |m: f32| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                ((seed >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * m
            };
            let mut s1: Vec<f32> = (0..sk * sv).map(|_| next(0.2)).collect();
            let mut s2 = s1.clone();
            for t in 0..4 {
                let q: Vec<f32> = (0..sk).map(|_| next(0.3)).collect();
                let k: Vec<f32> = (0..sk).map(|_| next(0.3)).collect();
                let v: Vec<f32> = (0..sv).map(|_| next(2.0)).collect();
                let (decay, beta) = (0.9 + next(0.1), 0.5 + next(0.5));
                let (mut o1, mut o2) = (vec![0f32; sv], vec![0f32; sv]);
                delta_rows(&mut s1, &q, &k, &v, decay, beta, &mut o1);
                delta_rows_steps(&mut s2, &q, &k, &v, decay, beta, &mut o2);
                assert_eq!(
                    o1.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    o2.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
                    "{sk}x{sv} token {t}: outputs"
                );
                assert!(s1.iter().zip(&s2).all(|(a, b)| a.to_bits() == b.to_bits()), "{sk}x{sv} token {t}: state");
                assert!(o1.iter().any(|x| *x != 0.0));
            }
        }
    }

    /// The blocked f32 product equals the naive triple loop (f32 rounding of a different
    /// summation order aside) on shapes with row and column tails, strided operands and an
    /// accumulating C; on every instruction set path this CPU has.
    #[test]
    fn gemm_f32_equals_the_naive_product() {
        let mut seed = 5u64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        };
        for (m, n, k) in [(64usize, 128usize, 128usize), (7, 33, 5), (1, 16, 1), (13, 47, 64), (6, 15, 3), (5, 50, 9)] {
            let (lda, ldb, ldc) = (k + 3, n + 1, n + 2);
            let a: Vec<f32> = (0..m * lda).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * ldb).map(|_| next()).collect();
            let c0: Vec<f32> = (0..m * ldc).map(|_| next()).collect();
            let mut want = c0.clone();
            for i in 0..m {
                for j in 0..n {
                    want[i * ldc + j] +=
                        (0..k).map(|p| a[i * lda + p] as f64 * b[p * ldb + j] as f64).sum::<f64>() as f32;
                }
            }
            for isa in Isa::available().into_iter().filter(|i| !i.name().starts_with("neon")) {
                let mut got = c0.clone();
                gemm_f32_with(isa, m, n, k, &a, lda, &b, ldb, &mut got, ldc);
                for i in 0..m {
                    for j in 0..ldc {
                        let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                        assert!(
                            (g - w).abs() <= 1e-5 * (1.0 + w.abs()) * k as f32,
                            "{} {m}x{n}x{k} at {i},{j}: {g} vs {w}",
                            isa.name()
                        );
                    }
                }
            }
            let mut portable = c0.clone();
            gemm_f32_cols(m, 0..n, k, &a, lda, &b, ldb, &mut portable, ldc);
            assert!(
                portable.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-5 * (1.0 + w.abs()) * k as f32),
                "{m}x{n}x{k}: portable"
            );
        }
    }

    /// Time of one token's delta rule over 16 heads of 128×128 (Qwen 3.5 0.8B's DeltaNet
    /// layer), fused vs step by step, one thread.
    #[test]
    #[ignore = "a timing, printed"]
    fn delta_rows_timing() {
        let (sk, sv, heads) = (128usize, 128usize, 16usize);
        let mut s: Vec<f32> = (0..heads * sk * sv).map(|i| ((i % 97) as f32 - 48.0) * 1e-3).collect();
        let q: Vec<f32> = (0..sk).map(|i| (i as f32 * 0.1).sin() * 0.1).collect();
        let k: Vec<f32> = (0..sk).map(|i| (i as f32 * 0.2).cos() * 0.1).collect();
        let v: Vec<f32> = (0..sv).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut o = vec![0f32; sv];
        let mut best = [f64::MAX; 2];
        for round in 0..200 {
            for (which, b) in best.iter_mut().enumerate() {
                let t = std::time::Instant::now();
                for h in s.chunks_exact_mut(sk * sv) {
                    if which == 0 {
                        delta_rows(h, &q, &k, &v, 0.999, 0.5, &mut o);
                    } else {
                        delta_rows_steps(h, &q, &k, &v, 0.999, 0.5, &mut o);
                    }
                }
                if round > 5 {
                    *b = b.min(t.elapsed().as_secs_f64() * 1e6);
                }
            }
        }
        eprintln!(
            "delta rule, 16 heads 128x128, one token: fused {:.1} us, steps {:.1} us (best of 194)",
            best[0], best[1]
        );
    }

    #[test]
    fn shared_activations_overwrite_stale_outputs() {
        // One quantization serves products of different types (q/k/v: Q5_0, Q5_0, Q8_0), and
        // every output value is written, whatever the buffer held before (reused host buffers).
        let (cols, n) = (512, 19);
        let x = activations(n * cols, 3);
        let mut q = Quantized::new(&x, n, cols).unwrap();
        for (i, ty) in
            [GgmlType::Q5_0, GgmlType::Q8_0, GgmlType::Q4_K, GgmlType::Q6_K, GgmlType::Q5_0].into_iter().enumerate()
        {
            let rows_n = 37 + 16 * i;
            let w = random_blocks(ty, rows_n * cols / ty.block_size() as usize, 11 + i as u64);
            let mut y = vec![f32::NAN; n * rows_n];
            q.matmul_into(ty, &w, rows_n, &mut y).unwrap();
            assert_eq!(y, matmul(ty, &w, rows_n, cols, &x, n).unwrap(), "{ty}");
        }
    }

    #[test]
    fn silu_matches_libm() {
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
        let u: Vec<f32> = xs.iter().map(|x| 0.5 - x * 0.01).collect();
        let mut got = xs.clone();
        silu_mul(&mut got, &u);
        for ((&x, &o), &y) in xs.iter().zip(&got).zip(&u) {
            let want = x / (1.0 + (-x).exp()) * y;
            assert!((o - want).abs() <= 2e-6 * (1.0 + want.abs()), "silu({x}): {o} vs {want}");
        }
    }

    #[test]
    fn exp_and_gelu_match_libm() {
        for i in -2000..2000 {
            let x = i as f32 * 0.043;
            let (a, b) = (exp_approx(x), x.exp());
            assert!((a - b).abs() <= 4e-7 * b, "exp({x}): {a} vs {b}");
        }
        let g: Vec<f32> = (-600..600).map(|i| i as f32 * 0.021).collect();
        let u: Vec<f32> = (0..g.len()).map(|i| 1.0 + (i % 7) as f32 * 0.25).collect();
        let mut got = g.clone();
        gelu_mul(&mut got, &u);
        for ((&x, &y), &o) in g.iter().zip(&u).zip(&got) {
            // burn's `gelu_approximate` (libm tanh).
            let want =
                0.5 * x * (1.0 + ((2.0f32 / std::f32::consts::PI).sqrt() * (x + 0.044715 * x * x * x)).tanh()) * y;
            assert!((o - want).abs() <= 1e-6 * (1.0 + want.abs()), "gelu({x}): {o} vs {want}");
        }
        let v: Vec<f32> = (0..5000).map(|i| ((i * 7919) % 4001) as f32 * 0.01 - 30.0).collect();
        let want: f64 = v.iter().map(|&x| (x as f64 - 10.0).exp()).sum();
        let got = sum_exp(&v, 10.0);
        assert!((got - want).abs() <= 1e-6 * want, "sum_exp {got} vs {want}");
        assert!(exp_approx(-1000.0) < 1e-37);
        assert!(exp_approx(1000.0).is_finite());
    }

    #[test]
    fn q8x32_roundtrips() {
        let x: Vec<f32> = (0..64).map(|i| i as f32 - 20.0).collect();
        let q = Q8x32::quantize(&x);
        assert_eq!(q.blocks(), 2);
        let d = q.scale(1).unwrap();
        assert!((d - 43.0 / 127.0).abs() < 1e-6);
        assert_eq!(q.sum(0).unwrap(), q.q[..32].iter().map(|&v| v as i32).sum::<i32>());
        assert!(q.scale(2).is_none());
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(matmul(GgmlType::Q8_0, &[0; 34], 1, 32, &[0.0; 31], 1).is_err());
        assert!(matmul(GgmlType::Q8_0, &[0; 33], 1, 32, &[0.0; 32], 1).is_err());
        assert!(matmul(GgmlType::Q4_K, &[0; 144], 1, 128, &[0.0; 128], 1).is_err());
        assert!(matmul(GgmlType::Q2_K, &[0; 84], 1, 256, &[0.0; 256], 1).is_err());
        assert_eq!(matmul(GgmlType::Q8_0, &[], 0, 32, &[0.0; 32], 1).unwrap().len(), 0);
    }
}
