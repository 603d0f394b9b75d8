//! On-device embeddings, the vector index and the shopper recommender (issue 15) for Kotlin and
//! Swift: `Embedder`, `VectorIndex`, `Recommender`. Thin wrappers over `edgewise_core::embed` and
//! `edgewise_core::retail` (crate `edgewise-retail`); every call is blocking (embedding a
//! catalog takes seconds): call them off the main thread (`Dispatchers.Default` / a `Task`).
//!
//! Privacy: nothing here touches the network; events, queries and item text never appear in an
//! error or a log line (the retail crate's errors name sizes, counts and paths only).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use edgewise_core::embed as ce;
use edgewise_core::retail as cr;

use crate::error::{guard, EdgewiseError, EdgewiseResult};
use crate::types::{to_i32, BackendKind, BackendPreference};

/// Weight mode of an [`Embedder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum EmbeddingWeights {
    /// f32 weights (the reference path).
    F32,
    /// Some products and the word embeddings in Q8_0 (less memory; cosine ≥ 0.999 to f32).
    Q8_0,
}

/// A sentence-embedding model (default all-MiniLM-L6-v2, 384 dimensions). Thread-safe; share one
/// between a `VectorIndex`, a `Recommender` and the app.
#[derive(uniffi::Object)]
pub struct Embedder {
    inner: Arc<ce::Embedder>,
}

#[uniffi::export]
impl Embedder {
    /// Loads a catalog id (`all-minilm-l6-v2`: fetched, verified and unpacked under the Edgewise
    /// home if missing) or a sentence-transformers folder. Blocking (a second or more).
    #[uniffi::constructor]
    pub fn load(model: String, weights: EmbeddingWeights) -> EdgewiseResult<Arc<Self>> {
        guard("Embedder.load", || {
            let weights = match weights {
                EmbeddingWeights::F32 => ce::EncoderWeights::F32,
                EmbeddingWeights::Q8_0 => ce::EncoderWeights::Q8_0,
            };
            let e = ce::Embedder::load(&model, ce::EmbedOptions { weights, ..ce::EmbedOptions::default() })?;
            Ok(Arc::new(Self { inner: Arc::new(e) }))
        })
    }

    /// [`Embedder::load`] on a chosen backend: `Cpu` (what `load` uses), `Gpu` (wgpu, or a
    /// `Backend` error), or `Auto` (a hardware GPU whose vectors agree with the CPU's on a
    /// self-test text, else the CPU; a software adapter is never picked). `backend()` says which.
    #[uniffi::constructor]
    pub fn load_on(model: String, weights: EmbeddingWeights, backend: BackendPreference) -> EdgewiseResult<Arc<Self>> {
        guard("Embedder.load_on", || {
            let weights = match weights {
                EmbeddingWeights::F32 => ce::EncoderWeights::F32,
                EmbeddingWeights::Q8_0 => ce::EncoderWeights::Q8_0,
            };
            let opts = ce::EmbedOptions { weights, backend: backend.into(), ..ce::EmbedOptions::default() };
            Ok(Arc::new(Self { inner: Arc::new(ce::Embedder::load(&model, opts)?) }))
        })
    }

    /// Where the encoder runs (after `Auto`'s choice).
    pub fn backend(&self) -> BackendKind {
        self.inner.backend().into()
    }

    /// One text's vector (`dim` floats; unit length for MiniLM). A text is truncated at the
    /// model's limit (256 tokens for MiniLM); over 1 MiB it is refused (`InvalidParameter`).
    pub fn embed(&self, text: String) -> EdgewiseResult<Vec<f32>> {
        guard("Embedder.embed", || Ok(self.inner.embed(&text)?))
    }

    /// Vectors of `texts`, in order (the same as one at a time).
    pub fn embed_batch(&self, texts: Vec<String>) -> EdgewiseResult<Vec<Vec<f32>>> {
        guard("Embedder.embed_batch", || Ok(self.inner.embed_batch(&texts)?.into_iter().map(|e| e.vector).collect()))
    }

    /// Vector length.
    pub fn dim(&self) -> EdgewiseResult<i32> {
        Ok(to_i32(self.inner.dim()))
    }

    /// The catalog id, or the folder's name.
    pub fn model_id(&self) -> EdgewiseResult<String> {
        Ok(self.inner.model_id().to_string())
    }

    /// Identifies the model and its settings (32 hex digits): the model id to give a
    /// `VectorIndex` holding this embedder's vectors.
    pub fn fingerprint(&self) -> EdgewiseResult<String> {
        Ok(self.inner.fingerprint().to_string())
    }
}

/// An attribute value of a catalog item.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum AttributeValue {
    /// A string (`category` is one).
    Text { value: String },
    /// A number (`price` is one).
    Number { value: f64 },
    /// A boolean (`in_stock` is one).
    Flag { value: bool },
}

fn attrs_in(a: HashMap<String, AttributeValue>) -> cr::Attributes {
    cr::Attributes(
        a.into_iter()
            .map(|(k, v)| {
                let v = match v {
                    AttributeValue::Text { value } => cr::AttrValue::Str(value),
                    AttributeValue::Number { value } => cr::AttrValue::Num(value),
                    AttributeValue::Flag { value } => cr::AttrValue::Bool(value),
                };
                (k, v)
            })
            .collect(),
    )
}

/// The attribute under which the recommender records an item's text hash (its bookkeeping, not the
/// app's: left out of what the app reads back).
const TEXT_HASH_KEY: &str = "_text_fnv";

fn attrs_out(a: cr::Attributes) -> HashMap<String, AttributeValue> {
    a.0.into_iter()
        .filter(|(k, _)| k != TEXT_HASH_KEY)
        .map(|(k, v)| {
            let v = match v {
                cr::AttrValue::Str(value) => AttributeValue::Text { value },
                cr::AttrValue::Num(value) => AttributeValue::Number { value },
                cr::AttrValue::Bool(value) => AttributeValue::Flag { value },
            };
            (k, v)
        })
        .collect()
}

/// A condition on a custom attribute.
#[derive(Debug, Clone, PartialEq, uniffi::Enum)]
pub enum AttributeCondition {
    /// The attribute is this string (or the boolean `"true"`/`"false"`, or this number).
    Equals { key: String, value: String },
    /// The attribute is a number within `[min, max]` (either bound optional, inclusive).
    Range { key: String, min: Option<f64>, max: Option<f64> },
}

/// Metadata filters: an item passes when every condition that is set holds. An item without a
/// price fails a price bound; one without `in_stock` counts as in stock. `no_filter()` gives
/// an empty one.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct SearchFilter {
    /// Only this category.
    pub category: Option<String>,
    /// Price at least this.
    pub min_price: Option<f64>,
    /// Price at most this.
    pub max_price: Option<f64>,
    /// Only items whose `in_stock` is this.
    pub in_stock: Option<bool>,
    /// Conditions on custom attributes.
    pub attributes: Vec<AttributeCondition>,
}

/// A filter with no condition.
#[uniffi::export]
pub fn no_filter() -> SearchFilter {
    SearchFilter { category: None, min_price: None, max_price: None, in_stock: None, attributes: Vec::new() }
}

impl From<SearchFilter> for cr::Filter {
    fn from(f: SearchFilter) -> Self {
        cr::Filter {
            category: f.category,
            min_price: f.min_price,
            max_price: f.max_price,
            in_stock: f.in_stock,
            attributes: f
                .attributes
                .into_iter()
                .map(|c| match c {
                    AttributeCondition::Equals { key, value } => cr::AttrFilter::Equals { key, value },
                    AttributeCondition::Range { key, min, max } => cr::AttrFilter::Range { key, min, max },
                })
                .collect(),
        }
    }
}

/// How a `VectorIndex` stores vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum VectorStorage {
    /// int8 with one scale per vector (a quarter of f32's size; recall@10 against f32 in the README).
    Int8,
    /// f32.
    F32,
}

/// A search hit.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct IndexHit {
    /// Item id.
    pub id: String,
    /// Cosine similarity.
    pub score: f32,
}

fn k_of(k: i32) -> EdgewiseResult<usize> {
    usize::try_from(k)
        .ok()
        .filter(|&k| k > 0)
        .ok_or_else(|| EdgewiseError::InvalidParameter { name: "k".into(), reason: "must be 1..=10000".into() })
}

/// An on-device vector index: exact top-k cosine, metadata filters, a crash-safe file (every
/// write is on disk when it returns), versioned by the embedding model. One process opens a file
/// at a time (`Locked` otherwise). Thread-safe.
#[derive(uniffi::Object)]
pub struct VectorIndex {
    inner: cr::VectorIndex,
}

#[uniffi::export]
impl VectorIndex {
    /// Opens (or creates) the index file at `path` for vectors of `model_id` (use
    /// `Embedder.fingerprint()`) with `dim` dimensions. A file made by another model or dimension
    /// is `IndexModelMismatch`; a damaged one `IndexCorrupt` (rebuild it with `recreate`).
    #[uniffi::constructor]
    pub fn open(path: String, model_id: String, dim: i32, storage: VectorStorage) -> EdgewiseResult<Arc<Self>> {
        guard("VectorIndex.open", || {
            let cfg = index_config(&model_id, dim, storage)?;
            Ok(Arc::new(Self { inner: cr::VectorIndex::open(path, cfg)? }))
        })
    }

    /// Replaces whatever is at `path` with an empty index (a model change, a corrupt file).
    #[uniffi::constructor]
    pub fn recreate(path: String, model_id: String, dim: i32, storage: VectorStorage) -> EdgewiseResult<Arc<Self>> {
        guard("VectorIndex.recreate", || {
            let cfg = index_config(&model_id, dim, storage)?;
            Ok(Arc::new(Self { inner: cr::VectorIndex::recreate(path, cfg)? }))
        })
    }

    /// Adds or replaces `id`. NaN/infinite/zero vectors and a wrong length are refused.
    pub fn upsert(
        &self,
        id: String,
        vector: Vec<f32>,
        attributes: HashMap<String, AttributeValue>,
    ) -> EdgewiseResult<()> {
        guard("VectorIndex.upsert", || Ok(self.inner.upsert(&id, &vector, attrs_in(attributes))?))
    }

    /// Removes `id`; whether it was there.
    pub fn delete(&self, id: String) -> EdgewiseResult<bool> {
        guard("VectorIndex.delete", || Ok(self.inner.delete(&id)?))
    }

    /// The `k` items most similar to `query` that pass `filter`, best first.
    pub fn search(&self, query: Vec<f32>, k: i32, filter: SearchFilter) -> EdgewiseResult<Vec<IndexHit>> {
        guard("VectorIndex.search", || {
            let hits = self.inner.search(&query, k_of(k)?, &filter.into())?;
            Ok(hits.into_iter().map(|h| IndexHit { id: h.id, score: h.score }).collect())
        })
    }

    /// The stored attributes of `id`, or null when absent.
    pub fn attributes(&self, id: String) -> EdgewiseResult<Option<HashMap<String, AttributeValue>>> {
        guard("VectorIndex.attributes", || Ok(self.inner.get(&id).map(|(_, a)| attrs_out(a))))
    }

    /// Number of items.
    pub fn size(&self) -> EdgewiseResult<i32> {
        Ok(to_i32(self.inner.len()))
    }
}

fn index_config(model_id: &str, dim: i32, storage: VectorStorage) -> EdgewiseResult<cr::IndexConfig> {
    let dim = usize::try_from(dim)
        .ok()
        .filter(|&d| d > 0)
        .ok_or_else(|| EdgewiseError::InvalidParameter { name: "dim".into(), reason: "must be positive".into() })?;
    let storage = match storage {
        VectorStorage::Int8 => cr::Storage::Int8,
        VectorStorage::F32 => cr::Storage::F32,
    };
    Ok(cr::IndexConfig::new(model_id, dim).with_storage(storage))
}

/// A catalog item.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct CatalogItem {
    /// Unique id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description (may be empty).
    pub description: String,
    /// `category` (text), `price` (number), `in_stock` (flag) and custom attributes.
    pub attributes: HashMap<String, AttributeValue>,
}

impl From<CatalogItem> for cr::Item {
    fn from(i: CatalogItem) -> Self {
        cr::Item { id: i.id, title: i.title, description: i.description, attributes: attrs_in(i.attributes) }
    }
}

impl From<cr::Item> for CatalogItem {
    fn from(i: cr::Item) -> Self {
        Self { id: i.id, title: i.title, description: i.description, attributes: attrs_out(i.attributes) }
    }
}

/// Reads a catalog file of JSON lines `{"id","title","description","attributes":{...}}`. A bad
/// line is `InvalidParameter` naming its number (never its content).
#[uniffi::export]
pub fn read_catalog_file(path: String) -> EdgewiseResult<Vec<CatalogItem>> {
    guard("read_catalog_file", || {
        let f = std::fs::File::open(&path)?;
        Ok(cr::read_catalog(std::io::BufReader::new(f))?.into_iter().map(CatalogItem::from).collect())
    })
}

/// What the shopper did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum ShopperEventKind {
    /// Looked at an item.
    View,
    /// Put an item in the cart.
    AddToCart,
    /// Bought an item (never recommended again).
    Purchase,
    /// "Not interested" (never recommended again; similar items lose score).
    Dismiss,
    /// Searched (`query` set, no item).
    Search,
}

/// One shopper event: `item_id` for every kind but `Search`, `query` for `Search`; `ts` in
/// seconds (one epoch throughout).
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct ShopperEvent {
    /// The item.
    pub item_id: Option<String>,
    /// The kind.
    pub kind: ShopperEventKind,
    /// Time in seconds.
    pub ts: f64,
    /// The search query.
    pub query: Option<String>,
}

impl From<ShopperEvent> for cr::Event {
    fn from(e: ShopperEvent) -> Self {
        let kind = match e.kind {
            ShopperEventKind::View => cr::EventKind::View,
            ShopperEventKind::AddToCart => cr::EventKind::AddToCart,
            ShopperEventKind::Purchase => cr::EventKind::Purchase,
            ShopperEventKind::Dismiss => cr::EventKind::Dismiss,
            ShopperEventKind::Search => cr::EventKind::Search,
        };
        cr::Event { item_id: e.item_id, kind, ts: e.ts, query: e.query }
    }
}

impl From<cr::Event> for ShopperEvent {
    fn from(e: cr::Event) -> Self {
        let kind = match e.kind {
            cr::EventKind::View => ShopperEventKind::View,
            cr::EventKind::AddToCart => ShopperEventKind::AddToCart,
            cr::EventKind::Purchase => ShopperEventKind::Purchase,
            cr::EventKind::Dismiss => ShopperEventKind::Dismiss,
            cr::EventKind::Search => ShopperEventKind::Search,
        };
        Self { item_id: e.item_id, kind, ts: e.ts, query: e.query }
    }
}

/// A recommended or found item.
#[derive(Debug, Clone, PartialEq, uniffi::Record)]
pub struct Recommendation {
    /// Item id.
    pub id: String,
    /// Blended score (higher is better).
    pub score: f32,
    /// `similar_to:<item id>`, `matches_search:<query>`, `matches_query` or `popular`.
    pub reason: String,
    /// One line for the shopper on why this item is here ("Similar to “Trail shoes”, which you
    /// viewed", "Matches your search “rain jacket”", "Popular on this device", …), from the
    /// same signals as `reason`.
    pub why: String,
}

impl From<cr::Recommendation> for Recommendation {
    fn from(r: cr::Recommendation) -> Self {
        Self { id: r.id, score: r.score, reason: r.reason, why: r.why }
    }
}

fn recs(v: Vec<cr::Recommendation>) -> Vec<Recommendation> {
    v.into_iter().map(Recommendation::from).collect()
}

/// Recommendations for one shopper over a catalog, with the shopper's events and the catalog's
/// vectors kept in a directory of the app's storage (`index.ewv`, `events.ewe`; owner-only,
/// fsynced). Nothing leaves the device. Thread-safe (calls are serialized).
#[derive(uniffi::Object)]
pub struct Recommender {
    inner: Mutex<cr::Recommender>,
}

impl Recommender {
    fn lock(&self) -> MutexGuard<'_, cr::Recommender> {
        // A panic inside a call is turned into `Internal` by `guard`; the state it left is still
        // consistent (every write is all-or-nothing), so a poisoned lock is taken over.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[uniffi::export]
impl Recommender {
    /// Opens (or creates) the recommender's files in `dir` over `catalog`, embedding with
    /// `embedder`: new or changed items are embedded (seconds for hundreds of items), items gone
    /// from the catalog are dropped, an index of another model (or a corrupt one) is rebuilt.
    /// The shopper's events recorded before are kept.
    #[uniffi::constructor]
    pub fn open(dir: String, embedder: Arc<Embedder>, catalog: Vec<CatalogItem>) -> EdgewiseResult<Arc<Self>> {
        guard("Recommender.open", || {
            let items = catalog.into_iter().map(cr::Item::from).collect();
            let r = cr::Recommender::open(dir, Box::new(embedder.inner.clone()), items)?;
            Ok(Arc::new(Self { inner: Mutex::new(r) }))
        })
    }

    /// Replaces the catalog (embeds what is new or changed).
    pub fn set_catalog(&self, catalog: Vec<CatalogItem>) -> EdgewiseResult<()> {
        guard("Recommender.set_catalog", || {
            Ok(self.lock().set_catalog(catalog.into_iter().map(cr::Item::from).collect())?)
        })
    }

    /// Item popularity counts from outside the device (added to this device's own).
    pub fn set_popularity(&self, counts: HashMap<String, f32>) -> EdgewiseResult<()> {
        guard("Recommender.set_popularity", || Ok(self.lock().set_popularity(counts)?))
    }

    /// Records one event (on disk when it returns). The item must be in the catalog
    /// (`UnknownItem`); a search needs a query of 1..=1024 bytes.
    pub fn record(&self, event: ShopperEvent) -> EdgewiseResult<()> {
        guard("Recommender.record", || Ok(self.lock().record(event.into())?))
    }

    /// Records several events at once, all or none.
    pub fn record_all(&self, events: Vec<ShopperEvent>) -> EdgewiseResult<()> {
        guard("Recommender.record_all", || Ok(self.lock().record_all(events.into_iter().map(cr::Event::from))?))
    }

    /// The `k` best items for this shopper now, passing `filter` (and the rules: in stock, not
    /// bought, not dismissed, not already seen).
    pub fn recommend(&self, k: i32, filter: SearchFilter) -> EdgewiseResult<Vec<Recommendation>> {
        guard("Recommender.recommend", || Ok(recs(self.lock().recommend(k_of(k)?, &filter.into())?)))
    }

    /// Items like `id` (in stock), most similar first.
    pub fn similar_items(&self, id: String, k: i32) -> EdgewiseResult<Vec<Recommendation>> {
        guard("Recommender.similar_items", || Ok(recs(self.lock().similar_items(&id, k_of(k)?)?)))
    }

    /// Catalog items closest in meaning to `query` that pass `filter` (not recorded: record a
    /// `Search` event to let it shape recommendations).
    pub fn search(&self, query: String, k: i32, filter: SearchFilter) -> EdgewiseResult<Vec<Recommendation>> {
        guard("Recommender.search", || Ok(recs(self.lock().search(&query, k_of(k)?, &filter.into())?)))
    }

    /// Every recorded event of the shopper, oldest first (their data, for export).
    pub fn export(&self) -> EdgewiseResult<Vec<ShopperEvent>> {
        guard("Recommender.export", || Ok(self.lock().export().events.into_iter().map(ShopperEvent::from).collect()))
    }

    /// Deletes the shopper's events and everything derived from them (the catalog index stays).
    pub fn erase_all(&self) -> EdgewiseResult<()> {
        guard("Recommender.erase_all", || Ok(self.lock().erase_all()?))
    }

    /// Number of catalog items.
    pub fn catalog_size(&self) -> EdgewiseResult<i32> {
        Ok(to_i32(self.lock().catalog_len()))
    }
}
