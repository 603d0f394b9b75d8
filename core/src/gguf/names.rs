//! GGUF tensor-name tables: the one place that maps logical weights to file names, like
//! llama.cpp's `LLM_TENSOR_NAMES` (`src/llama-arch.cpp`).

use crate::weights::WeightId;

/// The GGUF tensor name of a logical weight (llama.cpp naming, shared by Gemma 3, Llama, Qwen).
pub fn tensor_name(id: WeightId) -> String {
    use WeightId::*;
    match id {
        TokenEmbedding => "token_embd.weight".into(),
        OutputNorm => "output_norm.weight".into(),
        Output => "output.weight".into(),
        RopeFreqs => "rope_freqs.weight".into(),
        AttnNorm { layer } => format!("blk.{layer}.attn_norm.weight"),
        AttnQ { layer } => format!("blk.{layer}.attn_q.weight"),
        AttnK { layer } => format!("blk.{layer}.attn_k.weight"),
        AttnV { layer } => format!("blk.{layer}.attn_v.weight"),
        AttnOutput { layer } => format!("blk.{layer}.attn_output.weight"),
        AttnQNorm { layer } => format!("blk.{layer}.attn_q_norm.weight"),
        AttnKNorm { layer } => format!("blk.{layer}.attn_k_norm.weight"),
        AttnQBias { layer } => format!("blk.{layer}.attn_q.bias"),
        AttnKBias { layer } => format!("blk.{layer}.attn_k.bias"),
        AttnVBias { layer } => format!("blk.{layer}.attn_v.bias"),
        PostAttnNorm { layer } => format!("blk.{layer}.post_attention_norm.weight"),
        FfnNorm { layer } => format!("blk.{layer}.ffn_norm.weight"),
        FfnGate { layer } => format!("blk.{layer}.ffn_gate.weight"),
        FfnUp { layer } => format!("blk.{layer}.ffn_up.weight"),
        FfnDown { layer } => format!("blk.{layer}.ffn_down.weight"),
        PostFfnNorm { layer } => format!("blk.{layer}.post_ffw_norm.weight"),
        Block { layer, name } => format!("blk.{layer}.{name}"),
    }
}
