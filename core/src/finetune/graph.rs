//! The training graph: the same decoder as [`crate::model::decoder`] (same expressions, same
//! RoPE tables, same embedding lookup), written on burn's autodiff backend so the gradient of the
//! loss reaches the LoRA matrices. The base weights are frozen and dequantized to f32 once (a
//! Q4_K model's products therefore differ slightly from the engine's quantized CPU kernels); only
//! the LoRA `A`/`B` matrices are leaves with gradients.

use burn_backend::tensor::FloatTensor;
use burn_flex::Flex;

use super::ad::{inner, T};
use crate::lora::Proj;
use crate::model::decoder::{Activation, DecoderConfig, NormPlacement, RopeLayout};
use crate::model::layers::{embed_rows_host, rope_tables_host};
use crate::weights::{SharedWeight, WeightId, WeightSource};
use crate::{Error, Result};

/// A frozen projection, held transposed `[in, out]` so the product is a plain matmul.
struct Lin {
    wt: FloatTensor<Flex>,
    n_in: usize,
    n_out: usize,
}

struct Vector {
    t: FloatTensor<Flex>,
    n: usize,
}

struct Block {
    attn_norm: Vector,
    proj: [Lin; 7],
    qk_norm: Option<(Vector, Vector)>,
    bias: Option<[Vector; 3]>,
    post_attn_norm: Option<Vector>,
    ffn_norm: Vector,
    post_ffn_norm: Option<Vector>,
    sliding: bool,
}

/// The frozen base model in f32 on the training backend.
pub struct FrozenModel {
    cfg: DecoderConfig,
    blocks: Vec<Block>,
    output_norm: Vector,
    /// The LM head `[vocab, d]` (the embedding when tied).
    head: Lin,
    embedding: SharedWeight,
}

impl std::fmt::Debug for FrozenModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrozenModel").field("arch", &self.cfg.arch).finish_non_exhaustive()
    }
}

/// The trainable matrices of one adapted projection, in the graph's layout: `at = Aᵀ` `[in, r]`,
/// `bt = Bᵀ` `[r, out]`.
#[derive(Clone)]
pub(crate) struct LoraLeaf {
    pub at: T,
    pub bt: T,
}

/// The adapter as the graph sees it: per layer, per [`Proj`], and the factor `alpha/rank`.
pub(crate) struct LoraGraph {
    pub layers: Vec<[Option<LoraLeaf>; 7]>,
    pub scale: f32,
}

fn vector(src: &dyn WeightSource, id: WeightId) -> Result<Vector> {
    let v = src.raw(id)?.to_f32()?;
    let n = v.len();
    Ok(Vector { t: inner(v, &[n]), n })
}

fn lin(src: &dyn WeightSource, id: WeightId) -> Result<Lin> {
    let raw = src.raw(id)?;
    let (n_out, n_in) = (raw.rows, raw.cols);
    let w = raw.to_f32()?;
    if w.len() != n_out * n_in {
        return Err(Error::Backend { reason: format!("weight of {} values for {n_out}x{n_in}", w.len()) });
    }
    let mut t = vec![0f32; w.len()];
    for r in 0..n_out {
        for c in 0..n_in {
            t[c * n_out + r] = w[r * n_in + c];
        }
    }
    Ok(Lin { wt: inner(t, &[n_in, n_out]), n_in, n_out })
}

impl FrozenModel {
    /// Dequantizes every weight of `src` to f32 (the embedding stays in the file; its rows are
    /// dequantized per pass, as the engine does).
    pub fn load(cfg: DecoderConfig, src: &dyn WeightSource) -> Result<Self> {
        crate::model::decoder::Decoder::check_shapes(&cfg, src)?;
        let sandwich = cfg.norm == NormPlacement::Sandwich;
        let mut blocks = Vec::with_capacity(cfg.num_hidden_layers);
        for layer in 0..cfg.num_hidden_layers {
            let l = |id| lin(src, id);
            let v = |id| vector(src, id);
            blocks.push(Block {
                attn_norm: v(WeightId::AttnNorm { layer })?,
                proj: [
                    l(WeightId::AttnQ { layer })?,
                    l(WeightId::AttnK { layer })?,
                    l(WeightId::AttnV { layer })?,
                    l(WeightId::AttnOutput { layer })?,
                    l(WeightId::FfnGate { layer })?,
                    l(WeightId::FfnUp { layer })?,
                    l(WeightId::FfnDown { layer })?,
                ],
                qk_norm: if cfg.qk_norm {
                    Some((v(WeightId::AttnQNorm { layer })?, v(WeightId::AttnKNorm { layer })?))
                } else {
                    None
                },
                bias: if cfg.qkv_bias {
                    Some([
                        v(WeightId::AttnQBias { layer })?,
                        v(WeightId::AttnKBias { layer })?,
                        v(WeightId::AttnVBias { layer })?,
                    ])
                } else {
                    None
                },
                post_attn_norm: if sandwich { Some(v(WeightId::PostAttnNorm { layer })?) } else { None },
                ffn_norm: v(WeightId::FfnNorm { layer })?,
                post_ffn_norm: if sandwich { Some(v(WeightId::PostFfnNorm { layer })?) } else { None },
                sliding: cfg.is_sliding(layer),
            });
        }
        let output_norm = vector(src, WeightId::OutputNorm)?;
        let head_id = if src.has(WeightId::Output) { WeightId::Output } else { WeightId::TokenEmbedding };
        let raw = src.raw(head_id)?;
        let (vocab, d) = (raw.rows, raw.cols);
        let head = Lin { wt: inner(raw.to_f32()?, &[vocab, d]), n_in: d, n_out: vocab };
        let embedding = src.shared(WeightId::TokenEmbedding)?;
        Ok(Self { cfg, blocks, output_norm, head, embedding })
    }

    /// The configuration.
    pub fn config(&self) -> &DecoderConfig {
        &self.cfg
    }

    /// `(in, out)` of projection `p` of `layer`.
    pub fn proj_dims(&self, layer: usize, p: Proj) -> (usize, usize) {
        let l = &self.blocks[layer].proj[p as usize];
        (l.n_in, l.n_out)
    }

    fn norm(&self, x: T, w: &Vector) -> T {
        let ms = x.clone().mul(x.clone()).mean_last().add_scalar(self.cfg.rms_norm_eps).sqrt();
        x.div(ms).mul(T::wrap(&w.t, &[w.n]))
    }

    fn project(&self, x: &T, b: &Block, il: usize, p: Proj, lora: Option<&LoraGraph>) -> T {
        let l = &b.proj[p as usize];
        let y = x.clone().matmul(T::wrap(&l.wt, &[l.n_in, l.n_out]));
        match lora.and_then(|g| g.layers.get(il).and_then(|ps| ps[p as usize].as_ref()).map(|leaf| (leaf, g.scale))) {
            Some((leaf, s)) => y.add(x.clone().matmul(leaf.at.clone()).matmul(leaf.bt.clone()).scale(s)),
            None => y,
        }
    }

    /// x: [heads, n, hd] -> [heads, n, hd]
    fn rope(&self, x: T, cos: &T, sin: &T) -> T {
        let (h, n, hd) = (x.shape[0], x.shape[1], x.shape[2]);
        let half = hd / 2;
        match self.cfg.rope_layout {
            RopeLayout::Neox => {
                let x1 = x.clone().slice_last(0..half);
                let x2 = x.slice_last(half..hd);
                let r1 = x1.clone().mul(cos.clone()).sub(x2.clone().mul(sin.clone()));
                let r2 = x2.mul(cos.clone()).add(x1.mul(sin.clone()));
                T::cat(vec![r1, r2], 2)
            }
            RopeLayout::Norm => {
                let x4 = x.reshape(&[h, n, half, 2]);
                let x1 = x4.clone().slice_last(0..1).reshape(&[h, n, half]);
                let x2 = x4.slice_last(1..2).reshape(&[h, n, half]);
                let r1 = x1.clone().mul(cos.clone()).sub(x2.clone().mul(sin.clone())).reshape(&[h, n, half, 1]);
                let r2 = x2.mul(cos.clone()).add(x1.mul(sin.clone())).reshape(&[h, n, half, 1]);
                T::cat(vec![r1, r2], 3).reshape(&[h, n, hd])
            }
        }
    }

    fn block(
        &self,
        il: usize,
        b: &Block,
        x: T,
        n: usize,
        lora: Option<&LoraGraph>,
        ropes: &[(T, T); 2],
        masks: &[T; 2],
    ) -> T {
        let c = &self.cfg;
        let (h, kvh, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        let hn = self.norm(x.clone(), &b.attn_norm);
        let mut q = self.project(&hn, b, il, Proj::Q, lora);
        let mut k = self.project(&hn, b, il, Proj::K, lora);
        let mut v = self.project(&hn, b, il, Proj::V, lora);
        if let Some([bq, bk, bv]) = &b.bias {
            q = q.add(T::wrap(&bq.t, &[bq.n]));
            k = k.add(T::wrap(&bk.t, &[bk.n]));
            v = v.add(T::wrap(&bv.t, &[bv.n]));
        }
        let mut q = q.reshape(&[n, h, hd]);
        let mut k = k.reshape(&[n, kvh, hd]);
        if let Some((qn, kn)) = &b.qk_norm {
            q = self.norm(q, qn);
            k = self.norm(k, kn);
        }
        let (cos, sin) = &ropes[usize::from(b.sliding)];
        let q = self.rope(q.swap(0, 1), cos, sin).scale(c.attn_scale); // [H, n, hd]
        let k = self.rope(k.swap(0, 1), cos, sin); // [KV, n, hd]
        let v = v.reshape(&[n, kvh, hd]).swap(0, 1); // [KV, n, hd]
        let g = h / kvh;
        let scores = q.reshape(&[kvh, g * n, hd]).matmul(k.swap(1, 2)).reshape(&[kvh, g, n, n]);
        let scores = scores.add(masks[usize::from(b.sliding)].clone());
        let m = scores.clone().max_last().detach();
        let e = scores.sub(m).exp();
        let p = e.clone().div(e.sum_last());
        let attn = p.reshape(&[kvh, g * n, n]).matmul(v).reshape(&[h, n, hd]).swap(0, 1).reshape(&[n, h * hd]);
        let o = self.project(&attn, b, il, Proj::O, lora);
        let o = match &b.post_attn_norm {
            Some(pn) => self.norm(o, pn),
            None => o,
        };
        let x = x.add(o);
        let hn = self.norm(x.clone(), &b.ffn_norm);
        let gate = self.project(&hn, b, il, Proj::Gate, lora);
        let up = self.project(&hn, b, il, Proj::Up, lora);
        let act = match c.activation {
            // 0.5·g·(1 + tanh(√(2/π)·(g + 0.044715·g³)))
            Activation::GeluTanh => {
                let g3 = gate.clone().mul(gate.clone()).mul(gate.clone());
                let inner = gate.clone().add(g3.scale(0.044715)).scale((2.0f32 / std::f32::consts::PI).sqrt());
                gate.scale(0.5).mul(inner.tanh().add_scalar(1.0))
            }
            // g·σ(g)
            Activation::Silu => {
                let den = gate.clone().scale(-1.0).exp().add_scalar(1.0);
                gate.div(den)
            }
        };
        let down = self.project(&act.mul(up), b, il, Proj::Down, lora);
        let down = match &b.post_ffn_norm {
            Some(pn) => self.norm(down, pn),
            None => down,
        };
        x.add(down)
    }

    /// Logits `[rows.len(), vocab]` of positions `rows` of one sequence from an empty context.
    pub(crate) fn logits(&self, tokens: &[u32], rows: std::ops::Range<usize>, lora: Option<&LoraGraph>) -> Result<T> {
        let c = &self.cfg;
        let n = tokens.len();
        if n == 0 || rows.end > n || rows.is_empty() {
            return Err(Error::InvalidParameter { name: "rows", reason: format!("{rows:?} of a {n}-token sequence") });
        }
        let d = c.hidden_size;
        let x = T::constant(embed_rows_host(&self.embedding, tokens, c.embed_scale)?, &[n, d]);
        let half = c.head_dim / 2;
        let rope = |sliding: bool| {
            let (base, scaling) = c.rope_of(sliding);
            let (cos, sin) = rope_tables_host(0, n, c.head_dim, base, &scaling);
            (T::constant(cos, &[n, half]), T::constant(sin, &[n, half]))
        };
        let ropes = [rope(false), rope(true)];
        let mask = |window: Option<usize>| {
            let mut m = vec![0f32; n * n];
            for i in 0..n {
                for j in 0..n {
                    let visible = j <= i && window.is_none_or(|w| i - j < w);
                    if !visible {
                        m[i * n + j] = -1e30;
                    }
                }
            }
            T::constant(m, &[n, n])
        };
        let masks = [mask(None), mask(c.sliding.map(|w| w.size))];
        let mut x = x;
        for (il, b) in self.blocks.iter().enumerate() {
            x = self.block(il, b, x, n, lora, &ropes, &masks);
        }
        let hsel = x.slice_first(rows);
        let hsel = self.norm(hsel, &self.output_norm);
        let head = T::wrap(&self.head.wt, &[self.head.n_out, self.head.n_in]).swap(0, 1);
        let mut logits = hsel.matmul(head);
        if let Some(cap) = c.final_logit_softcapping {
            logits = logits.scale(1.0 / cap).tanh().scale(cap);
        }
        Ok(logits)
    }

    /// The summed negative log-likelihood of `tokens[first..]`, each predicted from the tokens
    /// before it (`1 <= first < len`): the loss on the answer tokens only.
    pub(crate) fn nll(&self, tokens: &[u32], first: usize, lora: Option<&LoraGraph>) -> Result<T> {
        let n = tokens.len();
        if first == 0 || first >= n {
            return Err(Error::InvalidParameter {
                name: "answer start",
                reason: format!("{first} of a {n}-token sequence"),
            });
        }
        let logits = self.logits(tokens, first - 1..n - 1, lora)?;
        let (m, vocab) = (logits.shape[0], logits.shape[1]);
        let mut onehot = vec![0f32; m * vocab];
        for (r, &t) in tokens[first..].iter().enumerate() {
            let t = t as usize;
            if t >= vocab {
                return Err(Error::InvalidParameter {
                    name: "token",
                    reason: format!("id out of vocabulary of {vocab}"),
                });
            }
            onehot[r * vocab + t] = 1.0;
        }
        let max = logits.clone().max_last().detach();
        let lse = logits.clone().sub(max.clone()).exp().sum_last().log().add(max);
        let picked = logits.mul(T::constant(onehot, &[m, vocab])).sum_last();
        Ok(lse.sub(picked).sum())
    }
}
