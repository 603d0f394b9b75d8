//! Catalog and events as JSON lines, and the `{"items": [...]}` output the CLI prints.
//!
//! Catalog line: `{"id", "title", "description", "attributes": {"category", "price", "in_stock", ...}}`.
//! Events line: `{"item_id", "kind", "ts"}` (kind: `view`, `add_to_cart`, `purchase`, `dismiss`),
//! or `{"kind": "search", "query", "ts"}`. Blank lines are skipped. A line that does not parse is
//! [`RetailError::Parse`] with its line number and serde's error category and column: never the
//! line's content (an events file is the shopper's data).

use std::io::BufRead;

use serde::de::DeserializeOwned;

use crate::error::{Result, RetailError};
use crate::recommend::{Event, EventKind, Item, Recommendation};

fn read_lines<T: DeserializeOwned>(what: &'static str, input: impl BufRead) -> Result<Vec<T>> {
    let mut out = Vec::new();
    for (i, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str::<T>(&line).map_err(|e| RetailError::Parse {
            what,
            line: i + 1,
            reason: format!("{:?} error at column {}", e.classify(), e.column()),
        })?;
        out.push(v);
    }
    Ok(out)
}

/// Reads a catalog (JSON lines of [`Item`]).
pub fn read_catalog(input: impl BufRead) -> Result<Vec<Item>> {
    let items: Vec<Item> = read_lines("catalog", input)?;
    if let Some(i) = items.iter().position(|it| it.id.is_empty()) {
        return Err(RetailError::Parse { what: "catalog", line: i + 1, reason: "empty id".into() });
    }
    Ok(items)
}

/// Reads events (JSON lines of [`Event`]); an item event needs `item_id`, a search `query`, and
/// `ts` must be finite.
pub fn read_events(input: impl BufRead) -> Result<Vec<Event>> {
    let events: Vec<Event> = read_lines("events", input)?;
    for (i, e) in events.iter().enumerate() {
        let ok = match e.kind {
            EventKind::Search => e.query.is_some(),
            _ => e.item_id.is_some(),
        };
        if !ok || !e.ts.is_finite() {
            return Err(RetailError::Parse {
                what: "events",
                line: i + 1,
                reason: "item_id/query missing or bad ts".into(),
            });
        }
    }
    Ok(events)
}

/// `{"items": [{"id", "score", "reason"}, ...]}`.
pub fn to_output_json(items: &[Recommendation]) -> serde_json::Value {
    serde_json::json!({ "items": items })
}
