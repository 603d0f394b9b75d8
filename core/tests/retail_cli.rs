//! `edgewise recommend` and `edgewise search` through the real binary, with the real MiniLM, on
//! the synthesized retail catalog (`tests/retail/data/items.jsonl`: 463 items, 11 categories).
//! Skipped loudly when MiniLM is not fetched (`edgewise models fetch all-minilm-l6-v2`), a
//! failure under `EDGEWISE_REQUIRE_MODEL`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Output};

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/retail/data").join(name)
}

fn minilm_fetched() -> bool {
    let dir = (|| {
        let c = edgewise_core::catalog::Catalog::builtin().ok()?;
        let home = edgewise_core::catalog::edgewise_home().ok()?;
        c.get(edgewise_core::embed::DEFAULT_EMBEDDING_MODEL).ok()?.unpacked_in(&home)
    })();
    if dir.is_some_and(|d| d.join("model.safetensors").is_file()) {
        return true;
    }
    if std::env::var_os("EDGEWISE_REQUIRE_MODEL").is_some_and(|v| !v.is_empty() && v != "0") {
        panic!("EDGEWISE_REQUIRE_MODEL is set but all-minilm-l6-v2 is not fetched");
    }
    eprintln!("SKIPPED: all-minilm-l6-v2 not fetched (run `edgewise models fetch all-minilm-l6-v2`)");
    false
}

fn edgewise(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edgewise")).args(args).output().expect("spawn edgewise")
}

/// id → category of the catalog.
fn categories() -> HashMap<String, String> {
    std::fs::read_to_string(data("items.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v["attributes"]["category"].as_str().unwrap().to_string())
        })
        .collect()
}

/// The last stdout line, checked to be `{"items":[{"id","score","reason","why"},...]}` with a `why`
/// line that agrees with the reason; (id, score, reason).
fn items(out: &Output) -> Vec<(String, f64, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    let last = stdout.lines().last().expect("output");
    let v: serde_json::Value = serde_json::from_str(last).expect("last line is JSON");
    let obj = v.as_object().expect("object");
    assert_eq!(obj.keys().collect::<Vec<_>>(), ["items"]);
    v["items"]
        .as_array()
        .expect("items array")
        .iter()
        .map(|it| {
            let o = it.as_object().expect("item object");
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            assert_eq!(keys, ["id", "reason", "score", "why"]);
            let (reason, why) = (it["reason"].as_str().expect("reason"), it["why"].as_str().expect("why"));
            let agrees = match reason.split_once(':') {
                Some(("similar_to", _)) => why.starts_with("Similar to \u{201c}"),
                Some(("matches_search", _)) => why.starts_with("Matches your search \u{201c}"),
                _ if reason == "matches_query" => why.starts_with("Matches \u{201c}"),
                _ => why.starts_with("Popular") || why == "A pick to start with",
            };
            assert!(agrees, "{reason} / {why}");
            let score = it["score"].as_f64().expect("score is a number");
            assert!(score.is_finite());
            (it["id"].as_str().unwrap().to_string(), score, it["reason"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn recommend_ranks_the_shoppers_interest_and_excludes_bought_and_dismissed() {
    if !minilm_fetched() {
        return;
    }
    // A toy long ago, then pour-over coffee gear: viewed, carted, bought, one dismissed.
    let events = [
        r#"{"item_id":"p0331","kind":"view","ts":1000}"#,
        r#"{"item_id":"p0093","kind":"view","ts":5000}"#,
        r#"{"item_id":"p0095","kind":"add_to_cart","ts":5030}"#,
        r#"{"item_id":"p0101","kind":"purchase","ts":5060}"#,
        r#"{"item_id":"p0097","kind":"dismiss","ts":5090}"#,
        r#"{"kind":"search","query":"pour-over coffee dripper","ts":5100}"#,
        r#"{"item_id":"p0098","kind":"view","ts":5120}"#,
    ];
    let dir = std::env::temp_dir().join(format!("edgewise-retail-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ev = dir.join("events.jsonl");
    std::fs::write(&ev, events.join("\n")).unwrap();
    let catalog = data("items.jsonl");
    let out = edgewise(&[
        "recommend",
        "--catalog",
        catalog.to_str().unwrap(),
        "--events",
        ev.to_str().unwrap(),
        "--k",
        "10",
        "--json",
    ]);
    let got = items(&out);
    assert_eq!(got.len(), 10);
    let cats = categories();
    for (id, _, reason) in &got {
        for touched in ["p0101", "p0097", "p0093", "p0095", "p0098", "p0331"] {
            assert_ne!(id, touched, "a bought, dismissed or seen item came back");
        }
        assert!(cats.contains_key(id), "{id} is not in the catalog");
        assert!(
            reason.starts_with("similar_to:") || reason.starts_with("matches_search:") || reason == "popular",
            "{reason}"
        );
    }
    let coffee = got.iter().filter(|(id, _, _)| cats[id] == "coffee & tea").count();
    assert_eq!(cats[&got[0].0], "coffee & tea", "{got:?}");
    assert!(coffee >= 6, "{coffee} of 10 from coffee & tea: {got:?}");

    // Without --json: one line per item. An unknown item id is a typed error that does not echo it.
    let plain =
        edgewise(&["recommend", "--catalog", catalog.to_str().unwrap(), "--events", ev.to_str().unwrap(), "--k", "3"]);
    assert!(plain.status.success());
    assert_eq!(String::from_utf8_lossy(&plain.stdout).lines().count(), 3);
    std::fs::write(&ev, r#"{"item_id":"CANARY-sku-991","kind":"view","ts":1}"#).unwrap();
    let bad = edgewise(&["recommend", "--catalog", catalog.to_str().unwrap(), "--events", ev.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(bad.status.code(), Some(1), "{err}");
    assert!(err.contains("unknown item") && !err.contains("CANARY"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn search_finds_a_categorys_items_by_its_words() {
    if !minilm_fetched() {
        return;
    }
    let catalog = data("items.jsonl");
    let cats = categories();
    for (query, want) in [
        ("loose leaf green tea", "coffee & tea"),
        ("a warm bed for my dog", "pets"),
        ("wireless headphones for music", "audio"),
        ("ergonomic chair for working at a desk", "home office"),
    ] {
        let got = items(&edgewise(&["search", "--catalog", catalog.to_str().unwrap(), "--k", "5", "--json", query]));
        assert_eq!(got.len(), 5, "{query}");
        for (id, _, reason) in &got {
            assert_eq!(cats[id], want, "{query}: {got:?}");
            assert_eq!(reason, "matches_query");
        }
        assert!(got.windows(2).all(|w| w[0].1 >= w[1].1), "{query}: not sorted: {got:?}");
    }
    // A category filter narrows the search.
    let got = items(&edgewise(&[
        "search",
        "--catalog",
        catalog.to_str().unwrap(),
        "--k",
        "3",
        "--category",
        "books",
        "--json",
        "green tea",
    ]));
    assert!(got.iter().all(|(id, _, _)| cats[id] == "books"), "{got:?}");
}

/// `edgewise embed --model all-minilm-l6-v2-gguf-q8_0` in a fresh home holding only the pinned
/// MiniLM package: the GGUF is made there (no hub: proxies point at a closed port), verified,
/// and embeds as the GGUF the reference script makes.
#[test]
fn embed_with_a_derived_gguf_id_makes_it_offline_from_the_package() {
    if !minilm_fetched() {
        return;
    }
    let c = edgewise_core::catalog::Catalog::builtin().unwrap();
    let real = edgewise_core::catalog::edgewise_home().unwrap();
    let from = c.get(edgewise_core::embed::DEFAULT_EMBEDDING_MODEL).unwrap();
    let home = std::env::temp_dir().join(format!("edgewise-cli-derive-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(home.join("models")).unwrap();
    std::os::unix::fs::symlink(from.path_in(&real), from.path_in(&home)).unwrap();
    std::os::unix::fs::symlink(from.unpacked_in(&real).unwrap(), from.unpacked_in(&home).unwrap()).unwrap();
    let run = |model: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgewise"))
            .args(["embed", "--model", model])
            .env("EDGEWISE_HOME", &home)
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"{\"id\":1,\"text\":\"red running shoes\"}\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect::<Vec<f32>>()
    };
    let id = "all-minilm-l6-v2-gguf-q8_0";
    let v = run(id);
    let made = c.get(id).unwrap().path_in(&home);
    assert!(made.is_file(), "the GGUF was made at {}", made.display());
    assert_eq!(v.len(), 384);
    // The same vector as the file given by path (the file the catalog pinned).
    assert_eq!(v, run(made.to_str().unwrap()));
    let _ = std::fs::remove_dir_all(&home);
}
