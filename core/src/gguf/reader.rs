//! The GGUF container parser over a memory map.
//!
//! Layout (v2/v3): magic `GGUF`, u32 version, u64 tensor count, u64 metadata count, the metadata
//! key/values, the tensor infos, padding to `general.alignment`, then the tensor data.

use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::metadata::{MetaArray, MetaValue, Metadata, StringArray, ValueType, ENTRY_OVERHEAD};
use crate::quant::GgmlType;
use crate::{Error, Result};

const MAGIC: &[u8; 4] = b"GGUF";
const DEFAULT_ALIGNMENT: u64 = 32;
/// GGML tensors have at most 4 dimensions (`GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// Arrays of arrays deeper than this are rejected (real files nest at most once).
const MAX_ARRAY_DEPTH: u32 = 4;
/// Keys and tensor names longer than this are rejected (ggml allows 64-byte names; be generous).
const MAX_NAME_LEN: u64 = 64 * 1024;
/// Most heap memory the header (metadata keys and values, tensor table) may take once parsed.
/// Gemma 3 270M's header (262k-piece vocabulary) takes 6.2 MiB; a file asking for more gets
/// [`Error::MetadataTooLarge`] before the allocation is made, so no file can make a phone app
/// run out of memory while it is only being opened.
pub const MAX_HEADER_MEMORY: u64 = 64 << 20;

/// One tensor's description, with its data range checked against the file.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Shape, **ne0 first** (`[640, 1024]` = 1024 rows of 640 values, row-major, blocks along ne0).
    pub shape: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Absolute byte offset of the data in the file.
    pub offset: u64,
    /// Data size in bytes.
    pub size: u64,
}

impl TensorInfo {
    /// Number of elements.
    pub fn n_elements(&self) -> u64 {
        // Checked at parse time not to overflow.
        self.shape.iter().product()
    }

    /// Number of rows (product of all dimensions but ne0).
    pub fn n_rows(&self) -> u64 {
        self.shape.iter().skip(1).product()
    }

    /// Length of a row (ne0).
    pub fn row_len(&self) -> u64 {
        self.shape.first().copied().unwrap_or(1)
    }
}

/// A parsed, memory-mapped GGUF file. Tensor data is never copied: [`GgufFile::tensor_data`]
/// returns slices of the map.
#[derive(Debug)]
pub struct GgufFile {
    path: PathBuf,
    map: Mmap,
    version: u32,
    alignment: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    data_offset: u64,
}

impl GgufFile {
    /// Opens and validates a GGUF file.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = File::open(path)?;
        Self::from_file(file, 0, None, path)
    }

    /// Opens the GGUF stored in `len` bytes (to the end when `None`) at `offset` of an open
    /// file: a whole file, or one inside another (an uncompressed Android asset in an APK or
    /// asset pack, whose descriptor comes with a start offset and a length). `label` stands for
    /// the path in logs and [`GgufFile::path`]. The file must be a regular file and the region
    /// must lie inside it; the region is memory-mapped (any offset: the map starts at the page
    /// below it).
    pub fn from_file(file: File, offset: u64, len: Option<u64>, label: &Path) -> Result<Self> {
        let path = label;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(Error::InvalidGguf { reason: "not a regular file".into() });
        }
        let size = meta.len();
        let len = len.unwrap_or(size.saturating_sub(offset));
        if offset.checked_add(len).is_none_or(|end| end > size) {
            return Err(Error::InvalidGguf {
                reason: format!("{len} bytes at offset {offset} lie outside the {size}-byte file"),
            });
        }
        let len = usize::try_from(len).map_err(|_| Error::InvalidGguf { reason: "region too large to map".into() })?;
        if len < 24 {
            return Err(Error::InvalidGguf { reason: format!("{len} bytes is too short for a GGUF header") });
        }
        // SAFETY: the map is read-only. As with every mmap-based loader (llama.cpp, candle), the
        // file must not be truncated or rewritten by another process while it is mapped; the
        // model cache writes files atomically (temp + rename), so a mapped file is never modified.
        let map = unsafe { memmap2::MmapOptions::new().offset(offset).len(len).map(&file)? };
        // Before anything reads it: 2 MiB pages where the kernel can give them (decode streams
        // the whole map per token). Whole files only: the probe reads the file at the map's
        // offsets.
        let pages = if offset == 0 { Some(super::large_pages::advise(&map, &file)) } else { None };
        log::debug!("gguf: large pages {pages:?}");
        let h = parse(&map, MAX_HEADER_MEMORY)?;
        release_header(&map, h.data_offset);
        let g = Self {
            path: path.to_path_buf(),
            map,
            version: h.version,
            alignment: h.alignment,
            metadata: h.metadata,
            tensors: h.tensors,
            data_offset: h.data_offset,
        };
        log::debug!(
            "gguf: {} v{}, {} tensors, {} metadata keys ({} KiB)",
            path.display(),
            g.version,
            g.tensors.len(),
            g.metadata.len(),
            g.metadata.heap_bytes() >> 10
        );
        Ok(g)
    }
}

/// Hands back the resident pages of the header (metadata and tensor table: 6.5 MB for Gemma 3's
/// 262k-piece vocabulary), which [`parse`] has copied out; they would otherwise count in the
/// process's memory for the model's lifetime. Whole 2 MiB spans only, so a span shared with
/// tensor data stays and a 2 MiB mapping is never split. These are clean pages of a read-only
/// file mapping: a later read of them faults the same bytes back in.
fn release_header(map: &Mmap, data_offset: u64) {
    const SPAN: u64 = 2 << 20;
    let len = (data_offset.min(map.len() as u64) / SPAN * SPAN) as usize;
    if len == 0 {
        return;
    }
    if let Err(e) = super::large_pages::drop_pages(map, 0, len) {
        log::debug!("gguf: could not release the header pages ({e})");
    }
}

/// Everything before the tensor data.
struct Header {
    version: u32,
    alignment: u64,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    data_offset: u64,
}

/// Parses and validates the header of a whole GGUF file held in `bytes`, holding at most
/// `budget` bytes of heap for it.
fn parse(bytes: &[u8], budget: u64) -> Result<Header> {
    let mut c = Cursor { buf: bytes, pos: 0, budget, limit: budget };
    let magic = c.take(4, "magic")?;
    if magic != MAGIC {
        return Err(bad("bad magic: not a GGUF file"));
    }
    let version = c.u32("version")?;
    if !(2..=3).contains(&version) {
        return Err(bad(format!("unsupported GGUF version {version} (2 and 3 are supported)")));
    }
    let n_tensors = c.u64("tensor count")?;
    let n_kv = c.u64("metadata count")?;
    // Each kv needs at least 8 (key len) + 4 (type) + 1 bytes; each tensor info at least
    // 8 + 4 + 4 + 8 bytes. Reject counts the file cannot possibly hold before allocating.
    c.check_fits(n_kv, 13, "metadata count")?;
    let mut metadata = Metadata::default();
    for _ in 0..n_kv {
        let key = c.string("metadata key")?;
        c.charge(ENTRY_OVERHEAD as u64 + key.len() as u64, &key)?;
        let ty = c.u32(&key)?;
        let ty = ValueType::from_u32(ty)
            .ok_or_else(|| Error::InvalidKey { key: key.clone(), reason: format!("unknown value type {ty}") })?;
        let value = c.value(ty, &key, 0)?;
        metadata.insert(key, value)?;
    }
    let alignment = match metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(_) => {
            let a = metadata.get_u64("general.alignment")?;
            if a == 0 || !a.is_power_of_two() || a > 1 << 20 {
                return Err(Error::InvalidKey {
                    key: "general.alignment".into(),
                    reason: format!("{a} is not a power of two in 1..=1MiB"),
                });
            }
            a
        }
    };
    c.check_fits(n_tensors, 24, "tensor count")?;
    // The table is held twice while it is checked (the raw infos, then the TensorInfos).
    let info_size =
        (std::mem::size_of::<TensorInfo>() + std::mem::size_of::<(String, Vec<u64>, GgmlType, u64)>()) as u64;
    c.charge(n_tensors.saturating_mul(info_size), "tensor table")?;
    let mut infos = Vec::with_capacity(n_tensors as usize);
    for _ in 0..n_tensors {
        let name = c.string("tensor name")?;
        // The name is held three times (raw info, TensorInfo, the duplicate check's set),
        // the shape twice.
        c.charge(3 * name.len() as u64 + 64, "tensor table")?;
        let n_dims = c.u32(&name)?;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(tensor_err(&name, format!("{n_dims} dimensions (1..=4 allowed)")));
        }
        let mut shape = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            shape.push(c.u64(&name)?);
        }
        let ty_id = c.u32(&name)?;
        let ty = GgmlType::from_u32(ty_id)
            .ok_or_else(|| tensor_err(&name, format!("unknown or unsupported ggml type id {ty_id}")))?;
        let rel_offset = c.u64(&name)?;
        infos.push((name, shape, ty, rel_offset));
    }
    let data_offset = align_up(c.pos as u64, alignment).ok_or_else(|| bad("data offset overflows"))?;
    let file_len = bytes.len() as u64;
    // A file without tensors (llama.cpp's vocab-only GGUFs) may end right after the metadata,
    // without padding up to the alignment; its data section is simply empty.
    let data_offset = if infos.is_empty() { data_offset.min(file_len) } else { data_offset };
    if data_offset > file_len {
        return Err(bad("file ends before its tensor data section"));
    }
    let data_len = file_len - data_offset;
    let mut tensors = Vec::with_capacity(infos.len());
    let mut names = std::collections::HashSet::with_capacity(infos.len());
    for (name, shape, ty, rel) in infos {
        if !names.insert(name.clone()) {
            return Err(tensor_err(&name, "duplicate tensor name"));
        }
        let mut n: u64 = 1;
        for &d in &shape {
            n = n.checked_mul(d).ok_or_else(|| tensor_err(&name, "element count overflows"))?;
        }
        let row = shape[0];
        if row % ty.block_size() != 0 {
            return Err(tensor_err(
                &name,
                format!("row length {row} is not a multiple of the {:?} block size {}", ty, ty.block_size()),
            ));
        }
        let size = (n / ty.block_size())
            .checked_mul(ty.type_size())
            .ok_or_else(|| tensor_err(&name, "byte size overflows"))?;
        if rel % alignment != 0 {
            return Err(tensor_err(&name, format!("offset {rel} is not aligned to {alignment}")));
        }
        let end = rel.checked_add(size).ok_or_else(|| tensor_err(&name, "offset overflows"))?;
        if end > data_len {
            return Err(tensor_err(
                &name,
                format!("data [{rel}, {end}) lies outside the {data_len}-byte data section (truncated file?)"),
            ));
        }
        tensors.push(TensorInfo { name, shape, ty, offset: data_offset + rel, size });
    }
    Ok(Header { version, alignment, metadata, tensors, data_offset })
}

impl GgufFile {
    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Data alignment (`general.alignment`, default 32).
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Offset of the tensor data section.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// File size in bytes.
    pub fn file_size(&self) -> u64 {
        self.map.len() as u64
    }

    /// All metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Mutable metadata (to drop what is no longer needed, see [`Metadata::drop_arrays`]).
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }

    /// All tensor infos, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::Tensor { name: name.to_string(), reason: "not found in the model file".into() })
    }

    /// Whether a tensor named `name` exists.
    pub fn has_tensor(&self, name: &str) -> bool {
        self.tensors.iter().any(|t| t.name == name)
    }

    /// The raw (still quantized) bytes of a tensor: a slice of the memory map.
    pub fn tensor_data(&self, t: &TensorInfo) -> Result<&[u8]> {
        let start = usize::try_from(t.offset).map_err(|_| tensor_err(&t.name, "offset too large"))?;
        let len = usize::try_from(t.size).map_err(|_| tensor_err(&t.name, "size too large"))?;
        start
            .checked_add(len)
            .and_then(|end| self.map.get(start..end))
            .ok_or_else(|| tensor_err(&t.name, "data outside the file"))
    }

    /// Hands back the resident pages of the whole map, once its weights live elsewhere (the GPU
    /// path uploads them), and asks for 4 KiB pages from then on, so the few embedding rows a
    /// token looks up fault in 64 KiB at a time rather than 2 MiB. These are clean pages of a
    /// read-only file mapping: whatever reads them later faults the same bytes back in.
    pub fn release_resident(&self) {
        self.set_large_pages(false);
        match super::large_pages::drop_pages(&self.map, 0, self.map.len()) {
            Ok(()) => log::debug!("gguf: released the map's resident pages"),
            Err(e) => log::debug!("gguf: could not release the map's pages ({e})"),
        }
    }

    /// Hands back the resident pages inside `len` bytes at `offset` (the whole pages only), e.g.
    /// a tensor just uploaded to the GPU; as [`GgufFile::release_resident`], a later read faults
    /// the bytes back in. Out-of-range requests are ignored.
    pub fn release_range(&self, offset: u64, len: u64) {
        // A range released inside a 2 MiB mapping would come back whole at the next read nearby
        // (the fault maps the whole large folio again): 4 KiB mappings from here on.
        self.set_large_pages(false);
        #[cfg(unix)]
        {
            // SAFETY: sysconf has no preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            let page = if page > 0 { page as u64 } else { 4096 };
            let Some(end) = offset.checked_add(len) else { return };
            let (start, end) = (offset.div_ceil(page) * page, (end.min(self.map.len() as u64) / page) * page);
            if start >= end {
                return;
            }
            if let Err(e) = super::large_pages::drop_pages(&self.map, start as usize, (end - start) as usize) {
                log::debug!("gguf: could not release {len} bytes at {offset} ({e})");
            }
        }
        #[cfg(not(unix))]
        let _ = (offset, len);
    }

    /// Asks for 2 MiB mappings of the file (as at open, see `gguf::large_pages`; not when
    /// `EDGEWISE_LARGE_PAGES=0`) or for 4 KiB ones (after a release). Linux only; a hint.
    pub fn set_large_pages(&self, on: bool) {
        #[cfg(target_os = "linux")]
        {
            if on && !super::large_pages::enabled() {
                return;
            }
            let advice = if on { memmap2::Advice::HugePage } else { memmap2::Advice::NoHugePage };
            if let Err(e) = self.map.advise(advice) {
                log::debug!("gguf: {advice:?} refused ({e})");
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = on;
    }

    /// The whole memory map (for zero-copy weight sources).
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }
}

impl AsRef<[u8]> for GgufFile {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

fn align_up(x: u64, a: u64) -> Option<u64> {
    x.checked_add(a - 1).map(|v| v / a * a)
}

fn bad(reason: impl Into<String>) -> Error {
    Error::InvalidGguf { reason: reason.into() }
}

fn tensor_err(name: &str, reason: impl Into<String>) -> Error {
    Error::Tensor { name: name.to_string(), reason: reason.into() }
}

/// A bounds-checked little-endian reader over the header bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Heap bytes the header may still take.
    budget: u64,
    /// The whole budget, for the error.
    limit: u64,
}

impl<'a> Cursor<'a> {
    /// Takes `n` bytes of heap from the budget, before they are allocated.
    fn charge(&mut self, n: u64, key: &str) -> Result<()> {
        match self.budget.checked_sub(n) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(Error::MetadataTooLarge { key: key.to_string(), limit: self.limit }),
        }
    }

    /// `n` values of `size` bytes each, read in one piece and decoded by `f`.
    fn vec<T, const N: usize>(&mut self, n: u64, key: &str, f: impl Fn([u8; N]) -> T) -> Result<Vec<T>> {
        let len = n.checked_mul(N as u64).ok_or_else(|| bad(format!("array `{key}` overflows")))?;
        self.charge(len, key)?;
        let bytes = self.take(len, key)?;
        Ok(bytes
            .chunks_exact(N)
            .map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                f(a)
            })
            .collect())
    }
    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    /// Rejects a count of items, each at least `min_len` bytes, that cannot fit in what is left.
    fn check_fits(&self, count: u64, min_len: u64, what: &str) -> Result<()> {
        match count.checked_mul(min_len) {
            Some(n) if n <= self.remaining() => Ok(()),
            _ => Err(bad(format!("{what} {count} cannot fit in the remaining {} bytes", self.remaining()))),
        }
    }

    fn take(&mut self, n: u64, what: &str) -> Result<&'a [u8]> {
        if n > self.remaining() {
            return Err(bad(format!("file truncated while reading {what}")));
        }
        let n = n as usize;
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn arr<const N: usize>(&mut self, what: &str) -> Result<[u8; N]> {
        let s = self.take(N as u64, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.arr(what)?))
    }

    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.arr(what)?))
    }

    fn string(&mut self, what: &str) -> Result<String> {
        let len = self.u64(what)?;
        if len > MAX_NAME_LEN && (what == "metadata key" || what == "tensor name") {
            return Err(bad(format!("{what} of {len} bytes is too long")));
        }
        let bytes = self.take(len, what)?;
        // Metadata strings are UTF-8 by spec; replace invalid sequences rather than failing on a
        // single odd vocabulary entry (llama.cpp does not validate them either).
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn value(&mut self, ty: ValueType, key: &str, depth: u32) -> Result<MetaValue> {
        Ok(match ty {
            ValueType::U8 => MetaValue::U8(self.arr::<1>(key)?[0]),
            ValueType::I8 => MetaValue::I8(self.arr::<1>(key)?[0] as i8),
            ValueType::U16 => MetaValue::U16(u16::from_le_bytes(self.arr(key)?)),
            ValueType::I16 => MetaValue::I16(i16::from_le_bytes(self.arr(key)?)),
            ValueType::U32 => MetaValue::U32(self.u32(key)?),
            ValueType::I32 => MetaValue::I32(i32::from_le_bytes(self.arr(key)?)),
            ValueType::F32 => MetaValue::F32(f32::from_le_bytes(self.arr(key)?)),
            ValueType::U64 => MetaValue::U64(self.u64(key)?),
            ValueType::I64 => MetaValue::I64(i64::from_le_bytes(self.arr(key)?)),
            ValueType::F64 => MetaValue::F64(f64::from_le_bytes(self.arr(key)?)),
            ValueType::Bool => match self.arr::<1>(key)?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                b => return Err(Error::InvalidKey { key: key.to_string(), reason: format!("bool byte {b}") }),
            },
            ValueType::String => {
                let len = self.u64(key)?;
                let s = String::from_utf8_lossy(self.take(len, key)?);
                self.charge(s.len() as u64, key)?;
                MetaValue::String(s.into_owned())
            }
            ValueType::Array => MetaValue::Array(self.array(key, depth)?),
        })
    }

    /// An array's element type, count and elements, stored compactly ([`MetaArray`]), each
    /// allocation charged to the budget before it is made.
    fn array(&mut self, key: &str, depth: u32) -> Result<MetaArray> {
        if depth >= MAX_ARRAY_DEPTH {
            return Err(Error::InvalidKey { key: key.to_string(), reason: "arrays nested too deeply".into() });
        }
        let et = self.u32(key)?;
        let et = ValueType::from_u32(et).ok_or_else(|| Error::InvalidKey {
            key: key.to_string(),
            reason: format!("unknown array element type {et}"),
        })?;
        let n = self.u64(key)?;
        self.check_fits(n, et.min_encoded_len(), key)?;
        Ok(match et {
            ValueType::U8 => MetaArray::U8(self.vec(n, key, |[b]: [u8; 1]| b)?),
            ValueType::I8 => MetaArray::I8(self.vec(n, key, |[b]: [u8; 1]| b as i8)?),
            ValueType::U16 => MetaArray::U16(self.vec(n, key, u16::from_le_bytes)?),
            ValueType::I16 => MetaArray::I16(self.vec(n, key, i16::from_le_bytes)?),
            ValueType::U32 => MetaArray::U32(self.vec(n, key, u32::from_le_bytes)?),
            ValueType::I32 => MetaArray::I32(self.vec(n, key, i32::from_le_bytes)?),
            ValueType::F32 => MetaArray::F32(self.vec(n, key, f32::from_le_bytes)?),
            ValueType::U64 => MetaArray::U64(self.vec(n, key, u64::from_le_bytes)?),
            ValueType::I64 => MetaArray::I64(self.vec(n, key, i64::from_le_bytes)?),
            ValueType::F64 => MetaArray::F64(self.vec(n, key, f64::from_le_bytes)?),
            ValueType::Bool => {
                self.charge(n, key)?;
                let mut v = Vec::with_capacity(n as usize);
                for &b in self.take(n, key)? {
                    match b {
                        0 | 1 => v.push(b == 1),
                        b => return Err(Error::InvalidKey { key: key.to_string(), reason: format!("bool byte {b}") }),
                    }
                }
                MetaArray::Bool(v)
            }
            ValueType::String => {
                // A first pass sums the lengths, so the buffer is allocated once, at its size.
                let start = self.pos;
                let mut total = 0u64;
                for _ in 0..n {
                    let len = self.u64(key)?;
                    self.take(len, key)?;
                    total += len; // <= the file's length
                }
                self.pos = start;
                self.charge(n.saturating_mul(std::mem::size_of::<usize>() as u64).saturating_add(total), key)?;
                let mut a = StringArray::with_capacity(n as usize, total as usize);
                for _ in 0..n {
                    let len = self.u64(key)?;
                    let s = String::from_utf8_lossy(self.take(len, key)?);
                    // Invalid UTF-8 is replaced (see `string`), which can make a string longer.
                    self.charge((s.len() as u64).saturating_sub(len), key)?;
                    a.push(&s);
                }
                MetaArray::String(a)
            }
            ValueType::Array => {
                self.charge(n.saturating_mul(std::mem::size_of::<MetaArray>() as u64), key)?;
                let mut v = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    v.push(self.array(key, depth + 1)?);
                }
                MetaArray::Array(v)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::writer::GgufWriter;

    fn open_bytes(bytes: &[u8]) -> Result<GgufFile> {
        let dir = std::env::temp_dir().join(format!("edgewise-gguf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let p = dir.join(format!("{:x}.gguf", {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            h.finish()
        }));
        std::fs::write(&p, bytes)?;
        let r = GgufFile::open(&p);
        let _ = std::fs::remove_file(&p);
        r
    }

    fn tiny() -> GgufWriter {
        GgufWriter::new()
            .kv("general.architecture", MetaValue::String("gemma3".into()))
            .kv("a.u8", MetaValue::U8(7))
            .kv("a.i16", MetaValue::I16(-3))
            .kv("a.f64", MetaValue::F64(2.5))
            .kv("a.bool", MetaValue::Bool(true))
            .kv(
                "a.nested",
                MetaValue::Array(
                    vec![
                        MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(2)].into()),
                        MetaValue::Array(vec![MetaValue::I32(3)].into()),
                    ]
                    .into(),
                ),
            )
            .kv("a.strs", MetaValue::Array(["x", "yz"].into_iter().collect::<StringArray>().into()))
            .tensor("w", &[32, 2], GgmlType::Q8_0, vec![0u8; 68])
            .tensor("n", &[4], GgmlType::F32, [1f32, 2., 3., 4.].iter().flat_map(|f| f.to_le_bytes()).collect())
    }

    /// Releasing pages (the header after the parse, a tensor's range, the whole map) never
    /// changes what is read afterwards, and (on Linux) the map's resident size goes down.
    #[test]
    fn released_pages_read_back_unchanged() {
        // A 3 MiB vocabulary-like header (so at least one whole 2 MiB span is released at open)
        // and a 5 MiB tensor of varied bytes.
        let words: Vec<MetaValue> = (0..300_000).map(|i| MetaValue::String(format!("w{i:07}"))).collect();
        let data: Vec<u8> = (0..5 << 20).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let bytes = GgufWriter::new()
            .kv("general.architecture", MetaValue::String("gemma3".into()))
            .kv("tokenizer.ggml.tokens", MetaValue::Array(words.into()))
            .tensor("t", &[5 << 20], GgmlType::I8, data.clone())
            .to_bytes();
        let g = open_bytes(&bytes).unwrap();
        assert_eq!(g.metadata().get_str_array("tokenizer.ggml.tokens").unwrap()[299_999], "w0299999");
        let t = g.tensor("t").unwrap().clone();
        assert_eq!(g.tensor_data(&t).unwrap(), &data[..]);
        #[cfg(target_os = "linux")]
        let rss = || crate::gguf::large_pages::smaps_kib(g.bytes().as_ptr() as usize, "Rss:").unwrap_or(0);
        #[cfg(target_os = "linux")]
        let before = rss();
        g.release_range(t.offset + 4096, 1 << 20);
        assert_eq!(g.tensor_data(&t).unwrap(), &data[..]);
        g.release_resident();
        #[cfg(target_os = "linux")]
        {
            let after = rss();
            assert!(after + 4096 <= before, "resident {before} KiB -> {after} KiB");
        }
        assert_eq!(g.tensor_data(&t).unwrap(), &data[..]);
        assert_eq!(g.bytes()[..4], *b"GGUF");
        // Out-of-range requests are ignored.
        g.release_range(u64::MAX - 1, 10);
        g.release_range(g.file_size() + 4096, 1 << 20);
    }

    #[test]
    fn round_trips_every_value_type_and_tensors() {
        let g = open_bytes(&tiny().to_bytes()).unwrap();
        let md = g.metadata();
        assert_eq!(md.get_str("general.architecture").unwrap(), "gemma3");
        assert_eq!(md.get_u32("a.u8").unwrap(), 7);
        assert!(md.get_u32("a.i16").is_err());
        assert_eq!(md.get_f32("a.f64").unwrap(), 2.5);
        assert!(md.get_bool("a.bool").unwrap());
        assert_eq!(md.get_str_array("a.strs").unwrap(), vec!["x", "yz"]);
        match md.get("a.nested").unwrap() {
            MetaValue::Array(a) => assert_eq!(a.len(), 2),
            _ => panic!("nested array lost"),
        }
        assert!(matches!(md.get_u32("missing"), Err(Error::MissingKey { .. })));
        let n = g.tensor("n").unwrap();
        assert_eq!(g.tensor_data(n).unwrap().len(), 16);
        assert_eq!(g.tensor("w").unwrap().n_rows(), 2);
        assert_eq!(g.version(), 3);
    }

    #[test]
    fn drop_arrays_keeps_scalars_and_other_prefixes() {
        let mut g = open_bytes(&tiny().to_bytes()).unwrap();
        assert_eq!(g.metadata_mut().drop_arrays("a."), 2);
        let md = g.metadata();
        assert!(md.get("a.nested").is_none() && md.get("a.strs").is_none());
        assert_eq!(md.get_u32("a.u8").unwrap(), 7);
        assert_eq!(md.get_str("general.architecture").unwrap(), "gemma3");
    }

    #[test]
    fn tensorless_file_may_end_right_after_its_metadata() {
        // 24-byte header + key (8 + 20) + type (4) + string value (8 + 5) = 69 bytes, unpadded,
        // the way llama.cpp writes its vocab-only files.
        let bytes = GgufWriter::new().kv("general.architecture", MetaValue::String("llama".into())).to_bytes();
        let g = open_bytes(&bytes[..69]).unwrap();
        assert_eq!(g.metadata().get_str("general.architecture").unwrap(), "llama");
        assert_eq!(g.tensors().len(), 0);
        assert!(matches!(open_bytes(&bytes[..68]), Err(Error::InvalidGguf { .. })));
    }

    #[test]
    fn v2_is_accepted_v1_rejected() {
        let mut w = tiny();
        w.version = 2;
        assert!(open_bytes(&w.to_bytes()).is_ok());
        w.version = 1;
        assert!(matches!(open_bytes(&w.to_bytes()), Err(Error::InvalidGguf { .. })));
    }

    #[test]
    fn every_truncation_is_a_typed_error() {
        let bytes = tiny().to_bytes();
        for cut in 0..bytes.len() {
            match open_bytes(&bytes[..cut]) {
                Err(Error::InvalidGguf { .. } | Error::InvalidKey { .. } | Error::Tensor { .. }) => {}
                other => panic!("cut at {cut}: expected a typed error, got {other:?}"),
            }
        }
    }

    #[test]
    fn hostile_counts_do_not_allocate() {
        // Header claiming 2^62 metadata entries.
        let mut b = b"GGUF".to_vec();
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        b.extend_from_slice(&(1u64 << 62).to_le_bytes());
        assert!(matches!(open_bytes(&b), Err(Error::InvalidGguf { .. })));
        // An array claiming 2^60 u64 elements.
        let w = GgufWriter::new().kv("big", MetaValue::Array(MetaArray::U64(vec![1])));
        let mut b = w.to_bytes();
        let pos = b.windows(8).position(|x| x == 1u64.to_le_bytes()).unwrap();
        b[pos..pos + 8].copy_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(open_bytes(&b).is_err());
        // A string length of u64::MAX.
        let mut b = GgufWriter::new().kv("s", MetaValue::String("abc".into())).to_bytes();
        let pos = b.windows(8).position(|x| x == 3u64.to_le_bytes()).unwrap();
        b[pos..pos + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(open_bytes(&b).is_err());
    }

    #[test]
    fn bad_shapes_types_and_offsets_are_rejected() {
        // Overflowing shape.
        let w = GgufWriter::new().tensor("t", &[u64::MAX, 4], GgmlType::F32, vec![]);
        assert!(matches!(open_bytes(&w.to_bytes()), Err(Error::Tensor { .. })));
        // Row not a multiple of the block size.
        let w = GgufWriter::new().tensor("t", &[31, 1], GgmlType::Q8_0, vec![0; 34]);
        assert!(matches!(open_bytes(&w.to_bytes()), Err(Error::Tensor { .. })));
        // Data beyond the end.
        let mut b = GgufWriter::new().tensor("t", &[8], GgmlType::F32, vec![0; 32]).to_bytes();
        b.truncate(b.len() - 4);
        assert!(matches!(open_bytes(&b), Err(Error::Tensor { .. })));
        // Unknown type id (IQ2_XXS = 16).
        let mut b = GgufWriter::new().tensor("t", &[8], GgmlType::F32, vec![0; 32]).to_bytes();
        // Header (24 bytes), then name (8 + 1), n_dims (4), one dim (8): the type id is at 45.
        let pos = 24 + 8 + 1 + 4 + 8;
        assert_eq!(b[pos..pos + 4], 0u32.to_le_bytes());
        b[pos..pos + 4].copy_from_slice(&16u32.to_le_bytes());
        assert!(matches!(open_bytes(&b), Err(Error::Tensor { .. })));
        // Misaligned alignment key and duplicate names.
        let w = GgufWriter::new().kv("general.alignment", MetaValue::U32(3));
        assert!(matches!(open_bytes(&w.to_bytes()), Err(Error::InvalidKey { .. })));
        let w = GgufWriter::new().tensor("t", &[8], GgmlType::F32, vec![0; 32]).tensor(
            "t",
            &[8],
            GgmlType::F32,
            vec![0; 32],
        );
        assert!(matches!(open_bytes(&w.to_bytes()), Err(Error::Tensor { .. })));
        // Five dimensions.
        let w = GgufWriter::new().tensor("t", &[1, 1, 1, 1, 8], GgmlType::F32, vec![0; 32]);
        assert!(matches!(open_bytes(&w.to_bytes()), Err(Error::Tensor { .. })));
    }

    /// A file's byte array costs its bytes once parsed, not a 32-byte value per element (the
    /// old `Vec<MetaValue>`: 4 MB of u8 took 128 MB; 130 MB would have reserved 4.16 GB).
    #[test]
    fn arrays_cost_what_the_file_holds() {
        const N: usize = 4 << 20;
        let bytes = GgufWriter::new()
            .kv("general.architecture", MetaValue::String("gemma3".into()))
            .kv("big", MetaValue::Array(MetaArray::U8(vec![7; N])))
            .kv("f", MetaValue::Array(MetaArray::F32(vec![0.5; 1024])))
            .to_bytes();
        let (g, peak) = crate::test_alloc::peak_during(|| parse(&bytes, MAX_HEADER_MEMORY).map(|h| h.metadata));
        let md = g.unwrap();
        assert!(peak < N + (1 << 20), "parsing a {N}-byte array took {peak} bytes of heap");
        assert!(md.heap_bytes() < N + (64 << 10), "{} bytes held", md.heap_bytes());
        match md.get("big") {
            Some(MetaValue::Array(a)) => {
                assert_eq!(a.len(), N);
                assert_eq!(a.get(N - 1), Some(MetaValue::U8(7)));
            }
            other => panic!("big: {other:?}"),
        }
        assert_eq!(md.get_f32_array("f").unwrap(), vec![0.5; 1024]);
        assert_eq!(md.get_i64_array("big").unwrap().len(), N);
        assert!(md.get_str_array("big").is_err());
    }

    /// Past the header's memory limit every kind of allocation is a typed error naming the key,
    /// raised before the allocation is made.
    #[test]
    fn header_memory_limit_is_a_typed_error() {
        const LIMIT: u64 = 1 << 20;
        let too_large = |w: GgufWriter, key: &str| {
            let bytes = w.to_bytes();
            let (r, peak) = crate::test_alloc::peak_during(|| parse(&bytes, LIMIT).map(|_| ()));
            match r {
                Err(Error::MetadataTooLarge { key: k, limit }) => assert_eq!((k.as_str(), limit), (key, LIMIT)),
                other => panic!("{key}: expected MetadataTooLarge, got {other:?}"),
            }
            assert!(peak < 2 * LIMIT as usize, "{key}: {peak} bytes held before the error");
        };
        too_large(GgufWriter::new().kv("bytes", MetaValue::Array(MetaArray::U8(vec![0; 2 << 20]))), "bytes");
        too_large(GgufWriter::new().kv("u64s", MetaValue::Array(MetaArray::U64(vec![0; 200_000]))), "u64s");
        too_large(GgufWriter::new().kv("bools", MetaValue::Array(MetaArray::Bool(vec![true; 2 << 20]))), "bools");
        too_large(GgufWriter::new().kv("s", MetaValue::String("x".repeat(2 << 20))), "s");
        // Empty strings: 8 bytes each on disk, an offset each in memory.
        let empty: StringArray = std::iter::repeat_n("", 200_000).collect();
        too_large(GgufWriter::new().kv("strs", MetaValue::Array(empty.into())), "strs");
        // Empty nested arrays: 12 bytes each on disk, a MetaArray (32 bytes) each in memory.
        let nested = MetaArray::Array(vec![MetaArray::U8(Vec::new()); 100_000]);
        too_large(GgufWriter::new().kv("nested", MetaValue::Array(nested)), "nested");
        // Many keys, and a large tensor table.
        let mut w = GgufWriter::new();
        for i in 0..20_000 {
            w = w.kv(&format!("k{i}"), MetaValue::U8(0));
        }
        let bytes = w.to_bytes();
        assert!(matches!(parse(&bytes, LIMIT), Err(Error::MetadataTooLarge { .. })));
        let mut w = GgufWriter::new();
        for i in 0..20_000 {
            w = w.tensor(&format!("t{i}"), &[1], GgmlType::F32, vec![0; 4]);
        }
        too_large(w.clone(), "tensor table");
        // Under the default limit the same files parse.
        assert!(parse(&w.to_bytes(), MAX_HEADER_MEMORY).is_ok());
    }

    /// The issue's file: a 130 MB byte array (sparse on disk here). Opening it is a typed error
    /// and allocates next to nothing.
    #[test]
    fn issue_sized_byte_array_is_refused_cheaply() {
        const N: u64 = 130_000_000;
        let mut bytes = GgufWriter::new()
            .kv("general.architecture", MetaValue::String("gemma3".into()))
            .kv("big", MetaValue::Array(MetaArray::U8(vec![0])))
            .to_bytes();
        // The count (1) is the last u64 1 in the file (only zeros follow it).
        let pos = bytes.windows(8).rposition(|x| x == 1u64.to_le_bytes()).unwrap();
        bytes[pos..pos + 8].copy_from_slice(&N.to_le_bytes());
        let dir = std::env::temp_dir().join(format!("edgewise-gguf-big-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("big.gguf");
        {
            let f = std::fs::File::create(&p).unwrap();
            use std::io::Write;
            (&f).write_all(&bytes).unwrap();
            f.set_len(bytes.len() as u64 + N).unwrap(); // zeros: valid u8 elements
        }
        let (r, peak) = crate::test_alloc::peak_during(|| GgufFile::open(&p).map(|_| ()));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(matches!(r, Err(Error::MetadataTooLarge { ref key, .. }) if key == "big"), "{r:?}");
        assert!(peak < 1 << 20, "{peak} bytes");
    }

    #[test]
    fn garbage_never_panics() {
        // Seeded random mutations of a valid file: every outcome is Ok or a typed error.
        let base = tiny().to_bytes();
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..2000 {
            let mut b = base.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] = (state >> 32) as u8;
            }
            let _ = open_bytes(&b);
        }
    }
}
