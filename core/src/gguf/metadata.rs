//! GGUF metadata values and the typed accessor façade (`Metadata::get_u32(key)` and friends),
//! which turns a missing or mistyped key into a precise [`Error`].

use std::collections::BTreeMap;

use crate::{Error, Result};

/// The type tag of a GGUF metadata value (`gguf_metadata_value_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    /// Maps the on-disk tag; `None` for an unknown tag.
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The smallest number of bytes one value of this type occupies on disk. Used to reject
    /// array counts that cannot fit in the remaining file before anything is allocated.
    pub(crate) fn min_encoded_len(self) -> u64 {
        match self {
            Self::U8 | Self::I8 | Self::Bool => 1,
            Self::U16 | Self::I16 => 2,
            Self::U32 | Self::I32 | Self::F32 => 4,
            Self::U64 | Self::I64 | Self::F64 => 8,
            // A string is at least its u64 length; an array at least its type tag and count.
            Self::String => 8,
            Self::Array => 12,
        }
    }
}

/// One metadata value.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum MetaValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// Elements all of one type (arrays may nest).
    Array(Vec<MetaValue>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl MetaValue {
    /// The value as an unsigned integer, if it is an integer that fits in `u64` (non-negative).
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(v as u64),
            Self::U16(v) => Some(v as u64),
            Self::U32(v) => Some(v as u64),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a signed integer, if it is an integer that fits in `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Self::I8(v) => Some(v as i64),
            Self::I16(v) => Some(v as i64),
            Self::I32(v) => Some(v as i64),
            Self::I64(v) => Some(v),
            _ => self.as_u64().and_then(|v| i64::try_from(v).ok()),
        }
    }

    /// The value as a float (integers are converted).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(v as f64),
            Self::F64(v) => Some(v),
            _ => self.as_i64().map(|v| v as f64),
        }
    }

    /// A short type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Self::U8(_) => "u8",
            Self::I8(_) => "i8",
            Self::U16(_) => "u16",
            Self::I16(_) => "i16",
            Self::U32(_) => "u32",
            Self::I32(_) => "i32",
            Self::F32(_) => "f32",
            Self::Bool(_) => "bool",
            Self::String(_) => "string",
            Self::Array(_) => "array",
            Self::U64(_) => "u64",
            Self::I64(_) => "i64",
            Self::F64(_) => "f64",
        }
    }
}

/// All metadata of a GGUF file, in key order, with typed accessors that name the key on error.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    map: BTreeMap<String, MetaValue>,
}

fn invalid(key: &str, reason: impl Into<String>) -> Error {
    Error::InvalidKey { key: key.to_string(), reason: reason.into() }
}

impl Metadata {
    pub(crate) fn insert(&mut self, key: String, value: MetaValue) -> Result<()> {
        if self.map.contains_key(&key) {
            return Err(Error::InvalidGguf { reason: format!("duplicate metadata key `{key}`") });
        }
        self.map.insert(key, value);
        Ok(())
    }

    /// Drops the array values whose key starts with `prefix` (e.g. `tokenizer.ggml.` once the
    /// tokenizer is built: 262k token strings and scores are tens of MB). Returns how many.
    pub fn drop_arrays(&mut self, prefix: &str) -> usize {
        let before = self.map.len();
        self.map.retain(|k, v| !(k.starts_with(prefix) && matches!(v, MetaValue::Array(_))));
        before - self.map.len()
    }

    /// The raw value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.map.get(key)
    }

    /// Iterates over `(key, value)` in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MetaValue)> {
        self.map.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn require(&self, key: &str) -> Result<&MetaValue> {
        self.map.get(key).ok_or_else(|| Error::MissingKey { key: key.to_string() })
    }

    /// A non-negative integer value that fits in `u32`.
    pub fn get_u32(&self, key: &str) -> Result<u32> {
        let v = self.require(key)?;
        v.as_u64()
            .and_then(|x| u32::try_from(x).ok())
            .ok_or_else(|| invalid(key, format!("expected an integer in u32 range, found {}", v.type_name())))
    }

    /// A non-negative integer value that fits in `u64`.
    pub fn get_u64(&self, key: &str) -> Result<u64> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| invalid(key, format!("expected a non-negative integer, found {}", v.type_name())))
    }

    /// A float value (f32, f64 or an integer), returned as f32.
    pub fn get_f32(&self, key: &str) -> Result<f32> {
        let v = self.require(key)?;
        v.as_f64()
            .map(|x| x as f32)
            .ok_or_else(|| invalid(key, format!("expected a number, found {}", v.type_name())))
    }

    /// A boolean value.
    pub fn get_bool(&self, key: &str) -> Result<bool> {
        match self.require(key)? {
            MetaValue::Bool(b) => Ok(*b),
            v => Err(invalid(key, format!("expected bool, found {}", v.type_name()))),
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str> {
        match self.require(key)? {
            MetaValue::String(s) => Ok(s),
            v => Err(invalid(key, format!("expected string, found {}", v.type_name()))),
        }
    }

    fn get_array(&self, key: &str) -> Result<&[MetaValue]> {
        match self.require(key)? {
            MetaValue::Array(a) => Ok(a),
            v => Err(invalid(key, format!("expected array, found {}", v.type_name()))),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        self.get_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                MetaValue::String(s) => Ok(s.as_str()),
                v => Err(invalid(key, format!("element {i}: expected string, found {}", v.type_name()))),
            })
            .collect()
    }

    /// An array of numbers, as f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        self.get_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_f64()
                    .map(|x| x as f32)
                    .ok_or_else(|| invalid(key, format!("element {i}: expected number, found {}", v.type_name())))
            })
            .collect()
    }

    /// An array of integers, as i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        self.get_array(key)?
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_i64()
                    .ok_or_else(|| invalid(key, format!("element {i}: expected integer, found {}", v.type_name())))
            })
            .collect()
    }

    /// `get_u32` that returns `None` when the key is absent (still an error when mistyped).
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        if self.map.contains_key(key) { self.get_u32(key).map(Some) } else { Ok(None) }
    }

    /// `get_f32` that returns `None` when the key is absent (still an error when mistyped).
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        if self.map.contains_key(key) { self.get_f32(key).map(Some) } else { Ok(None) }
    }

    /// `get_bool` that returns `None` when the key is absent (still an error when mistyped).
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        if self.map.contains_key(key) { self.get_bool(key).map(Some) } else { Ok(None) }
    }

    /// `get_str` that returns `None` when the key is absent (still an error when mistyped).
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        if self.map.contains_key(key) { self.get_str(key).map(Some) } else { Ok(None) }
    }
}
