//! `Embedder` as `edgewise_retail::Embed`: the index's model id is the embedder's fingerprint, the
//! vectors are the encoder's, and a failure carries no text. With the real MiniLM (skipped loudly
//! when it is not fetched, a failure under `EDGEWISE_REQUIRE_MODEL`).

use edgewise_core::embed::{EmbedOptions, Embedder, EncoderWeights};
use edgewise_core::retail::{Embed, Filter, Item, Recommender, RetailError};

fn minilm(weights: EncoderWeights) -> Option<Embedder> {
    let dir = (|| {
        let c = edgewise_core::catalog::Catalog::builtin().ok()?;
        let home = edgewise_core::catalog::edgewise_home().ok()?;
        c.get(edgewise_core::embed::DEFAULT_EMBEDDING_MODEL).ok()?.unpacked_in(&home)
    })();
    match dir {
        Some(d) if d.join("model.safetensors").is_file() => {
            Some(Embedder::load(d.to_str().unwrap(), EmbedOptions { weights, ..EmbedOptions::default() }).unwrap())
        }
        _ if std::env::var_os("EDGEWISE_REQUIRE_MODEL").is_some_and(|v| !v.is_empty() && v != "0") => {
            panic!("EDGEWISE_REQUIRE_MODEL is set but all-minilm-l6-v2 is not fetched")
        }
        _ => {
            eprintln!("SKIPPED: all-minilm-l6-v2 not fetched (run `edgewise models fetch all-minilm-l6-v2`)");
            None
        }
    }
}

#[test]
fn embedder_is_a_retail_embed_keyed_by_its_fingerprint() {
    let Some(e) = minilm(EncoderWeights::F32) else { return };
    let Some(q) = minilm(EncoderWeights::Q8_0) else { return };
    assert_eq!(Embed::dim(&e), 384);
    assert_eq!(Embed::model_id(&e), e.fingerprint());
    assert_ne!(Embed::model_id(&e), Embed::model_id(&q), "weight modes must not share an index");
    let texts = ["red running shoes", "green tea", ""];
    let got = Embed::embed(&e, &texts).unwrap();
    for (t, v) in texts.iter().zip(&got) {
        assert_eq!(v, &e.embed(t).unwrap());
    }

    // A failure names sizes, never the text.
    let canary = format!("CANARY-{}", "x".repeat(edgewise_core::MAX_INPUT_BYTES));
    let err = Embed::embed(&e, &["fine", &canary]).unwrap_err().to_string();
    assert!(!err.contains("CANARY") && !err.contains("xxxx"), "{err}");
    let big = Item::new("big", "CANARY title", &canary);
    match Recommender::in_memory(Box::new(e), vec![big]) {
        Err(RetailError::Embed { reason }) => assert!(!reason.contains("CANARY"), "{reason}"),
        other => panic!("expected an Embed error, got {other:?}"),
    }

    // Opening a recommender's files with another weight mode rebuilds the index instead of mixing.
    let dir = std::env::temp_dir().join(format!("edgewise-retail-embed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let items = vec![Item::new("a", "Trail running shoe", "for mud"), Item::new("b", "Green tea", "sencha")];
    let f32_model = Embed::model_id(&minilm(EncoderWeights::F32).unwrap()).to_string();
    {
        let r = Recommender::open(&dir, Box::new(minilm(EncoderWeights::F32).unwrap()), items.clone()).unwrap();
        assert_eq!(r.index().config().model_id, f32_model);
    }
    let mut r = Recommender::open(&dir, Box::new(q), items).unwrap();
    assert_ne!(r.index().config().model_id, f32_model);
    assert_eq!(r.index().len(), 2);
    assert_eq!(r.search("tea", 1, &Filter::none()).unwrap()[0].id, "b");
    let _ = std::fs::remove_dir_all(&dir);
}
