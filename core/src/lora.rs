//! LoRA adapters at run time, in llama.cpp's GGUF format (what `convert_lora_to_gguf.py` writes):
//! `general.type = adapter`, `adapter.type = lora`, `adapter.lora.alpha` (f32; absent reads as
//! 0), and per adapted weight a pair `<tensor>.lora_a` (ne = `[in, rank]`) and `<tensor>.lora_b`
//! (ne = `[rank, out]`). The rank is `lora_b`'s ne0. Applied without merging, as llama.cpp's
//! `build_lora_mm`: `y = W·x + s·B·(A·x)` with `s = scale·alpha/rank` (just `scale` when alpha is
//! 0). The base weights stay quantized and shared; an adapter is small dense matrices, f16 as an
//! f16 file stores them (widened exactly inside the dot products), f32 otherwise. A decode step
//! runs them inside the base projections' pool job (`DecodeStep`).
//!
//! A KV cache belongs to one adapter set ([`crate::kv_cache::KvCache::set_adapters`] empties it
//! when the set changes), so keys and values computed under one set are never read under another.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use crate::gguf::GgufFile;
use crate::model::decoder::DecoderConfig;
use crate::quant::dequantize;
use crate::weights::WeightId;
use crate::{Error, Result};

/// Largest rank accepted (real adapters use 4–256).
pub const MAX_RANK: usize = 1024;

/// The projections an adapter may adapt, in the order a block applies them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proj {
    /// `attn_q`.
    Q,
    /// `attn_k`.
    K,
    /// `attn_v`.
    V,
    /// `attn_output`.
    O,
    /// `ffn_gate`.
    Gate,
    /// `ffn_up`.
    Up,
    /// `ffn_down`.
    Down,
    /// `attn_qkv`: a Qwen 3.5 DeltaNet layer's fused q/k/v projection (before its conv).
    DeltaQkv,
    /// `attn_gate`: a DeltaNet layer's output gate `z`.
    DeltaZ,
    /// `ssm_beta`: a DeltaNet layer's per-head write gate.
    DeltaBeta,
    /// `ssm_alpha`: a DeltaNet layer's per-head decay input.
    DeltaAlpha,
    /// `ssm_out`: a DeltaNet layer's output projection.
    DeltaOut,
}

/// How many [`Proj`] kinds there are (the slots per layer).
const N_PROJ: usize = 12;

impl Proj {
    /// The projection a base weight is, if an adapter may adapt it: every matrix llama.cpp's
    /// graphs run through `build_lora_mm` in the blocks (attention, MLP, and Qwen 3.5's DeltaNet
    /// products; not the LM head or the embedding, and not `ssm_conv1d`, which llama.cpp convolves
    /// without its adapter).
    fn of(id: WeightId) -> Option<(usize, Proj)> {
        Some(match id {
            WeightId::AttnQ { layer } => (layer, Proj::Q),
            WeightId::AttnK { layer } => (layer, Proj::K),
            WeightId::AttnV { layer } => (layer, Proj::V),
            WeightId::AttnOutput { layer } => (layer, Proj::O),
            WeightId::FfnGate { layer } => (layer, Proj::Gate),
            WeightId::FfnUp { layer } => (layer, Proj::Up),
            WeightId::FfnDown { layer } => (layer, Proj::Down),
            WeightId::Block { layer, name } => match name {
                "attn_qkv.weight" => (layer, Proj::DeltaQkv),
                "attn_gate.weight" => (layer, Proj::DeltaZ),
                "ssm_beta.weight" => (layer, Proj::DeltaBeta),
                "ssm_alpha.weight" => (layer, Proj::DeltaAlpha),
                "ssm_out.weight" => (layer, Proj::DeltaOut),
                _ => return None,
            },
            _ => return None,
        })
    }
}

/// One token's adapter work for a group of projections of one layer (q/k/v, gate/up, or one),
/// fused into the group's pool job ([`crate::quant::cpu::Fused`]): pre tasks compute
/// `z = s·A·x` in slices of A's rows, then each row chunk of a base product adds `dot(B_o, z)`
/// to its rows, adapters in the set's order — the same sums as [`Pair::rows`], bit for bit,
/// now split over the threads of the base product instead of after it on one.
pub(crate) struct DecodeStep<'a> {
    x: &'a [f32],
    /// `(product, pair, s, offset into z)`, adapters in the set's order.
    jobs: Vec<(usize, &'a Pair, f32, usize)>,
    /// `(job, A rows)` per pre task.
    tasks: Vec<(usize, std::ops::Range<usize>)>,
    /// `s·A·x` of every job, written by the pre tasks (disjoint slices) before any post reads
    /// them (the job's counter orders them).
    z: Vec<AtomicU32>,
}

/// Bytes of A's rows per pre task of a [`DecodeStep`] (a few microseconds of work).
const A_BYTES_PER_TASK: usize = 32 * 1024;

impl crate::quant::cpu::Fused for DecodeStep<'_> {
    fn pre_tasks(&self) -> usize {
        self.tasks.len()
    }

    fn pre(&self, task: usize) {
        let Some((j, rows)) = self.tasks.get(task) else { return };
        let Some(&(_, p, s, off)) = self.jobs.get(*j) else { return };
        let x = &self.x[..p.n_in];
        for r in rows.clone() {
            self.z[off + r].store((s * p.a.dot_row(r, p.n_in, x)).to_bits(), Ordering::Relaxed);
        }
    }

    fn post(&self, product: usize, r0: usize, y: &mut [f32]) {
        for &(k, p, _, off) in &self.jobs {
            if k != product {
                continue;
            }
            let z: Vec<f32> =
                self.z[off..off + p.rank].iter().map(|v| f32::from_bits(v.load(Ordering::Relaxed))).collect();
            p.b.add_rows(r0, p.rank, &z, y);
        }
    }
}

/// A matrix of an adapter, row-major: f16 as the file stores it (half the bytes to read per
/// token; widened exactly inside the dot products, so the sums are those of the f32 widening,
/// bit for bit), anything else widened to f32 at load.
#[derive(Debug)]
enum Mat {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
}

impl Mat {
    /// The values as f32 (exact: an f16 widens without rounding).
    fn to_f32(&self) -> Vec<f32> {
        match self {
            Mat::F32(v) => v.clone(),
            Mat::F16(v) => v.iter().map(|h| h.to_f32()).collect(),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Mat::F32(v) => v.len() * 4,
            Mat::F16(v) => v.len() * 2,
        }
    }

    /// `row r · q` (`w` = the row width, `q` at least `w` long).
    fn dot_row(&self, r: usize, w: usize, q: &[f32]) -> f32 {
        match self {
            Mat::F32(v) => dot(&v[r * w..(r + 1) * w], &q[..w]),
            Mat::F16(v) => dot_h(&v[r * w..(r + 1) * w], &q[..w]),
        }
    }

    /// `y[i] += row (r0 + i) · q` for each `i` (`w` = the row width, rows in range).
    fn add_rows(&self, r0: usize, w: usize, q: &[f32], y: &mut [f32]) {
        let (q, m) = (&q[..w], y.len());
        match self {
            Mat::F32(v) => {
                for (yo, row) in y.iter_mut().zip(v[r0 * w..(r0 + m) * w].chunks_exact(w)) {
                    *yo += dot(row, q);
                }
            }
            Mat::F16(v) => {
                let rows = &v[r0 * w..(r0 + m) * w];
                #[cfg(target_arch = "x86_64")]
                if has_f16c() {
                    // SAFETY: AVX and F16C were detected on this CPU.
                    unsafe { add_rows_f16c(rows, w, q, y) };
                    return;
                }
                for (yo, row) in y.iter_mut().zip(rows.chunks_exact(w)) {
                    *yo += dot_h_portable(row, q);
                }
            }
        }
    }

    /// `out[j] = row r · q[j·w..][..w]` for the `out.len()` rows of `q` (`w` = the row width).
    fn dots(&self, r: usize, w: usize, q: &[f32], out: &mut [f32], _wide: &mut Vec<f32>) {
        for (o, qj) in out.iter_mut().zip(q.chunks_exact(w)) {
            *o = self.dot_row(r, w, qj);
        }
    }
}

/// One adapted weight: `A` `[rank, in]` and `B` `[out, rank]`, row-major.
#[derive(Debug)]
struct Pair {
    a: Mat,
    b: Mat,
    rank: usize,
    n_in: usize,
    n_out: usize,
}

impl Pair {
    /// `y[t] += B·(s·A·x[t])` for the rows of `x` (`[m, in]`, `y` `[m, out]`), on this thread.
    /// Every output is `dot(B_o, t)` with `t_r = s·dot(A_r, x_t)`, whatever the split: the
    /// reference the pooled paths equal bit for bit.
    fn rows(&self, s: f32, x: &[f32], y: &mut [f32]) {
        let m = (x.len() / self.n_in).min(y.len() / self.n_out);
        let (mut t, mut d, mut wide) = (vec![0f32; m * self.rank], vec![0f32; m], Vec::new());
        for r in 0..self.rank {
            self.a.dots(r, self.n_in, x, &mut d, &mut wide);
            for (i, v) in d.iter().enumerate() {
                t[i * self.rank + r] = s * v;
            }
        }
        for o in 0..self.n_out {
            self.b.dots(o, self.rank, &t, &mut d, &mut wide);
            for (i, v) in d.iter().enumerate() {
                y[i * self.n_out + o] += v;
            }
        }
    }

    /// `y[t] += s·B·(A·x[t])` for each of the `n` rows of a prefill (`n ≥ 2·ROWS_PER_TASK`),
    /// spread over the kernel pool in blocks of [`ROWS_PER_TASK`] rows.
    fn apply_blocks(&self, s: f32, x: &[f32], y: &mut [f32], n: usize) {
        let (nx, ny) = ((n * self.n_in).min(x.len()), (n * self.n_out).min(y.len()));
        // One lock per block, each taken once (uncontended): disjoint output rows per task.
        let blocks: Vec<std::sync::Mutex<(&[f32], &mut [f32])>> = x[..nx]
            .chunks(ROWS_PER_TASK * self.n_in)
            .zip(y[..ny].chunks_mut(ROWS_PER_TASK * self.n_out))
            .map(std::sync::Mutex::new)
            .collect();
        crate::quant::cpu::pool::for_each(blocks.len(), &|b| {
            if let Ok(mut g) = blocks[b].lock() {
                let (xs, ys) = &mut *g;
                self.rows(s, xs, ys);
            }
        });
    }
}

/// Rows of a prefill per pool task in [`Pair::apply_blocks`]; fewer rows (a decode step) run on
/// the calling thread ([`Pair::rows`]).
const ROWS_PER_TASK: usize = 16;

/// A dot product in eight lanes (vectorizes).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// [`dot`] of an f16 row (widened exactly) with `b`: the same products and sums in the same
/// order as [`dot`] on the widened row, so the same value bit for bit.
fn dot_h(a: &[half::f16], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if has_f16c() {
        // SAFETY: AVX and F16C were detected on this CPU.
        return unsafe { dot_h_f16c(a, b) };
    }
    dot_h_portable(a, b)
}

/// Whether this CPU widens f16 with F16C (and has AVX).
#[cfg(target_arch = "x86_64")]
fn has_f16c() -> bool {
    std::is_x86_feature_detected!("avx") && std::is_x86_feature_detected!("f16c")
}

/// [`dot_h`] in plain Rust.
fn dot_h_portable(a: &[half::f16], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i].to_f32() * y[i];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x.to_f32() * y).sum();
    acc.iter().sum::<f32>() + tail
}

/// [`dot_h`] with F16C widening 8 values at a time (`vcvtph2ps`, exact); a multiply then an
/// add per lane (no FMA), as [`dot`].
///
/// # Safety
/// The CPU must support AVX and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
#[inline]
unsafe fn dot_h_f16c(a: &[half::f16], b: &[f32]) -> f32 {
    use std::arch::x86_64::{
        __m128i, _mm256_add_ps, _mm256_cvtph_ps, _mm256_loadu_ps, _mm256_mul_ps, _mm256_setzero_ps, _mm256_storeu_ps,
        _mm_loadu_si128,
    };
    let n = a.len().min(b.len());
    let whole = n / 8 * 8;
    let mut acc = _mm256_setzero_ps();
    let mut c = 0;
    while c < whole {
        // SAFETY: `c + 8 ≤ n`: 8 f16 (16 bytes) of `a` and 8 f32 of `b` are in bounds;
        // unaligned loads.
        unsafe {
            let x = _mm256_cvtph_ps(_mm_loadu_si128(a.as_ptr().add(c).cast::<__m128i>()));
            let y = _mm256_loadu_ps(b.as_ptr().add(c));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(x, y));
        }
        c += 8;
    }
    let mut lanes = [0f32; 8];
    // SAFETY: `lanes` holds 8 f32.
    unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), acc) };
    let tail: f32 = a[whole..n].iter().zip(&b[whole..n]).map(|(x, y)| x.to_f32() * y).sum();
    lanes.iter().sum::<f32>() + tail
}

/// `y[i] += rows[i] · q` for the `w`-wide rows of `rows`, with [`dot_h_f16c`].
///
/// # Safety
/// The CPU must support AVX and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn add_rows_f16c(rows: &[half::f16], w: usize, q: &[f32], y: &mut [f32]) {
    for (yo, row) in y.iter_mut().zip(rows.chunks_exact(w)) {
        // SAFETY: forwarded from the caller.
        *yo += unsafe { dot_h_f16c(row, q) };
    }
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A loaded LoRA adapter, checked against one model's configuration. Share it with [`Arc`]:
/// any number of sessions may use it at once, each with its own scale.
#[derive(Debug)]
pub struct LoraAdapter {
    id: u64,
    arch: &'static str,
    /// `(hidden, layers)` of the model it was checked against.
    dims: (usize, usize),
    alpha: f32,
    /// Per layer, per [`Proj`].
    layers: Vec<[Option<Pair>; N_PROJ]>,
    pairs: usize,
    max_rank: usize,
    bytes: usize,
    /// Its matrices uploaded to each device a pass ran it on (wgpu: one), made at the first
    /// such pass and shared by every session until the adapter is dropped.
    devices: std::sync::Mutex<Vec<Arc<DeviceCopy>>>,
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Adapter { reason: reason.into() }
}

impl LoraAdapter {
    /// Loads and validates the adapter at `path` for a model of configuration `cfg`: its
    /// architecture, every tensor's name and shape, pairs complete, rank in `1..=MAX_RANK` and
    /// the same in A and B, values finite. Any failure is [`Error::Adapter`] (or the GGUF
    /// reader's own errors), never a panic.
    pub fn load(path: impl AsRef<Path>, cfg: &DecoderConfig) -> Result<Self> {
        Self::load_for(path, cfg, cfg.weight_shapes(true))
    }

    /// [`LoraAdapter::load`] for a model whose weights are `shapes` (`[rows, row length]` by
    /// weight; an architecture whose blocks are not the shared decoder's, as Qwen 3.5's, gives
    /// its own through [`crate::model::CausalLm::adapter_shapes`]).
    pub fn load_for(path: impl AsRef<Path>, cfg: &DecoderConfig, shapes: Vec<(WeightId, [usize; 2])>) -> Result<Self> {
        let file = GgufFile::open(path.as_ref())?;
        let md = file.metadata();
        match md.opt_str("general.type")? {
            Some("adapter") => {}
            other => return Err(bad(format!("general.type is {other:?}, expected \"adapter\""))),
        }
        match md.opt_str("adapter.type")? {
            Some("lora") => {}
            other => return Err(bad(format!("adapter.type is {other:?}, only \"lora\" is supported"))),
        }
        let arch = md.get_str("general.architecture")?;
        if arch != cfg.arch {
            return Err(bad(format!("adapter for architecture `{arch}`, the model is `{}`", cfg.arch)));
        }
        if md.get("adapter.alora.invocation_tokens").is_some() {
            return Err(bad("activated LoRA (adapter.alora.invocation_tokens) is not supported"));
        }
        // llama.cpp: alpha is optional, read as f32, 0 when absent (then the scale is the user's).
        let alpha = md.opt_f32("adapter.lora.alpha")?.unwrap_or(0.0);
        if !alpha.is_finite() {
            return Err(bad(format!("adapter.lora.alpha is {alpha}")));
        }
        // The base weights an adapter may name, by GGUF name.
        let shapes: HashMap<String, (WeightId, [usize; 2])> =
            shapes.into_iter().map(|(id, s)| (crate::gguf::names::tensor_name(id), (id, s))).collect();
        let mut halves: HashMap<&str, [Option<&crate::gguf::TensorInfo>; 2]> = HashMap::new();
        for t in file.tensors() {
            let (base, half) = if let Some(b) = t.name.strip_suffix(".lora_a") {
                (b, 0)
            } else if let Some(b) = t.name.strip_suffix(".lora_b") {
                (b, 1)
            } else if t.name.ends_with("_norm.weight") {
                // llama.cpp skips these too.
                continue;
            } else {
                return Err(bad(format!("tensor `{}` is neither a .lora_a nor a .lora_b", t.name)));
            };
            let slot = &mut halves.entry(base).or_default()[half];
            if slot.replace(t).is_some() {
                return Err(bad(format!("tensor `{}` appears twice", t.name)));
            }
        }
        if halves.is_empty() {
            return Err(bad("no LoRA tensors"));
        }
        let mut layers: Vec<[Option<Pair>; N_PROJ]> = (0..cfg.num_hidden_layers).map(|_| Default::default()).collect();
        let (mut pairs, mut max_rank, mut bytes) = (0, 0, 0);
        let mut names: Vec<&&str> = halves.keys().collect();
        names.sort();
        for base in names {
            let [Some(a), Some(b)] = halves[*base] else {
                return Err(bad(format!("LoRA tensor pair for `{base}` is missing one component")));
            };
            let Some(&(id, [n_out, n_in])) = shapes.get(*base) else {
                return Err(bad(format!("`{base}` does not exist in the base model")));
            };
            let Some((layer, proj)) = Proj::of(id) else {
                return Err(bad(format!("`{base}`: only the attention, MLP and DeltaNet projections can be adapted")));
            };
            let two = |t: &crate::gguf::TensorInfo| -> Result<[usize; 2]> {
                match t.shape[..] {
                    [x, y] => Ok([
                        usize::try_from(x).map_err(|_| bad("shape"))?,
                        usize::try_from(y).map_err(|_| bad("shape"))?,
                    ]),
                    _ => Err(bad(format!("`{}` is not a matrix", t.name))),
                }
            };
            let ([a0, a1], [b0, b1]) = (two(a)?, two(b)?);
            let rank = b0;
            if a1 != b0 {
                return Err(bad(format!("`{base}`: lora_a has rank {a1}, lora_b rank {b0} (lora_a not transposed?)")));
            }
            if a0 != n_in || b1 != n_out {
                return Err(bad(format!("`{base}`: adapter maps {a0} -> {b1}, the model's weight {n_in} -> {n_out}")));
            }
            // Any rank up to MAX_RANK, also above the weight's sides (llama.cpp takes it: a PEFT
            // rank 16 on Qwen 3.5's 16-output `ssm_alpha` is such a case).
            if rank == 0 || rank > MAX_RANK {
                return Err(bad(format!("`{base}`: rank {rank} out of range (1..={MAX_RANK})")));
            }
            let read = |t: &crate::gguf::TensorInfo| -> Result<Mat> {
                if t.ty == crate::quant::GgmlType::F16 {
                    let bytes = file.tensor_data(t)?;
                    let n = t.n_elements() as usize;
                    if bytes.len() < 2 * n {
                        return Err(bad(format!("`{}` is shorter than its shape", t.name)));
                    }
                    let v: Vec<half::f16> =
                        bytes[..2 * n].chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]])).collect();
                    if v.iter().any(|x| !x.is_finite()) {
                        return Err(bad(format!("`{}` holds a non-finite value", t.name)));
                    }
                    return Ok(Mat::F16(v));
                }
                let v = dequantize(t.ty, file.tensor_data(t)?, t.n_elements() as usize)?;
                if v.iter().any(|x| !x.is_finite()) {
                    return Err(bad(format!("`{}` holds a non-finite value", t.name)));
                }
                Ok(Mat::F32(v))
            };
            let pair = Pair { a: read(a)?, b: read(b)?, rank, n_in, n_out };
            bytes += pair.a.bytes() + pair.b.bytes();
            max_rank = max_rank.max(rank);
            pairs += 1;
            layers[layer][proj as usize] = Some(pair);
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        log::info!("lora adapter {id}: {pairs} weights, rank <= {max_rank}, alpha {alpha}, {} KiB", bytes >> 10);
        Ok(Self {
            id,
            arch: cfg.arch,
            dims: (cfg.hidden_size, cfg.num_hidden_layers),
            alpha,
            layers,
            pairs,
            max_rank,
            bytes,
            devices: Default::default(),
        })
    }

    /// `adapter.lora.alpha` (0 when the file has none).
    pub fn alpha(&self) -> f32 {
        self.alpha
    }

    /// The largest rank of its weights.
    pub fn rank(&self) -> usize {
        self.max_rank
    }

    /// How many weights it adapts.
    pub fn weights(&self) -> usize {
        self.pairs
    }

    /// Bytes of its matrices in memory (f16 as in the file, other types widened to f32).
    pub fn size_bytes(&self) -> usize {
        self.bytes
    }

    /// Whether it was checked against a model of configuration `cfg`.
    pub fn fits(&self, cfg: &DecoderConfig) -> bool {
        self.arch == cfg.arch && self.dims == (cfg.hidden_size, cfg.num_hidden_layers)
    }
}

/// The adapters a session runs with, each with its user scale (`llama_set_adapters_lora`).
/// Scale 0 drops an adapter, as in llama.cpp.
#[derive(Debug, Clone, Default)]
pub struct LoraSet {
    entries: Vec<(Arc<LoraAdapter>, f32)>,
}

/// Equal when [`LoraSet::same_as`]: the same adapters (by identity) and scales, in order.
impl PartialEq for LoraSet {
    fn eq(&self, other: &Self) -> bool {
        self.same_as(other)
    }
}

impl LoraSet {
    /// The set of `adapters` with their scales. A non-finite scale is [`Error::InvalidParameter`].
    pub fn new(adapters: &[(Arc<LoraAdapter>, f32)]) -> Result<Self> {
        if let Some((_, s)) = adapters.iter().find(|(_, s)| !s.is_finite()) {
            return Err(Error::InvalidParameter { name: "lora scale", reason: format!("{s} is not finite") });
        }
        Ok(Self { entries: adapters.iter().filter(|(_, s)| *s != 0.0).cloned().collect() })
    }

    /// No adapters.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many adapters (scale 0 ones dropped).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The adapters and their scales, in order.
    pub fn entries(&self) -> &[(Arc<LoraAdapter>, f32)] {
        &self.entries
    }

    /// Same adapters (by identity) with the same scales, in the same order.
    pub fn same_as(&self, other: &LoraSet) -> bool {
        self.entries.len() == other.entries.len()
            && self
                .entries
                .iter()
                .zip(&other.entries)
                .all(|((a, s), (b, t))| a.id == b.id && s.to_bits() == t.to_bits())
    }

    /// Every adapter fits `cfg` (else [`Error::Adapter`]).
    pub fn check(&self, cfg: &DecoderConfig) -> Result<()> {
        match self.entries.iter().find(|(a, _)| !a.fits(cfg)) {
            Some((a, _)) => Err(bad(format!("adapter {} was loaded for another model", a.id))),
            None => Ok(()),
        }
    }

    /// The work of one token (`x`, one row) for the projections `outs` of `layer`, `(proj,
    /// output rows)` each, in the order of the products it is fused with
    /// ([`DecodeStep`]); `None` when no adapter touches them.
    pub(crate) fn decode_step<'a>(
        &'a self,
        layer: usize,
        x: &'a [f32],
        outs: &[(Proj, usize)],
    ) -> Result<Option<DecodeStep<'a>>> {
        let (mut jobs, mut tasks, mut len) = (Vec::new(), Vec::new(), 0);
        for (adapter, scale) in &self.entries {
            for (k, (proj, rows)) in outs.iter().enumerate() {
                let Some(p) = adapter.layers.get(layer).and_then(|l| l[*proj as usize].as_ref()) else { continue };
                if x.len() < p.n_in || *rows != p.n_out {
                    return Err(Error::Backend {
                        reason: format!("lora: one token does not fit the buffers of layer {layer}"),
                    });
                }
                let s = if adapter.alpha != 0.0 { scale * adapter.alpha / p.rank as f32 } else { *scale };
                let per = (A_BYTES_PER_TASK / (4 * p.n_in)).clamp(1, p.rank);
                for r0 in (0..p.rank).step_by(per) {
                    tasks.push((jobs.len(), r0..(r0 + per).min(p.rank)));
                }
                jobs.push((k, p, s, len));
                len += p.rank;
            }
        }
        if jobs.is_empty() {
            return Ok(None);
        }
        Ok(Some(DecodeStep { x, jobs, tasks, z: (0..len).map(|_| AtomicU32::new(0)).collect() }))
    }

    /// Adds every adapter's `s·B·(A·x)` to the outputs of the projections `outs` of `layer`
    /// (`[n, out]` each), which all take the input `x` (`[n, in]`): q/k/v, gate/up, or one.
    ///
    /// A prefill (`n ≥ 2·ROWS_PER_TASK`) spreads its rows over the kernel pool in blocks. Fewer
    /// rows (a decode step) run on this thread. Every output is the same sum either way
    /// ([`Pair::rows`]), adapters in the set's order.
    pub(crate) fn apply_host(&self, layer: usize, x: &[f32], n: usize, outs: &mut [(Proj, &mut [f32])]) -> Result<()> {
        // (output, pair, s), adapters in order.
        let mut jobs: Vec<(usize, &Pair, f32)> = Vec::new();
        for (adapter, scale) in &self.entries {
            for (k, (proj, y)) in outs.iter().enumerate() {
                let Some(p) = adapter.layers.get(layer).and_then(|l| l[*proj as usize].as_ref()) else { continue };
                if x.len() < n * p.n_in || y.len() < n * p.n_out {
                    return Err(Error::Backend {
                        reason: format!("lora: {n} rows do not fit the buffers of layer {layer}"),
                    });
                }
                let s = if adapter.alpha != 0.0 { scale * adapter.alpha / p.rank as f32 } else { *scale };
                jobs.push((k, p, s));
            }
        }
        if jobs.is_empty() || n == 0 {
            return Ok(());
        }
        if n >= 2 * ROWS_PER_TASK {
            for (k, p, s) in jobs {
                p.apply_blocks(s, x, outs[k].1, n);
            }
            return Ok(());
        }
        // A few rows on this thread. The model's decode (one token) does not come here: it
        // fuses the adapter into the base products' pool job (`decode_step`); a separate pool
        // job per group was measured slower there (+20-34 % against +11 %).
        for (k, p, s) in jobs {
            p.rows(s, &x[..n * p.n_in], &mut outs[k].1[..n * p.n_out]);
        }
        Ok(())
    }
}

/// One adapted weight on a device: `Aᵀ` `[in, rank]` and `Bᵀ` `[rank, out]`, so both products
/// are plain matmuls of the pass's `[n, in]` activations.
struct DevicePair {
    at: burn::tensor::Tensor<2>,
    bt: burn::tensor::Tensor<2>,
    rank: usize,
    n_in: usize,
    n_out: usize,
}

/// An adapter's matrices on one device (f32, the same values as the host's).
pub(crate) struct DeviceCopy {
    device: burn::tensor::Device,
    layers: Vec<[Option<DevicePair>; N_PROJ]>,
}

impl std::fmt::Debug for DeviceCopy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceCopy").field("device", &self.device).finish_non_exhaustive()
    }
}

impl LoraAdapter {
    /// Its matrices on `device`: uploaded at the first call for that device, then shared (every
    /// session and pass on the device reads the same buffers).
    fn on_device(&self, device: &burn::tensor::Device) -> Result<Arc<DeviceCopy>> {
        let mut copies =
            self.devices.lock().map_err(|_| Error::Backend { reason: "lora: device copies lock poisoned".into() })?;
        if let Some(c) = copies.iter().find(|c| &c.device == device) {
            return Ok(c.clone());
        }
        use crate::model::layers::{tensor2, transpose};
        let upload = |p: &Pair| {
            // f16 files stay f16 on the host (the CPU kernels widen inside their dots); the device
            // copy is their exact f32 widening.
            let (a, b) = (p.a.to_f32(), p.b.to_f32());
            DevicePair {
                at: tensor2(transpose(&a, p.rank, p.n_in), p.n_in, p.rank, device),
                bt: tensor2(transpose(&b, p.n_out, p.rank), p.rank, p.n_out, device),
                rank: p.rank,
                n_in: p.n_in,
                n_out: p.n_out,
            }
        };
        let layers = self.layers.iter().map(|l| std::array::from_fn(|k| l[k].as_ref().map(upload))).collect();
        let copy = Arc::new(DeviceCopy { device: device.clone(), layers });
        log::info!(
            "lora adapter {}: {} weights uploaded to the device ({} KiB)",
            self.id,
            self.pairs,
            self.bytes >> 10
        );
        copies.push(copy.clone());
        Ok(copy)
    }
}

/// A [`LoraSet`] on one device, for the device passes (`model::decoder`): each adapter's copy
/// there, its alpha and the set's scale.
pub(crate) struct DeviceLoraSet {
    entries: Vec<(Arc<DeviceCopy>, f32, f32)>,
}

impl LoraSet {
    /// The set's adapters on `device` (uploading any that are not there yet).
    pub(crate) fn on_device(&self, device: &burn::tensor::Device) -> Result<DeviceLoraSet> {
        let entries =
            self.entries.iter().map(|(a, s)| Ok((a.on_device(device)?, a.alpha, *s))).collect::<Result<_>>()?;
        Ok(DeviceLoraSet { entries })
    }
}

impl DeviceLoraSet {
    /// No adapters.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// `y + Σ s·(x·Aᵀ)·Bᵀ` over the set's adapters that adapt projection `proj` of `layer`
    /// (`x: [n, in]`, `y: [n, out]`; `s` as on the host: `scale·alpha/rank`, or `scale` without
    /// alpha): two thin matmuls, a scale and an add per adapter, the base product untouched.
    pub(crate) fn apply(
        &self,
        layer: usize,
        proj: Proj,
        x: &burn::tensor::Tensor<2>,
        y: burn::tensor::Tensor<2>,
    ) -> Result<burn::tensor::Tensor<2>> {
        let mut y = y;
        for (copy, alpha, scale) in &self.entries {
            let Some(p) = copy.layers.get(layer).and_then(|l| l[proj as usize].as_ref()) else { continue };
            let ([n, xin], [m, yout]) = (x.dims(), y.dims());
            if xin != p.n_in || yout != p.n_out || n != m {
                return Err(Error::Backend {
                    reason: format!(
                        "lora: [{n}, {xin}] -> [{m}, {yout}] does not fit layer {layer}'s {}x{} adapter",
                        p.n_in, p.n_out
                    ),
                });
            }
            let s = if *alpha != 0.0 { scale * alpha / p.rank as f32 } else { *scale };
            let t = x.clone().matmul(p.at.clone()).mul_scalar(s);
            y = y.add(t.matmul(p.bt.clone()));
        }
        Ok(y)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::writer::GgufWriter;
    use crate::gguf::MetaValue;
    use crate::model::decoder::{Activation, NormPlacement, RopeLayout, RopeScaling};
    use crate::quant::GgmlType;

    /// 2 layers, hidden 32, q 32, kv 16, MLP 64.
    fn cfg() -> DecoderConfig {
        DecoderConfig {
            arch: "gemma3",
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 2,
            num_key_value_heads: 1,
            head_dim: 16,
            rms_norm_eps: 1e-6,
            norm: NormPlacement::Sandwich,
            activation: Activation::GeluTanh,
            qk_norm: true,
            qkv_bias: false,
            rope_layout: RopeLayout::Neox,
            rope_theta: 1e6,
            rope_scaling: RopeScaling::None,
            sliding: None,
            embed_scale: 1.0,
            attn_scale: 0.25,
            max_position_embeddings: 128,
            vocab_size: 16,
            final_logit_softcapping: None,
        }
    }

    fn f32s(n: u64, seed: u32) -> Vec<u8> {
        (0..n)
            .flat_map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 1000.0 - 0.5).to_le_bytes()
            })
            .collect()
    }

    /// An adapter file: `kv` metadata and `tensors` (name, ne0-first shape) of f32 values.
    /// A file removed on drop.
    struct Tmp(std::path::PathBuf);
    impl Tmp {
        fn new() -> Self {
            static N: AtomicU64 = AtomicU64::new(0);
            Self(std::env::temp_dir().join(format!(
                "edgewise-lora-{}-{}.gguf",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            )))
        }
        fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn file(kv: &[(&str, MetaValue)], tensors: &[(&str, [u64; 2])]) -> Tmp {
        let mut w = GgufWriter::new();
        for (k, v) in kv {
            w = w.kv(k, v.clone());
        }
        for (i, (name, s)) in tensors.iter().enumerate() {
            w = w.tensor(name, s, GgmlType::F32, f32s(s[0] * s[1], i as u32));
        }
        let f = Tmp::new();
        std::fs::write(f.path(), w.to_bytes()).unwrap();
        f
    }

    /// As [`file`], with the values rounded to f16 and stored as `ty` (F16 or F32).
    fn file_as(kv: &[(&str, MetaValue)], tensors: &[(&str, [u64; 2])], ty: GgmlType) -> Tmp {
        let mut w = GgufWriter::new();
        for (k, v) in kv {
            w = w.kv(k, v.clone());
        }
        for (i, (name, s)) in tensors.iter().enumerate() {
            let vals = f32s(s[0] * s[1], i as u32)
                .chunks_exact(4)
                .map(|c| half::f16::from_f32(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Vec<_>>();
            let bytes: Vec<u8> = match ty {
                GgmlType::F16 => vals.iter().flat_map(|v| v.to_le_bytes()).collect(),
                _ => vals.iter().flat_map(|v| v.to_f32().to_le_bytes()).collect(),
            };
            w = w.tensor(name, s, ty, bytes);
        }
        let f = Tmp::new();
        std::fs::write(f.path(), w.to_bytes()).unwrap();
        f
    }

    fn header(arch: &str, alpha: Option<f32>) -> Vec<(&'static str, MetaValue)> {
        let mut v = vec![
            ("general.architecture", MetaValue::String(arch.into())),
            ("general.type", MetaValue::String("adapter".into())),
            ("adapter.type", MetaValue::String("lora".into())),
        ];
        if let Some(a) = alpha {
            v.push(("adapter.lora.alpha", MetaValue::F32(a)));
        }
        v
    }

    const Q_A: (&str, [u64; 2]) = ("blk.1.attn_q.weight.lora_a", [32, 4]);
    const Q_B: (&str, [u64; 2]) = ("blk.1.attn_q.weight.lora_b", [4, 32]);

    fn reason(r: Result<LoraAdapter>) -> String {
        match r {
            Err(Error::Adapter { reason }) => reason,
            other => panic!("expected Error::Adapter, got {other:?}"),
        }
    }

    #[test]
    fn applies_scale_times_alpha_over_rank() {
        let f = file(
            &header("gemma3", Some(8.0)),
            &[Q_A, Q_B, ("blk.0.ffn_down.weight.lora_a", [64, 2]), ("blk.0.ffn_down.weight.lora_b", [2, 32])],
        );
        let a = Arc::new(LoraAdapter::load(f.path(), &cfg()).unwrap());
        assert_eq!((a.weights(), a.rank(), a.alpha(), a.size_bytes()), (2, 4, 8.0, (32 * 4 * 2 + 64 * 2 + 2 * 32) * 4));
        let x: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        let set = LoraSet::new(&[(a.clone(), 0.5)]).unwrap();
        let mut y = vec![1f32; 64];
        set.apply_host(1, &x, 2, &mut [(Proj::Q, &mut y)]).unwrap();
        // The reference: y = 1 + 0.5 · (8 / 4) · B·(A·x), row by row.
        let p = a.layers[1][Proj::Q as usize].as_ref().unwrap();
        let (pa, pb) = (p.a.to_f32(), p.b.to_f32());
        for t in 0..2 {
            let xr = &x[t * 32..][..32];
            let ax: Vec<f32> = (0..4).map(|r| (0..32).map(|i| pa[r * 32 + i] * xr[i]).sum()).collect();
            for o in 0..32 {
                let want = 1.0 + 1.0 * (0..4).map(|r| pb[o * 4 + r] * ax[r]).sum::<f32>();
                assert!((y[t * 32 + o] - want).abs() < 1e-5, "row {t} out {o}: {} vs {want}", y[t * 32 + o]);
            }
        }
        // Layers and projections it does not name are untouched.
        let mut z = vec![1f32; 64];
        set.apply_host(0, &x, 2, &mut [(Proj::Q, &mut z)]).unwrap();
        assert!(z.iter().all(|v| *v == 1.0));
        // Two copies at half scale add up to one at full scale; scale 0 drops it.
        let (mut y2, mut y0) = (vec![1f32; 64], vec![1f32; 64]);
        LoraSet::new(&[(a.clone(), 0.25), (a.clone(), 0.25)])
            .unwrap()
            .apply_host(1, &x, 2, &mut [(Proj::Q, &mut y2)])
            .unwrap();
        assert!(y.iter().zip(&y2).all(|(p, q)| (p - q).abs() < 1e-5));
        let zero = LoraSet::new(&[(a.clone(), 0.0)]).unwrap();
        assert!(zero.is_empty());
        zero.apply_host(1, &x, 2, &mut [(Proj::Q, &mut y0)]).unwrap();
        assert!(y0.iter().all(|v| *v == 1.0));
        assert!(matches!(LoraSet::new(&[(a, f32::NAN)]), Err(Error::InvalidParameter { .. })));
    }

    #[test]
    fn a_prefill_spread_over_the_pool_equals_row_by_row() {
        let a = Arc::new(LoraAdapter::load(file(&header("gemma3", Some(8.0)), &[Q_A, Q_B]).path(), &cfg()).unwrap());
        let set = LoraSet::new(&[(a, 0.7)]).unwrap();
        // 77 rows: several pool blocks of ROWS_PER_TASK and a ragged last one.
        let n = 77;
        let x: Vec<f32> = (0..n * 32).map(|i| (i as f32 * 0.113).sin()).collect();
        let mut all: Vec<f32> = (0..n * 32).map(|i| (i as f32 * 0.05).cos()).collect();
        let mut one = all.clone();
        set.apply_host(1, &x, n, &mut [(Proj::Q, &mut all)]).unwrap();
        for t in 0..n {
            set.apply_host(1, &x[t * 32..(t + 1) * 32], 1, &mut [(Proj::Q, &mut one[t * 32..(t + 1) * 32])]).unwrap();
        }
        assert_eq!(all, one, "the pooled rows must be bit-identical to one row at a time");
        assert!(all.iter().zip(&x).any(|(y, _)| *y != 0.0));
    }

    /// Wider than [`cfg`], so a decode step's outputs span several tasks of `B_ROWS_PER_TASK`.
    fn wide_cfg() -> DecoderConfig {
        DecoderConfig { hidden_size: 160, intermediate_size: 300, head_dim: 160, ..cfg() }
    }

    /// An adapter on q, k, v (and gate, up) of layer 0 of [`wide_cfg`], of rank `r`.
    fn wide_adapter(r: u64, alpha: f32, ty: GgmlType) -> Arc<LoraAdapter> {
        let names: Vec<(String, [u64; 2])> =
            [("attn_q", 320), ("attn_k", 160), ("attn_v", 160), ("ffn_gate", 300), ("ffn_up", 300)]
                .iter()
                .flat_map(|(w, out)| {
                    [(format!("blk.0.{w}.weight.lora_a"), [160, r]), (format!("blk.0.{w}.weight.lora_b"), [r, *out])]
                })
                .collect();
        let t: Vec<(&str, [u64; 2])> = names.iter().map(|(n, s)| (n.as_str(), *s)).collect();
        Arc::new(LoraAdapter::load(file_as(&header("gemma3", Some(alpha)), &t, ty).path(), &wide_cfg()).unwrap())
    }

    #[test]
    fn a_grouped_decode_step_equals_one_product_at_a_time() {
        // Two adapters (an f16 and an f32 file, ranks 6 and 9) on q/k/v as one group, decode and
        // prefill row counts.
        let (a, b) = (wide_adapter(6, 12.0, GgmlType::F16), wide_adapter(9, 3.0, GgmlType::F32));
        let set = LoraSet::new(&[(a.clone(), 0.7), (b.clone(), -1.3)]).unwrap();
        for n in [1usize, 3, 2 * ROWS_PER_TASK - 1, 2 * ROWS_PER_TASK + 5] {
            let x: Vec<f32> = (0..n * 160).map(|i| (i as f32 * 0.071).sin()).collect();
            let init = |w: usize, k: f32| -> Vec<f32> { (0..n * w).map(|i| (i as f32 * k).cos()).collect() };
            let (mut q, mut k, mut v) = (init(320, 0.03), init(160, 0.05), init(160, 0.07));
            let (mut q1, mut k1, mut v1) = (q.clone(), k.clone(), v.clone());
            set.apply_host(0, &x, n, &mut [(Proj::Q, &mut q), (Proj::K, &mut k), (Proj::V, &mut v)]).unwrap();
            // The reference: each adapter, then each projection, all rows on this thread.
            for (ad, scale) in [(&a, 0.7f32), (&b, -1.3)] {
                for (p, y) in [(Proj::Q, &mut q1), (Proj::K, &mut k1), (Proj::V, &mut v1)] {
                    let pair = ad.layers[0][p as usize].as_ref().unwrap();
                    pair.rows(scale * ad.alpha / pair.rank as f32, &x, y);
                }
            }
            assert_eq!((&q, &k, &v), (&q1, &k1, &v1), "{n} rows: the split must equal the reference bit for bit");
            assert!(q.iter().zip(&init(320, 0.03)).filter(|(p, q)| p != q).count() > 300 * n);
        }
    }

    /// A decode step fused into the base products' pool job (A rows in pre tasks, B rows per
    /// base row chunk) equals the base products followed by `apply_host`, bit for bit: two
    /// adapters, q/k/v as one group and one product alone.
    #[test]
    fn a_fused_decode_step_equals_products_then_apply_host() {
        use crate::quant::cpu::Quantized;
        let (a, b) = (wide_adapter(6, 12.0, GgmlType::F16), wide_adapter(9, 3.0, GgmlType::F32));
        let set = LoraSet::new(&[(a, 0.7), (b, -1.3)]).unwrap();
        let x: Vec<f32> = (0..160).map(|i| (i as f32 * 0.071).sin()).collect();
        let shapes = [(Proj::Q, 320usize), (Proj::K, 160), (Proj::V, 160)];
        let ws: Vec<Vec<u8>> = shapes
            .iter()
            .enumerate()
            .map(|(i, (_, r))| crate::quant::random_blocks(GgmlType::Q8_0, r * 160 / 32, 7 + i as u64))
            .collect();
        for group in [&shapes[..], &shapes[1..2]] {
            let ws = &ws[shapes.len() - group.len()..][..group.len()];
            let mut want: Vec<Vec<f32>> = group.iter().map(|(_, r)| vec![0f32; *r]).collect();
            let mut parts: Vec<(&[u8], usize, &mut [f32])> =
                ws.iter().zip(group).zip(want.iter_mut()).map(|((w, (_, r)), y)| (&w[..], *r, &mut y[..])).collect();
            Quantized::new(&x, 1, 160).unwrap().matmul_many_into(GgmlType::Q8_0, &mut parts).unwrap();
            drop(parts);
            let mut outs: Vec<(Proj, &mut [f32])> =
                group.iter().map(|(p, _)| *p).zip(want.iter_mut().map(|y| &mut y[..])).collect();
            set.apply_host(0, &x, 1, &mut outs).unwrap();
            drop(outs);
            let step = set.decode_step(0, &x, group).unwrap().unwrap();
            assert!(step.tasks.len() >= 2, "several pre tasks (one per adapter and product here)");
            let mut got: Vec<Vec<f32>> = group.iter().map(|(_, r)| vec![f32::NAN; *r]).collect();
            let mut parts: Vec<(&[u8], usize, &mut [f32])> =
                ws.iter().zip(group).zip(got.iter_mut()).map(|((w, (_, r)), y)| (&w[..], *r, &mut y[..])).collect();
            Quantized::new(&x, 1, 160).unwrap().matmul_many_fused(GgmlType::Q8_0, &mut parts, &step).unwrap();
            drop(parts);
            assert_eq!(got, want, "fused must equal products + apply_host bit for bit");
        }
        // No adapter on this layer: nothing to fuse; wrong output rows: an error.
        assert!(set.decode_step(1, &x, &shapes).unwrap().is_none());
        assert!(set.decode_step(0, &x, &[(Proj::Q, 321)]).is_err());
    }

    #[test]
    fn an_f16_adapter_equals_its_f32_widening() {
        let (h, s) = (wide_adapter(8, 16.0, GgmlType::F16), wide_adapter(8, 16.0, GgmlType::F32));
        assert_eq!(2 * h.size_bytes(), s.size_bytes(), "f16 matrices stay f16");
        for n in [1usize, 40] {
            let x: Vec<f32> = (0..n * 160).map(|i| (i as f32 * 0.29).sin()).collect();
            let (mut g1, mut u1) = (vec![0.5f32; n * 300], vec![-0.5f32; n * 300]);
            let (mut g2, mut u2) = (g1.clone(), u1.clone());
            LoraSet::new(&[(h.clone(), 0.9)])
                .unwrap()
                .apply_host(0, &x, n, &mut [(Proj::Gate, &mut g1), (Proj::Up, &mut u1)])
                .unwrap();
            LoraSet::new(&[(s.clone(), 0.9)])
                .unwrap()
                .apply_host(0, &x, n, &mut [(Proj::Gate, &mut g2), (Proj::Up, &mut u2)])
                .unwrap();
            assert_eq!((&g1, &u1), (&g2, &u2));
            assert!(g1.iter().any(|v| *v != 0.5));
        }
    }

    /// The F16C dot product equals the portable one bit for bit, and both equal [`dot`] on
    /// the widened row (every length, including tails).
    #[test]
    fn f16_dots_equal_the_f32_dot_of_the_widening() {
        for w in [1usize, 7, 8, 16, 23, 640, 2048] {
            let a: Vec<half::f16> = (0..w).map(|i| half::f16::from_f32((i as f32 * 0.37).sin() * 3.0)).collect();
            let b: Vec<f32> = (0..w).map(|i| (i as f32 * 0.11).cos()).collect();
            let wide: Vec<f32> = a.iter().map(|h| h.to_f32()).collect();
            let want = dot(&wide, &b);
            assert_eq!(dot_h_portable(&a, &b).to_bits(), want.to_bits(), "w={w}");
            assert_eq!(dot_h(&a, &b).to_bits(), want.to_bits(), "w={w}");
            let mut y = vec![0.5f32; 1];
            Mat::F16(a.clone()).add_rows(0, w, &b, &mut y);
            assert_eq!(y[0].to_bits(), (0.5 + want).to_bits(), "w={w}");
        }
    }

    #[test]
    fn without_alpha_the_scale_is_the_users() {
        let with = Arc::new(LoraAdapter::load(file(&header("gemma3", Some(4.0)), &[Q_A, Q_B]).path(), &cfg()).unwrap());
        let without = Arc::new(LoraAdapter::load(file(&header("gemma3", None), &[Q_A, Q_B]).path(), &cfg()).unwrap());
        let x = vec![0.3f32; 32];
        let (mut a, mut b) = (vec![0f32; 32], vec![0f32; 32]);
        // alpha 4, rank 4: alpha/rank = 1, the same as no alpha.
        LoraSet::new(&[(with, 1.0)]).unwrap().apply_host(1, &x, 1, &mut [(Proj::Q, &mut a)]).unwrap();
        LoraSet::new(&[(without, 1.0)]).unwrap().apply_host(1, &x, 1, &mut [(Proj::Q, &mut b)]).unwrap();
        assert_eq!(a, b);
        assert!(a.iter().any(|v| *v != 0.0));
    }

    #[test]
    fn bad_adapters_are_typed_errors() {
        let c = cfg();
        let load = |kv: &[(&str, MetaValue)], t: &[(&str, [u64; 2])]| LoraAdapter::load(file(kv, t).path(), &c);
        let h = header("gemma3", Some(8.0));
        assert!(reason(load(&header("llama", Some(8.0)), &[Q_A, Q_B])).contains("architecture `llama`"));
        let mut not_adapter = h.clone();
        not_adapter[1].1 = MetaValue::String("model".into());
        assert!(reason(load(&not_adapter, &[Q_A, Q_B])).contains("general.type"));
        assert!(reason(load(&h, &[Q_A])).contains("missing one component"));
        // A and B swapped: shapes [4, 32] / [32, 4] do not chain.
        assert!(reason(load(&h, &[("blk.1.attn_q.weight.lora_a", [4, 32]), ("blk.1.attn_q.weight.lora_b", [32, 4])]))
            .contains("maps 4 -> 4"));
        // Another model's width.
        assert!(reason(load(&h, &[("blk.1.attn_q.weight.lora_a", [48, 4]), Q_B])).contains("48"));
        // A rank over the weight's sides loads (llama.cpp takes it); one over MAX_RANK does not.
        assert!(load(&h, &[("blk.1.attn_k.weight.lora_a", [32, 20]), ("blk.1.attn_k.weight.lora_b", [20, 16])]).is_ok());
        let over = MAX_RANK as u64 + 1;
        assert!(reason(load(
            &h,
            &[("blk.1.attn_k.weight.lora_a", [32, over]), ("blk.1.attn_k.weight.lora_b", [over, 16])]
        ))
        .contains(&format!("rank {over}")));
        assert!(reason(load(&h, &[("blk.7.attn_q.weight.lora_a", [32, 4]), ("blk.7.attn_q.weight.lora_b", [4, 32])]))
            .contains("does not exist"));
        assert!(reason(load(&h, &[("token_embd.weight.lora_a", [32, 4]), ("token_embd.weight.lora_b", [4, 16])]))
            .contains("only the attention, MLP and DeltaNet"));
        assert!(reason(load(&h, &[("blk.1.attn_q.weight", [32, 32])])).contains("neither"));
        assert!(reason(load(&h, &[])).contains("no LoRA tensors"));
        // Norm tensors are skipped, as llama.cpp does.
        assert!(load(&h, &[Q_A, Q_B, ("blk.1.attn_norm.weight", [32, 1])]).is_ok());
        // Not a GGUF at all, and a truncated one.
        let junk = Tmp::new();
        std::fs::write(junk.path(), b"not a gguf file at all").unwrap();
        assert!(LoraAdapter::load(junk.path(), &c).is_err());
        let good = std::fs::read(file(&h, &[Q_A, Q_B]).path()).unwrap();
        std::fs::write(junk.path(), &good[..good.len() - 100]).unwrap();
        assert!(LoraAdapter::load(junk.path(), &c).is_err());
        // An adapter checked against one model does not fit another.
        let a = Arc::new(load(&h, &[Q_A, Q_B]).unwrap());
        let mut other = cfg();
        other.num_hidden_layers = 3;
        assert!(matches!(LoraSet::new(&[(a, 1.0)]).unwrap().check(&other), Err(Error::Adapter { .. })));
    }

    /// Qwen 3.5's DeltaNet products take adapters under their GGUF names (`attn_qkv`,
    /// `attn_gate`, `ssm_beta`, `ssm_alpha`, `ssm_out`), each into its own slot, so an adapter
    /// on one never reaches another; `ssm_conv1d` (llama.cpp convolves without its adapter) is
    /// refused.
    #[test]
    fn deltanet_products_take_adapters_and_the_conv_does_not() {
        let c = cfg();
        let blk = |name| WeightId::Block { layer: 0, name };
        let mut shapes = c.weight_shapes(true);
        shapes.extend([
            (blk("attn_qkv.weight"), [48, 32]),
            (blk("attn_gate.weight"), [32, 32]),
            (blk("ssm_beta.weight"), [2, 32]),
            (blk("ssm_alpha.weight"), [2, 32]),
            (blk("ssm_out.weight"), [32, 32]),
            (blk("ssm_conv1d.weight"), [48, 4]),
        ]);
        let h = header("gemma3", Some(8.0));
        let load = |t: &[(&str, [u64; 2])]| LoraAdapter::load_for(file(&h, t).path(), &c, shapes.clone());
        // Rank 4 over ssm_alpha's 2 outputs loads (llama.cpp takes any rank).
        let a = Arc::new(
            load(&[
                ("blk.0.attn_qkv.weight.lora_a", [32, 4]),
                ("blk.0.attn_qkv.weight.lora_b", [4, 48]),
                ("blk.0.ssm_alpha.weight.lora_a", [32, 4]),
                ("blk.0.ssm_alpha.weight.lora_b", [4, 2]),
            ])
            .unwrap(),
        );
        assert_eq!(a.weights(), 2);
        let set = LoraSet::new(&[(a, 1.0)]).unwrap();
        let x: Vec<f32> = (0..32).map(|i| (i as f32 * 0.37).sin()).collect();
        let run = |p: Proj, out: usize| {
            let mut y = vec![0f32; out];
            set.apply_host(0, &x, 1, &mut [(p, &mut y)]).unwrap();
            y.iter().map(|v| v.abs()).sum::<f32>()
        };
        assert!(run(Proj::DeltaQkv, 48) > 0.0 && run(Proj::DeltaAlpha, 2) > 0.0);
        // The other products of the layer are untouched.
        assert_eq!(run(Proj::DeltaZ, 32) + run(Proj::DeltaBeta, 2) + run(Proj::DeltaOut, 32) + run(Proj::Q, 32), 0.0);
        let e = load(&[("blk.0.ssm_conv1d.weight.lora_a", [4, 2]), ("blk.0.ssm_conv1d.weight.lora_b", [2, 48])]);
        assert!(reason(e).contains("only the attention, MLP and DeltaNet"));
    }
}

#[cfg(test)]
mod cost {
    use super::*;

    /// The adapter's arithmetic per decoded token at Gemma 3 270M's sizes, rank 16 on all seven
    /// projections of 18 layers (the `edgewise bench --lora` case), without the rest of the
    /// model: the best of 50 tokens. `cargo test --release --workspace --lib -- --ignored lora_cost --nocapture`
    #[test]
    #[ignore = "a timing, printed"]
    fn lora_cost_per_token_gemma3_270m_rank16() {
        let (d, q, kv, ff, r) = (640, 1024, 256, 2048, 16);
        let shapes = [
            (Proj::Q, d, q),
            (Proj::K, d, kv),
            (Proj::V, d, kv),
            (Proj::O, q, d),
            (Proj::Gate, d, ff),
            (Proj::Up, d, ff),
            (Proj::Down, ff, d),
        ];
        let layers: Vec<[Option<Pair>; N_PROJ]> = (0..18)
            .map(|_| {
                let mut l: [Option<Pair>; N_PROJ] = Default::default();
                for (p, n_in, n_out) in shapes {
                    l[p as usize] = Some(Pair {
                        a: Mat::F32(vec![0.01; r * n_in]),
                        b: Mat::F32(vec![0.01; n_out * r]),
                        rank: r,
                        n_in,
                        n_out,
                    });
                }
                l
            })
            .collect();
        let bytes = layers.iter().flatten().flatten().map(|p| p.a.bytes() + p.b.bytes()).sum();
        let a = Arc::new(LoraAdapter {
            id: 0,
            arch: "gemma3",
            dims: (d, 18),
            alpha: 32.0,
            layers,
            pairs: 126,
            max_rank: r,
            bytes,
            devices: Default::default(),
        });
        let set = LoraSet::new(&[(a, 1.0)]).unwrap();
        let x = vec![0.5f32; ff];
        let mut y = vec![0f32; 2 * ff];
        // Interleaved, best of 50 each: the decoder's grouped calls and
        // every pair on this thread (`Pair::rows`).
        let (mut best, mut serial) = (f64::MAX, f64::MAX);
        for _ in 0..50 {
            let t = std::time::Instant::now();
            // As the decoder groups them: q/k/v and gate/up share their input.
            for il in 0..18 {
                let (y0, rest) = y.split_at_mut(q);
                let (y1, rest) = rest.split_at_mut(kv);
                let (y2, _) = rest.split_at_mut(kv);
                set.apply_host(il, &x, 1, &mut [(Proj::Q, y0), (Proj::K, y1), (Proj::V, y2)]).unwrap();
                set.apply_host(il, &x, 1, &mut [(Proj::O, &mut y[..d])]).unwrap();
                let (y0, rest) = y.split_at_mut(ff);
                set.apply_host(il, &x, 1, &mut [(Proj::Gate, y0), (Proj::Up, &mut rest[..ff])]).unwrap();
                set.apply_host(il, &x, 1, &mut [(Proj::Down, &mut y[..d])]).unwrap();
            }
            best = best.min(t.elapsed().as_secs_f64());
            let t = std::time::Instant::now();
            for l in &set.entries[0].0.layers {
                for p in l.iter().flatten() {
                    p.rows(2.0, &x[..p.n_in], &mut y[..p.n_out]);
                }
            }
            serial = serial.min(t.elapsed().as_secs_f64());
        }
        eprintln!(
            "rank-16 LoRA on 126 projections: {:.3} ms per token as the decoder groups them ({} pool threads), {:.3} ms pair by pair, {:.1} MiB",
            best * 1e3,
            crate::quant::cpu::pool::threads(),
            serial * 1e3,
            bytes as f64 / 1048576.0
        );
    }
}
