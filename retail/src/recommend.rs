//! The recommender: one shopper's events and a catalog in, ranked items with reasons out.
//!
//! # How `recommend` ranks
//! 1. **Interest.** Each of the shopper's last [`RecommendConfig::max_events`] events points at a
//!    vector (the item's, or the search query's) with a weight: its kind's weight
//!    ([`RecommendConfig::weight_view`] and friends; a dismiss counts against similar items) times
//!    `0.5^(age / half_life_s)`, the age measured from the newest event. The interest profile is
//!    the weighted sum, so an item's relevance is the weighted mean of its cosine to each event.
//! 2. **Popularity on this device.** `ln(1+c)/ln(1+c_max)` of a count per item: the prior given to
//!    [`Recommender::set_popularity`] (counts shipped with the catalog, say) plus this device's
//!    events (view 1, add-to-cart 2, purchase 3), weighted by [`RecommendConfig::popularity_weight`].
//! 3. **Business rules.** Purchased and dismissed items never come back; only in-stock items
//!    (an item without `in_stock` counts as in stock); the caller's [`Filter`] on top.
//! 4. **Diversity.** Maximal marginal relevance over the best [`RecommendConfig::candidates`]:
//!    each pick maximizes `(1-d)·score − d·max cos(item, already picked)`, `d` =
//!    [`RecommendConfig::diversity`].
//!
//! Each result carries its blended score (before the diversity re-rank, which sets the order) and
//! a reason: `similar_to:<item id>` or `matches_search:<query>` (the event that contributed most),
//! or `popular` (popularity outweighed every event, or there are no events yet), and a "why this
//! pick" line for people, written from the same signals: `Similar to “Trail shoes”, which you
//! added to your cart`, `Matches your search “rain jacket”`, `Popular on this device`,
//! `Popular in this shop` (the popularity prior), `A pick to start with` (no signal at all).
//! Item titles and queries are cut at [`WHY_MAX_CHARS`] characters.
//!
//! # Privacy
//! Events and vectors stay in the app's files (owner-only); nothing here logs an event, a query
//! or item text, and nothing here touches the network. [`Recommender::export`] returns the
//! shopper's data, [`Recommender::erase_all`] deletes it (the catalog index is not shopper data
//! and stays).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::attrs::{AttrValue, Attributes, Filter};
use crate::embed::Embed;
use crate::error::{Result, RetailError};
use crate::index::{checked_unit, dot, IndexConfig, VectorIndex, MAX_K};
use crate::store::{self, Log};

/// A catalog item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Unique id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description (may be empty).
    #[serde(default)]
    pub description: String,
    /// `category`, `price`, `in_stock` and custom attributes.
    #[serde(default)]
    pub attributes: Attributes,
}

impl Item {
    /// An item without attributes.
    pub fn new(id: &str, title: &str, description: &str) -> Self {
        Self { id: id.into(), title: title.into(), description: description.into(), attributes: Attributes::default() }
    }

    /// The text that is embedded: `"{title}. {description}"` (just the title when there is no
    /// description). Precomputed vectors must be of this text.
    pub fn text(&self) -> String {
        if self.description.is_empty() {
            self.title.clone()
        } else {
            format!("{}. {}", self.title, self.description)
        }
    }
}

/// What the shopper did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Looked at an item.
    View,
    /// Put an item in the cart.
    #[serde(alias = "cart")]
    AddToCart,
    /// Bought an item (it is not recommended again).
    Purchase,
    /// Said "not interested" (the item is not recommended again; similar items lose score).
    Dismiss,
    /// Searched the catalog (`query` set, no item).
    Search,
}

/// One shopper event. JSON: `{"item_id", "kind", "ts"}`, or `{"kind":"search","query","ts"}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The item (every kind but `search`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item_id: Option<String>,
    /// The kind.
    pub kind: EventKind,
    /// Time in seconds (any epoch, as long as it is one epoch throughout).
    pub ts: f64,
    /// The query of a `search`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
}

impl Event {
    /// An item event.
    pub fn item(id: &str, kind: EventKind, ts: f64) -> Self {
        Self { item_id: Some(id.into()), kind, ts, query: None }
    }

    /// A search event.
    pub fn search(query: &str, ts: f64) -> Self {
        Self { item_id: None, kind: EventKind::Search, ts, query: Some(query.into()) }
    }
}

/// One recommended (or found) item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recommendation {
    /// Item id.
    pub id: String,
    /// Blended score (higher is better).
    pub score: f32,
    /// `similar_to:<id>`, `matches_search:<query>`, `matches_query` or `popular`.
    pub reason: String,
    /// One line for the shopper on why this item is here (see the module docs); built from the
    /// same signals as `reason`, with item titles in place of ids.
    pub why: String,
}

/// Longest item title or query quoted in a "why" line, in characters (longer ones end in `…`).
pub const WHY_MAX_CHARS: usize = 60;

/// `“text”`, cut at [`WHY_MAX_CHARS`] characters.
fn quoted(text: &str) -> String {
    let text = text.trim();
    if text.chars().count() <= WHY_MAX_CHARS {
        format!("\u{201c}{text}\u{201d}")
    } else {
        let cut: String = text.chars().take(WHY_MAX_CHARS - 1).collect();
        format!("\u{201c}{}\u{2026}\u{201d}", cut.trim_end())
    }
}

/// The shopper's data, as [`Recommender::export`] returns it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ShopperData {
    /// Every recorded event, oldest first.
    pub events: Vec<Event>,
}

/// Ranking knobs. The defaults were chosen on the tune half of the evaluation sessions
/// (`tests/retail/`), never on the test half.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecommendConfig {
    /// Recency half-life of an event, in seconds.
    pub half_life_s: f64,
    /// Weight of a view.
    pub weight_view: f32,
    /// Weight of an add-to-cart.
    pub weight_cart: f32,
    /// Weight of a purchase.
    pub weight_purchase: f32,
    /// Weight of a search query.
    pub weight_search: f32,
    /// Weight of a dismiss (subtracted).
    pub weight_dismiss: f32,
    /// Weight of popularity (in `[0, 1]` units) against relevance (a cosine).
    pub popularity_weight: f32,
    /// MMR trade-off `d` in `[0, 1)`: 0 = no diversity re-rank.
    pub diversity: f32,
    /// Most recent events used.
    pub max_events: usize,
    /// Also leave out items the shopper viewed or carted (default true; purchased and dismissed
    /// items are always left out).
    pub exclude_seen: bool,
    /// Candidates the diversity re-rank considers.
    pub candidates: usize,
}

impl Default for RecommendConfig {
    fn default() -> Self {
        Self {
            half_life_s: 120.0,
            weight_view: 1.0,
            weight_cart: 2.0,
            weight_purchase: 1.0,
            weight_search: 1.5,
            weight_dismiss: 0.5,
            popularity_weight: 0.1,
            diversity: 0.1,
            max_events: 50,
            exclude_seen: true,
            candidates: 200,
        }
    }
}

impl RecommendConfig {
    fn validate(&self) -> Result<()> {
        let bad = |name, reason: &str| Err(RetailError::InvalidArgument { name, reason: reason.into() });
        let ws = [self.weight_view, self.weight_cart, self.weight_purchase, self.weight_search, self.weight_dismiss];
        if ws.iter().any(|w| !w.is_finite() || *w < 0.0)
            || !self.popularity_weight.is_finite()
            || self.popularity_weight < 0.0
        {
            return bad("weight", "weights must be finite and >= 0");
        }
        if !(self.half_life_s.is_finite() && self.half_life_s > 0.0) {
            return bad("half_life_s", "must be > 0");
        }
        if !(0.0..1.0).contains(&self.diversity) {
            return bad("diversity", "must be in [0, 1)");
        }
        if self.max_events == 0 || self.candidates == 0 || self.candidates > MAX_K {
            return bad("max_events", "max_events and candidates must be > 0, candidates <= 10000");
        }
        Ok(())
    }
}

const EVENTS_MAGIC: [u8; 4] = *b"EWE1";
const EVENTS_HEADER: &[u8] = b"edgewise-events-v1";
/// Attribute key under which the index keeps a hash of the embedded text.
const TEXT_HASH_KEY: &str = "_text_fnv";
/// Longest search query recorded, in bytes.
pub const MAX_QUERY_BYTES: usize = 2048;
/// Most events kept; past it the oldest half is forgotten (the file is rewritten).
pub const MAX_STORED_EVENTS: usize = 20_000;
/// Texts embedded per call while indexing a catalog.
const EMBED_BATCH: usize = 64;

fn fnv_hex(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A recommender for one shopper (see the module docs).
pub struct Recommender {
    embedder: Box<dyn Embed>,
    index: VectorIndex,
    catalog: HashMap<String, Item>,
    events: Vec<Event>,
    event_log: Option<Log>,
    prior: std::sync::Arc<HashMap<String, f32>>,
    query_vectors: HashMap<String, Vec<f32>>,
    config: RecommendConfig,
}

impl std::fmt::Debug for Recommender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recommender")
            .field("items", &self.catalog.len())
            .field("events", &self.events.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn embed_err(e: crate::EmbedError) -> RetailError {
    RetailError::Embed { reason: e.to_string() }
}

impl Recommender {
    /// A recommender whose index and events live in memory only.
    pub fn in_memory(embedder: Box<dyn Embed>, items: Vec<Item>) -> Result<Self> {
        let index = VectorIndex::in_memory(IndexConfig::new(embedder.model_id(), embedder.dim()))?;
        let mut r = Self::assemble(embedder, index, None);
        r.set_catalog(items)?;
        Ok(r)
    }

    /// Opens (or creates) the recommender's files in `dir`: `index.ewv` (the catalog's vectors) and
    /// `events.ewe` (the shopper's events). An index made by another model, or a corrupt one, is
    /// rebuilt from `items` (a warning says so); a corrupt event log is started afresh with a
    /// warning. Items whose text changed since they were indexed are re-embedded; items no longer
    /// in the catalog are removed from the index.
    pub fn open(dir: impl AsRef<Path>, embedder: Box<dyn Embed>, items: Vec<Item>) -> Result<Self> {
        let dir = dir.as_ref();
        store::create_private_dir(dir)?;
        let cfg = IndexConfig::new(embedder.model_id(), embedder.dim());
        let ipath = dir.join("index.ewv");
        let index = match VectorIndex::open(&ipath, cfg.clone()) {
            Ok(i) => i,
            Err(e @ (RetailError::ModelMismatch { .. } | RetailError::Corrupt { .. })) => {
                log::warn!("retail: rebuilding the vector index from the catalog: {e}");
                VectorIndex::recreate(&ipath, cfg)?
            }
            Err(e) => return Err(e),
        };
        let epath = dir.join("events.ewe");
        let (mut log, data) = Log::open(&epath)?;
        let mut events = Vec::new();
        let parsed = store::parse(EVENTS_MAGIC, &data, &epath).and_then(|p| {
            let mut evs = Vec::new();
            for (i, rec) in p.records.iter().enumerate() {
                if i == 0 {
                    if *rec != EVENTS_HEADER {
                        return Err(RetailError::Corrupt { path: epath.clone(), offset: 0, reason: "bad header" });
                    }
                    continue;
                }
                let ev: Event = serde_json::from_slice(rec).map_err(|_| RetailError::Corrupt {
                    path: epath.clone(),
                    offset: 0,
                    reason: "undecodable event",
                })?;
                evs.push(ev);
            }
            Ok((evs, p.valid, p.records.is_empty()))
        });
        match parsed {
            Ok((evs, valid, empty)) => {
                log.truncate_to(valid)?;
                if empty {
                    let mut buf = Vec::new();
                    store::frame(EVENTS_MAGIC, EVENTS_HEADER, &mut buf)?;
                    log.replace(&buf)?;
                }
                events = evs;
            }
            Err(e) => {
                log::warn!("retail: starting a fresh event log: {e}");
                let mut buf = Vec::new();
                store::frame(EVENTS_MAGIC, EVENTS_HEADER, &mut buf)?;
                log.replace(&buf)?;
            }
        }
        let mut r = Self::assemble(embedder, index, Some(log));
        r.events = events;
        r.set_catalog(items)?;
        Ok(r)
    }

    fn assemble(embedder: Box<dyn Embed>, index: VectorIndex, event_log: Option<Log>) -> Self {
        Self {
            embedder,
            index,
            catalog: HashMap::new(),
            events: Vec::new(),
            event_log,
            prior: std::sync::Arc::new(HashMap::new()),
            query_vectors: HashMap::new(),
            config: RecommendConfig::default(),
        }
    }

    /// Replaces the ranking knobs.
    pub fn set_config(&mut self, config: RecommendConfig) -> Result<()> {
        config.validate()?;
        self.config = config;
        Ok(())
    }

    /// The ranking knobs.
    pub fn config(&self) -> &RecommendConfig {
        &self.config
    }

    /// The catalog index (read access, e.g. for its size and memory).
    pub fn index(&self) -> &VectorIndex {
        &self.index
    }

    /// Sets the catalog: embeds new items and items whose text changed, updates attributes, and
    /// removes items that are gone. Duplicate ids are refused.
    pub fn set_catalog(&mut self, items: Vec<Item>) -> Result<()> {
        let mut catalog = HashMap::with_capacity(items.len());
        for it in items {
            if it.id.is_empty() {
                return Err(RetailError::InvalidArgument { name: "catalog", reason: "an item has an empty id".into() });
            }
            let id = it.id.clone();
            if catalog.insert(id, it).is_some() {
                return Err(RetailError::InvalidArgument { name: "catalog", reason: "duplicate item id".into() });
            }
        }
        // Sorted, so indexing order (and thus tie order) is deterministic.
        let mut ids: Vec<&String> = catalog.keys().collect();
        ids.sort();
        let mut to_embed: Vec<(&Item, Attributes)> = Vec::new();
        let mut attr_only: Vec<(&Item, Attributes)> = Vec::new();
        for id in ids {
            let it = &catalog[id];
            let text = it.text();
            let hash = fnv_hex(&text);
            let attrs = it.attributes.clone().with(TEXT_HASH_KEY, AttrValue::Str(hash.clone()));
            match self.index.get(id) {
                Some((_, old)) if old.0.get(TEXT_HASH_KEY) == Some(&AttrValue::Str(hash)) => {
                    if old != attrs {
                        attr_only.push((it, attrs));
                    }
                }
                _ => to_embed.push((it, attrs)),
            }
        }
        for chunk in to_embed.chunks(EMBED_BATCH) {
            let texts: Vec<String> = chunk.iter().map(|(it, _)| it.text()).collect();
            let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            let vecs = self.embedder.embed(&refs).map_err(embed_err)?;
            if vecs.len() != chunk.len() {
                return Err(RetailError::Embed { reason: format!("{} vectors for {} texts", vecs.len(), chunk.len()) });
            }
            let batch: Vec<(&str, &[f32], Attributes)> =
                chunk.iter().zip(&vecs).map(|((it, a), v)| (it.id.as_str(), v.as_slice(), a.clone())).collect();
            self.index.upsert_many(&batch)?;
        }
        for (it, attrs) in attr_only {
            let Some((v, _)) = self.index.get(&it.id) else { continue };
            self.index.upsert(&it.id, &v, attrs)?;
        }
        for id in self.index.ids() {
            if !catalog.contains_key(&id) {
                self.index.delete(&id)?;
            }
        }
        self.catalog = catalog;
        Ok(())
    }

    /// Number of catalog items.
    pub fn catalog_len(&self) -> usize {
        self.catalog.len()
    }

    /// Item popularity counts from outside the device (e.g. shipped with the catalog); added to
    /// this device's own counts. Negative or non-finite counts are refused.
    pub fn set_popularity(&mut self, counts: HashMap<String, f32>) -> Result<()> {
        if counts.values().any(|c| !c.is_finite() || *c < 0.0) {
            return Err(RetailError::InvalidArgument {
                name: "popularity",
                reason: "counts must be finite and >= 0".into(),
            });
        }
        self.prior = std::sync::Arc::new(counts);
        Ok(())
    }

    /// Records one event; durable (fsynced) when it returns when the recommender has files.
    /// The item must be in the catalog; a search needs a query of 1..=[`MAX_QUERY_BYTES`] bytes.
    pub fn record(&mut self, event: Event) -> Result<()> {
        self.record_all(std::iter::once(event))
    }

    /// Records several events with one sync (importing a history); all are checked as in
    /// [`Recommender::record`] before any is written, so a bad one records none.
    pub fn record_all(&mut self, events: impl IntoIterator<Item = Event>) -> Result<()> {
        let events: Vec<Event> = events.into_iter().collect();
        for event in &events {
            self.check_event(event)?;
        }
        if let Some(log) = &mut self.event_log {
            let mut buf = Vec::new();
            for event in &events {
                let payload = serde_json::to_vec(event)
                    .map_err(|e| RetailError::Storage { reason: format!("event serialization: {e}") })?;
                store::frame(EVENTS_MAGIC, &payload, &mut buf)?;
            }
            log.append(&buf)?;
        }
        self.events.extend(events);
        if self.events.len() > MAX_STORED_EVENTS {
            self.forget_oldest()?;
        }
        Ok(())
    }

    fn check_event(&self, event: &Event) -> Result<()> {
        if !event.ts.is_finite() {
            return Err(RetailError::InvalidArgument { name: "ts", reason: "must be finite".into() });
        }
        match event.kind {
            EventKind::Search => {
                let q = event.query.as_deref().unwrap_or("");
                if q.trim().is_empty() || q.len() > MAX_QUERY_BYTES {
                    return Err(RetailError::InvalidArgument {
                        name: "query",
                        reason: format!("must be 1..={MAX_QUERY_BYTES} bytes"),
                    });
                }
            }
            _ => {
                let id = event.item_id.as_deref().unwrap_or("");
                if !self.catalog.contains_key(id) {
                    return Err(RetailError::UnknownItem { len: id.len() });
                }
            }
        }
        Ok(())
    }

    /// Keeps the newest half of [`MAX_STORED_EVENTS`], rewriting the event file atomically.
    fn forget_oldest(&mut self) -> Result<()> {
        let keep = MAX_STORED_EVENTS / 2;
        let drop_n = self.events.len().saturating_sub(keep);
        let kept: Vec<Event> = self.events[drop_n..].to_vec();
        if let Some(log) = &mut self.event_log {
            let mut buf = Vec::new();
            store::frame(EVENTS_MAGIC, EVENTS_HEADER, &mut buf)?;
            for e in &kept {
                let payload = serde_json::to_vec(e)
                    .map_err(|e| RetailError::Storage { reason: format!("event serialization: {e}") })?;
                store::frame(EVENTS_MAGIC, &payload, &mut buf)?;
            }
            log.replace(&buf)?;
        }
        self.events = kept;
        Ok(())
    }

    /// The recorded events, oldest first.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The shopper's data (every event).
    pub fn export(&self) -> ShopperData {
        ShopperData { events: self.events.clone() }
    }

    /// Deletes the shopper's data: events (the file is replaced by an empty one, atomically) and
    /// everything derived from them. The catalog index stays.
    pub fn erase_all(&mut self) -> Result<()> {
        if let Some(log) = &mut self.event_log {
            let mut buf = Vec::new();
            store::frame(EVENTS_MAGIC, EVENTS_HEADER, &mut buf)?;
            log.replace(&buf)?;
        }
        self.events.clear();
        self.query_vectors.clear();
        Ok(())
    }

    fn check_k(k: usize) -> Result<()> {
        if k == 0 || k > MAX_K {
            return Err(RetailError::InvalidArgument { name: "k", reason: format!("must be 1..={MAX_K}") });
        }
        Ok(())
    }

    fn query_vector(&mut self, q: &str) -> Result<Vec<f32>> {
        if let Some(v) = self.query_vectors.get(q) {
            return Ok(v.clone());
        }
        let mut v = self.embedder.embed(&[q]).map_err(embed_err)?;
        let v = v.pop().ok_or_else(|| RetailError::Embed { reason: "no vector returned".into() })?;
        let v = checked_unit(&v, self.embedder.dim())?;
        self.query_vectors.insert(q.to_string(), v.clone());
        Ok(v)
    }

    /// Items like `id` (in stock, `id` itself left out), most similar first.
    pub fn similar_items(&self, id: &str, k: usize) -> Result<Vec<Recommendation>> {
        Self::check_k(k)?;
        let (v, _) = self.index.get(id).ok_or(RetailError::UnknownItem { len: id.len() })?;
        let hits = self.index.search_where(&v, k, &Filter::in_stock(), &|x| x != id)?;
        Ok(hits
            .into_iter()
            .map(|h| Recommendation {
                id: h.id,
                score: h.score,
                reason: format!("similar_to:{id}"),
                why: format!("Similar to {}", self.title_of(id)),
            })
            .collect())
    }

    /// Catalog items closest in meaning to `query` that pass `filter`. Does not record the
    /// search: record an [`Event::search`] to let it shape recommendations.
    pub fn search(&mut self, query: &str, k: usize, filter: &Filter) -> Result<Vec<Recommendation>> {
        Self::check_k(k)?;
        if query.trim().is_empty() || query.len() > MAX_QUERY_BYTES {
            return Err(RetailError::InvalidArgument {
                name: "query",
                reason: format!("must be 1..={MAX_QUERY_BYTES} bytes"),
            });
        }
        let q = self.query_vector(query)?;
        let hits = self.index.search(&q, k, filter)?;
        Ok(hits
            .into_iter()
            .map(|h| Recommendation {
                id: h.id,
                score: h.score,
                reason: "matches_query".into(),
                why: format!("Matches {}", quoted(query)),
            })
            .collect())
    }

    /// `“title”` of a catalog item (its id when it has no title or is gone).
    fn title_of(&self, id: &str) -> String {
        match self.catalog.get(id) {
            Some(it) if !it.title.trim().is_empty() => quoted(&it.title),
            _ => quoted(id),
        }
    }

    /// The `k` best items for this shopper now (see the module docs), passing `filter` as well
    /// as the business rules.
    pub fn recommend(&mut self, k: usize, filter: &Filter) -> Result<Vec<Recommendation>> {
        Self::check_k(k)?;
        filter.validate()?;
        let cfg = self.config.clone();
        // The newest events, by time (stable for ties).
        let mut recent: Vec<&Event> = self.events.iter().collect();
        recent.sort_by(|a, b| a.ts.total_cmp(&b.ts));
        let now = recent.last().map_or(0.0, |e| e.ts);
        let recent: Vec<Event> = recent.iter().rev().take(cfg.max_events).map(|e| (*e).clone()).collect();

        // Business rules and device popularity use every event, not only the recent ones.
        let mut excluded: HashSet<String> = HashSet::new();
        // This device's counts; the prior is added on lookup (no copy of a large prior per call).
        let prior = self.prior.clone();
        let mut device: HashMap<String, f32> = HashMap::new();
        for e in &self.events {
            let Some(id) = &e.item_id else { continue };
            let (c, ex) = match e.kind {
                EventKind::View => (1.0, cfg.exclude_seen),
                EventKind::AddToCart => (2.0, cfg.exclude_seen),
                EventKind::Purchase => (3.0, true),
                EventKind::Dismiss => (0.0, true),
                EventKind::Search => (0.0, false),
            };
            *device.entry(id.clone()).or_default() += c;
            if ex {
                excluded.insert(id.clone());
            }
        }
        let count = |id: &str| prior.get(id).copied().unwrap_or(0.0) + device.get(id).copied().unwrap_or(0.0);
        let max_count = prior.keys().map(|k| count(k)).chain(device.keys().map(|k| count(k))).fold(0f32, f32::max);
        let pop = |id: &str| -> f32 {
            if max_count <= 0.0 {
                return 0.0;
            }
            count(id).ln_1p() / max_count.ln_1p()
        };

        // Interest sources: each distinct item or query with its summed, decayed weight.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        enum Source {
            Item(String),
            Query(String),
        }
        let mut sources: BTreeMap<Source, f32> = BTreeMap::new();
        // For the "why" line: the strongest positive kind per item among the recent events.
        let rank = |k: EventKind| match k {
            EventKind::Purchase => 3,
            EventKind::AddToCart => 2,
            EventKind::View => 1,
            _ => 0,
        };
        let mut strongest: HashMap<&str, EventKind> = HashMap::new();
        for e in &recent {
            if let Some(id) = e.item_id.as_deref() {
                if rank(e.kind) > 0 && strongest.get(id).is_none_or(|k| rank(*k) < rank(e.kind)) {
                    strongest.insert(id, e.kind);
                }
            }
        }
        for e in &recent {
            let decay = 0.5f64.powf((now - e.ts).max(0.0) / cfg.half_life_s) as f32;
            let (src, w) = match e.kind {
                EventKind::View => (e.item_id.clone().map(Source::Item), cfg.weight_view),
                EventKind::AddToCart => (e.item_id.clone().map(Source::Item), cfg.weight_cart),
                EventKind::Purchase => (e.item_id.clone().map(Source::Item), cfg.weight_purchase),
                EventKind::Dismiss => (e.item_id.clone().map(Source::Item), -cfg.weight_dismiss),
                EventKind::Search => (e.query.clone().map(Source::Query), cfg.weight_search),
            };
            if let Some(s) = src {
                *sources.entry(s).or_default() += w * decay;
            }
        }
        let mut vectors: Vec<(Source, f32, Vec<f32>)> = Vec::new();
        for (s, w) in sources {
            if w == 0.0 {
                continue;
            }
            let v = match &s {
                Source::Item(id) => match self.index.get(id) {
                    Some((v, _)) => v,
                    None => continue, // no longer in the catalog
                },
                Source::Query(q) => self.query_vector(q)?,
            };
            vectors.push((s, w, v));
        }
        let total: f32 = vectors.iter().map(|(_, w, _)| w.abs()).sum();
        let dim = self.embedder.dim();
        let mut profile = vec![0f32; dim];
        for (_, w, v) in &vectors {
            for (p, x) in profile.iter_mut().zip(v) {
                *p += w / total * x;
            }
        }
        let pnorm = dot(&profile, &profile).sqrt();

        let mut rule = filter.clone();
        rule.in_stock = Some(true);
        let keep = |id: &str| !excluded.contains(id);
        let mut cands: HashMap<String, f32> = HashMap::new();
        if pnorm > 1e-6 {
            for h in self.index.search_where(&profile, cfg.candidates, &rule, &keep)? {
                cands.insert(h.id, h.score * pnorm);
            }
        }
        if cfg.popularity_weight > 0.0 || cands.is_empty() {
            // Items nobody touched add nothing over the interest candidates unless those are missing.
            let need_all = cands.is_empty();
            let mut by_pop: Vec<(&String, f32)> = self
                .catalog
                .iter()
                .map(|(id, _)| (id, pop(id)))
                .filter(|(id, p)| (*p > 0.0 || need_all) && keep(id))
                .filter(|(id, _)| self.catalog.get(*id).is_some_and(|it| rule.matches(&it.attributes)))
                .collect();
            let order = |a: &(&String, f32), b: &(&String, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(b.0));
            if by_pop.len() > cfg.candidates {
                by_pop.select_nth_unstable_by(cfg.candidates - 1, order);
                by_pop.truncate(cfg.candidates);
            }
            by_pop.sort_by(order);
            for (id, _) in by_pop {
                if !cands.contains_key(id) {
                    let rel = match self.index.get(id) {
                        Some((v, _)) if pnorm > 1e-6 => dot(&profile, &v),
                        _ => 0.0,
                    };
                    cands.insert(id.clone(), rel);
                }
            }
        }
        // Blend, then keep the best `candidates` for the diversity re-rank.
        let mut pool: Vec<(String, f32, f32)> = cands
            .into_iter()
            .map(|(id, rel)| {
                let p = cfg.popularity_weight * pop(&id);
                (id, rel + p, p)
            })
            .collect();
        pool.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        pool.truncate(cfg.candidates);
        let pool_vecs: Vec<Vec<f32>> =
            pool.iter().map(|(id, _, _)| self.index.get(id).map(|(v, _)| v).unwrap_or_default()).collect();

        let mut out = Vec::with_capacity(k.min(pool.len()));
        let mut chosen: Vec<usize> = Vec::new();
        let mut max_sim = vec![f32::NEG_INFINITY; pool.len()];
        let mut taken = vec![false; pool.len()];
        while out.len() < k {
            let d = cfg.diversity;
            let best = (0..pool.len()).filter(|&i| !taken[i]).max_by(|&a, &b| {
                let val = |i: usize| {
                    let red = if chosen.is_empty() { 0.0 } else { max_sim[i] };
                    (1.0 - d) * pool[i].1 - d * red
                };
                val(a).total_cmp(&val(b)).then(pool[b].0.cmp(&pool[a].0))
            });
            let Some(i) = best else { break };
            taken[i] = true;
            chosen.push(i);
            for j in 0..pool.len() {
                if !taken[j] && !pool_vecs[i].is_empty() && !pool_vecs[j].is_empty() {
                    max_sim[j] = max_sim[j].max(dot(&pool_vecs[i], &pool_vecs[j]));
                }
            }
            let (id, score, popular) = &pool[i];
            // The event that contributed most to this item, against popularity's share.
            let v = &pool_vecs[i];
            let top = vectors
                .iter()
                .filter(|(_, w, _)| *w > 0.0)
                .map(|(s, w, sv)| (s, w / total * if v.is_empty() { 0.0 } else { dot(sv, v) }))
                .max_by(|a, b| a.1.total_cmp(&b.1));
            let (reason, why) = match top {
                Some((s, c)) if c > *popular && c > 0.0 => match s {
                    Source::Item(src) => {
                        // The strongest thing the shopper did with the source item lately.
                        let did = match strongest.get(src.as_str()) {
                            Some(EventKind::Purchase) => "which you bought",
                            Some(EventKind::AddToCart) => "which you added to your cart",
                            _ => "which you viewed",
                        };
                        (format!("similar_to:{src}"), format!("Similar to {}, {did}", self.title_of(src)))
                    }
                    Source::Query(q) => (format!("matches_search:{q}"), format!("Matches your search {}", quoted(q))),
                },
                _ => {
                    let why = if device.get(id.as_str()).is_some_and(|c| *c > 0.0) {
                        "Popular on this device"
                    } else if prior.get(id.as_str()).is_some_and(|c| *c > 0.0) {
                        "Popular in this shop"
                    } else {
                        "A pick to start with"
                    };
                    ("popular".to_string(), why.to_string())
                }
            };
            out.push(Recommendation { id: id.clone(), score: *score, reason, why });
        }
        Ok(out)
    }
}
