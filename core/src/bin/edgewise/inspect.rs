//! `edgewise inspect <PATH|ID> [--json]`: a model file's architecture, size and metadata.

use std::collections::BTreeMap;

use clap::Args;
use edgewise_core::gguf::{GgufFile, MetaValue};

/// Arguments of `edgewise inspect`.
#[derive(Args)]
pub struct InspectArgs {
    /// A GGUF file path or a catalog model id.
    model: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(a: InspectArgs) -> crate::CliResult {
    let path = crate::resolve_model(&a.model)?;
    let f = GgufFile::open(&path)?;
    let md = f.metadata();
    let arch = md.get_str("general.architecture")?.to_string();
    let mut hist: BTreeMap<&str, (usize, u64)> = BTreeMap::new();
    let mut params: u64 = 0;
    for t in f.tensors() {
        let e = hist.entry(t.ty.name()).or_default();
        e.0 += 1;
        e.1 += t.size;
        params += t.n_elements();
    }
    let ctx = md.opt_u32(&format!("{arch}.context_length"))?;
    // Key metadata: every scalar outside the tokenizer arrays, with long strings shortened.
    let mut key_md = serde_json::Map::new();
    for (k, v) in md.iter() {
        let j = match v {
            MetaValue::Array(a) => serde_json::json!(format!("[array of {}]", a.len())),
            MetaValue::String(s) if s.len() > 120 => serde_json::json!(format!("[string of {} bytes]", s.len())),
            MetaValue::String(s) => serde_json::json!(s),
            MetaValue::Bool(b) => serde_json::json!(b),
            v => match (v.as_i64(), v.as_f64()) {
                (Some(i), _) => serde_json::json!(i),
                (None, Some(f)) => serde_json::json!(f),
                _ => serde_json::Value::Null,
            },
        };
        key_md.insert(k.to_string(), j);
    }
    let name = md.opt_str("general.name")?.map(str::to_string);
    if a.json {
        let types: serde_json::Map<String, serde_json::Value> =
            hist.iter().map(|(k, (n, b))| (k.to_string(), serde_json::json!({"tensors": n, "bytes": b}))).collect();
        let out = serde_json::json!({
            "path": path,
            "name": name,
            "architecture": arch,
            "gguf_version": f.version(),
            "file_size": f.file_size(),
            "parameter_count": params,
            "tensor_count": f.tensors().len(),
            "tensor_types": types,
            "context_length": ctx,
            "metadata": key_md,
        });
        println!("{out}");
    } else {
        println!("file:          {}", path.display());
        if let Some(n) = name {
            println!("name:          {n}");
        }
        println!("architecture:  {arch}");
        println!("gguf version:  {}", f.version());
        println!("file size:     {:.1} MiB", f.file_size() as f64 / (1 << 20) as f64);
        println!("parameters:    {:.1} M", params as f64 / 1e6);
        println!("tensors:       {}", f.tensors().len());
        for (k, (n, b)) in &hist {
            println!("  {k:<6} {n:>4} tensors  {:>8.1} MiB", *b as f64 / (1 << 20) as f64);
        }
        if let Some(c) = ctx {
            println!("context:       {c}");
        }
        println!("metadata:");
        for (k, v) in &key_md {
            println!("  {k} = {v}");
        }
    }
    Ok(())
}
