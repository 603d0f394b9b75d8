//! GGUF metadata values and the typed accessor façade (`Metadata::get_u32(key)` and friends),
//! which turns a missing or mistyped key into a precise [`Error`].

use std::collections::BTreeMap;

use crate::{Error, Result};

/// The type tag of a GGUF metadata value (`gguf_metadata_value_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
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
    /// Elements all of one type (arrays may nest), stored compactly (see [`MetaArray`]).
    Array(MetaArray),
    U64(u64),
    I64(i64),
    F64(f64),
}

/// A metadata array, held as compactly as the file holds it: numbers and booleans as a typed
/// vector (the bytes on disk, no more), strings as one buffer plus end offsets, nested arrays as
/// a vector of arrays. A file's byte array of N elements costs N bytes here, not N values
/// (a `MetaValue` is 32 bytes: a 130 MB array used to reserve 4 GB).
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum MetaArray {
    U8(Vec<u8>),
    I8(Vec<i8>),
    U16(Vec<u16>),
    I16(Vec<i16>),
    U32(Vec<u32>),
    I32(Vec<i32>),
    F32(Vec<f32>),
    Bool(Vec<bool>),
    String(StringArray),
    Array(Vec<MetaArray>),
    U64(Vec<u64>),
    I64(Vec<i64>),
    F64(Vec<f64>),
}

/// An array of strings in one buffer (`ends[i]` is where string `i` ends in `bytes`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StringArray {
    bytes: String,
    ends: Vec<usize>,
}

impl StringArray {
    /// An empty array with room for `n` strings of `bytes` bytes in all.
    pub fn with_capacity(n: usize, bytes: usize) -> Self {
        Self { bytes: String::with_capacity(bytes), ends: Vec::with_capacity(n) }
    }

    /// Appends a string.
    pub fn push(&mut self, s: &str) {
        self.bytes.push_str(s);
        self.ends.push(self.bytes.len());
    }

    /// Number of strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are no strings.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// String `i`.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.bytes.get(start..end)
    }

    /// The strings in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Heap bytes held.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * std::mem::size_of::<usize>()
    }
}

impl<'a> FromIterator<&'a str> for StringArray {
    fn from_iter<I: IntoIterator<Item = &'a str>>(iter: I) -> Self {
        let mut a = Self::default();
        for s in iter {
            a.push(s);
        }
        a
    }
}

impl MetaArray {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
            Self::U16(v) => v.len(),
            Self::I16(v) => v.len(),
            Self::U32(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::F32(v) => v.len(),
            Self::Bool(v) => v.len(),
            Self::String(v) => v.len(),
            Self::Array(v) => v.len(),
            Self::U64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::F64(v) => v.len(),
        }
    }

    /// Whether the array has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The element type.
    pub fn element_type(&self) -> ValueType {
        match self {
            Self::U8(_) => ValueType::U8,
            Self::I8(_) => ValueType::I8,
            Self::U16(_) => ValueType::U16,
            Self::I16(_) => ValueType::I16,
            Self::U32(_) => ValueType::U32,
            Self::I32(_) => ValueType::I32,
            Self::F32(_) => ValueType::F32,
            Self::Bool(_) => ValueType::Bool,
            Self::String(_) => ValueType::String,
            Self::Array(_) => ValueType::Array,
            Self::U64(_) => ValueType::U64,
            Self::I64(_) => ValueType::I64,
            Self::F64(_) => ValueType::F64,
        }
    }

    /// Element `i` as a value (a copy; a nested array is cloned).
    pub fn get(&self, i: usize) -> Option<MetaValue> {
        Some(match self {
            Self::U8(v) => MetaValue::U8(*v.get(i)?),
            Self::I8(v) => MetaValue::I8(*v.get(i)?),
            Self::U16(v) => MetaValue::U16(*v.get(i)?),
            Self::I16(v) => MetaValue::I16(*v.get(i)?),
            Self::U32(v) => MetaValue::U32(*v.get(i)?),
            Self::I32(v) => MetaValue::I32(*v.get(i)?),
            Self::F32(v) => MetaValue::F32(*v.get(i)?),
            Self::Bool(v) => MetaValue::Bool(*v.get(i)?),
            Self::String(v) => MetaValue::String(v.get(i)?.to_string()),
            Self::Array(v) => MetaValue::Array(v.get(i)?.clone()),
            Self::U64(v) => MetaValue::U64(*v.get(i)?),
            Self::I64(v) => MetaValue::I64(*v.get(i)?),
            Self::F64(v) => MetaValue::F64(*v.get(i)?),
        })
    }

    /// Heap bytes held (nested arrays included).
    pub fn heap_bytes(&self) -> usize {
        fn vec<T>(v: &Vec<T>) -> usize {
            v.capacity() * std::mem::size_of::<T>()
        }
        match self {
            Self::U8(v) => vec(v),
            Self::I8(v) => vec(v),
            Self::U16(v) => vec(v),
            Self::I16(v) => vec(v),
            Self::U32(v) => vec(v),
            Self::I32(v) => vec(v),
            Self::F32(v) => vec(v),
            Self::Bool(v) => vec(v),
            Self::String(v) => v.heap_bytes(),
            Self::Array(v) => vec(v) + v.iter().map(Self::heap_bytes).sum::<usize>(),
            Self::U64(v) => vec(v),
            Self::I64(v) => vec(v),
            Self::F64(v) => vec(v),
        }
    }

    /// Element `i` as f64, if it is a number.
    fn f64_at(&self, i: usize) -> Option<f64> {
        match self {
            Self::F32(v) => v.get(i).map(|&x| x as f64),
            Self::F64(v) => v.get(i).copied(),
            _ => self.i64_at(i).map(|x| x as f64),
        }
    }

    /// Element `i` as i64, if it is an integer in range.
    fn i64_at(&self, i: usize) -> Option<i64> {
        match self {
            Self::U8(v) => v.get(i).map(|&x| x as i64),
            Self::I8(v) => v.get(i).map(|&x| x as i64),
            Self::U16(v) => v.get(i).map(|&x| x as i64),
            Self::I16(v) => v.get(i).map(|&x| x as i64),
            Self::U32(v) => v.get(i).map(|&x| x as i64),
            Self::I32(v) => v.get(i).map(|&x| x as i64),
            Self::U64(v) => v.get(i).and_then(|&x| i64::try_from(x).ok()),
            Self::I64(v) => v.get(i).copied(),
            _ => None,
        }
    }
}

impl From<StringArray> for MetaArray {
    fn from(a: StringArray) -> Self {
        Self::String(a)
    }
}

impl From<Vec<MetaValue>> for MetaArray {
    /// Builds an array from values of one type (tests and tools). The element type is the first
    /// value's (`U32` when empty); a value of another type is dropped.
    fn from(values: Vec<MetaValue>) -> Self {
        macro_rules! typed {
            ($variant:ident) => {
                Self::$variant(
                    values
                        .iter()
                        .filter_map(|v| if let MetaValue::$variant(x) = v { Some(x.clone()) } else { None })
                        .collect(),
                )
            };
        }
        match values.first() {
            None | Some(MetaValue::U32(_)) => typed!(U32),
            Some(MetaValue::U8(_)) => typed!(U8),
            Some(MetaValue::I8(_)) => typed!(I8),
            Some(MetaValue::U16(_)) => typed!(U16),
            Some(MetaValue::I16(_)) => typed!(I16),
            Some(MetaValue::I32(_)) => typed!(I32),
            Some(MetaValue::F32(_)) => typed!(F32),
            Some(MetaValue::Bool(_)) => typed!(Bool),
            Some(MetaValue::U64(_)) => typed!(U64),
            Some(MetaValue::I64(_)) => typed!(I64),
            Some(MetaValue::F64(_)) => typed!(F64),
            Some(MetaValue::Array(_)) => typed!(Array),
            Some(MetaValue::String(_)) => Self::String(
                values
                    .iter()
                    .filter_map(|v| if let MetaValue::String(s) = v { Some(s.as_str()) } else { None })
                    .collect(),
            ),
        }
    }
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

/// What one key costs besides its name and value data: the map node's share, the key's
/// `String` and the `MetaValue` (an estimate used by the reader's memory cap).
pub(crate) const ENTRY_OVERHEAD: usize = 96;

fn type_name(t: ValueType) -> &'static str {
    match t {
        ValueType::U8 => "u8",
        ValueType::I8 => "i8",
        ValueType::U16 => "u16",
        ValueType::I16 => "i16",
        ValueType::U32 => "u32",
        ValueType::I32 => "i32",
        ValueType::F32 => "f32",
        ValueType::Bool => "bool",
        ValueType::String => "string",
        ValueType::Array => "array",
        ValueType::U64 => "u64",
        ValueType::I64 => "i64",
        ValueType::F64 => "f64",
    }
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
        v.as_f64().map(|x| x as f32).ok_or_else(|| invalid(key, format!("expected a number, found {}", v.type_name())))
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

    fn get_array(&self, key: &str) -> Result<&MetaArray> {
        match self.require(key)? {
            MetaValue::Array(a) => Ok(a),
            v => Err(invalid(key, format!("expected array, found {}", v.type_name()))),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<&str>> {
        match self.get_array(key)? {
            MetaArray::String(a) => Ok(a.iter().collect()),
            a if a.is_empty() => Ok(Vec::new()),
            a => Err(invalid(key, format!("element 0: expected string, found {}", type_name(a.element_type())))),
        }
    }

    /// An array of numbers, as f32.
    pub fn get_f32_array(&self, key: &str) -> Result<Vec<f32>> {
        let a = self.get_array(key)?;
        if let MetaArray::F32(v) = a {
            return Ok(v.clone());
        }
        (0..a.len())
            .map(|i| {
                a.f64_at(i).map(|x| x as f32).ok_or_else(|| {
                    invalid(key, format!("element {i}: expected number, found {}", type_name(a.element_type())))
                })
            })
            .collect()
    }

    /// An array of integers, as i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>> {
        let a = self.get_array(key)?;
        (0..a.len())
            .map(|i| {
                a.i64_at(i).ok_or_else(|| {
                    invalid(key, format!("element {i}: expected integer, found {}", type_name(a.element_type())))
                })
            })
            .collect()
    }

    /// Heap bytes held by the keys and values (an estimate of the map's own overhead included).
    pub fn heap_bytes(&self) -> usize {
        self.map
            .iter()
            .map(|(k, v)| {
                ENTRY_OVERHEAD
                    + k.capacity()
                    + match v {
                        MetaValue::String(s) => s.capacity(),
                        MetaValue::Array(a) => a.heap_bytes(),
                        _ => 0,
                    }
            })
            .sum()
    }

    /// `get_u32` that returns `None` when the key is absent (still an error when mistyped).
    pub fn opt_u32(&self, key: &str) -> Result<Option<u32>> {
        if self.map.contains_key(key) {
            self.get_u32(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `get_f32` that returns `None` when the key is absent (still an error when mistyped).
    pub fn opt_f32(&self, key: &str) -> Result<Option<f32>> {
        if self.map.contains_key(key) {
            self.get_f32(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `get_bool` that returns `None` when the key is absent (still an error when mistyped).
    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        if self.map.contains_key(key) {
            self.get_bool(key).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `get_str` that returns `None` when the key is absent (still an error when mistyped).
    pub fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        if self.map.contains_key(key) {
            self.get_str(key).map(Some)
        } else {
            Ok(None)
        }
    }
}
