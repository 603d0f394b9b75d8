//! 100k items × 384 dims: build, reopen, search time and memory. A measurement, not a check of
//! behaviour, so it is ignored by default:
//! `cargo test --release --workspace --test index_bench -- --ignored --nocapture`
//! (EDGEWISE_BENCH_N / EDGEWISE_BENCH_THREADS override the size and search threads).

use std::time::Instant;

use edgewise_retail::{AttrValue, Attributes, Filter, IndexConfig, Storage, VectorIndex};

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        ((self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40) as f32) / (1u64 << 23) as f32 - 1.0
    }
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

#[test]
#[ignore]
fn bench_100k_x_384() {
    let n: usize = std::env::var("EDGEWISE_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let threads: usize = std::env::var("EDGEWISE_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let dim = 384;
    for storage in [Storage::Int8, Storage::F32] {
        let d = std::env::temp_dir().join(format!("edgewise-retail-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let p = d.join("index.ewv");
        let cfg = IndexConfig { threads, ..IndexConfig::new("bench", dim).with_storage(storage) };
        let rss0 = rss_kib("VmRSS:");
        let mut rng = Rng(99);
        let centers: Vec<Vec<f32>> = (0..500).map(|_| (0..dim).map(|_| rng.next()).collect()).collect();
        let cats = ["shoes", "tea", "audio", "kitchen", "outdoor", "toys", "beauty", "books"];
        let t0 = Instant::now();
        {
            let idx = VectorIndex::open(&p, cfg.clone()).unwrap();
            let mut done = 0;
            while done < n {
                let m = (n - done).min(5_000);
                let rows: Vec<(String, Vec<f32>, Attributes)> = (done..done + m)
                    .map(|i| {
                        let c = &centers[i % centers.len()];
                        let v: Vec<f32> = c.iter().map(|x| x + 0.5 * rng.next()).collect();
                        let a = Attributes::default()
                            .with("category", AttrValue::Str(cats[i % cats.len()].into()))
                            .with("price", AttrValue::Num((i % 300) as f64 + 0.99))
                            .with("in_stock", AttrValue::Bool(i % 10 != 0));
                        (format!("sku-{i:07}"), v, a)
                    })
                    .collect();
                let b: Vec<(&str, &[f32], Attributes)> =
                    rows.iter().map(|(id, v, a)| (id.as_str(), v.as_slice(), a.clone())).collect();
                idx.upsert_many(&b).unwrap();
                done += m;
            }
        }
        let build = t0.elapsed().as_secs_f64();
        let file = std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        let t1 = Instant::now();
        let idx = VectorIndex::open(&p, cfg.clone()).unwrap();
        let reopen = t1.elapsed().as_secs_f64();
        let rss1 = rss_kib("VmRSS:");
        let queries: Vec<Vec<f32>> =
            (0..60).map(|i| centers[(i * 7) % centers.len()].iter().map(|x| x + 0.5 * rng.next()).collect()).collect();
        let run = |f: &Filter| {
            let mut ms: Vec<f64> = queries
                .iter()
                .map(|q| {
                    let t = Instant::now();
                    let h = idx.search(q, 10, f).unwrap();
                    assert_eq!(h.len(), 10);
                    t.elapsed().as_secs_f64() * 1e3
                })
                .collect();
            (percentile(&mut ms, 0.5), percentile(&mut ms, 0.95))
        };
        let _ = run(&Filter::none()); // warm
        let (p50, p95) = run(&Filter::none());
        let filtered = Filter { category: Some("shoes".into()), max_price: Some(100.0), ..Filter::in_stock() };
        let (f50, f95) = run(&filtered);
        eprintln!(
            "{storage:?} {n} x {dim}, {threads} threads: build {build:.2} s (batches of 5000, one fsync each), \
             file {:.1} MB, reopen {reopen:.2} s, index memory {:.1} MB (RSS +{:.1} MB after reopen), \
             search top-10 p50 {p50:.2} ms p95 {p95:.2} ms, filtered (category + price + in stock) p50 {f50:.2} ms p95 {f95:.2} ms; \
             process peak RSS {:.1} MB",
            file as f64 / 1e6,
            idx.memory_bytes() as f64 / 1e6,
            rss1.saturating_sub(rss0) as f64 / 1024.0,
            rss_kib("VmHWM:") as f64 / 1024.0,
        );
        drop(idx);
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// `recommend` over a 100k-item catalog (HashEmbed vectors, 384 dims) with 50 recent events.
#[test]
#[ignore]
fn bench_recommend_100k() {
    use edgewise_retail::{Event, EventKind, HashEmbed, Item, Recommender};
    let n: usize = std::env::var("EDGEWISE_BENCH_N").ok().and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let words = ["trail", "road", "tea", "green", "shoe", "boot", "pan", "iron", "lamp", "desk", "mat", "yoga"];
    let mut rng = Rng(5);
    let mut pick = || words[((rng.next() + 1.0) * 6.0) as usize % words.len()];
    let items: Vec<Item> = (0..n)
        .map(|i| {
            let mut it = Item::new(
                &format!("sku-{i}"),
                &format!("{} {} {}", pick(), pick(), pick()),
                &format!("{} {}", pick(), pick()),
            );
            it.attributes = Attributes::default()
                .with("category", AttrValue::Str(pick().into()))
                .with("price", AttrValue::Num((i % 300) as f64))
                .with("in_stock", AttrValue::Bool(i % 10 != 0));
            it
        })
        .collect();
    let t0 = Instant::now();
    let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(384)), items).unwrap();
    let build = t0.elapsed().as_secs_f64();
    rec.record_all((0..50).map(|i| Event::item(&format!("sku-{}", i * 997 % n), EventKind::View, i as f64 * 30.0)))
        .unwrap();
    rec.record(Event::search("green tea", 1600.0)).unwrap();
    let mut ms: Vec<f64> = (0..20)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(rec.recommend(10, &Filter::none()).unwrap().len(), 10);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    eprintln!(
        "recommend(10) over {n} items, 51 events: p50 {:.1} ms p95 {:.1} ms (catalog embedded and indexed in {build:.1} s)",
        percentile(&mut ms, 0.5),
        percentile(&mut ms, 0.95)
    );
}
