//! The recommender on the synthesized evaluation set (`tests/retail/make_catalog.py`, which also
//! scores the most-popular and TF-IDF baselines into `baselines.json`), with the script's
//! protocol: leave-last-out, candidates = in-stock items the shopper has not touched, hit@10 and
//! nDCG@10, ties by id. Ours must beat both baselines on the test half.
//!
//! Vectors: [`HashEmbed`] (384 buckets) by default. To evaluate with a real encoder, embed
//! `tests/retail/data/texts.jsonl` (`{"id","text"}`) into a file of `{"id","embedding"}` lines and
//! set `EDGEWISE_RETAIL_VECTORS=that file` (and `EDGEWISE_RETAIL_MODEL=<model id>`).
//! `EDGEWISE_RETAIL_TUNE=1` runs the knob search on the tune half (never the test half) and
//! prints the best settings; the library's defaults are the result of that search.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use edgewise_retail::{
    read_catalog, Embed, Event, Filter, HashEmbed, Item, PrecomputedEmbed, RecommendConfig, Recommender,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Session {
    events: Vec<Event>,
    target: String,
    split: String,
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/retail/data")
}

fn load() -> (Vec<Item>, Vec<Session>, HashMap<String, f32>, serde_json::Value) {
    let d = data_dir();
    let items = read_catalog(std::io::BufReader::new(std::fs::File::open(d.join("items.jsonl")).unwrap())).unwrap();
    let sessions = std::fs::read_to_string(d.join("sessions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Session>(l).unwrap())
        .collect();
    let pop: HashMap<String, f32> =
        serde_json::from_str(&std::fs::read_to_string(d.join("popularity.json")).unwrap()).unwrap();
    let base: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(d.join("baselines.json")).unwrap()).unwrap();
    (items, sessions, pop, base)
}

fn embedder() -> Box<dyn Embed> {
    let Some(vpath) = std::env::var_os("EDGEWISE_RETAIL_VECTORS") else { return Box::new(HashEmbed::new(384)) };
    let texts: HashMap<String, String> = std::fs::read_to_string(data_dir().join("texts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v["text"].as_str().unwrap().to_string())
        })
        .collect();
    let raw = std::fs::read_to_string(vpath).unwrap();
    let pairs = raw.lines().filter(|l| !l.trim().is_empty()).map(|l| {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let id = v["id"].as_str().unwrap();
        let e: Vec<f32> = serde_json::from_value(v["embedding"].clone()).unwrap();
        (texts[id].clone(), e)
    });
    let model = std::env::var("EDGEWISE_RETAIL_MODEL").unwrap_or_else(|_| "precomputed".into());
    Box::new(PrecomputedEmbed::new(&model, pairs.collect::<Vec<_>>()).unwrap())
}

/// (hit@10, nDCG@10) on one split.
fn evaluate(rec: &mut Recommender, sessions: &[Session], split: &str) -> (f64, f64, usize) {
    let (mut hit, mut ndcg, mut n) = (0.0, 0.0, 0);
    for s in sessions.iter().filter(|s| s.split == split) {
        rec.erase_all().unwrap();
        rec.record_all(s.events.iter().cloned()).unwrap();
        let top = rec.recommend(10, &Filter::none()).unwrap();
        if let Some(r) = top.iter().position(|x| x.id == s.target) {
            hit += 1.0;
            ndcg += 1.0 / ((r + 2) as f64).log2();
        }
        n += 1;
    }
    (hit / n as f64, ndcg / n as f64, n)
}

fn protocol_config(c: RecommendConfig) -> RecommendConfig {
    // The protocol's candidates leave out everything the shopper touched.
    RecommendConfig { exclude_seen: true, ..c }
}

#[test]
fn beats_most_popular_and_tfidf_on_held_out_sessions() {
    let (items, sessions, pop, base) = load();
    // The protocol, checked against the script: most-popular computed here from the same counts
    // must give the script's figure exactly.
    let by_id: HashMap<&str, &Item> = items.iter().map(|i| (i.id.as_str(), i)).collect();
    let mut mp_hits = 0.0;
    let test: Vec<&Session> = sessions.iter().filter(|s| s.split == "test").collect();
    for s in &test {
        let touched: std::collections::HashSet<&str> = s.events.iter().filter_map(|e| e.item_id.as_deref()).collect();
        let mut cand: Vec<&str> = items
            .iter()
            .filter(|i| i.attributes.in_stock() && !touched.contains(i.id.as_str()))
            .map(|i| i.id.as_str())
            .collect();
        cand.sort_by(|a, b| {
            let (pa, pb) = (pop.get(*a).copied().unwrap_or(0.0), pop.get(*b).copied().unwrap_or(0.0));
            pb.total_cmp(&pa).then(a.cmp(b))
        });
        if cand[..10.min(cand.len())].contains(&s.target.as_str()) {
            mp_hits += 1.0;
        }
        assert!(by_id.contains_key(s.target.as_str()));
    }
    let mp_script = base["most_popular"]["test"]["hit@10"].as_f64().unwrap();
    assert!((mp_hits / test.len() as f64 - mp_script).abs() < 1e-3, "protocol differs from the script's");

    let mut rec = Recommender::in_memory(embedder(), items).unwrap();
    rec.set_popularity(pop).unwrap();

    if std::env::var_os("EDGEWISE_RETAIL_TUNE").is_some() {
        tune(&mut rec, &sessions);
    }
    rec.set_config(protocol_config(RecommendConfig::default())).unwrap();
    let (th, tn, tc) = evaluate(&mut rec, &sessions, "tune");
    let (h, n, c) = evaluate(&mut rec, &sessions, "test");
    let b = |m: &str, k: &str| base[m]["test"][k].as_f64().unwrap();
    eprintln!("ours (defaults): tune hit@10 {th:.4} nDCG@10 {tn:.4} ({tc}); test hit@10 {h:.4} nDCG@10 {n:.4} ({c})");
    eprintln!(
        "baselines (test): most-popular hit@10 {:.4} nDCG@10 {:.4}; TF-IDF hit@10 {:.4} nDCG@10 {:.4}",
        b("most_popular", "hit@10"),
        b("most_popular", "ndcg@10"),
        b("tfidf", "hit@10"),
        b("tfidf", "ndcg@10")
    );
    // What each signal is worth (reported on both halves; nothing here is chosen by it).
    let d = RecommendConfig::default();
    let ablations = [
        ("no recency decay", RecommendConfig { half_life_s: 1e12, ..d.clone() }),
        ("no popularity", RecommendConfig { popularity_weight: 0.0, ..d.clone() }),
        ("no diversity (MMR off)", RecommendConfig { diversity: 0.0, ..d.clone() }),
        (
            "all event kinds weigh 1, dismiss 0",
            RecommendConfig {
                weight_cart: 1.0,
                weight_purchase: 1.0,
                weight_search: 1.0,
                weight_dismiss: 0.0,
                ..d.clone()
            },
        ),
    ];
    for (name, c) in ablations {
        rec.set_config(protocol_config(c)).unwrap();
        let (th, tn, _) = evaluate(&mut rec, &sessions, "tune");
        let (h, n, _) = evaluate(&mut rec, &sessions, "test");
        eprintln!("  ablation {name}: tune hit@10 {th:.4} nDCG@10 {tn:.4}; test hit@10 {h:.4} nDCG@10 {n:.4}");
    }
    for m in ["most_popular", "tfidf"] {
        assert!(h > b(m, "hit@10"), "hit@10 {h} does not beat {m}");
        assert!(n > b(m, "ndcg@10"), "nDCG@10 {n} does not beat {m}");
    }
}

/// Coordinate search over the knobs, scored on the tune half only.
fn tune(rec: &mut Recommender, sessions: &[Session]) {
    let mut best = RecommendConfig::default();
    let score = |rec: &mut Recommender, c: &RecommendConfig| {
        rec.set_config(protocol_config(c.clone())).unwrap();
        let (h, n, _) = evaluate(rec, sessions, "tune");
        n + 0.25 * h
    };
    let mut best_s = score(rec, &best);
    for _round in 0..2 {
        let tries: Vec<RecommendConfig> = [15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 7200.0]
            .iter()
            .map(|&x| RecommendConfig { half_life_s: x, ..best.clone() })
            .chain([0.0, 0.05, 0.1, 0.2, 0.4].iter().map(|&x| RecommendConfig { popularity_weight: x, ..best.clone() }))
            .chain([0.0, 0.1, 0.2, 0.3].iter().map(|&x| RecommendConfig { diversity: x, ..best.clone() }))
            .chain([0.5, 1.0, 2.0, 3.0].iter().map(|&x| RecommendConfig { weight_search: x, ..best.clone() }))
            .chain([1.0, 2.0, 3.0].iter().map(|&x| RecommendConfig { weight_cart: x, ..best.clone() }))
            .chain([0.0, 0.5, 1.0, 2.0].iter().map(|&x| RecommendConfig { weight_purchase: x, ..best.clone() }))
            .chain([0.0, 0.5, 1.0].iter().map(|&x| RecommendConfig { weight_dismiss: x, ..best.clone() }))
            .collect();
        for c in tries {
            let s = score(rec, &c);
            if s > best_s + 1e-9 {
                best_s = s;
                best = c;
            }
        }
    }
    eprintln!("tuned on the tune half: score {best_s:.4} with {best:?}");
    for d in [0.0, 0.1, 0.2, 0.3] {
        rec.set_config(protocol_config(RecommendConfig { diversity: d, ..best.clone() })).unwrap();
        let (h, n, _) = evaluate(rec, sessions, "tune");
        eprintln!("  diversity {d}: tune hit@10 {h:.4} nDCG@10 {n:.4}");
    }
}

/// The committed data is exactly what the script makes (skipped where there is no `python3`).
#[test]
fn data_is_what_the_script_makes() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/retail/make_catalog.py");
    let out = std::env::temp_dir().join(format!("edgewise-retail-data-{}", std::process::id()));
    let status = std::process::Command::new("python3")
        .arg(&script)
        .arg("--out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status();
    let Ok(status) = status else {
        eprintln!("SKIPPED: no python3 to rerun {}", script.display());
        return;
    };
    assert!(status.success());
    for f in
        ["items.jsonl", "sessions.jsonl", "texts.jsonl", "popularity.json", "baselines.json", "example_events.jsonl"]
    {
        let a = std::fs::read(data_dir().join(f)).unwrap();
        let b = std::fs::read(out.join(f)).unwrap();
        assert!(a == b, "{f} differs from the script's output: rerun tests/retail/make_catalog.py");
    }
    let _ = std::fs::remove_dir_all(&out);
}

/// int8 storage against f32 on this catalog's own vectors (HashEmbed by default; MiniLM's with
/// `EDGEWISE_RETAIL_VECTORS`): recall@10 of the int8 top 10 against the exact f32 top 10, for
/// every item as a query (itself left out) and every search query of the sessions.
#[test]
fn int8_recall_at_10_on_catalog_vectors() {
    use edgewise_retail::{IndexConfig, Storage, VectorIndex};
    let (items, _, _, _) = load();
    let e = embedder();
    let texts: Vec<String> = items.iter().map(|i| i.text()).collect();
    let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
    let vecs = e.embed(&refs).unwrap();
    let i8idx = VectorIndex::in_memory(IndexConfig::new(e.model_id(), e.dim())).unwrap();
    let f32idx = VectorIndex::in_memory(IndexConfig::new(e.model_id(), e.dim()).with_storage(Storage::F32)).unwrap();
    let batch: Vec<(&str, &[f32], edgewise_retail::Attributes)> =
        items.iter().zip(&vecs).map(|(i, v)| (i.id.as_str(), v.as_slice(), Default::default())).collect();
    i8idx.upsert_many(&batch).unwrap();
    f32idx.upsert_many(&batch).unwrap();
    let queries: Vec<String> = std::fs::read_to_string(data_dir().join("texts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["id"].as_str().is_some_and(|id| id.starts_with("query:")))
        .map(|v| v["text"].as_str().unwrap().to_string())
        .collect();
    let qrefs: Vec<&str> = queries.iter().map(|s| s.as_str()).collect();
    let qvecs = e.embed(&qrefs).unwrap();
    let mut runs: Vec<(Option<&str>, &[f32])> =
        items.iter().zip(&vecs).map(|(i, v)| (Some(i.id.as_str()), v.as_slice())).collect();
    runs.extend(qvecs.iter().map(|v| (None, v.as_slice())));
    let (mut found, mut max_err) = (0usize, 0f32);
    for (skip, q) in &runs {
        let keep = |id: &str| Some(id) != *skip;
        let exact: HashMap<String, f32> =
            f32idx.search_where(q, 10, &Filter::none(), &keep).unwrap().into_iter().map(|h| (h.id, h.score)).collect();
        for h in i8idx.search_where(q, 10, &Filter::none(), &keep).unwrap() {
            if let Some(s) = exact.get(&h.id) {
                found += 1;
                max_err = max_err.max((s - h.score).abs());
            }
        }
    }
    let recall = found as f64 / (10 * runs.len()) as f64;
    eprintln!(
        "int8 recall@10 vs f32 on the catalog ({}: {} items, {} queries): {recall:.4}; largest score error {max_err:.5}",
        e.model_id(),
        items.len(),
        runs.len()
    );
    assert!(recall >= 0.9, "recall {recall}");
}
