//! `edgewise finetune`: trains a LoRA adapter (edgewise_core::finetune), or with `--predict`
//! answers a data file's prompts greedily (to score a base model or an adapter).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use clap::Args;
use edgewise_core::engine::{Engine, EngineConfig};
use edgewise_core::finetune::{self, data, FrozenModel, LrSchedule, TrainConfig, ALL_PROJ};
use edgewise_core::gguf::GgufFile;
use edgewise_core::model::Architecture;
use edgewise_core::session::{GenerationParams, SessionConfig};
use edgewise_core::weights::{GgufWeights, WeightId, WeightSource};

/// `edgewise finetune`.
#[derive(Args)]
pub struct FinetuneArgs {
    /// A GGUF path or catalog id (default: the catalog's default model).
    #[arg(long)]
    model: Option<String>,
    /// Training examples, JSON Lines: {"messages": [...]} or {"prompt", "completion"}.
    #[arg(long, required_unless_present = "predict")]
    data: Option<PathBuf>,
    /// Held-out examples: their loss per answer token is reported after each epoch.
    #[arg(long)]
    eval: Option<PathBuf>,
    /// LoRA rank (1..=1024).
    #[arg(long, default_value_t = 8)]
    rank: usize,
    /// LoRA alpha (the adapter's scale is alpha/rank).
    #[arg(long, default_value_t = 16.0)]
    alpha: f32,
    /// Passes over the training data.
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    /// AdamW learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f32,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f32,
    /// Examples per optimizer step (gradient accumulation).
    #[arg(long, default_value_t = 8)]
    batch: usize,
    /// Projections to adapt, comma-separated: q,k,v,o,gate,up,down.
    #[arg(long, default_value = "q,k,v,o,gate,up,down")]
    targets: String,
    /// Examples longer than this many tokens (prompt and answer) are skipped and counted.
    #[arg(long, default_value_t = 256)]
    max_len: usize,
    /// Stop after this many optimizer steps in all.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Write a checkpoint (`<out>.ckpt`) every this many steps (0: at epoch ends only).
    #[arg(long, default_value_t = 10)]
    checkpoint_every: usize,
    /// Learning-rate schedule after the warmup: cosine (decay to a tenth of --lr at the last
    /// planned step) or constant.
    #[arg(long, default_value = "cosine", value_parser = ["cosine", "constant"])]
    lr_schedule: String,
    /// Linear warmup steps (default: 5 % of the planned steps with cosine, 0 with constant).
    #[arg(long)]
    warmup_steps: Option<usize>,
    /// Clip the gradient to this global L2 norm over all LoRA parameters (0: off).
    #[arg(long, default_value_t = 1.0)]
    clip_norm: f32,
    /// Seed of the initialization and the shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The adapter to write (llama.cpp's GGUF LoRA format).
    #[arg(long, required_unless_present = "predict")]
    out: Option<PathBuf>,
    /// Instead of training: answer each example's prompt in this file greedily and print one
    /// JSON line per example, {"line": N, "prediction": "...", "tokens": [...]} (the answer in the
    /// file is ignored).
    #[arg(long)]
    predict: Option<PathBuf>,
    /// With --predict: an adapter to apply (FILE[:SCALE]).
    #[arg(long)]
    lora: Option<String>,
    /// With --predict: the prompt as plain text after BOS, without the chat template (a base
    /// model prompted with examples continues the text).
    #[arg(long)]
    raw: bool,
    /// With --predict: most tokens per answer.
    #[arg(long, default_value_t = 8)]
    max_tokens: usize,
}

fn load_engine(path: &std::path::Path) -> Result<Engine, Box<dyn std::error::Error>> {
    let cfg = EngineConfig { backend: edgewise_core::backend::BackendPreference::Cpu, ..Default::default() };
    Ok(Engine::load(path, cfg)?)
}

pub fn run(a: FinetuneArgs) -> crate::CliResult {
    let id = a.model.clone().unwrap_or_else(|| crate::DEFAULT_MODEL.to_string());
    let path = crate::resolve_model(&id)?;
    if let Some(p) = &a.predict {
        return predict(&a, &path, p);
    }
    let (Some(data_path), Some(out)) = (&a.data, &a.out) else {
        return Err("--data and --out are required to train".into());
    };
    let targets = a
        .targets
        .split(',')
        .map(|t| {
            ALL_PROJ
                .iter()
                .copied()
                .find(|p| finetune::proj_name(*p) == t.trim())
                .ok_or_else(|| format!("--targets: unknown projection `{t}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cfg = TrainConfig {
        rank: a.rank,
        alpha: a.alpha,
        epochs: a.epochs,
        lr: a.lr,
        weight_decay: a.weight_decay,
        batch: a.batch,
        targets,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        max_steps: a.max_steps,
        schedule: if a.lr_schedule == "constant" { LrSchedule::Constant } else { LrSchedule::Cosine },
        warmup_steps: a.warmup_steps,
        clip_norm: a.clip_norm,
    };
    cfg.validate()?;
    let t0 = Instant::now();
    let engine = load_engine(&path)?;
    let tok = engine.tokenizer();
    let template = engine.template();
    let train = data::load(data_path, tok, template, a.max_len)?;
    let eval = match &a.eval {
        Some(p) => data::load(p, tok, template, a.max_len)?,
        None => data::Dataset::default(),
    };
    if path.is_dir() {
        return Err(edgewise_core::Error::Training {
            reason: "training needs a GGUF model file (a Hugging Face folder is not supported yet)".into(),
        }
        .into());
    }
    let file = GgufFile::open(&path)?;
    let arch = Architecture::from_gguf_name(file.metadata().get_str("general.architecture")?)?;
    let weights = GgufWeights::new(Arc::new(file));
    let vocab = weights.raw(WeightId::TokenEmbedding)?.rows;
    let mcfg = (arch.def().from_gguf)(weights.file().metadata(), &weights, vocab)?;
    let model = FrozenModel::load(mcfg, &weights)?;
    drop(engine);
    let n_tokens: usize = train.examples.iter().map(|e| e.tokens.len()).sum();
    eprintln!(
        "finetune: {} training examples ({} tokens, {} skipped as longer than {}), {} eval; base weights dequantized to f32 in {:.1} s",
        train.examples.len(),
        n_tokens,
        train.skipped_too_long,
        a.max_len,
        eval.examples.len(),
        t0.elapsed().as_secs_f64()
    );
    let total_steps = {
        let per_epoch = train.examples.len().div_ceil(cfg.batch);
        let all = per_epoch * cfg.epochs;
        cfg.max_steps.map_or(all, |m| m.min(all))
    };
    let planned = cfg.planned_steps(train.examples.len());
    eprintln!(
        "finetune: lr {:e} {:?} over {planned} planned steps, warmup {}, gradient clipped to norm {}",
        cfg.lr,
        cfg.schedule,
        cfg.warmup(planned),
        if cfg.clip_norm > 0.0 { cfg.clip_norm.to_string() } else { "off".into() }
    );
    let mut on_step = |s: &finetune::StepRecord| {
        // Numbers only: never the examples' text.
        eprintln!(
            "step {}/{total_steps} epoch {} loss {:.4} lr {:.3e} gnorm {:.3} {:.0} tok/s",
            s.step,
            s.epoch + 1,
            s.loss,
            s.lr,
            s.grad_norm,
            s.tokens_per_s
        );
    };
    let rep = finetune::train(&model, &train.examples, &eval.examples, &cfg, out, &mut on_step)?;
    for (e, l) in rep.eval_loss.iter().enumerate() {
        eprintln!("epoch {} eval loss {l:.4}", e + 1);
    }
    let summary = serde_json::json!({
        "adapter": out.display().to_string(),
        "steps": rep.steps.len(),
        "resumed_from_step": rep.resumed_from_step,
        "train_loss_first": rep.steps.first().map(|s| s.loss),
        "train_loss_last": rep.steps.last().map(|s| s.loss),
        "eval_loss": rep.eval_loss,
        "lr_schedule": format!("{:?}", cfg.schedule).to_lowercase(),
        "warmup_steps": cfg.warmup(planned),
        "clip_norm": cfg.clip_norm,
        "max_grad_norm": rep.steps.iter().map(|s| s.grad_norm).fold(0f32, f32::max),
        "clipped_steps": rep.steps.iter().filter(|s| cfg.clip_norm > 0.0 && s.grad_norm > cfg.clip_norm).count(),
        "tokens": rep.tokens,
        "seconds": rep.seconds,
        "tokens_per_s": rep.tokens as f64 / rep.seconds.max(1e-9),
        "peak_rss_mb": crate::run::peak_rss_mb(),
    });
    println!("{summary}");
    Ok(())
}

fn predict(a: &FinetuneArgs, model: &std::path::Path, file: &std::path::Path) -> crate::CliResult {
    let engine = load_engine(model)?;
    let adapters = match &a.lora {
        Some(spec) => {
            let (p, scale) = match spec.rsplit_once(':') {
                Some((p, s)) if s.parse::<f32>().is_ok() => (p, s.parse::<f32>().unwrap_or(1.0)),
                _ => (spec.as_str(), 1.0),
            };
            vec![(engine.load_adapter(p)?, scale)]
        }
        None => Vec::new(),
    };
    let params = GenerationParams::greedy(a.max_tokens);
    let f = std::fs::File::open(file)?;
    let mut out = std::io::stdout().lock();
    let t0 = Instant::now();
    let mut n = 0usize;
    for (i, l) in std::io::BufReader::new(f).lines().enumerate() {
        let l = l?;
        if l.trim().is_empty() {
            continue;
        }
        let msgs = data::parse_line(&l, i + 1)?;
        let prompt = &msgs[..msgs.len() - 1];
        let ids = if a.raw {
            let text: Vec<&str> = prompt.iter().map(|m| m.content.as_str()).collect();
            engine.tokenizer().encode(&text.join("\n"), engine.tokenizer().add_bos_default())?
        } else {
            engine.template().encode(engine.tokenizer(), prompt, true)?
        };
        let mut s = engine
            .new_session(SessionConfig { max_context: (ids.len() + a.max_tokens + 8).max(64), ..Default::default() })?;
        s.set_adapters(&adapters)?;
        let g = s.generate_from(ids, &params, &mut |_| true)?;
        writeln!(out, "{}", serde_json::json!({"line": i + 1, "prediction": g.text, "tokens": g.token_ids}))?;
        n += 1;
    }
    eprintln!("predict: {n} examples in {:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
