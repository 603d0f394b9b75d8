//! The GGUF reader and dequantizers against the Python `gguf` package (goldens made by
//! tests/reference/make_dequant_goldens.py): synthesized blocks of every type, and rows of real
//! tensors of the Gemma 3 270M file read through our own reader.

mod common_model;

use edgewise_core::gguf::GgufFile;
use edgewise_core::quant::{dequantize, GgmlType};
use serde_json::Value;

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn hex_str(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn ty(name: &str) -> GgmlType {
    (0..40).filter_map(GgmlType::from_u32).find(|t| t.name() == name).unwrap_or_else(|| panic!("type {name}"))
}

/// Tolerance from the golden's header: exact for single-conversion types, else 1e-6 relative.
fn check(name: &str, got: &[f32], want: &[Value]) {
    assert_eq!(got.len(), want.len(), "{name}: length");
    let exact = ["F32", "F16", "BF16", "Q4_0", "Q5_0", "Q8_0"].iter().any(|t| name.starts_with(t));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let w = w.as_f64().map(|x| x as f32).unwrap_or(f32::NAN);
        if g.is_nan() && w.is_nan() {
            continue;
        }
        let tol = if exact { 1e-6 * w.abs().max(1e-30) } else { 1e-6 * w.abs().max(1.0) };
        assert!((g - w).abs() <= tol || g == &w, "{name}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn synthetic_blocks_of_every_type_match_gguf_py() {
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(common_model::golden("dequant/synthetic.json")).unwrap())
            .unwrap();
    let mut seen = Vec::new();
    for c in d["cases"].as_array().unwrap() {
        let name = c["type"].as_str().unwrap();
        let t = ty(name);
        assert_eq!(t.id() as u64, c["ggml_type_id"].as_u64().unwrap());
        assert_eq!(t.type_size(), c["block_bytes"].as_u64().unwrap(), "{name} block bytes");
        assert_eq!(t.block_size(), c["block_elements"].as_u64().unwrap(), "{name} block elements");
        let raw = hex(c["raw_hex"].as_str().unwrap());
        let n = c["n_elements"].as_u64().unwrap() as usize;
        let got = dequantize(t, &raw, n).unwrap();
        check(name, &got, c["expected"].as_array().unwrap());
        seen.push(name.to_string());
    }
    for want in ["F32", "F16", "BF16", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"] {
        assert!(seen.iter().any(|s| s == want), "no golden case for {want}");
    }
}

#[test]
fn real_gemma_rows_match_gguf_py_through_our_reader() {
    let Some(path) = common_model::model_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    let d: Value =
        serde_json::from_str(&std::fs::read_to_string(common_model::golden("dequant/gemma3_270m_rows.json")).unwrap())
            .unwrap();
    let mut n = 0;
    for t in d["tensors"].as_array().unwrap() {
        let info = f.tensor(t["name"].as_str().unwrap()).unwrap();
        assert_eq!(info.ty.name(), t["type"].as_str().unwrap());
        assert_eq!(info.offset, t["tensor_data_offset_in_file"].as_u64().unwrap(), "{}", info.name);
        let data = f.tensor_data(info).unwrap();
        let row_len = t["row_len"].as_u64().unwrap() as usize;
        for r in t["rows"].as_array().unwrap() {
            let row = r["row"].as_u64().unwrap() as usize;
            let got = edgewise_core::quant::dequantize_row(info.ty, data, row_len, row).unwrap();
            // Our reader must hand out the same bytes the reference read.
            let rb = info.ty.bytes_for(row_len as u64).unwrap() as usize;
            assert_eq!(
                hex_str(&data[row * rb..(row + 1) * rb]),
                r["raw_hex"].as_str().unwrap(),
                "{} row {row} bytes",
                info.name
            );
            check(&format!("{} {}", info.ty.name(), info.name), &got, r["expected"].as_array().unwrap());
            n += 1;
        }
    }
    assert!(n >= 8, "only {n} rows compared");
}

#[test]
fn real_file_structure() {
    let Some(path) = common_model::model_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    let md = f.metadata();
    assert_eq!(md.get_str("general.architecture").unwrap(), "gemma3");
    assert_eq!(f.tensors().len(), 236);
    assert_eq!(md.get_u32("gemma3.block_count").unwrap(), 18);
    assert_eq!(md.get_str_array("tokenizer.ggml.tokens").unwrap().len(), 262144);
    let emb = f.tensor("token_embd.weight").unwrap();
    assert_eq!(emb.shape, vec![640, 262144]);
    assert_eq!(emb.ty, GgmlType::Q8_0);
    let arch = edgewise_core::model::Architecture::from_gguf_name("gemma3").unwrap();
    let w = edgewise_core::weights::GgufWeights::new(std::sync::Arc::new(GgufFile::open(&path).unwrap()));
    let cfg = (arch.def().from_gguf)(md, &w, 262144).unwrap();
    assert_eq!((cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim), (4, 1, 256));
    assert_eq!(cfg.sliding.map(|s| s.size), Some(512));
    assert!(!cfg.is_sliding(5) && cfg.is_sliding(4) && !cfg.is_sliding(17));
}
