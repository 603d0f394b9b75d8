//! `edgewise finetune`: LoRA training with burn's autodiff (`burn-autodiff` over the `flex` CPU
//! backend) on a frozen base model whose weights are dequantized to f32.
//!
//! - Data: JSON Lines, `{"messages": […]}` or `{"prompt", "completion"}` ([`data`]), rendered
//!   with the model's chat template; the loss is the mean negative log-likelihood of the answer
//!   tokens only.
//! - Adapter: `A` (`[rank, in]`, small uniform init) and `B` (`[out, rank]`, zeros) per adapted
//!   projection, applied as `y = W·x + (alpha/rank)·B·(A·x)` — exactly what [`crate::lora`] and
//!   llama.cpp apply at run time with scale 1.
//! - Optimizer: AdamW (decoupled weight decay), `batch` examples accumulated per step; the
//!   accumulated gradient is clipped to a global L2 norm ([`clip_grad_norm`]) and the learning
//!   rate follows a linear warmup then a cosine decay to a tenth of the peak ([`lr_at`]), a pure
//!   function of the optimizer step, so a resumed run continues the same schedule.
//! - Checkpoints (`<out>.ckpt`, written atomically every `checkpoint_every` steps and at each
//!   epoch's end) hold the adapter, the optimizer moments and the position in the epoch; a run
//!   started again with the same arguments resumes from it. The epoch order is a seeded shuffle,
//!   so the resumed run sees the same batches as one that was not interrupted.
//! - Output: llama.cpp's GGUF adapter format (`general.type = adapter`, `adapter.type = lora`,
//!   `adapter.lora.alpha`, `<tensor>.lora_a` / `.lora_b`).

pub(crate) mod ad;
pub mod data;
pub mod graph;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Instant;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use ad::T;
pub use data::{Dataset, Example};
pub use graph::FrozenModel;
use graph::{LoraGraph, LoraLeaf};

use crate::gguf::writer::GgufWriter;
use crate::gguf::{GgufFile, MetaValue};
use crate::lora::Proj;
use crate::quant::GgmlType;
use crate::weights::WeightId;
use crate::{Error, Result};

/// Every projection an adapter may adapt, in [`Proj`] order.
pub const ALL_PROJ: [Proj; 7] = [Proj::Q, Proj::K, Proj::V, Proj::O, Proj::Gate, Proj::Up, Proj::Down];

/// The `--targets` name of a projection.
pub fn proj_name(p: Proj) -> &'static str {
    match p {
        Proj::Q => "q",
        Proj::K => "k",
        Proj::V => "v",
        Proj::O => "o",
        Proj::Gate => "gate",
        Proj::Up => "up",
        Proj::Down => "down",
        // Qwen 3.5's DeltaNet products (adapters load and run; `finetune` trains the shared decoder only).
        Proj::DeltaQkv => "delta_qkv",
        Proj::DeltaZ => "delta_z",
        Proj::DeltaBeta => "delta_beta",
        Proj::DeltaAlpha => "delta_alpha",
        Proj::DeltaOut => "delta_out",
    }
}

fn weight_id(layer: usize, p: Proj) -> WeightId {
    match p {
        Proj::Q => WeightId::AttnQ { layer },
        Proj::K => WeightId::AttnK { layer },
        Proj::V => WeightId::AttnV { layer },
        Proj::O => WeightId::AttnOutput { layer },
        Proj::Gate => WeightId::FfnGate { layer },
        Proj::Up => WeightId::FfnUp { layer },
        Proj::Down => WeightId::FfnDown { layer },
        Proj::DeltaQkv => WeightId::Block { layer, name: "attn_qkv.weight" },
        Proj::DeltaZ => WeightId::Block { layer, name: "attn_gate.weight" },
        Proj::DeltaBeta => WeightId::Block { layer, name: "ssm_beta.weight" },
        Proj::DeltaAlpha => WeightId::Block { layer, name: "ssm_alpha.weight" },
        Proj::DeltaOut => WeightId::Block { layer, name: "ssm_out.weight" },
    }
}

fn terr(reason: impl Into<String>) -> Error {
    Error::Training { reason: reason.into() }
}

/// How the learning rate moves over the planned steps (after the warmup).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LrSchedule {
    /// The peak learning rate throughout.
    Constant,
    /// Cosine decay from the peak to [`COSINE_FLOOR`] × the peak at the last planned step.
    Cosine,
}

/// Where the cosine schedule ends, as a fraction of the peak learning rate.
pub const COSINE_FLOOR: f32 = 0.1;

/// Default warmup, as a fraction of the planned steps (with the cosine schedule).
pub const DEFAULT_WARMUP_FRACTION: f64 = 0.05;

/// The learning rate of optimizer step `step` (1-based) of `planned` steps in all: a linear warmup
/// over `warmup` steps (`peak·step/warmup`), then `schedule`. A pure function of the step, so a
/// run resumed from a checkpoint continues the same schedule.
pub fn lr_at(schedule: LrSchedule, peak: f32, step: usize, warmup: usize, planned: usize) -> f32 {
    if step <= warmup {
        return peak * step as f32 / warmup as f32;
    }
    match schedule {
        LrSchedule::Constant => peak,
        LrSchedule::Cosine => {
            let span = planned.saturating_sub(warmup).max(1) as f64;
            let progress = ((step - warmup) as f64 / span).min(1.0);
            let cos = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
            (peak as f64 * (COSINE_FLOOR as f64 + (1.0 - COSINE_FLOOR as f64) * cos)) as f32
        }
    }
}

/// Scales `grads` (per parameter, `(at, bt)`) so that their global L2 norm (over every adapted
/// projection's `A` and `B` together) is at most `max_norm`; `max_norm` 0 leaves them as they are.
/// Returns the norm before clipping.
pub fn clip_grad_norm(grads: &mut [(Vec<f32>, Vec<f32>)], max_norm: f32) -> f32 {
    let sq: f64 = grads.iter().flat_map(|(a, b)| a.iter().chain(b)).map(|&g| g as f64 * g as f64).sum();
    let norm = sq.sqrt() as f32;
    if max_norm > 0.0 && norm > max_norm {
        let k = max_norm / norm;
        grads.iter_mut().flat_map(|(a, b)| a.iter_mut().chain(b.iter_mut())).for_each(|g| *g *= k);
    }
    norm
}

/// Training hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainConfig {
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (the adapter's scale is `alpha/rank`).
    pub alpha: f32,
    /// Passes over the training data.
    pub epochs: usize,
    /// AdamW learning rate.
    pub lr: f32,
    /// AdamW decoupled weight decay.
    pub weight_decay: f32,
    /// Examples per optimizer step (gradient accumulation).
    pub batch: usize,
    /// Projections adapted in every layer.
    pub targets: Vec<Proj>,
    /// Seed of the initialization and of the epoch shuffles.
    pub seed: u64,
    /// Checkpoint every this many optimizer steps (0: only at epoch ends).
    pub checkpoint_every: usize,
    /// Stop after this many optimizer steps in all (a shorter run; `None`: all epochs). The
    /// schedule still spans all epochs, so a shorter run is a prefix of the full one.
    pub max_steps: Option<usize>,
    /// The learning-rate schedule after the warmup.
    pub schedule: LrSchedule,
    /// Linear warmup steps (`None`: [`DEFAULT_WARMUP_FRACTION`] of the planned steps, rounded up,
    /// with the cosine schedule; none with the constant one).
    pub warmup_steps: Option<usize>,
    /// Clip the accumulated gradient to this global L2 norm (0: no clipping).
    pub clip_norm: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            rank: 8,
            alpha: 16.0,
            epochs: 1,
            lr: 1e-3,
            weight_decay: 0.0,
            batch: 8,
            targets: ALL_PROJ.to_vec(),
            seed: 0,
            checkpoint_every: 10,
            max_steps: None,
            schedule: LrSchedule::Cosine,
            warmup_steps: None,
            clip_norm: 1.0,
        }
    }
}

impl TrainConfig {
    /// Rejects values training cannot use ([`Error::InvalidParameter`]).
    pub fn validate(&self) -> Result<()> {
        let bad = |name, reason: String| Err(Error::InvalidParameter { name, reason });
        if self.rank == 0 || self.rank > crate::lora::MAX_RANK {
            return bad("rank", format!("{} is outside 1..={}", self.rank, crate::lora::MAX_RANK));
        }
        if !self.alpha.is_finite() || self.alpha <= 0.0 {
            return bad("alpha", format!("{} is not a positive number", self.alpha));
        }
        if !self.lr.is_finite() || self.lr <= 0.0 || self.lr > 1.0 {
            return bad("lr", format!("{} is outside (0, 1]", self.lr));
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            return bad("weight decay", format!("{} is negative or not finite", self.weight_decay));
        }
        if self.epochs == 0 || self.batch == 0 {
            return bad("epochs/batch", "must be at least 1".into());
        }
        if self.targets.is_empty() {
            return bad("targets", "no projection to adapt".into());
        }
        if !self.clip_norm.is_finite() || self.clip_norm < 0.0 {
            return bad("clip norm", format!("{} is negative or not finite", self.clip_norm));
        }
        Ok(())
    }

    /// Optimizer steps of all epochs over `n` examples (what the schedule spans).
    pub fn planned_steps(&self, n: usize) -> usize {
        n.div_ceil(self.batch.max(1)) * self.epochs
    }

    /// Warmup steps of a run of `planned` steps.
    pub fn warmup(&self, planned: usize) -> usize {
        match (self.warmup_steps, self.schedule) {
            (Some(w), _) => w,
            (None, LrSchedule::Cosine) => (planned as f64 * DEFAULT_WARMUP_FRACTION).ceil() as usize,
            (None, LrSchedule::Constant) => 0,
        }
    }

    /// The learning rate of optimizer step `step` (1-based) of a run over `n` examples.
    pub fn lr_at(&self, step: usize, n: usize) -> f32 {
        let planned = self.planned_steps(n);
        lr_at(self.schedule, self.lr, step, self.warmup(planned), planned)
    }

    /// What a checkpoint must agree on to be resumed.
    fn fingerprint(&self, model: &FrozenModel, data: &[Example]) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for e in data {
            h.update((e.tokens.len() as u64).to_le_bytes());
            h.update((e.answer_start as u64).to_le_bytes());
            for t in &e.tokens {
                h.update(t.to_le_bytes());
            }
        }
        let c = model.config();
        format!(
            "v2|{}|{}x{}|r{}|a{}|e{}|lr{}|wd{}|b{}|t{:?}|s{}|{:?}|w{}|clip{}|data{}",
            c.arch,
            c.hidden_size,
            c.num_hidden_layers,
            self.rank,
            self.alpha,
            self.epochs,
            self.lr,
            self.weight_decay,
            self.batch,
            self.targets.iter().map(|p| proj_name(*p)).collect::<Vec<_>>(),
            self.seed,
            self.schedule,
            self.warmup(self.planned_steps(data.len())),
            self.clip_norm,
            hex::encode(h.finalize())
        )
    }
}

/// One adapted projection's parameters in the graph's layout (`at = Aᵀ` `[in, r]`, `bt = Bᵀ`
/// `[r, out]`) with their AdamW moments.
#[derive(Debug, Clone, PartialEq)]
struct Param {
    layer: usize,
    proj: Proj,
    n_in: usize,
    n_out: usize,
    at: Vec<f32>,
    bt: Vec<f32>,
    m: [Vec<f32>; 2],
    v: [Vec<f32>; 2],
}

/// The trainable adapter: its parameters and optimizer state.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraState {
    rank: usize,
    alpha: f32,
    arch: &'static str,
    params: Vec<Param>,
    /// Optimizer steps taken.
    pub step: usize,
}

impl LoraState {
    /// A fresh adapter for `model`: `A` uniform in `±1/sqrt(in)` (seeded), `B` zero, so the
    /// adapted model starts equal to the base model.
    pub fn new(model: &FrozenModel, cfg: &TrainConfig) -> Self {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut params = Vec::new();
        for layer in 0..model.config().num_hidden_layers {
            for &proj in ALL_PROJ.iter().filter(|p| cfg.targets.contains(p)) {
                let (n_in, n_out) = model.proj_dims(layer, proj);
                let bound = 1.0 / (n_in as f32).sqrt();
                let at = (0..n_in * cfg.rank)
                    .map(|_| rand::Rng::random_range(&mut rng, -bound..bound))
                    .collect::<Vec<f32>>();
                let bt = vec![0f32; cfg.rank * n_out];
                let zeros = |a: &Vec<f32>, b: &Vec<f32>| [vec![0f32; a.len()], vec![0f32; b.len()]];
                params.push(Param { layer, proj, n_in, n_out, m: zeros(&at, &bt), v: zeros(&at, &bt), at, bt });
            }
        }
        Self { rank: cfg.rank, alpha: cfg.alpha, arch: model.config().arch, params, step: 0 }
    }

    /// Replaces every `B` by seeded random values of scale `std` (tests: a non-trivial adapter).
    pub fn randomize_b(&mut self, seed: u64, scale: f32) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        for p in &mut self.params {
            p.bt.iter_mut().for_each(|x| *x = rand::Rng::random_range(&mut rng, -scale..scale));
        }
    }

    /// The factor the adapter's product is multiplied by: `alpha/rank`.
    pub fn scale(&self) -> f32 {
        self.alpha / self.rank as f32
    }

    /// Builds the graph's view: leaves with gradients (`train`) or constants.
    fn graph(&self, layers: usize, train: bool) -> (LoraGraph, Vec<LoraLeaf>) {
        let mut g: Vec<[Option<LoraLeaf>; 7]> = (0..layers).map(|_| Default::default()).collect();
        let mut leaves = Vec::with_capacity(self.params.len());
        for p in &self.params {
            let mk = |v: &Vec<f32>, s: &[usize]| if train { T::param(v.clone(), s) } else { T::constant(v.clone(), s) };
            let leaf = LoraLeaf { at: mk(&p.at, &[p.n_in, self.rank]), bt: mk(&p.bt, &[self.rank, p.n_out]) };
            g[p.layer][p.proj as usize] = Some(leaf.clone());
            leaves.push(leaf);
        }
        (LoraGraph { layers: g, scale: self.scale() }, leaves)
    }

    /// Writes the adapter in llama.cpp's GGUF LoRA format.
    pub fn write_adapter(&self, path: &Path) -> Result<()> {
        let mut w = GgufWriter::new()
            .kv("general.architecture", MetaValue::String(self.arch.into()))
            .kv("general.type", MetaValue::String("adapter".into()))
            .kv("general.name", MetaValue::String("edgewise finetune".into()))
            .kv("adapter.type", MetaValue::String("lora".into()))
            .kv("adapter.lora.alpha", MetaValue::F32(self.alpha));
        let r = self.rank;
        for p in &self.params {
            let name = crate::gguf::names::tensor_name(weight_id(p.layer, p.proj));
            // lora_a: ne [in, r] = rows of A [r][in]; lora_b: ne [r, out] = rows of B [out][r].
            let a = transpose(&p.at, p.n_in, r);
            let b = transpose(&p.bt, r, p.n_out);
            w = w.tensor(&format!("{name}.lora_a"), &[p.n_in as u64, r as u64], GgmlType::F32, f32_bytes(&a));
            w = w.tensor(&format!("{name}.lora_b"), &[r as u64, p.n_out as u64], GgmlType::F32, f32_bytes(&b));
        }
        write_atomic(path, &w.to_bytes())
    }

    /// The gradient of `loss_fn`'s (scalar) result with respect to every parameter, as
    /// `(at, bt)` per adapted projection (tests: checked against finite differences).
    pub fn gradient(&self, model: &FrozenModel, ex: &Example) -> Result<(f32, Vec<(Vec<f32>, Vec<f32>)>)> {
        let (g, leaves) = self.graph(model.config().num_hidden_layers, true);
        let loss = model.nll(&ex.tokens, ex.answer_start, Some(&g))?;
        let value = loss.values()?.first().copied().unwrap_or(f32::NAN);
        let grads = loss.backward();
        let out = leaves.iter().map(|l| Ok((l.at.grad(&grads)?, l.bt.grad(&grads)?))).collect::<Result<Vec<_>>>()?;
        Ok((value, out))
    }

    /// Summed NLL of the answer tokens of `ex` under this adapter (no gradient).
    pub fn nll(&self, model: &FrozenModel, ex: &Example) -> Result<f32> {
        let (g, _) = self.graph(model.config().num_hidden_layers, false);
        let loss = model.nll(&ex.tokens, ex.answer_start, Some(&g))?;
        loss.values()?.first().copied().ok_or_else(|| terr("empty loss"))
    }

    /// Logits `[rows, vocab]` (flattened) of positions `rows` under this adapter (tests).
    pub fn logits(&self, model: &FrozenModel, tokens: &[u32], rows: std::ops::Range<usize>) -> Result<Vec<f32>> {
        let (g, _) = self.graph(model.config().num_hidden_layers, false);
        model.logits(tokens, rows, Some(&g))?.values()
    }

    /// Parameter `i`'s `(at, bt)`, mutable (tests: finite differences).
    pub fn param_mut(&mut self, i: usize) -> (&mut Vec<f32>, &mut Vec<f32>) {
        let p = &mut self.params[i];
        (&mut p.at, &mut p.bt)
    }

    /// One AdamW step with the accumulated gradient `grads` (per parameter, `(at, bt)`).
    fn adamw(&mut self, grads: &[(Vec<f32>, Vec<f32>)], lr: f32, wd: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        self.step += 1;
        let t = self.step as i32;
        let (c1, c2) = (1.0 - B1.powi(t), 1.0 - B2.powi(t));
        for (p, (ga, gb)) in self.params.iter_mut().zip(grads) {
            let ([m0, m1], [v0, v1]) = (&mut p.m, &mut p.v);
            for (w, g, m, v) in [(&mut p.at, ga, m0, v0), (&mut p.bt, gb, m1, v1)] {
                for i in 0..w.len() {
                    m[i] = B1 * m[i] + (1.0 - B1) * g[i];
                    v[i] = B2 * v[i] + (1.0 - B2) * g[i] * g[i];
                    let update = (m[i] / c1) / ((v[i] / c2).sqrt() + EPS);
                    w[i] -= lr * (update + wd * w[i]);
                }
            }
        }
    }
}

fn transpose(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Where training stands (what a checkpoint records besides the adapter).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Position {
    epoch: usize,
    /// Batches of `epoch` done.
    batch: usize,
}

/// The checkpoint next to `out`.
pub fn checkpoint_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".ckpt");
    PathBuf::from(s)
}

fn save_checkpoint(path: &Path, st: &LoraState, pos: Position, fingerprint: &str) -> Result<()> {
    let mut w = GgufWriter::new()
        .kv("general.type", MetaValue::String("edgewise.finetune.checkpoint".into()))
        .kv("finetune.fingerprint", MetaValue::String(fingerprint.into()))
        .kv("finetune.step", MetaValue::U64(st.step as u64))
        .kv("finetune.epoch", MetaValue::U64(pos.epoch as u64))
        .kv("finetune.batch", MetaValue::U64(pos.batch as u64));
    for (i, p) in st.params.iter().enumerate() {
        for (tag, v) in
            [("at", &p.at), ("bt", &p.bt), ("m_at", &p.m[0]), ("m_bt", &p.m[1]), ("v_at", &p.v[0]), ("v_bt", &p.v[1])]
        {
            w = w.tensor(&format!("p{i}.{tag}"), &[v.len() as u64], GgmlType::F32, f32_bytes(v));
        }
    }
    write_atomic(path, &w.to_bytes())
}

/// Loads a checkpoint into `st` if it matches `fingerprint`; `Ok(None)` without one.
fn load_checkpoint(path: &Path, st: &mut LoraState, fingerprint: &str) -> Result<Option<Position>> {
    if !path.exists() {
        return Ok(None);
    }
    let f = GgufFile::open(path)?;
    let md = f.metadata();
    if md.get_str("finetune.fingerprint")? != fingerprint {
        return Err(terr(format!(
            "checkpoint {} belongs to another run (other data or settings); delete it to start over",
            path.display()
        )));
    }
    let tensors: std::collections::HashMap<&str, &crate::gguf::TensorInfo> =
        f.tensors().iter().map(|t| (t.name.as_str(), t)).collect();
    for (i, p) in st.params.iter_mut().enumerate() {
        let ([m0, m1], [v0, v1]) = (&mut p.m, &mut p.v);
        for (tag, v) in [("at", &mut p.at), ("bt", &mut p.bt), ("m_at", m0), ("m_bt", m1), ("v_at", v0), ("v_bt", v1)] {
            let name = format!("p{i}.{tag}");
            let t = tensors.get(name.as_str()).ok_or_else(|| terr(format!("checkpoint lacks `{name}`")))?;
            let vals = crate::quant::dequantize(t.ty, f.tensor_data(t)?, t.n_elements() as usize)?;
            if vals.len() != v.len() {
                return Err(terr(format!("checkpoint `{name}` has {} values, expected {}", vals.len(), v.len())));
            }
            *v = vals;
        }
    }
    st.step = md.get_u64("finetune.step")? as usize;
    Ok(Some(Position { epoch: md.get_u64("finetune.epoch")? as usize, batch: md.get_u64("finetune.batch")? as usize }))
}

/// The epoch's order of example indices (a seeded shuffle, the same in a resumed run).
fn epoch_order(n: usize, seed: u64, epoch: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..n).collect();
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (0x9E37_79B9_7F4A_7C15u64.wrapping_mul(epoch as u64 + 1)));
    idx.shuffle(&mut rng);
    idx
}

/// One progress record.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRecord {
    /// Optimizer step (1-based).
    pub step: usize,
    /// Epoch (0-based).
    pub epoch: usize,
    /// Mean NLL per answer token of the step's batch.
    pub loss: f32,
    /// The learning rate the step used.
    pub lr: f32,
    /// Global L2 norm of the step's gradient before clipping.
    pub grad_norm: f32,
    /// Tokens (prompt and answer) through the model per second in this step.
    pub tokens_per_s: f64,
}

/// What a training run did.
#[derive(Debug, Clone, Default)]
pub struct TrainReport {
    /// Per optimizer step.
    pub steps: Vec<StepRecord>,
    /// Mean NLL per answer token on the eval set after each epoch (empty without one).
    pub eval_loss: Vec<f32>,
    /// Step the run resumed from (0: a fresh start).
    pub resumed_from_step: usize,
    /// Tokens through the model in this run (forward and backward).
    pub tokens: usize,
    /// Wall time of the training steps in seconds.
    pub seconds: f64,
}

/// Mean NLL per answer token of `data` under `st` (the eval loss).
pub fn eval_loss(model: &FrozenModel, st: &LoraState, data: &[Example]) -> Result<f32> {
    let (mut sum, mut n) = (0f64, 0usize);
    for ex in data {
        sum += st.nll(model, ex)? as f64;
        n += ex.answer_tokens();
    }
    Ok((sum / n.max(1) as f64) as f32)
}

/// Trains an adapter on `train` and writes it to `out`, resuming from `<out>.ckpt` when present
/// (and made with the same model, data and settings). `on_step` sees every step's record.
pub fn train(
    model: &FrozenModel,
    train: &[Example],
    eval: &[Example],
    cfg: &TrainConfig,
    out: &Path,
    on_step: &mut dyn FnMut(&StepRecord),
) -> Result<TrainReport> {
    cfg.validate()?;
    if train.is_empty() {
        return Err(terr("no training examples (all skipped or the file is empty)"));
    }
    let layers = model.config().num_hidden_layers;
    let fingerprint = cfg.fingerprint(model, train);
    let ckpt = checkpoint_path(out);
    let mut st = LoraState::new(model, cfg);
    let start = load_checkpoint(&ckpt, &mut st, &fingerprint)?.unwrap_or_default();
    let mut report = TrainReport { resumed_from_step: st.step, ..Default::default() };
    if st.step > 0 {
        log::info!("finetune: resuming from step {} (epoch {}, batch {})", st.step, start.epoch + 1, start.batch);
    }
    let batches_per_epoch = train.len().div_ceil(cfg.batch);
    let t_run = Instant::now();
    let mut stopped_early = false;
    'epochs: for epoch in start.epoch..cfg.epochs {
        let order = epoch_order(train.len(), cfg.seed, epoch);
        let first_batch = if epoch == start.epoch { start.batch } else { 0 };
        for (bi, chunk) in order.chunks(cfg.batch).enumerate().skip(first_batch) {
            if cfg.max_steps.is_some_and(|m| st.step >= m) {
                stopped_early = true;
                break 'epochs;
            }
            let t0 = Instant::now();
            let answer_tokens: usize = chunk.iter().map(|&i| train[i].answer_tokens()).sum();
            let mut acc: Vec<(Vec<f32>, Vec<f32>)> =
                st.params.iter().map(|p| (vec![0f32; p.at.len()], vec![0f32; p.bt.len()])).collect();
            let (mut loss_sum, mut tokens) = (0f64, 0usize);
            for &i in chunk {
                let ex = &train[i];
                let (g, leaves) = st.graph(layers, true);
                let nll = model.nll(&ex.tokens, ex.answer_start, Some(&g))?;
                let v = nll.values()?.first().copied().unwrap_or(f32::NAN);
                if !v.is_finite() {
                    return Err(terr(format!(
                        "the loss is {v} at step {} (lower --lr?); the last checkpoint is kept",
                        st.step + 1
                    )));
                }
                loss_sum += v as f64;
                tokens += ex.tokens.len();
                let grads = nll.scale(1.0 / answer_tokens as f32).backward();
                for (leaf, (ga, gb)) in leaves.iter().zip(acc.iter_mut()) {
                    for (a, g) in ga.iter_mut().zip(leaf.at.grad(&grads)?) {
                        *a += g;
                    }
                    for (b, g) in gb.iter_mut().zip(leaf.bt.grad(&grads)?) {
                        *b += g;
                    }
                }
            }
            let grad_norm = clip_grad_norm(&mut acc, cfg.clip_norm);
            let lr = cfg.lr_at(st.step + 1, train.len());
            st.adamw(&acc, lr, cfg.weight_decay);
            let dt = t0.elapsed().as_secs_f64();
            let rec = StepRecord {
                step: st.step,
                epoch,
                loss: (loss_sum / answer_tokens.max(1) as f64) as f32,
                lr,
                grad_norm,
                tokens_per_s: tokens as f64 / dt.max(1e-9),
            };
            report.tokens += tokens;
            on_step(&rec);
            report.steps.push(rec);
            let done = Position { epoch, batch: bi + 1 };
            let last_of_epoch = bi + 1 == batches_per_epoch;
            if cfg.checkpoint_every > 0 && st.step.is_multiple_of(cfg.checkpoint_every) && !last_of_epoch {
                save_checkpoint(&ckpt, &st, done, &fingerprint)?;
            }
        }
        if !eval.is_empty() {
            let l = eval_loss(model, &st, eval)?;
            log::info!("finetune: epoch {} eval loss {l:.4} ({} examples)", epoch + 1, eval.len());
            report.eval_loss.push(l);
        }
        save_checkpoint(&ckpt, &st, Position { epoch: epoch + 1, batch: 0 }, &fingerprint)?;
    }
    report.seconds = t_run.elapsed().as_secs_f64();
    if stopped_early && !eval.is_empty() {
        let l = eval_loss(model, &st, eval)?;
        log::info!("finetune: eval loss {l:.4} at step {} (--max-steps)", st.step);
        report.eval_loss.push(l);
    }
    st.write_adapter(out)?;
    // A finished run leaves the adapter only; a later run with the same arguments trains anew.
    if let Err(e) =
        std::fs::remove_file(&ckpt).or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
    {
        log::warn!("finetune: could not remove the checkpoint ({})", e.kind());
    }
    Ok(report)
}
