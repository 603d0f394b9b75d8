//! On-device semantic search and recommendations for retail apps: a crash-safe vector index and a
//! recommender over a catalog and one shopper's events. Nothing here touches the network; this
//! crate does not depend on the LLM engine (vectors come through the [`Embed`] trait).
//!
//! # Layout
//!
//! | module | what |
//! |---|---|
//! | [`index`] | [`VectorIndex`]: exact top-k cosine, int8 or f32 storage, filters, crash-safe file |
//! | [`attrs`] | [`Attributes`] of an item and the [`Filter`]s over them |
//! | [`embed`] | the [`Embed`] trait, [`HashEmbed`] (no model), [`PrecomputedEmbed`] (vectors from a file) |
//! | [`recommend`] | [`Recommender`]: catalog + events → ranked items with reasons; search; export/erase |
//! | [`io`] | catalog and events JSON lines, the `{"items":[…]}` output |
//! | `store` | the framed, checksummed, fsynced record log under the index and the event store |
//!
//! # Quick start
//!
//! ```
//! use edgewise_retail::{Event, EventKind, Filter, HashEmbed, Item, Recommender};
//! # fn main() -> edgewise_retail::Result<()> {
//! let items = vec![
//!     Item::new("b1", "Trail running shoe", "Light shoe for muddy trails"),
//!     Item::new("b2", "Road running shoe", "Cushioned shoe for asphalt"),
//!     Item::new("t1", "Green tea", "Loose leaf sencha"),
//! ];
//! let mut rec = Recommender::in_memory(Box::new(HashEmbed::new(256)), items)?;
//! rec.record(Event::item("b1", EventKind::View, 1_000.0))?;
//! let top = rec.recommend(2, &Filter::none())?;
//! assert_eq!(top[0].id, "b2");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod attrs;
pub mod embed;
mod error;
pub mod index;
pub mod io;
mod meta;
pub mod recommend;
mod store;

pub use attrs::{AttrFilter, AttrValue, Attributes, Filter};
pub use embed::{Embed, EmbedError, HashEmbed, PrecomputedEmbed};
pub use error::{Result, RetailError};
pub use index::{Hit, IndexConfig, Storage, VectorIndex};
pub use io::{read_catalog, read_events, to_output_json};
pub use recommend::{Event, EventKind, Item, RecommendConfig, Recommendation, Recommender, WHY_MAX_CHARS};
