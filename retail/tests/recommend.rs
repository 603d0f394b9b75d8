//! The Recommender through its public API: ranking and reasons, business rules, persistence,
//! export/erase, model change and corruption (rebuilt from the catalog), JSON lines in and out,
//! bad input, and no shopper content in log lines.

use std::path::PathBuf;
use std::sync::Mutex;

use edgewise_retail::{
    read_catalog, read_events, to_output_json, AttrValue, Attributes, Embed, EmbedError, Event, EventKind, Filter,
    HashEmbed, Item, RecommendConfig, Recommender, RetailError,
};

/// Every log line of the process, for the privacy check.
static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
struct Capture;
impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, r: &log::Record) {
        if let Ok(mut l) = LINES.lock() {
            l.push(format!("{}", r.args()));
        }
    }
    fn flush(&self) {}
}
fn capture_logs() {
    let _ = log::set_logger(&Capture);
    log::set_max_level(log::LevelFilter::Trace);
}

fn dir(name: &str) -> PathBuf {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let d = std::env::temp_dir().join(format!("edgewise-retail-rec-{name}-{}-{t}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn item(id: &str, title: &str, desc: &str, cat: &str, in_stock: bool) -> Item {
    Item {
        attributes: Attributes::default()
            .with("category", AttrValue::Str(cat.into()))
            .with("price", AttrValue::Num(20.0))
            .with("in_stock", AttrValue::Bool(in_stock)),
        ..Item::new(id, title, desc)
    }
}

fn catalog() -> Vec<Item> {
    vec![
        item("trail1", "Trail running shoe", "Grippy trail running shoe for muddy forest trails", "running", true),
        item("trail2", "Trail running shoe pro", "Lightweight trail running shoe with rock plate", "running", true),
        item("trail3", "Waterproof trail running shoe", "Trail running shoe, waterproof upper", "running", false),
        item("road1", "Road running shoe", "Cushioned road running shoe for asphalt", "running", true),
        item("tea1", "Green tea sencha", "Loose leaf green tea from Japan", "tea", true),
        item("tea2", "Matcha green tea powder", "Ceremonial grade matcha green tea", "tea", true),
        item("tea3", "Chamomile herbal tea", "Calming caffeine free herbal tea", "tea", true),
        item("pan1", "Cast iron skillet", "Pre-seasoned cast iron skillet for searing", "kitchen", true),
    ]
}

fn ids(r: &[edgewise_retail::Recommendation]) -> Vec<&str> {
    r.iter().map(|x| x.id.as_str()).collect()
}

#[test]
fn ranks_by_recent_interest_with_reasons_and_rules() {
    let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(256)), catalog()).unwrap();
    // Cold start: popularity only.
    let mut pop = std::collections::HashMap::new();
    pop.insert("pan1".to_string(), 50.0);
    pop.insert("tea3".to_string(), 10.0);
    rec.set_popularity(pop).unwrap();
    let cold = rec.recommend(3, &Filter::none()).unwrap();
    assert_eq!(ids(&cold)[..2], ["pan1", "tea3"]);
    assert!(cold.iter().all(|r| r.reason == "popular"));

    // Interest in trail shoes, then (more recently) green tea: tea first, shoes still present.
    rec.record(Event::item("trail1", EventKind::View, 1000.0)).unwrap();
    rec.record(Event::item("tea1", EventKind::AddToCart, 1100.0)).unwrap();
    let top = rec.recommend(4, &Filter::none()).unwrap();
    assert_eq!(top[0].id, "tea2", "{top:?}");
    assert_eq!(top[0].reason, "similar_to:tea1");
    let shoe = top.iter().find(|r| r.id == "trail2" || r.id == "road1");
    assert_eq!(shoe.map(|r| r.reason.as_str()), Some("similar_to:trail1"), "older interest still there: {top:?}");
    assert!(!ids(&top).contains(&"trail3"), "out of stock never recommended");
    // Scores are finite; items already viewed or carted are left out by default.
    assert!(top.iter().all(|r| r.score.is_finite()));
    assert!(!ids(&top).contains(&"trail1") && !ids(&top).contains(&"tea1"));

    // Purchased and dismissed items never come back.
    rec.record(Event::item("tea2", EventKind::Purchase, 1200.0)).unwrap();
    rec.record(Event::item("trail2", EventKind::Dismiss, 1201.0)).unwrap();
    let top = rec.recommend(8, &Filter::none()).unwrap();
    assert!(!ids(&top).contains(&"tea2") && !ids(&top).contains(&"trail2"), "{top:?}");
    assert!(!ids(&top).contains(&"trail3"));
    // The caller's filter on top of the rules.
    let tea_only = Filter { category: Some("tea".into()), ..Filter::default() };
    assert!(rec.recommend(8, &tea_only).unwrap().iter().all(|r| r.id.starts_with("tea")));

    // A search shapes recommendations, with its reason.
    rec.record(Event::search("cast iron skillet", 1300.0)).unwrap();
    let top = rec.recommend(1, &Filter::none()).unwrap();
    assert_eq!((top[0].id.as_str(), top[0].reason.as_str()), ("pan1", "matches_search:cast iron skillet"));

    // Without exclude_seen, viewed and carted items may come back (purchased/dismissed never).
    rec.set_config(RecommendConfig { exclude_seen: false, ..RecommendConfig::default() }).unwrap();
    let top = rec.recommend(8, &Filter::none()).unwrap();
    assert!(ids(&top).contains(&"trail1") && ids(&top).contains(&"tea1"));
    assert!(!ids(&top).contains(&"tea2") && !ids(&top).contains(&"trail2"));
}

#[test]
fn similar_items_and_search() {
    let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(256)), catalog()).unwrap();
    let sim = rec.similar_items("trail1", 2).unwrap();
    assert_eq!(ids(&sim), vec!["trail2", "road1"], "trail3 is out of stock");
    assert!(sim.iter().all(|r| r.reason == "similar_to:trail1"));
    let found = rec.search("green tea", 2, &Filter::none()).unwrap();
    assert!(ids(&found).iter().all(|i| i.starts_with("tea")), "{found:?}");
    assert_eq!(found[0].reason, "matches_query");
    let in_stock_shoes = rec.search(
        "waterproof trail running shoe",
        3,
        &Filter { category: Some("running".into()), ..Filter::in_stock() },
    );
    assert!(!ids(&in_stock_shoes.unwrap()).contains(&"trail3"));
    assert!(matches!(rec.similar_items("nope", 3), Err(RetailError::UnknownItem { len: 4 })));
}

#[test]
fn persists_exports_and_erases_shopper_data() {
    capture_logs();
    let d = dir("persist");
    let canary_query = "CANARY-anniversary-gift-for-jane";
    {
        let mut rec = Recommender::open(&d, Box::new(HashEmbed::new(128)), catalog()).unwrap();
        rec.record(Event::item("tea1", EventKind::View, 10.0)).unwrap();
        rec.record(Event::search(canary_query, 11.0)).unwrap();
    }
    let mut rec = Recommender::open(&d, Box::new(HashEmbed::new(128)), catalog()).unwrap();
    let data = rec.export();
    assert_eq!(data.events.len(), 2);
    assert_eq!(data.events[1].query.as_deref(), Some(canary_query));
    let events_file = d.join("events.ewe");
    let raw = std::fs::read(&events_file).unwrap();
    assert!(raw.windows(canary_query.len()).any(|w| w == canary_query.as_bytes()));
    rec.erase_all().unwrap();
    assert!(rec.export().events.is_empty());
    let raw = std::fs::read(&events_file).unwrap();
    assert!(!raw.windows(canary_query.len()).any(|w| w == canary_query.as_bytes()), "erased from the file");
    drop(rec);
    let rec = Recommender::open(&d, Box::new(HashEmbed::new(128)), catalog()).unwrap();
    assert!(rec.events().is_empty(), "erase survives reopen");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!((mode(&d), mode(&events_file), mode(&d.join("index.ewv"))), (0o700, 0o600, 0o600));
    }
    for l in LINES.lock().unwrap().iter() {
        assert!(!l.contains("CANARY") && !l.contains("Green tea"), "log line with shopper/item content: {l}");
    }
    let _ = std::fs::remove_dir_all(&d);
}

/// Counts how many texts it was asked to embed.
struct Counting {
    inner: HashEmbed,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}
impl Embed for Counting {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn model_id(&self) -> &str {
        self.inner.model_id()
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.calls.fetch_add(texts.len(), std::sync::atomic::Ordering::SeqCst);
        self.inner.embed(texts)
    }
}

#[test]
fn catalog_changes_model_changes_and_corruption_reembed() {
    capture_logs();
    let d = dir("reembed");
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = |dim| Box::new(Counting { inner: HashEmbed::new(dim), calls: calls.clone() });
    let n = catalog().len();
    drop(Recommender::open(&d, counting(128), catalog()).unwrap());
    assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), n);
    // Reopen with the same catalog: nothing is embedded again.
    drop(Recommender::open(&d, counting(128), catalog()).unwrap());
    assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 0);
    // One title changed, one item gone, one attribute changed: one embedding.
    let mut cat = catalog();
    cat[0].title = "Trail running shoe v2".into();
    cat.pop();
    cat[4].attributes = cat[4].attributes.clone().with("in_stock", AttrValue::Bool(false));
    let rec = Recommender::open(&d, counting(128), cat.clone()).unwrap();
    assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(rec.index().len(), n - 1);
    assert!(!rec.index().contains("pan1"));
    assert!(!rec.similar_items("tea2", 7).unwrap().iter().any(|r| r.id == "tea1"), "tea1 now out of stock");
    drop(rec);
    // Another model: the index is rebuilt for it, never mixed.
    let rec = Recommender::open(&d, counting(64), cat.clone()).unwrap();
    assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), n - 1);
    assert_eq!(rec.index().config().dim, 64);
    drop(rec);
    // A corrupt index file: rebuilt from the catalog on open.
    std::fs::write(d.join("index.ewv"), b"garbage, not an index at all .............").unwrap();
    let mut rec = Recommender::open(&d, counting(64), cat.clone()).unwrap();
    assert_eq!(calls.swap(0, std::sync::atomic::Ordering::SeqCst), n - 1);
    assert_eq!(rec.similar_items("trail1", 1).unwrap()[0].id, "trail2");
    // A corrupt event log: started afresh (the shopper's history is lost, the app keeps working).
    rec.record(Event::item("tea1", EventKind::View, 1.0)).unwrap();
    drop(rec);
    std::fs::write(d.join("events.ewe"), b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX").unwrap();
    let rec = Recommender::open(&d, counting(64), cat).unwrap();
    assert!(rec.events().is_empty());
    let _ = std::fs::remove_dir_all(&d);
}

/// An embedder that returns what it is told to.
struct Broken(Vec<f32>, usize);
impl Embed for Broken {
    fn dim(&self) -> usize {
        4
    }
    fn model_id(&self) -> &str {
        "broken"
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(vec![self.0.clone(); texts.len() + self.1])
    }
}

#[test]
fn bad_input_gets_typed_errors() {
    let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(64)), catalog()).unwrap();
    assert!(matches!(rec.record(Event::item("nope", EventKind::View, 1.0)), Err(RetailError::UnknownItem { .. })));
    assert!(matches!(
        rec.record(Event::item("tea1", EventKind::View, f64::NAN)),
        Err(RetailError::InvalidArgument { .. })
    ));
    assert!(matches!(rec.record(Event::search("  ", 1.0)), Err(RetailError::InvalidArgument { .. })));
    assert!(matches!(rec.record(Event::search(&"q".repeat(5000), 1.0)), Err(RetailError::InvalidArgument { .. })));
    let no_item = Event { item_id: None, kind: EventKind::View, ts: 1.0, query: None };
    assert!(matches!(rec.record(no_item), Err(RetailError::UnknownItem { len: 0 })));
    let batch = vec![Event::item("tea1", EventKind::View, 1.0), Event::item("nope", EventKind::View, 2.0)];
    assert!(matches!(rec.record_all(batch), Err(RetailError::UnknownItem { .. })));
    assert!(rec.events().is_empty(), "nothing bad was recorded, nor the good half of a bad batch");
    for k in [0, 10_001, usize::MAX] {
        assert!(matches!(rec.recommend(k, &Filter::none()), Err(RetailError::InvalidArgument { name: "k", .. })));
        assert!(matches!(rec.similar_items("tea1", k), Err(RetailError::InvalidArgument { name: "k", .. })));
        assert!(matches!(rec.search("tea", k, &Filter::none()), Err(RetailError::InvalidArgument { name: "k", .. })));
    }
    assert_eq!(rec.recommend(10_000, &Filter::none()).unwrap().len(), 7, "k above the catalog size is fine");
    assert!(rec.set_config(RecommendConfig { diversity: 1.0, ..RecommendConfig::default() }).is_err());
    assert!(rec.set_config(RecommendConfig { weight_view: f32::NAN, ..RecommendConfig::default() }).is_err());
    let dup = vec![Item::new("a", "x", ""), Item::new("a", "y", "")];
    assert!(matches!(rec.set_catalog(dup), Err(RetailError::InvalidArgument { .. })));
    // Embedders that misbehave: NaN vectors, wrong dimension, wrong count.
    let nan = Recommender::in_memory(Box::new(Broken(vec![f32::NAN; 4], 0)), catalog());
    assert!(matches!(nan, Err(RetailError::InvalidVector { .. })));
    let dim = Recommender::in_memory(Box::new(Broken(vec![1.0; 5], 0)), catalog());
    assert!(matches!(dim, Err(RetailError::DimensionMismatch { expected: 4, got: 5 })));
    let count = Recommender::in_memory(Box::new(Broken(vec![1.0; 4], 1)), catalog());
    assert!(matches!(count, Err(RetailError::Embed { .. })));
}

#[test]
fn json_lines_in_and_items_json_out() {
    let cat = "{\"id\":\"a\",\"title\":\"Green tea\",\"description\":\"Sencha\",\"attributes\":{\"category\":\"tea\",\"price\":9.5,\"in_stock\":true,\"origin\":\"japan\"}}\n\n{\"id\":\"b\",\"title\":\"Black tea\"}\n";
    let items = read_catalog(cat.as_bytes()).unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0].attributes.category(), Some("tea"));
    assert_eq!(items[0].attributes.price(), Some(9.5));
    assert!(items[1].attributes.in_stock());
    let ev = "{\"item_id\":\"a\",\"kind\":\"view\",\"ts\":1}\n{\"item_id\":\"a\",\"kind\":\"add_to_cart\",\"ts\":2.5}\n{\"kind\":\"search\",\"query\":\"tea\",\"ts\":3}\n";
    let events = read_events(ev.as_bytes()).unwrap();
    assert_eq!(events[1].kind, EventKind::AddToCart);
    // Errors name the line, never its content.
    let bad =
        "{\"item_id\":\"a\",\"kind\":\"view\",\"ts\":1}\n{\"item_id\":\"SECRET-ITEM\",\"kind\":\"stare\",\"ts\":1}\n";
    match read_events(bad.as_bytes()) {
        Err(e @ RetailError::Parse { line: 2, .. }) => {
            assert!(!e.to_string().contains("stare") && !e.to_string().contains("SECRET"))
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(read_events("{\"kind\":\"view\",\"ts\":1}".as_bytes()), Err(RetailError::Parse { line: 1, .. })));
    assert!(matches!(read_catalog("{\"title\":\"no id\"}".as_bytes()), Err(RetailError::Parse { line: 1, .. })));
    let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(64)), items).unwrap();
    rec.record_all(events).unwrap();
    let out = to_output_json(&rec.recommend(10, &Filter::none()).unwrap());
    let arr = out["items"].as_array().unwrap();
    assert_eq!(arr.len(), 1, "the viewed item is left out");
    assert_eq!(arr[0]["id"], "b");
    for x in arr {
        assert!(x["id"].is_string() && x["score"].is_number() && x["reason"].is_string(), "{x}");
    }
}

/// The example events file of the evaluation set goes through the same readers.
#[test]
fn example_files_load() {
    let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/retail/data");
    let items = read_catalog(std::io::BufReader::new(std::fs::File::open(d.join("items.jsonl")).unwrap())).unwrap();
    let events =
        read_events(std::io::BufReader::new(std::fs::File::open(d.join("example_events.jsonl")).unwrap())).unwrap();
    let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(384)), items).unwrap();
    rec.record_all(events).unwrap();
    let top = rec.recommend(10, &Filter::none()).unwrap();
    assert_eq!(top.len(), 10);
    assert!(top.iter().all(|r| r.reason.starts_with("similar_to:")
        || r.reason.starts_with("matches_search:")
        || r.reason == "popular"));
}

#[test]
fn event_history_is_bounded_and_the_types_are_thread_safe() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Recommender>();
    send_sync::<edgewise_retail::VectorIndex>();
    let d = dir("bounded");
    let max = edgewise_retail::recommend::MAX_STORED_EVENTS;
    {
        let mut rec = Recommender::open(&d, Box::new(HashEmbed::new(32)), catalog()).unwrap();
        rec.record_all((0..max).map(|i| Event::item("tea1", EventKind::View, i as f64))).unwrap();
        assert_eq!(rec.events().len(), max);
        rec.record(Event::item("tea1", EventKind::View, max as f64)).unwrap();
        assert_eq!(rec.events().len(), max / 2);
        assert_eq!(rec.events().last().map(|e| e.ts), Some(max as f64), "the newest are kept");
    }
    let rec = Recommender::open(&d, Box::new(HashEmbed::new(32)), catalog()).unwrap();
    assert_eq!(rec.events().len(), max / 2, "the file was rewritten too");
    let _ = std::fs::remove_dir_all(&d);
}

/// A second recommender on the same files (another process, or this one) is refused, not mixed in.
#[test]
fn one_recommender_per_directory() {
    let d = dir("locked");
    let first = Recommender::open(&d, Box::new(HashEmbed::new(32)), catalog()).unwrap();
    assert!(matches!(Recommender::open(&d, Box::new(HashEmbed::new(32)), catalog()), Err(RetailError::Locked { .. })));
    drop(first);
    assert!(Recommender::open(&d, Box::new(HashEmbed::new(32)), catalog()).is_ok());
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn each_pick_has_a_why_line_from_its_signals() {
    let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(256)), catalog()).unwrap();
    // No signal at all, then the shop's popularity prior.
    let cold = rec.recommend(2, &Filter::none()).unwrap();
    assert!(cold.iter().all(|r| r.why == "A pick to start with"), "{cold:?}");
    let mut pop = std::collections::HashMap::new();
    pop.insert("pan1".to_string(), 50.0);
    rec.set_popularity(pop).unwrap();
    let top = rec.recommend(1, &Filter::none()).unwrap();
    assert_eq!((top[0].id.as_str(), top[0].why.as_str()), ("pan1", "Popular in this shop"));

    // The source item's title and the strongest thing done with it: viewed, then carted.
    let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(256)), catalog()).unwrap();
    rec.record(Event::item("tea1", EventKind::View, 1000.0)).unwrap();
    let top = rec.recommend(1, &Filter::none()).unwrap();
    assert_eq!(top[0].reason, "similar_to:tea1");
    assert_eq!(top[0].why, "Similar to \u{201c}Green tea sencha\u{201d}, which you viewed");
    rec.record(Event::item("tea1", EventKind::AddToCart, 1001.0)).unwrap();
    let top = rec.recommend(1, &Filter::none()).unwrap();
    assert_eq!(top[0].why, "Similar to \u{201c}Green tea sencha\u{201d}, which you added to your cart");
    rec.record(Event::item("trail1", EventKind::Purchase, 1002.0)).unwrap();
    let top = rec.recommend(8, &Filter::none()).unwrap();
    let shoe = top.iter().find(|r| r.reason == "similar_to:trail1").expect("a shoe pick");
    assert_eq!(shoe.why, "Similar to \u{201c}Trail running shoe\u{201d}, which you bought");
    // Every pick's line agrees with its machine-readable reason.
    for r in &top {
        match r.reason.split_once(':') {
            Some(("similar_to", _)) => assert!(r.why.starts_with("Similar to \u{201c}"), "{r:?}"),
            Some(("matches_search", _)) => assert!(r.why.starts_with("Matches your search"), "{r:?}"),
            _ => assert!(r.why.starts_with("Popular") || r.why == "A pick to start with", "{r:?}"),
        }
    }

    // A search: the query, cut at WHY_MAX_CHARS characters.
    let long = format!("cast iron skillet {}", "really ".repeat(20));
    rec.record(Event::search(&long, 1100.0)).unwrap();
    let top = rec.recommend(1, &Filter::none()).unwrap();
    assert!(top[0].why.starts_with("Matches your search \u{201c}cast iron skillet really"), "{top:?}");
    assert!(top[0].why.ends_with("\u{2026}\u{201d}"), "{}", top[0].why);
    assert!(top[0].why.chars().count() <= "Matches your search ".len() + 2 + edgewise_retail::WHY_MAX_CHARS);

    // similar_items and search say what they matched.
    let sim = rec.similar_items("trail1", 1).unwrap();
    assert_eq!(sim[0].why, "Similar to \u{201c}Trail running shoe\u{201d}");
    let found = rec.search("green tea", 1, &Filter::none()).unwrap();
    assert_eq!(found[0].why, "Matches \u{201c}green tea\u{201d}");
    // And it reaches the JSON output.
    let j = to_output_json(&found);
    assert_eq!(j["items"][0]["why"], "Matches \u{201c}green tea\u{201d}");
}
