//! A small GGUF writer: tiny seeded models and deliberately broken files for tests, and the
//! adapters and checkpoints of `edgewise finetune`.

use super::{MetaArray, MetaValue};
use crate::quant::GgmlType;

/// Builds a GGUF file in memory.
#[derive(Debug, Clone)]
pub struct GgufWriter {
    /// GGUF version written in the header.
    pub version: u32,
    /// Data alignment.
    pub alignment: u64,
    kvs: Vec<(String, MetaValue)>,
    tensors: Vec<(String, Vec<u64>, GgmlType, Vec<u8>)>,
}

impl Default for GgufWriter {
    fn default() -> Self {
        Self { version: 3, alignment: 32, kvs: Vec::new(), tensors: Vec::new() }
    }
}

impl GgufWriter {
    /// An empty v3 file.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a metadata key.
    pub fn kv(mut self, key: &str, v: MetaValue) -> Self {
        self.kvs.push((key.to_string(), v));
        self
    }

    /// Adds a tensor (shape ne0 first) with its raw bytes.
    pub fn tensor(mut self, name: &str, shape: &[u64], ty: GgmlType, bytes: Vec<u8>) -> Self {
        self.tensors.push((name.to_string(), shape.to_vec(), ty, bytes));
        self
    }

    /// Serializes the file.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&self.version.to_le_bytes());
        b.extend_from_slice(&(self.tensors.len() as u64).to_le_bytes());
        b.extend_from_slice(&(self.kvs.len() as u64).to_le_bytes());
        for (k, v) in &self.kvs {
            put_str(&mut b, k);
            b.extend_from_slice(&tag(v).to_le_bytes());
            put_value(&mut b, v);
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, shape, ty, bytes) in &self.tensors {
            put_str(&mut b, name);
            b.extend_from_slice(&(shape.len() as u32).to_le_bytes());
            for d in shape {
                b.extend_from_slice(&d.to_le_bytes());
            }
            b.extend_from_slice(&ty.id().to_le_bytes());
            b.extend_from_slice(&offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + bytes.len() as u64).div_ceil(self.alignment) * self.alignment;
        }
        let data_start = (b.len() as u64).div_ceil(self.alignment) * self.alignment;
        b.resize(data_start as usize, 0);
        for ((_, _, _, bytes), off) in self.tensors.iter().zip(offsets) {
            b.resize((data_start + off) as usize, 0);
            b.extend_from_slice(bytes);
        }
        b
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn tag(v: &MetaValue) -> u32 {
    match v {
        MetaValue::U8(_) => 0,
        MetaValue::I8(_) => 1,
        MetaValue::U16(_) => 2,
        MetaValue::I16(_) => 3,
        MetaValue::U32(_) => 4,
        MetaValue::I32(_) => 5,
        MetaValue::F32(_) => 6,
        MetaValue::Bool(_) => 7,
        MetaValue::String(_) => 8,
        MetaValue::Array(_) => 9,
        MetaValue::U64(_) => 10,
        MetaValue::I64(_) => 11,
        MetaValue::F64(_) => 12,
    }
}

fn put_value(b: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => b.push(*x),
        MetaValue::I8(x) => b.push(*x as u8),
        MetaValue::U16(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => b.push(*x as u8),
        MetaValue::String(s) => put_str(b, s),
        MetaValue::U64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => b.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Array(a) => put_array(b, a),
    }
}

fn put_array(b: &mut Vec<u8>, a: &MetaArray) {
    b.extend_from_slice(&(a.element_type() as u32).to_le_bytes());
    b.extend_from_slice(&(a.len() as u64).to_le_bytes());
    fn each<T, const N: usize>(b: &mut Vec<u8>, v: &[T], f: impl Fn(&T) -> [u8; N]) {
        for x in v {
            b.extend_from_slice(&f(x));
        }
    }
    match a {
        MetaArray::U8(v) => b.extend_from_slice(v),
        MetaArray::I8(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::U16(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::I16(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::U32(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::I32(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::F32(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::Bool(v) => each(b, v, |x| [*x as u8]),
        MetaArray::U64(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::I64(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::F64(v) => each(b, v, |x| x.to_le_bytes()),
        MetaArray::String(v) => v.iter().for_each(|s| put_str(b, s)),
        MetaArray::Array(v) => v.iter().for_each(|inner| put_array(b, inner)),
    }
}
