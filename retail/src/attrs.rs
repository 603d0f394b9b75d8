//! Item attributes and the metadata filters over them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One attribute value: a string, a number or a boolean (JSON's scalars).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum AttrValue {
    /// `true` / `false`.
    Bool(bool),
    /// Any JSON number.
    Num(f64),
    /// A string.
    Str(String),
}

/// An item's attributes. Three keys are well known: `category` (string), `price` (number) and
/// `in_stock` (boolean; an item without it counts as in stock). Any other key is a custom
/// attribute that [`AttrFilter`] can test. Values that are not scalars are ignored on load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Attributes(pub BTreeMap<String, AttrValue>);

impl Attributes {
    /// The `category` string.
    pub fn category(&self) -> Option<&str> {
        match self.0.get("category") {
            Some(AttrValue::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// The `price` number.
    pub fn price(&self) -> Option<f64> {
        self.number("price")
    }

    /// `in_stock`; true when absent.
    pub fn in_stock(&self) -> bool {
        !matches!(self.0.get("in_stock"), Some(AttrValue::Bool(false)))
    }

    /// A numeric attribute.
    pub fn number(&self, key: &str) -> Option<f64> {
        match self.0.get(key) {
            Some(AttrValue::Num(n)) => Some(*n),
            _ => None,
        }
    }

    /// Sets one attribute (builder style).
    pub fn with(mut self, key: &str, value: AttrValue) -> Self {
        self.0.insert(key.to_string(), value);
        self
    }
}

/// A condition on a custom attribute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AttrFilter {
    /// The attribute is this string (or this boolean, written `"true"`/`"false"`, or this number).
    Equals {
        /// Attribute key.
        key: String,
        /// Wanted value.
        value: String,
    },
    /// The attribute is a number within `[min, max]` (either bound optional).
    Range {
        /// Attribute key.
        key: String,
        /// Lower bound, inclusive.
        min: Option<f64>,
        /// Upper bound, inclusive.
        max: Option<f64>,
    },
}

/// Metadata filters: an item passes when every condition that is set holds. An item without a
/// `price` fails a price bound; an item without a custom attribute fails a condition on it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Only this category.
    pub category: Option<String>,
    /// Price at least this.
    pub min_price: Option<f64>,
    /// Price at most this.
    pub max_price: Option<f64>,
    /// Only items whose `in_stock` is this.
    pub in_stock: Option<bool>,
    /// Conditions on custom attributes.
    pub attributes: Vec<AttrFilter>,
}

impl Filter {
    /// No condition.
    pub fn none() -> Self {
        Self::default()
    }

    /// In-stock items only.
    pub fn in_stock() -> Self {
        Self { in_stock: Some(true), ..Self::default() }
    }

    /// Whether `a` passes.
    pub fn matches(&self, a: &Attributes) -> bool {
        if let Some(c) = &self.category {
            if a.category() != Some(c.as_str()) {
                return false;
            }
        }
        if self.min_price.is_some() || self.max_price.is_some() {
            let Some(p) = a.price() else { return false };
            if self.min_price.is_some_and(|m| p < m) || self.max_price.is_some_and(|m| p > m) {
                return false;
            }
        }
        if self.in_stock.is_some_and(|s| a.in_stock() != s) {
            return false;
        }
        self.attributes.iter().all(|f| match f {
            AttrFilter::Equals { key, value } => match a.0.get(key) {
                Some(AttrValue::Str(s)) => s == value,
                Some(AttrValue::Bool(b)) => value == if *b { "true" } else { "false" },
                Some(AttrValue::Num(n)) => value.parse::<f64>().is_ok_and(|v| v == *n),
                None => false,
            },
            AttrFilter::Range { key, min, max } => match a.number(key) {
                Some(n) => !(min.is_some_and(|m| n < m) || max.is_some_and(|m| n > m)),
                None => false,
            },
        })
    }

    /// Rejects NaN bounds and an inverted price range.
    pub fn validate(&self) -> crate::Result<()> {
        let bad = |reason: &str| Err(crate::RetailError::InvalidArgument { name: "filter", reason: reason.into() });
        let nan = |v: Option<f64>| v.is_some_and(|x| x.is_nan());
        if nan(self.min_price) || nan(self.max_price) {
            return bad("NaN price bound");
        }
        if let (Some(a), Some(b)) = (self.min_price, self.max_price) {
            if a > b {
                return bad("min_price > max_price");
            }
        }
        for f in &self.attributes {
            if let AttrFilter::Range { min, max, .. } = f {
                if nan(*min) || nan(*max) {
                    return bad("NaN attribute bound");
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(json: &str) -> Attributes {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn filters() {
        let a = item(r#"{"category":"shoes","price":59.5,"in_stock":true,"color":"red","size":42,"vegan":false}"#);
        let no_stock_key = item(r#"{"category":"shoes"}"#);
        let f = |j: &str| -> Filter { serde_json::from_str(j).unwrap() };
        assert!(f("{}").matches(&a));
        assert!(f(r#"{"category":"shoes"}"#).matches(&a));
        assert!(!f(r#"{"category":"tea"}"#).matches(&a));
        assert!(f(r#"{"min_price":50,"max_price":60}"#).matches(&a));
        assert!(!f(r#"{"max_price":59}"#).matches(&a));
        assert!(!f(r#"{"max_price":100}"#).matches(&no_stock_key), "no price fails a price bound");
        assert!(f(r#"{"in_stock":true}"#).matches(&no_stock_key), "absent in_stock counts as in stock");
        assert!(!f(r#"{"in_stock":false}"#).matches(&a));
        assert!(f(r#"{"attributes":[{"op":"equals","key":"color","value":"red"}]}"#).matches(&a));
        assert!(f(r#"{"attributes":[{"op":"equals","key":"vegan","value":"false"}]}"#).matches(&a));
        assert!(f(r#"{"attributes":[{"op":"equals","key":"size","value":"42"}]}"#).matches(&a));
        assert!(!f(r#"{"attributes":[{"op":"equals","key":"color","value":"blue"}]}"#).matches(&a));
        assert!(f(r#"{"attributes":[{"op":"range","key":"size","min":40,"max":44}]}"#).matches(&a));
        assert!(!f(r#"{"attributes":[{"op":"range","key":"size","min":43}]}"#).matches(&a));
        assert!(!f(r#"{"attributes":[{"op":"range","key":"weight","min":1}]}"#).matches(&a));
        assert!(f(r#"{"min_price":5,"max_price":1}"#).validate().is_err());
    }
}
