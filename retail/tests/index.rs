//! VectorIndex through its public API: persistence, versioning, corruption, bad input, filters,
//! locking and concurrent writers, and int8 recall against f32.

use std::path::PathBuf;

use edgewise_retail::{AttrFilter, AttrValue, Attributes, Filter, IndexConfig, RetailError, Storage, VectorIndex};

fn dir(name: &str) -> PathBuf {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let d = std::env::temp_dir().join(format!("edgewise-retail-{name}-{}-{t}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// xorshift64* → uniform in [-1, 1).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    fn vec(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.next()).collect()
    }
}

fn attrs(cat: &str, price: f64, in_stock: bool) -> Attributes {
    Attributes::default()
        .with("category", AttrValue::Str(cat.into()))
        .with("price", AttrValue::Num(price))
        .with("in_stock", AttrValue::Bool(in_stock))
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    let d: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
    d / (n(a) * n(b))
}

#[test]
fn persists_updates_and_deletes_across_reopen() {
    let d = dir("persist");
    let p = d.join("idx.ewv");
    let cfg = IndexConfig::new("test-model", 16);
    let mut rng = Rng(7);
    let vs: Vec<Vec<f32>> = (0..20).map(|_| rng.vec(16)).collect();
    {
        let idx = VectorIndex::open(&p, cfg.clone()).unwrap();
        for (i, v) in vs.iter().enumerate() {
            idx.upsert(&format!("i{i}"), v, attrs("a", i as f64, true)).unwrap();
        }
        idx.upsert("i3", &vs[4], attrs("b", 99.0, false)).unwrap(); // update
        assert!(idx.delete("i5").unwrap());
        assert!(!idx.delete("nope").unwrap());
    }
    let idx = VectorIndex::open(&p, cfg.clone()).unwrap();
    assert_eq!(idx.len(), 19);
    assert!(!idx.contains("i5"));
    let (v3, a3) = idx.get("i3").unwrap();
    assert!(cos(&v3, &vs[4]) > 0.999);
    assert_eq!(a3.category(), Some("b"));
    let hits = idx.search(&vs[7], 3, &Filter::none()).unwrap();
    assert_eq!(hits[0].id, "i7");
    assert!((hits[0].score - 1.0).abs() < 0.01, "int8 self-similarity {}", hits[0].score);
    // Compaction keeps everything and the file shrinks.
    let before = std::fs::metadata(&p).unwrap().len();
    for _ in 0..5 {
        idx.upsert("i0", &vs[0], attrs("a", 0.0, true)).unwrap();
    }
    idx.compact().unwrap();
    assert!(std::fs::metadata(&p).unwrap().len() < before + 5 * 100);
    drop(idx);
    let idx = VectorIndex::open(&p, cfg).unwrap();
    assert_eq!(idx.len(), 19);
    let (v0, _) = idx.get("i0").unwrap();
    assert!(cos(&v0, &vs[0]) > 0.999, "compaction does not quantize twice");
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn another_model_is_a_typed_error_and_recreate_starts_fresh() {
    let d = dir("model");
    let p = d.join("idx.ewv");
    let idx = VectorIndex::open(&p, IndexConfig::new("minilm", 8)).unwrap();
    idx.upsert("a", &[1.0; 8], Attributes::default()).unwrap();
    drop(idx);
    for cfg in [IndexConfig::new("bge-small", 8), IndexConfig::new("minilm", 16)] {
        match VectorIndex::open(&p, cfg) {
            Err(RetailError::ModelMismatch { stored_model, stored_dim, .. }) => {
                assert_eq!((stored_model.as_str(), stored_dim), ("minilm", 8))
            }
            other => panic!("expected ModelMismatch, got {other:?}"),
        }
    }
    let idx = VectorIndex::recreate(&p, IndexConfig::new("bge-small", 16)).unwrap();
    assert!(idx.is_empty());
    idx.upsert("a", &[1.0; 16], Attributes::default()).unwrap();
    drop(idx);
    assert_eq!(VectorIndex::open(&p, IndexConfig::new("bge-small", 16)).unwrap().len(), 1);
    // The storage kind is the file's: an f32 index reopened with the int8 default stays f32.
    let p2 = d.join("f32.ewv");
    drop(VectorIndex::open(&p2, IndexConfig::new("m", 4).with_storage(Storage::F32)).unwrap());
    assert_eq!(VectorIndex::open(&p2, IndexConfig::new("m", 4)).unwrap().config().storage, Storage::F32);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn torn_tail_at_every_offset_keeps_committed_items() {
    let d = dir("torn");
    let p = d.join("idx.ewv");
    let cfg = IndexConfig::new("m", 8);
    {
        let idx = VectorIndex::open(&p, cfg.clone()).unwrap();
        idx.upsert("a", &[1.0, 0., 0., 0., 0., 0., 0., 0.], Attributes::default()).unwrap();
        idx.upsert("b", &[0., 1.0, 0., 0., 0., 0., 0., 0.], Attributes::default()).unwrap();
    }
    let two = std::fs::read(&p).unwrap();
    {
        let idx = VectorIndex::open(&p, cfg.clone()).unwrap();
        idx.upsert("c", &[0., 0., 1.0, 0., 0., 0., 0., 0.], attrs("x", 1.0, true)).unwrap();
    }
    let full = std::fs::read(&p).unwrap();
    for cut in two.len()..full.len() {
        std::fs::write(&p, &full[..cut]).unwrap();
        let idx = VectorIndex::open(&p, cfg.clone()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        assert_eq!(idx.ids(), vec!["a", "b"], "cut at {cut}");
        assert_eq!(std::fs::metadata(&p).unwrap().len(), two.len() as u64, "torn tail truncated");
        idx.upsert("d", &[1.0; 8], Attributes::default()).unwrap();
        drop(idx);
        assert_eq!(VectorIndex::open(&p, cfg.clone()).unwrap().len(), 3);
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn corrupt_file_is_a_typed_error_and_can_be_rebuilt() {
    let d = dir("corrupt");
    let p = d.join("idx.ewv");
    let cfg = IndexConfig::new("m", 8);
    {
        let idx = VectorIndex::open(&p, cfg.clone()).unwrap();
        for i in 0..5 {
            idx.upsert(&format!("i{i}"), &[i as f32 + 1.0; 8], Attributes::default()).unwrap();
        }
    }
    let good = std::fs::read(&p).unwrap();
    // A flipped byte in every position before the last record is corruption (a flip inside the
    // last record looks like a torn write and drops that record only).
    let mut corrupt = 0;
    for pos in (0..good.len()).step_by(7) {
        let mut b = good.clone();
        b[pos] ^= 0x41;
        std::fs::write(&p, &b).unwrap();
        match VectorIndex::open(&p, cfg.clone()) {
            Err(RetailError::Corrupt { .. }) => corrupt += 1,
            Ok(idx) => assert!(idx.len() >= 4, "flip at {pos}: only {} items", idx.len()),
            Err(e) => panic!("flip at {pos}: {e}"),
        }
    }
    assert!(corrupt > 0);
    // Not an index at all.
    std::fs::write(&p, b"PK\x03\x04 this is a zip file, not an index.........").unwrap();
    assert!(matches!(VectorIndex::open(&p, cfg.clone()), Err(RetailError::Corrupt { offset: 0, .. })));
    let idx = VectorIndex::recreate(&p, cfg.clone()).unwrap();
    idx.upsert("x", &[1.0; 8], Attributes::default()).unwrap();
    drop(idx);
    assert_eq!(VectorIndex::open(&p, cfg).unwrap().ids(), vec!["x"]);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn bad_input_is_refused_with_typed_errors() {
    let idx = VectorIndex::in_memory(IndexConfig::new("m", 4)).unwrap();
    let a = Attributes::default;
    assert!(matches!(idx.upsert("x", &[f32::NAN, 1., 1., 1.], a()), Err(RetailError::InvalidVector { .. })));
    assert!(matches!(idx.upsert("x", &[f32::INFINITY, 1., 1., 1.], a()), Err(RetailError::InvalidVector { .. })));
    assert!(matches!(idx.upsert("x", &[0.; 4], a()), Err(RetailError::InvalidVector { .. })));
    assert!(matches!(idx.upsert("x", &[1.; 5], a()), Err(RetailError::DimensionMismatch { expected: 4, got: 5 })));
    assert!(matches!(idx.upsert("", &[1.; 4], a()), Err(RetailError::InvalidArgument { .. })));
    assert!(matches!(idx.upsert(&"x".repeat(600), &[1.; 4], a()), Err(RetailError::InvalidArgument { .. })));
    // A batch with one bad vector writes nothing.
    let good = [1.0f32; 4];
    let bad = [1.0, f32::NAN, 0.0, 0.0];
    assert!(idx.upsert_many(&[("g", &good[..], a()), ("b", &bad[..], a())]).is_err());
    assert!(idx.is_empty());
    idx.upsert("g", &good, a()).unwrap();
    assert!(matches!(idx.search(&[f32::NAN; 4], 3, &Filter::none()), Err(RetailError::InvalidVector { .. })));
    assert!(matches!(idx.search(&[1.; 3], 3, &Filter::none()), Err(RetailError::DimensionMismatch { .. })));
    assert!(matches!(idx.search(&[1.; 4], 0, &Filter::none()), Err(RetailError::InvalidArgument { name: "k", .. })));
    assert!(matches!(
        idx.search(&[1.; 4], usize::MAX, &Filter::none()),
        Err(RetailError::InvalidArgument { name: "k", .. })
    ));
    assert_eq!(idx.search(&[1.; 4], 10_000, &Filter::none()).unwrap().len(), 1, "k above the count is fine");
    let nan_filter = Filter { max_price: Some(f64::NAN), ..Filter::default() };
    assert!(matches!(idx.search(&[1.; 4], 3, &nan_filter), Err(RetailError::InvalidArgument { .. })));
    assert!(idx.get("unknown").is_none());
    assert!(VectorIndex::in_memory(IndexConfig::new("m", 0)).is_err());
    assert!(VectorIndex::in_memory(IndexConfig::new("", 4)).is_err());
}

#[test]
fn filters_restrict_search() {
    let idx = VectorIndex::in_memory(IndexConfig::new("m", 4)).unwrap();
    idx.upsert("shoe-cheap", &[1., 0.1, 0., 0.], attrs("shoes", 30.0, true)).unwrap();
    idx.upsert("shoe-dear", &[1., 0.2, 0., 0.], attrs("shoes", 180.0, true)).unwrap();
    idx.upsert("shoe-gone", &[1., 0., 0., 0.], attrs("shoes", 50.0, false)).unwrap();
    idx.upsert("tea", &[0.9, 0., 0.5, 0.], attrs("tea", 8.0, true).with("origin", AttrValue::Str("japan".into())))
        .unwrap();
    let q = [1., 0., 0., 0.];
    let ids = |f: Filter| idx.search(&q, 10, &f).unwrap().into_iter().map(|h| h.id).collect::<Vec<_>>();
    assert_eq!(ids(Filter::none()), vec!["shoe-gone", "shoe-cheap", "shoe-dear", "tea"]);
    assert_eq!(ids(Filter::in_stock()), vec!["shoe-cheap", "shoe-dear", "tea"]);
    assert_eq!(
        ids(Filter { category: Some("shoes".into()), max_price: Some(100.0), ..Filter::default() }),
        vec!["shoe-gone", "shoe-cheap"]
    );
    assert_eq!(
        ids(Filter {
            attributes: vec![AttrFilter::Equals { key: "origin".into(), value: "japan".into() }],
            ..Filter::default()
        }),
        vec!["tea"]
    );
    assert_eq!(
        ids(Filter {
            attributes: vec![AttrFilter::Range { key: "price".into(), min: Some(40.0), max: None }],
            in_stock: Some(true),
            ..Filter::default()
        }),
        vec!["shoe-dear"]
    );
}

/// One process at a time per file; within a process the index is shared across threads and
/// writes from many threads all land.
#[test]
fn locked_against_a_second_open_and_safe_for_threads() {
    let d = dir("lock");
    let p = d.join("idx.ewv");
    let cfg = IndexConfig::new("m", 8);
    let idx = VectorIndex::open(&p, cfg.clone()).unwrap();
    let t0 = std::time::Instant::now();
    assert!(matches!(VectorIndex::open(&p, cfg.clone()), Err(RetailError::Locked { .. })));
    assert!(t0.elapsed() >= std::time::Duration::from_secs(2), "waits for a closing holder first");
    std::thread::scope(|s| {
        for t in 0..4 {
            let idx = &idx;
            s.spawn(move || {
                let mut rng = Rng(t + 1);
                for i in 0..50 {
                    idx.upsert(&format!("t{t}-{i}"), &rng.vec(8), Attributes::default()).unwrap();
                    let _ = idx.search(&rng.vec(8), 5, &Filter::none()).unwrap();
                }
            });
        }
    });
    assert_eq!(idx.len(), 200);
    drop(idx);
    assert_eq!(VectorIndex::open(&p, cfg).unwrap().len(), 200);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let link = d.join("link.ewv");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(matches!(VectorIndex::open(&link, IndexConfig::new("m", 8)), Err(RetailError::Storage { .. })));
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// int8 storage against f32: recall@10 of the int8 index's top 10 against the exact f32 top 10,
/// on clustered vectors (nearest neighbours close together, as real embeddings are).
#[test]
fn int8_recall_at_10_against_f32() {
    let (n, dim, queries) = (20_000, 384, 200);
    let mut rng = Rng(42);
    let centers: Vec<Vec<f32>> = (0..200).map(|_| rng.vec(dim)).collect();
    let i8idx = VectorIndex::in_memory(IndexConfig::new("m", dim)).unwrap();
    let f32idx = VectorIndex::in_memory(IndexConfig::new("m", dim).with_storage(Storage::F32)).unwrap();
    let mut batch = Vec::new();
    for i in 0..n {
        let c = &centers[i % centers.len()];
        let v: Vec<f32> = c.iter().map(|x| x + 0.35 * rng.next()).collect();
        batch.push((format!("i{i}"), v));
    }
    let b: Vec<(&str, &[f32], Attributes)> =
        batch.iter().map(|(id, v)| (id.as_str(), v.as_slice(), Attributes::default())).collect();
    i8idx.upsert_many(&b).unwrap();
    f32idx.upsert_many(&b).unwrap();
    let mut found = 0;
    let mut max_err = 0f32;
    for qi in 0..queries {
        let c = &centers[qi % centers.len()];
        let q: Vec<f32> = c.iter().map(|x| x + 0.35 * rng.next()).collect();
        let exact: std::collections::HashMap<String, f32> =
            f32idx.search(&q, 10, &Filter::none()).unwrap().into_iter().map(|h| (h.id, h.score)).collect();
        for h in i8idx.search(&q, 10, &Filter::none()).unwrap() {
            if let Some(s) = exact.get(&h.id) {
                found += 1;
                max_err = max_err.max((s - h.score).abs());
            }
        }
    }
    let recall = found as f64 / (10 * queries) as f64;
    eprintln!("int8 recall@10 vs f32: {recall:.4} ({n} x {dim}, {queries} queries); largest score error {max_err:.5}");
    assert!(max_err < 0.01, "int8 score error {max_err}");
    assert!(recall >= 0.95, "recall {recall}");
    let (m8, m32) = (i8idx.memory_bytes(), f32idx.memory_bytes());
    eprintln!("memory: int8 {m8} bytes, f32 {m32} bytes");
    assert!(m8 * 2 < m32);
}
