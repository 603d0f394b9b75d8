//! The near-tie rule of `../shared/reference/` for greedy goldens from llama.cpp, shared by the
//! golden tests (engine, architectures, Qwen 3.5): our tokens may leave llama.cpp's only where its
//! top-1/top-2 gap at that step is within [`NEAR_TIE`] logits.
#![allow(dead_code)]

use serde_json::Value;

/// The largest top-1/top-2 logit gap at which a departure counts as a near-tie.
pub const NEAR_TIE: f64 = 0.25;

/// A JSON array of token ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

/// How our greedy tokens compare with one reference case.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    Exact,
    NearTie {
        step: usize,
        gap: f64,
    },
    /// `gap` is our token's distance below llama.cpp's best, `None` when it is not in its top-5
    /// (or the two runs differ in length, `ours`/`theirs` then 0).
    Departs {
        step: usize,
        ours: u32,
        theirs: u32,
        gap: Option<f64>,
    },
}

impl Verdict {
    /// "exact", "near-tie" or "departs".
    pub fn label(&self) -> &'static str {
        match self {
            Verdict::Exact => "exact",
            Verdict::NearTie { .. } => "near-tie",
            Verdict::Departs { .. } => "departs",
        }
    }
}

/// Judges `got` against the case's `greedy_token_ids` and `top5` (per step, `[id, logit]` pairs,
/// best first). A token outside llama.cpp's top-5 where its 5th is itself within the margin is a
/// near-tie at the 5th's gap: the golden cannot tell our token's gap, only that it is at least that.
pub fn judge(got: &[u32], case: &Value) -> Verdict {
    judge_with(got, case, NEAR_TIE)
}

/// [`judge`] with another near-tie margin (a file on which llama.cpp itself departs from its own
/// goldens at a wider gap, said where it is used).
pub fn judge_with(got: &[u32], case: &Value, margin: f64) -> Verdict {
    let want = ids(&case["greedy_token_ids"]);
    let top5 = case["top5"].as_array().unwrap();
    match got.iter().zip(&want).position(|(a, b)| a != b) {
        None if got.len() == want.len() => Verdict::Exact,
        None => Verdict::Departs { step: got.len().min(want.len()), ours: 0, theirs: 0, gap: None },
        Some(step) => {
            let cands = top5[step].as_array().unwrap();
            let best = cands[0][1].as_f64().unwrap();
            let ours =
                cands.iter().find(|c| c[0].as_u64() == Some(got[step] as u64)).map(|c| best - c[1].as_f64().unwrap());
            let fifth_gap = cands.last().map(|c| best - c[1].as_f64().unwrap()).unwrap_or(f64::INFINITY);
            match ours {
                Some(gap) if gap <= margin => Verdict::NearTie { step, gap },
                None if cands.len() == 5 && fifth_gap <= margin => Verdict::NearTie { step, gap: fifth_gap },
                gap => Verdict::Departs { step, ours: got[step], theirs: want[step], gap },
            }
        }
    }
}
