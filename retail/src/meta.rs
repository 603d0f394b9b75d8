//! Compact in-memory attributes for the index: the three well-known keys as plain fields (the
//! category interned), anything else in a map only when present. 100k items with category,
//! price and in-stock take 2.4 MB instead of ~40 MB of maps, and filters compare integers.

use std::collections::{BTreeMap, HashMap};

use crate::attrs::{AttrFilter, AttrValue, Attributes, Filter};

const NO_CATEGORY: u32 = u32::MAX;
const STOCK_FALSE: u8 = 0;
const STOCK_TRUE: u8 = 1;
const STOCK_ABSENT: u8 = 2;

/// One item's attributes.
pub(crate) struct Meta {
    category: u32,
    /// NaN when absent.
    price: f64,
    stock: u8,
    extra: Option<Box<BTreeMap<String, AttrValue>>>,
}

/// Category strings, interned.
#[derive(Default)]
pub(crate) struct Interner {
    names: Vec<String>,
    ids: HashMap<String, u32>,
}

impl Interner {
    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.ids.get(s) {
            return i;
        }
        let i = self.names.len() as u32;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), i);
        i
    }

    pub fn bytes(&self) -> usize {
        self.names.iter().map(|n| 2 * n.len() + 80).sum()
    }
}

/// A borrowed attribute value.
#[derive(Clone, Copy)]
enum Val<'a> {
    Str(&'a str),
    Num(f64),
    Bool(bool),
}

impl Meta {
    pub fn new(mut a: Attributes, cats: &mut Interner) -> Self {
        let category = match a.0.remove("category") {
            Some(AttrValue::Str(s)) => cats.intern(&s),
            Some(other) => {
                a.0.insert("category".into(), other);
                NO_CATEGORY
            }
            None => NO_CATEGORY,
        };
        let price = match a.0.remove("price") {
            Some(AttrValue::Num(n)) if !n.is_nan() => n,
            Some(other) => {
                a.0.insert("price".into(), other);
                f64::NAN
            }
            None => f64::NAN,
        };
        let stock = match a.0.remove("in_stock") {
            Some(AttrValue::Bool(b)) => u8::from(b),
            Some(other) => {
                a.0.insert("in_stock".into(), other);
                STOCK_ABSENT
            }
            None => STOCK_ABSENT,
        };
        let extra = (!a.0.is_empty()).then(|| Box::new(a.0));
        Self { category, price, stock, extra }
    }

    pub fn attributes(&self, cats: &Interner) -> Attributes {
        let mut m = self.extra.as_deref().cloned().unwrap_or_default();
        if let Some(c) = cats.names.get(self.category as usize) {
            m.insert("category".into(), AttrValue::Str(c.clone()));
        }
        if !self.price.is_nan() {
            m.insert("price".into(), AttrValue::Num(self.price));
        }
        if self.stock != STOCK_ABSENT {
            m.insert("in_stock".into(), AttrValue::Bool(self.stock == STOCK_TRUE));
        }
        Attributes(m)
    }

    pub fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self.extra.as_ref().map_or(0, |m| {
                m.iter().map(|(k, v)| k.len() + 64 + if let AttrValue::Str(s) = v { s.len() } else { 0 }).sum()
            })
    }

    fn value<'a>(&'a self, key: &str, cats: &'a Interner) -> Option<Val<'a>> {
        match key {
            "category" if self.category != NO_CATEGORY => cats.names.get(self.category as usize).map(|s| Val::Str(s)),
            "price" if !self.price.is_nan() => Some(Val::Num(self.price)),
            "in_stock" if self.stock != STOCK_ABSENT => Some(Val::Bool(self.stock == STOCK_TRUE)),
            _ => match self.extra.as_ref()?.get(key)? {
                AttrValue::Str(s) => Some(Val::Str(s)),
                AttrValue::Num(n) => Some(Val::Num(*n)),
                AttrValue::Bool(b) => Some(Val::Bool(*b)),
            },
        }
    }
}

/// A [`Filter`] resolved against the interner once per search.
pub(crate) struct Prepared<'f> {
    /// `Some(None)`: a category no item has, so nothing passes.
    category: Option<Option<u32>>,
    filter: &'f Filter,
}

impl<'f> Prepared<'f> {
    pub fn new(filter: &'f Filter, cats: &Interner) -> Self {
        let category = filter.category.as_ref().map(|c| cats.ids.get(c).copied());
        Self { category, filter }
    }

    /// Same answer as [`Filter::matches`] on the item's [`Attributes`].
    pub fn matches(&self, m: &Meta, cats: &Interner) -> bool {
        match self.category {
            Some(None) => return false,
            Some(Some(c)) if m.category != c => return false,
            _ => {}
        }
        let f = self.filter;
        if f.min_price.is_some() || f.max_price.is_some() {
            if m.price.is_nan() {
                return false;
            }
            if f.min_price.is_some_and(|x| m.price < x) || f.max_price.is_some_and(|x| m.price > x) {
                return false;
            }
        }
        if let Some(s) = f.in_stock {
            if (m.stock != STOCK_FALSE) != s {
                return false;
            }
        }
        f.attributes.iter().all(|af| match af {
            AttrFilter::Equals { key, value } => match m.value(key, cats) {
                Some(Val::Str(s)) => s == value,
                Some(Val::Bool(b)) => value == if b { "true" } else { "false" },
                Some(Val::Num(n)) => value.parse::<f64>().is_ok_and(|v| v == n),
                None => false,
            },
            AttrFilter::Range { key, min, max } => match m.value(key, cats) {
                Some(Val::Num(n)) => !(min.is_some_and(|x| n < x) || max.is_some_and(|x| n > x)),
                _ => false,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compact form round-trips and filters exactly as `Filter::matches` on the map.
    #[test]
    fn agrees_with_filter_on_maps() {
        let items = [
            r#"{"category":"shoes","price":59.5,"in_stock":true,"color":"red","size":42}"#,
            r#"{"category":"tea","price":8,"in_stock":false}"#,
            r#"{"category":7,"price":"cheap","in_stock":"yes"}"#,
            r#"{}"#,
            r#"{"price":120,"vegan":true}"#,
        ];
        let filters = [
            r#"{}"#,
            r#"{"category":"shoes"}"#,
            r#"{"category":"nothing"}"#,
            r#"{"min_price":50}"#,
            r#"{"max_price":100,"in_stock":true}"#,
            r#"{"in_stock":false}"#,
            r#"{"attributes":[{"op":"equals","key":"color","value":"red"}]}"#,
            r#"{"attributes":[{"op":"equals","key":"category","value":"tea"}]}"#,
            r#"{"attributes":[{"op":"range","key":"price","min":100}]}"#,
            r#"{"attributes":[{"op":"equals","key":"vegan","value":"true"}]}"#,
            r#"{"attributes":[{"op":"equals","key":"in_stock","value":"false"}]}"#,
            r#"{"attributes":[{"op":"range","key":"size","max":42}]}"#,
        ];
        let mut cats = Interner::default();
        let attrs: Vec<Attributes> = items.iter().map(|j| serde_json::from_str(j).unwrap()).collect();
        let metas: Vec<Meta> = attrs.iter().map(|a| Meta::new(a.clone(), &mut cats)).collect();
        for (a, m) in attrs.iter().zip(&metas) {
            assert_eq!(&m.attributes(&cats), a);
        }
        for fj in filters {
            let f: Filter = serde_json::from_str(fj).unwrap();
            let p = Prepared::new(&f, &cats);
            for (a, m) in attrs.iter().zip(&metas) {
                assert_eq!(p.matches(m, &cats), f.matches(a), "filter {fj} on {a:?}");
            }
        }
    }
}
