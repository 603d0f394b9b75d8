//! Per-session KV caches: preallocated ring buffers with no shifting.
//!
//! Global-attention layers keep every position of the configured context; sliding-window layers
//! keep only a ring of `window − 1 + max_chunk` slots — the window plus the keys a prefill chunk
//! needs before its first token (ENGINEERING.md D.2). Positions map to slots `pos % capacity`.
//! Attention is order-invariant over keys, so ring order needs no unrolling: each pass gets a mask
//! built from the position stored in every slot.
//!
//! The cache is owned by a `Session` and passed `&mut` into the model's forward pass. A pass is
//! `begin(n)` → per layer `store` + `view` → `commit()`.
//!
//! On the CPU (burn `flex`) the keys and values live in plain host buffers instead of tensors,
//! and attention reads them in place through [`KvCache::host_view`] (`layers::attention`'s
//! threaded host path): no per-layer slicing, transposes or copies of the cache. Host keys and
//! values are stored as f16 (llama.cpp's default cache type, rounded the same way), which halves
//! the cache; attention widens them on the fly (`quant::cpu::dot_heads_f16` / `axpy_heads_f16`).

use burn::tensor::{Device, Tensor, TensorData};
use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::{Error, Result};

/// Large negative instead of −∞: identical after softmax, and safe on every shader compiler.
const MASKED: f32 = -1.0e30;

/// Slot bookkeeping shared by all layers of one kind (all local, or all global layers).
#[derive(Debug, Clone)]
struct Ring {
    capacity: usize,
    window: Option<usize>,
    /// The position held by each slot, −1 for empty.
    slot_pos: Vec<i64>,
}

impl Ring {
    fn new(capacity: usize, window: Option<usize>) -> Self {
        Self { capacity, window, slot_pos: vec![-1; capacity] }
    }

    /// Slots in use after positions `< end` were written (rings fill from slot 0 before wrapping).
    fn visible(&self, end: usize) -> usize {
        end.min(self.capacity)
    }

    /// Mask rows for queries at `start..start+n`: [n, S] (broadcast over heads by attention).
    fn mask(&self, start: usize, n: usize, s: usize) -> Vec<f32> {
        let mut m = Vec::with_capacity(n * s);
        for i in 0..n {
            let q = (start + i) as i64;
            for &p in &self.slot_pos[..s] {
                m.push(if sees(self.window, q, p) { 0.0 } else { MASKED });
            }
        }
        m
    }
}

/// Whether the query at position `q` attends to the key at position `p` (−1: an empty slot):
/// causal, and within the sliding window if any.
#[inline]
fn sees(window: Option<usize>, q: i64, p: i64) -> bool {
    p >= 0 && p <= q && window.is_none_or(|w| q - p < w as i64)
}

/// Geometry of a cache, from the model config and the session's context.
#[derive(Debug, Clone)]
pub struct CacheLayout {
    /// Per layer: `Some(window)` for sliding-window layers, `None` for global ones.
    pub layer_windows: Vec<Option<usize>>,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
    /// Context the session was configured for (tokens).
    pub max_context: usize,
    /// Largest number of tokens in one forward pass (prefill chunk).
    pub max_chunk: usize,
}

/// Host storage of the CPU path: per layer `[KV, capacity, hd]` f16 keys and values. Its
/// passes build no `[n, S]` masks: attention tests each slot's position ([`HostView::sees`]).
#[derive(Debug, Clone, Default)]
struct HostKv {
    k: Vec<Vec<f16>>,
    v: Vec<Vec<f16>>,
}

/// One layer of the host cache, as attention reads it.
#[derive(Debug)]
pub struct HostView<'a> {
    /// `[KV, cap, hd]` f16 keys (slot `s` of head `h` at `(h·cap + s)·hd`).
    pub k: &'a [f16],
    /// `[KV, cap, hd]` f16 values.
    pub v: &'a [f16],
    /// `[S]`: the position held by each visible slot (−1 for empty).
    pub slot_pos: &'a [i64],
    /// Position of the pass's first query.
    pub start: usize,
    /// The layer's sliding window, if any.
    pub window: Option<usize>,
    /// Slots of the layer's ring (the row stride of `k`/`v` per head).
    pub cap: usize,
    /// Slots visible to this pass.
    pub s: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Head dimension.
    pub head_dim: usize,
}

impl HostView<'_> {
    /// Whether query `i` of the pass attends to slot `slot` (`slot < S`); the same rule as the
    /// device path's mask.
    #[inline]
    pub fn sees(&self, i: usize, slot: usize) -> bool {
        self.slot_pos.get(slot).is_some_and(|&p| sees(self.window, (self.start + i) as i64, p))
    }
}

/// The recurrent state of one layer of a hybrid model (Qwen 3.5's gated DeltaNet): the rolling
/// input window of its causal convolution and its matrix state, both f32 on the host. Its size
/// does not depend on the context length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecurrentLayer {
    /// The last `kernel − 1` convolution inputs, `[kernel − 1, channels]`, oldest first.
    pub conv: Vec<f32>,
    /// The layer's recurrent matrix state (its layout is the model's).
    pub state: Vec<f32>,
}

/// A recurrent layer's state on a wgpu device (Qwen 3.5's DeltaNet kernel,
/// `model::qwen35`'s `delta_gpu`): the values and layout of [`RecurrentLayer`] in device buffers.
/// A pass never writes these buffers: it makes new ones and swaps them in, so a checkpoint is a
/// handle copy (no transfer, no copy until the state moves on) and the state is read back only
/// for a session file.
#[derive(Debug, Clone)]
pub struct DeviceRecurrentLayer {
    /// `[(kernel − 1) · channels]`, as [`RecurrentLayer::conv`].
    pub conv: Tensor<1>,
    /// As [`RecurrentLayer::state`].
    pub state: Tensor<1>,
}

/// Where a cache's recurrent layers live: host vectors (the CPU pass, and the GPU pass that runs
/// the DeltaNet on the host) or device buffers (the GPU DeltaNet kernel).
#[derive(Debug, Clone)]
enum Layers {
    Host(Vec<RecurrentLayer>),
    Device(Vec<DeviceRecurrentLayer>),
}

impl Default for Layers {
    fn default() -> Self {
        Layers::Host(Vec::new())
    }
}

fn numel(t: &Tensor<1>) -> usize {
    t.dims()[0]
}

impl Layers {
    /// `(conv values, state values)` per layer.
    fn shapes(&self) -> Vec<(usize, usize)> {
        match self {
            Layers::Host(ls) => ls.iter().map(|l| (l.conv.len(), l.state.len())).collect(),
            Layers::Device(ls) => ls.iter().map(|l| (numel(&l.conv), numel(&l.state))).collect(),
        }
    }

    fn zero(&mut self) {
        match self {
            Layers::Host(ls) => {
                for l in ls {
                    l.conv.iter_mut().for_each(|v| *v = 0.0);
                    l.state.iter_mut().for_each(|v| *v = 0.0);
                }
            }
            Layers::Device(ls) => {
                for l in ls {
                    let dev = l.conv.device();
                    l.conv = Tensor::zeros([numel(&l.conv)], &dev);
                    l.state = Tensor::zeros([numel(&l.state)], &dev);
                }
            }
        }
    }

    /// A host copy (a read-back for device buffers).
    fn to_host(&self) -> Result<Vec<RecurrentLayer>> {
        match self {
            Layers::Host(ls) => Ok(ls.clone()),
            Layers::Device(ls) => ls
                .iter()
                .map(|l| {
                    Ok(RecurrentLayer {
                        conv: crate::model::layers::read_f32(l.conv.clone())?,
                        state: crate::model::layers::read_f32(l.state.clone())?,
                    })
                })
                .collect(),
        }
    }

    /// `host` in this kind of storage (uploaded for device buffers, on `device`).
    fn like(&self, host: &[RecurrentLayer], device: &Device) -> Layers {
        match self {
            Layers::Host(_) => Layers::Host(host.to_vec()),
            Layers::Device(_) => Layers::Device(
                host.iter()
                    .map(|l| DeviceRecurrentLayer {
                        conv: Tensor::from_data(TensorData::new(l.conv.clone(), [l.conv.len()]), device),
                        state: Tensor::from_data(TensorData::new(l.state.clone(), [l.state.len()]), device),
                    })
                    .collect(),
            ),
        }
    }
}

/// How many turn-boundary copies of the recurrent state a cache keeps by default (the earliest
/// and the newest): `SessionConfig::state_checkpoints` sets it per session.
pub const MAX_RECURRENT_CHECKPOINTS: usize = 4;

/// The most checkpoints a session may ask for (each is a copy of the whole recurrent state:
/// ~19 MiB for Qwen 3.5 0.8B).
pub const RECURRENT_CHECKPOINTS_LIMIT: usize = 64;

/// The recurrent part of a hybrid model's cache. A recurrent state has no positions to cut, so
/// going back to an earlier token count needs a copy taken there ([`KvCache::checkpoint`]).
#[derive(Debug, Clone, Default)]
struct Recurrent {
    layers: Layers,
    /// `(token count, state then)`, ascending token counts, at most `max_checkpoints`.
    checkpoints: Vec<(usize, Layers)>,
    /// How many checkpoints are kept ([`KvCache::set_max_checkpoints`]).
    max_checkpoints: usize,
}

impl Recurrent {
    fn zero(&mut self) {
        self.layers.zero();
        self.checkpoints.clear();
    }

    /// Down to `max_checkpoints`: the earliest stays (a session's anchor where its messages
    /// start, which a dropped turn falls back to) and the oldest after it go; a single one is
    /// the newest.
    fn trim_checkpoints(&mut self) {
        let max = self.max_checkpoints;
        while self.checkpoints.len() > max {
            let at = if max >= 2 { 1 } else { 0 };
            self.checkpoints.remove(at);
        }
    }

    fn bytes(&self) -> usize {
        let one = |ls: &Layers| ls.shapes().iter().map(|(c, s)| (c + s) * 4).sum::<usize>();
        one(&self.layers) + self.checkpoints.iter().map(|(_, c)| one(c)).sum::<usize>()
    }
}

/// The tensor `store`/`view` of a CPU cache, whose buffers only the host path uses.
fn host_only() -> Error {
    Error::Backend { reason: "a CPU kv cache is written by `store_host` and read by `host_view`".into() }
}

/// The KV cache of one session.
#[derive(Debug, Clone)]
pub struct KvCache {
    layout: CacheLayout,
    /// Ring of each layer kind: index 0 = global, 1 = sliding window.
    rings: [Ring; 2],
    k: Vec<Tensor<3>>,
    v: Vec<Tensor<3>>,
    len: usize,
    pass: Option<(usize, usize)>,
    /// Additive masks `[n, S]` of the current pass, per ring (built once per pass, not per layer).
    masks: [Option<Tensor<2>>; 2],
    /// A one-element tensor swapped in while a layer's buffer is updated, so the buffer is
    /// uniquely owned and written in place instead of copied.
    placeholder: Tensor<3>,
    /// `Some` on the CPU: keys, values and masks on the host (then `k`, `v` are empty).
    host: Option<HostKv>,
    device: Device,
    /// The buffers were handed back ([`KvCache::release`]); the next pass allocates them again.
    released: bool,
    /// The LoRA adapters its keys and values are computed under.
    adapters: crate::lora::LoraSet,
    /// A hybrid model's recurrent layers (`None` for a plain transformer).
    recurrent: Option<Recurrent>,
}

impl KvCache {
    /// Allocates the cache on `device`.
    pub fn new(layout: CacheLayout, device: &Device) -> Result<Self> {
        if layout.max_context == 0 || layout.max_chunk == 0 {
            return Err(Error::InvalidParameter { name: "max_context", reason: "must be positive".into() });
        }
        let window = layout.layer_windows.iter().flatten().copied().min();
        let local_cap = window.map_or(0, |w| (w - 1 + layout.max_chunk).min(layout.max_context));
        let rings = [Ring::new(layout.max_context, None), Ring::new(local_cap, window)];
        let mut k = Vec::new();
        let mut v = Vec::new();
        let on_host = *device == crate::backend::cpu_device();
        let mut host = on_host.then(HostKv::default);
        for w in &layout.layer_windows {
            let cap = if w.is_some() { local_cap } else { layout.max_context };
            if let Some(h) = host.as_mut() {
                h.k.push(vec![f16::ZERO; layout.kv_heads * cap * layout.head_dim]);
                h.v.push(vec![f16::ZERO; layout.kv_heads * cap * layout.head_dim]);
                continue;
            }
            let zeros = || {
                Tensor::<3>::from_data(
                    TensorData::new(
                        vec![0f32; layout.kv_heads * cap * layout.head_dim],
                        [layout.kv_heads, cap, layout.head_dim],
                    ),
                    device,
                )
            };
            k.push(zeros());
            v.push(zeros());
        }
        let placeholder = Tensor::<3>::from_data(TensorData::new(vec![0f32], [1, 1, 1]), device);
        Ok(Self {
            layout,
            rings,
            k,
            v,
            len: 0,
            pass: None,
            masks: [None, None],
            placeholder,
            host,
            device: device.clone(),
            released: false,
            adapters: crate::lora::LoraSet::default(),
            recurrent: None,
        })
    }

    /// Adds zeroed recurrent state for a hybrid model: per recurrent layer, `(conv values,
    /// state values)`.
    pub fn with_recurrent(mut self, shapes: &[(usize, usize)]) -> Self {
        let layers = shapes.iter().map(|&(c, s)| RecurrentLayer { conv: vec![0.0; c], state: vec![0.0; s] }).collect();
        self.recurrent = Some(Recurrent {
            layers: Layers::Host(layers),
            checkpoints: Vec::new(),
            max_checkpoints: MAX_RECURRENT_CHECKPOINTS,
        });
        self
    }

    /// [`KvCache::with_recurrent`] with the state in device buffers on the cache's device (a
    /// model whose recurrence runs there; see [`DeviceRecurrentLayer`]).
    pub fn with_device_recurrent(mut self, shapes: &[(usize, usize)]) -> Self {
        let layers = shapes
            .iter()
            .map(|&(c, s)| DeviceRecurrentLayer {
                conv: Tensor::zeros([c], &self.device),
                state: Tensor::zeros([s], &self.device),
            })
            .collect();
        self.recurrent = Some(Recurrent {
            layers: Layers::Device(layers),
            checkpoints: Vec::new(),
            max_checkpoints: MAX_RECURRENT_CHECKPOINTS,
        });
        self
    }

    /// Whether the recurrent state lives in device buffers ([`KvCache::with_device_recurrent`]).
    pub fn has_device_recurrent(&self) -> bool {
        matches!(self.recurrent.as_ref().map(|r| &r.layers), Some(Layers::Device(_)))
    }

    /// Sets how many turn-boundary checkpoints of the recurrent state are kept (default
    /// [`MAX_RECURRENT_CHECKPOINTS`], at most [`RECURRENT_CHECKPOINTS_LIMIT`]): with two or more,
    /// the earliest (where a session's messages start) and the newest; with one, the newest;
    /// with none, every turn that cannot extend the cache prefills from the start. Checkpoints
    /// over the new count are dropped (the earliest kept). Nothing to do without recurrent state.
    pub fn set_max_checkpoints(&mut self, n: usize) {
        let Some(r) = self.recurrent.as_mut() else { return };
        r.max_checkpoints = n.min(RECURRENT_CHECKPOINTS_LIMIT);
        r.trim_checkpoints();
    }

    /// Whether the cache holds recurrent state (a hybrid model's): it cannot be cut back to an
    /// arbitrary position, only to a [`KvCache::checkpoint`].
    pub fn is_recurrent(&self) -> bool {
        self.recurrent.is_some()
    }

    /// The recurrent layers, for the model's pass to update in place (only during a pass).
    pub fn recurrent_layers(&mut self) -> Result<&mut [RecurrentLayer]> {
        if self.pass.is_none() {
            return Err(Error::Backend { reason: "recurrent state used outside a pass".into() });
        }
        match self.recurrent.as_mut().map(|r| &mut r.layers) {
            Some(Layers::Host(ls)) => Ok(ls),
            Some(Layers::Device(_)) => {
                Err(Error::Backend { reason: "this cache holds its recurrent state on the device".into() })
            }
            None => Err(Error::Backend { reason: "this cache has no recurrent state".into() }),
        }
    }

    /// The device-resident recurrent layers, for the model's pass to replace (only during a
    /// pass; see [`DeviceRecurrentLayer`]).
    pub fn device_recurrent_layers(&mut self) -> Result<&mut [DeviceRecurrentLayer]> {
        if self.pass.is_none() {
            return Err(Error::Backend { reason: "recurrent state used outside a pass".into() });
        }
        match self.recurrent.as_mut().map(|r| &mut r.layers) {
            Some(Layers::Device(ls)) => Ok(ls),
            Some(Layers::Host(_)) => {
                Err(Error::Backend { reason: "this cache holds its recurrent state on the host".into() })
            }
            None => Err(Error::Backend { reason: "this cache has no recurrent state".into() }),
        }
    }

    /// Keeps a copy of the recurrent state at the current token count (a turn boundary), so a
    /// later [`KvCache::rewind`] to this count or past it restores it instead of starting over.
    /// Keeps as many as [`KvCache::set_max_checkpoints`] says (default
    /// [`MAX_RECURRENT_CHECKPOINTS`]): the earliest and the newest; nothing to do without
    /// recurrent state.
    pub fn checkpoint(&mut self) {
        let len = self.len;
        let Some(r) = self.recurrent.as_mut() else { return };
        if self.pass.is_some() || len == 0 || r.checkpoints.last().is_some_and(|(p, _)| *p == len) {
            return;
        }
        r.checkpoints.retain(|(p, _)| *p < len);
        if r.max_checkpoints == 0 {
            return;
        }
        r.checkpoints.push((len, r.layers.clone()));
        r.trim_checkpoints();
    }

    /// A copy of the recurrent layers' current state (`None` for a plain transformer); read back
    /// from the device when it lives there.
    pub fn recurrent_state(&self) -> Result<Option<Vec<RecurrentLayer>>> {
        self.recurrent.as_ref().map(|r| r.layers.to_host()).transpose()
    }

    /// Token counts of the recurrent checkpoints held (ascending).
    pub fn checkpoints(&self) -> Vec<usize> {
        self.recurrent.as_ref().map(|r| r.checkpoints.iter().map(|(p, _)| *p).collect()).unwrap_or_default()
    }

    /// Goes back to at most `n` tokens and returns how many the cache keeps: `n` (or `len()` if
    /// that is less) where the cache can cut there; else, with recurrent state, the largest
    /// checkpoint at or below `n`, restored; else 0 (the cache is emptied and the caller prefills
    /// again).
    pub fn rewind(&mut self, n: usize) -> usize {
        if n >= self.len {
            return self.len;
        }
        if let Some(r) = self.recurrent.as_mut() {
            let Some(i) = r.checkpoints.iter().rposition(|(p, _)| *p <= n) else {
                self.reset();
                return 0;
            };
            r.checkpoints.truncate(i + 1);
            let (p, layers) = &r.checkpoints[i];
            let p = *p;
            r.layers.clone_from(layers);
            self.forget_from(p);
            self.len = p;
            return p;
        }
        if self.truncate(n) {
            n
        } else {
            0
        }
    }

    /// Hands the buffers back (memory pressure): the cache is empty and holds no memory until
    /// its next pass, which allocates it again. Returns the bytes released.
    pub fn release(&mut self) -> usize {
        if self.released {
            return 0;
        }
        let bytes = self.size_bytes();
        self.reset();
        self.k = Vec::new();
        self.v = Vec::new();
        if let Some(h) = self.host.as_mut() {
            *h = HostKv::default();
        }
        self.released = true;
        bytes
    }

    /// Whether the buffers were handed back and not allocated again yet.
    pub fn is_released(&self) -> bool {
        self.released
    }

    /// Tokens currently cached.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The configured context.
    pub fn max_context(&self) -> usize {
        self.layout.max_context
    }

    /// The largest pass `begin` accepts.
    pub fn max_chunk(&self) -> usize {
        self.layout.max_chunk
    }

    /// Bytes held by the cache (f16 on the host, f32 tensors on a device; 0 once released).
    pub fn size_bytes(&self) -> usize {
        let recurrent = self.recurrent.as_ref().map_or(0, Recurrent::bytes);
        if let Some(h) = &self.host {
            return recurrent + h.k.iter().chain(&h.v).map(|b| b.len() * 2).sum::<usize>();
        }
        recurrent + self.k.iter().chain(&self.v).map(|t| t.dims().iter().product::<usize>() * 4).sum::<usize>()
    }

    fn ring_index(&self, layer: usize) -> Result<usize> {
        match self.layout.layer_windows.get(layer) {
            Some(Some(_)) => Ok(1),
            Some(None) => Ok(0),
            None => Err(Error::InvalidParameter { name: "layer", reason: format!("{layer} out of range") }),
        }
    }

    /// Starts a pass of `n` tokens at position `len()`.
    pub fn begin(&mut self, n: usize) -> Result<()> {
        if self.released {
            let recurrent = self.recurrent.take();
            *self = Self::new(self.layout.clone(), &self.device)?;
            self.recurrent = recurrent;
        }
        if n == 0 || n > self.layout.max_chunk {
            return Err(Error::InvalidParameter {
                name: "n",
                reason: format!("{n} tokens per pass (1..={})", self.layout.max_chunk),
            });
        }
        let end = self.len + n;
        if end > self.layout.max_context {
            return Err(Error::ContextOverflow { max: self.layout.max_context, requested: end });
        }
        for (ring, mask) in self.rings.iter_mut().zip(self.masks.iter_mut()) {
            *mask = None;
            if ring.capacity == 0 {
                continue;
            }
            for p in self.len..end {
                ring.slot_pos[p % ring.capacity] = p as i64;
            }
            if self.host.is_none() {
                let s = ring.visible(end);
                *mask = Some(Tensor::<2>::from_data(TensorData::new(ring.mask(self.len, n, s), [n, s]), &self.device));
            }
        }
        self.pass = Some((self.len, n));
        Ok(())
    }

    /// Stores this pass's keys and values for `layer`. k, v: [KV, n, hd]
    pub fn store(&mut self, layer: usize, k: Tensor<3>, v: Tensor<3>) -> Result<()> {
        let (start, n) = self.pass.ok_or_else(|| Error::Backend { reason: "kv store outside a pass".into() })?;
        let cap = self.rings[self.ring_index(layer)?].capacity;
        let (kvh, hd) = (self.layout.kv_heads, self.layout.head_dim);
        let s0 = start % cap;
        let first = n.min(cap - s0);
        if self.host.is_some() {
            return Err(host_only());
        }
        let placeholder = &self.placeholder;
        let put = |t: &mut Tensor<3>, x: Tensor<3>| {
            // Move the buffer out (its only owner), write, move it back: no copy of the cache.
            let mut buf = std::mem::replace(t, placeholder.clone());
            let head = x.clone().slice([0..kvh, 0..first, 0..hd]);
            buf = buf.slice_assign([0..kvh, s0..s0 + first, 0..hd], head);
            if first < n {
                let tail = x.slice([0..kvh, first..n, 0..hd]);
                buf = buf.slice_assign([0..kvh, 0..n - first, 0..hd], tail);
            }
            *t = buf;
        };
        put(&mut self.k[layer], k);
        put(&mut self.v[layer], v);
        Ok(())
    }

    /// The CPU path of [`KvCache::store`]: k, v: [n, KV, hd] on the host (token-major, as the
    /// projections write them). An error on a device cache.
    pub fn store_host(&mut self, layer: usize, k: &[f32], v: &[f32]) -> Result<()> {
        let (start, n) = self.pass.ok_or_else(|| Error::Backend { reason: "kv store outside a pass".into() })?;
        let cap = self.rings[self.ring_index(layer)?].capacity;
        let (kvh, hd) = (self.layout.kv_heads, self.layout.head_dim);
        let bad = || Error::Backend { reason: "kv store: layer or shape out of range".into() };
        let h = self.host.as_mut().ok_or_else(bad)?;
        if cap == 0 || k.len() != n * kvh * hd || v.len() != k.len() {
            return Err(bad());
        }
        let (kb, vb) = (h.k.get_mut(layer).ok_or_else(bad)?, h.v.get_mut(layer).ok_or_else(bad)?);
        // Token `i` of head `hh` goes to slot `(start + i) % cap` of head `hh`.
        for (buf, src) in [(kb, k), (vb, v)] {
            for (i, tok) in src.chunks_exact(kvh * hd).enumerate() {
                let slot = (start + i) % cap;
                for (hh, row) in tok.chunks_exact(hd).enumerate() {
                    buf.get_mut((hh * cap + slot) * hd..(hh * cap + slot + 1) * hd)
                        .ok_or_else(bad)?
                        .convert_from_f32_slice(row);
                }
            }
        }
        Ok(())
    }

    /// Whether the keys and values live on the host (the CPU path).
    pub fn is_host(&self) -> bool {
        self.host.is_some()
    }

    /// Keys, values and additive mask visible to this pass's queries at `layer`.
    /// -> (k [KV, S, hd], v [KV, S, hd], mask [n, S], S)
    pub fn view(&self, layer: usize, n: usize) -> Result<(Tensor<3>, Tensor<3>, Tensor<2>, usize)> {
        let (start, pn) = self.pass.ok_or_else(|| Error::Backend { reason: "kv view outside a pass".into() })?;
        if pn != n {
            return Err(Error::Backend { reason: "kv view size differs from the pass".into() });
        }
        let ri = self.ring_index(layer)?;
        let s = self.rings[ri].visible(start + n);
        let (kvh, hd) = (self.layout.kv_heads, self.layout.head_dim);
        if self.host.is_some() {
            return Err(host_only());
        }
        let mask = self.masks[ri].clone().ok_or_else(|| Error::Backend { reason: "kv pass has no mask".into() })?;
        let k = self.k[layer].clone().slice([0..kvh, 0..s, 0..hd]);
        let v = self.v[layer].clone().slice([0..kvh, 0..s, 0..hd]);
        Ok((k, v, mask, s))
    }

    /// The host buffers of `layer` for this pass's `n` queries, on the CPU; `None` on a device.
    pub fn host_view(&self, layer: usize, n: usize) -> Result<Option<HostView<'_>>> {
        let Some(h) = &self.host else { return Ok(None) };
        let (start, pn) = self.pass.ok_or_else(|| Error::Backend { reason: "kv view outside a pass".into() })?;
        if pn != n {
            return Err(Error::Backend { reason: "kv view size differs from the pass".into() });
        }
        let ri = self.ring_index(layer)?;
        let ring = &self.rings[ri];
        let s = ring.visible(start + n);
        let (kvh, hd) = (self.layout.kv_heads, self.layout.head_dim);
        let bad = || Error::Backend { reason: "kv host buffers do not match the pass".into() };
        let (k, v) = (h.k.get(layer).ok_or_else(bad)?, h.v.get(layer).ok_or_else(bad)?);
        let slot_pos = ring.slot_pos.get(..s).ok_or_else(bad)?;
        if k.len() != kvh * ring.capacity * hd || v.len() != k.len() {
            return Err(bad());
        }
        Ok(Some(HostView {
            k,
            v,
            slot_pos,
            start,
            window: ring.window,
            cap: ring.capacity,
            s,
            kv_heads: kvh,
            head_dim: hd,
        }))
    }

    /// Ends the pass: its tokens become part of the cache.
    pub fn commit(&mut self) {
        if let Some((start, n)) = self.pass.take() {
            self.len = start + n;
        }
        self.masks = [None, None];
    }

    /// Abandons a pass that failed midway (its slots are forgotten).
    pub fn abort(&mut self) {
        if self.recurrent.is_some() && self.pass.is_some() {
            // The pass may have updated some recurrent layers and not others: start over.
            self.reset();
            return;
        }
        if let Some((start, _)) = self.pass.take() {
            let len = self.len;
            self.forget_from(start.max(len));
        }
        self.masks = [None, None];
    }

    fn forget_from(&mut self, n: usize) {
        for ring in &mut self.rings {
            for p in ring.slot_pos.iter_mut() {
                if *p >= n as i64 {
                    *p = -1;
                }
            }
        }
    }

    /// Keeps only the first `n` tokens. Returns `false` (and resets) when a sliding-window ring has
    /// already overwritten keys that position `n` would need, so the caller must prefill again.
    pub fn truncate(&mut self, n: usize) -> bool {
        if n >= self.len {
            return true;
        }
        if self.recurrent.is_some() {
            // Only a checkpoint at exactly `n` keeps the state consistent.
            if self.rewind(n) == n {
                return true;
            }
            self.reset();
            return false;
        }
        let ring = &self.rings[1];
        if let Some(w) = ring.window {
            // Positions [n-w+1, n) must still be in the ring, which holds [len-cap, len).
            let need_from = (n + 1).saturating_sub(w);
            let held_from = self.len.saturating_sub(ring.capacity);
            if ring.capacity > 0 && need_from < held_from {
                self.reset();
                return false;
            }
        }
        self.forget_from(n);
        self.len = n;
        true
    }

    /// The LoRA adapters the cache's passes run under.
    pub fn adapters(&self) -> &crate::lora::LoraSet {
        &self.adapters
    }

    /// Makes `set` the adapters of the next passes. A set other than the current one empties
    /// the cache (its keys and values were computed under the old set); returns whether it did.
    pub fn set_adapters(&mut self, set: crate::lora::LoraSet) -> bool {
        if self.adapters.same_as(&set) {
            return false;
        }
        self.reset();
        self.adapters = set;
        true
    }

    /// Empties the cache (the buffers stay allocated).
    pub fn reset(&mut self) {
        if let Some(r) = self.recurrent.as_mut() {
            r.zero();
        }
        self.forget_from(0);
        self.len = 0;
        self.pass = None;
        self.masks = [None, None];
    }
}

/// Element type of a [`KvSnapshot`]'s rows: what the cache that wrote it stores (f16 on the
/// host, f32 on a device). A snapshot restores into either kind of cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvDtype {
    /// IEEE half precision, little-endian.
    F16,
    /// IEEE single precision, little-endian.
    F32,
}

impl KvDtype {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Self::F16 => 2,
            Self::F32 => 4,
        }
    }
}

/// A backend-independent copy of a cache's contents, in position order (not slot order), for
/// session files: for each layer, for each position its ring holds (ascending), the key row then
/// the value row, each `[kv_heads, head_dim]` elements of `dtype`, little-endian.
#[derive(Debug, Clone, PartialEq)]
pub struct KvSnapshot {
    /// Tokens cached.
    pub len: usize,
    /// Positions held by the global ring and by the sliding-window ring (`lo..len`).
    pub held: [std::ops::Range<usize>; 2],
    /// Element type of `data`.
    pub dtype: KvDtype,
    /// The rows, as described above.
    pub data: Vec<u8>,
}

impl KvSnapshot {
    /// The bytes `data` must have for `layout` (validated before anything is allocated from it).
    pub fn expected_bytes(layout: &CacheLayout, held: &[std::ops::Range<usize>; 2], dtype: KvDtype) -> Option<usize> {
        let row = layout.kv_heads.checked_mul(layout.head_dim)?.checked_mul(2 * dtype.size())?;
        layout.layer_windows.iter().try_fold(0usize, |acc, w| {
            let n = held[usize::from(w.is_some())].len();
            acc.checked_add(n.checked_mul(row)?)
        })
    }
}

/// A copy of a hybrid model's recurrent state and of its turn-boundary checkpoints, for session
/// files (what [`KvSnapshot`] is for the KV rows). The KV rows of the attention layers travel in
/// the [`KvSnapshot`] beside it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecurrentSnapshot {
    /// The state after the cached tokens, per recurrent layer.
    pub layers: Vec<RecurrentLayer>,
    /// `(token count, state then)`, ascending token counts, each at most the cached tokens.
    pub checkpoints: Vec<(usize, Vec<RecurrentLayer>)>,
}

impl RecurrentSnapshot {
    /// `(conv values, state values)` per layer: the shape every set of layers has.
    pub fn shapes(&self) -> Vec<(usize, usize)> {
        self.layers.iter().map(|l| (l.conv.len(), l.state.len())).collect()
    }
}

fn snapshot_err(reason: impl Into<String>) -> Error {
    Error::SessionFile { reason: reason.into() }
}

impl KvCache {
    /// The geometry of this cache.
    pub fn layout(&self) -> &CacheLayout {
        &self.layout
    }

    /// A copy of the recurrent state and its checkpoints (`None` for a plain transformer, or
    /// while the buffers are released: nothing is cached then). Not during a pass. Device-resident
    /// state is read back here (a session file is written between turns, never per token).
    pub fn recurrent_snapshot(&self) -> Result<Option<RecurrentSnapshot>> {
        if self.pass.is_some() {
            return Err(Error::Backend { reason: "recurrent snapshot during a pass".into() });
        }
        let Some(r) = self.recurrent.as_ref().filter(|_| !self.released && self.len > 0) else { return Ok(None) };
        let checkpoints = r.checkpoints.iter().map(|(p, ls)| Ok((*p, ls.to_host()?))).collect::<Result<Vec<_>>>()?;
        Ok(Some(RecurrentSnapshot { layers: r.layers.to_host()?, checkpoints }))
    }

    /// Puts back the recurrent state of a session file, after [`KvCache::restore`] put back its
    /// KV rows (so `len()` is the snapshot's token count). Everything is checked first: the
    /// layers' shapes against this model's, the checkpoints ascending, within `1..=len()` and at
    /// most the count set for this cache ([`KvCache::set_max_checkpoints`]); a snapshot that does not fit is [`Error::SessionFile`]
    /// and leaves the cache empty. `None` is accepted only for an empty cache (a hybrid model's
    /// KV rows without the state they were computed with would be wrong).
    pub fn restore_recurrent(&mut self, snap: Option<&RecurrentSnapshot>) -> Result<()> {
        let len = self.len;
        let fail = |c: &mut Self, reason: String| {
            c.reset();
            Err(snapshot_err(reason))
        };
        let (r, snap) = match (self.recurrent.as_ref(), snap) {
            (None, None) => return Ok(()),
            (Some(_), None) if len == 0 => return Ok(()),
            (Some(_), None) => return fail(self, format!("{len} cached tokens without the recurrent state they left")),
            (None, Some(_)) => return fail(self, "recurrent state for a model that has none".into()),
            (Some(r), Some(s)) => (r, s),
        };
        let want: Vec<(usize, usize)> = r.layers.shapes();
        let fits = |ls: &[RecurrentLayer]| {
            ls.len() == want.len() && ls.iter().zip(&want).all(|(l, &(c, s))| l.conv.len() == c && l.state.len() == s)
        };
        if !fits(&snap.layers) || !snap.checkpoints.iter().all(|(_, ls)| fits(ls)) {
            return fail(self, "recurrent state shapes differ from the model's".into());
        }
        let at: Vec<usize> = snap.checkpoints.iter().map(|(p, _)| *p).collect();
        if len == 0
            || at.len() > r.max_checkpoints
            || at.windows(2).any(|w| w[0] >= w[1])
            || at.iter().any(|&p| p == 0 || p > len)
        {
            return fail(self, format!("recurrent checkpoints at {at:?} do not fit {len} cached tokens"));
        }
        let all_finite = std::iter::once(&snap.layers)
            .chain(snap.checkpoints.iter().map(|(_, l)| l))
            .flatten()
            .all(|l| l.conv.iter().chain(&l.state).all(|v| v.is_finite()));
        if !all_finite {
            return fail(self, "recurrent state holds non-finite values".into());
        }
        let device = self.device.clone();
        if let Some(r) = self.recurrent.as_mut() {
            r.layers = r.layers.like(&snap.layers, &device);
            r.checkpoints = snap.checkpoints.iter().map(|(p, ls)| (*p, r.layers.like(ls, &device))).collect();
        }
        Ok(())
    }

    /// The positions a ring holds: `lo..len`, contiguous (the cache never leaves gaps).
    fn held(&self, ri: usize) -> Result<std::ops::Range<usize>> {
        let ring = &self.rings[ri];
        if ring.capacity == 0 || self.released {
            return Ok(self.len..self.len);
        }
        let mut lo = self.len;
        while lo > 0 && self.len - lo < ring.capacity && ring.slot_pos[(lo - 1) % ring.capacity] == (lo - 1) as i64 {
            lo -= 1;
        }
        // Anything held below `lo` would be a gap: refuse rather than save a cache that would
        // restore differently.
        if ring.slot_pos.iter().any(|&p| p >= 0 && (p as usize) < lo) {
            return Err(Error::Backend { reason: "kv cache ring is not contiguous".into() });
        }
        Ok(lo..self.len)
    }

    /// Copies the cache's contents out (see [`KvSnapshot`]). Not during a pass.
    pub fn snapshot(&self) -> Result<KvSnapshot> {
        if self.pass.is_some() {
            return Err(Error::Backend { reason: "kv snapshot during a pass".into() });
        }
        let held = [self.held(0)?, self.held(1)?];
        let (kvh, hd) = (self.layout.kv_heads, self.layout.head_dim);
        let dtype = if self.host.is_some() { KvDtype::F16 } else { KvDtype::F32 };
        let cap_of = |w: &Option<usize>| self.rings[usize::from(w.is_some())].capacity;
        let total =
            KvSnapshot::expected_bytes(&self.layout, &held, dtype).ok_or_else(|| snapshot_err("cache too large"))?;
        let mut data = Vec::with_capacity(total);
        if self.released || self.len == 0 {
            return Ok(KvSnapshot { len: if self.released { 0 } else { self.len }, held: [0..0, 0..0], dtype, data });
        }
        for (layer, w) in self.layout.layer_windows.iter().enumerate() {
            let cap = cap_of(w);
            let range = held[usize::from(w.is_some())].clone();
            match &self.host {
                Some(h) => {
                    let (kb, vb) = (&h.k[layer], &h.v[layer]);
                    for p in range {
                        let slot = p % cap;
                        for buf in [kb, vb] {
                            for hh in 0..kvh {
                                for x in &buf[(hh * cap + slot) * hd..(hh * cap + slot + 1) * hd] {
                                    data.extend_from_slice(&x.to_le_bytes());
                                }
                            }
                        }
                    }
                }
                None => {
                    let read = |t: &Tensor<3>| -> Result<Vec<f32>> { crate::model::layers::read_f32(t.clone()) };
                    let (kb, vb) = (read(&self.k[layer])?, read(&self.v[layer])?);
                    for p in range {
                        let slot = p % cap;
                        for buf in [&kb, &vb] {
                            for hh in 0..kvh {
                                for x in &buf[(hh * cap + slot) * hd..(hh * cap + slot + 1) * hd] {
                                    data.extend_from_slice(&x.to_le_bytes());
                                }
                            }
                        }
                    }
                }
            }
        }
        debug_assert_eq!(data.len(), total);
        Ok(KvSnapshot { len: self.len, held, dtype, data })
    }

    /// Replaces the cache's contents with `snap` (taken from a cache of the same layout, on any
    /// backend). Everything is validated first: a snapshot that does not fit is
    /// [`Error::SessionFile`] and leaves the cache empty.
    pub fn restore(&mut self, snap: &KvSnapshot) -> Result<()> {
        self.reset();
        if snap.len == 0 {
            return Ok(());
        }
        if snap.len > self.layout.max_context {
            return Err(Error::ContextOverflow { max: self.layout.max_context, requested: snap.len });
        }
        for (ri, range) in snap.held.iter().enumerate() {
            let ring = &self.rings[ri];
            let ok = if ring.capacity == 0 {
                range.is_empty()
            } else {
                range.end == snap.len && range.start <= range.end && range.len() <= ring.capacity
                    // The global ring holds the whole context; a window ring at least the window.
                    && (ri == 1 || range.start == 0)
                    && ring.window.is_none_or(|w| range.len() >= snap.len.min(w - 1))
            };
            if !ok {
                return Err(snapshot_err(format!("kv ranges {:?} do not fit the cache (len {})", snap.held, snap.len)));
            }
        }
        let want = KvSnapshot::expected_bytes(&self.layout, &snap.held, snap.dtype);
        if want != Some(snap.data.len()) {
            return Err(snapshot_err(format!("kv data is {} bytes, the layout needs {want:?}", snap.data.len())));
        }
        if self.released {
            *self = Self::new(self.layout.clone(), &self.device)?;
        }
        let (kvh, hd) = (self.layout.kv_heads, self.layout.head_dim);
        let esz = snap.dtype.size();
        let mut at = 0usize;
        let mut take = |n: usize| {
            let s = &snap.data[at..at + n * esz];
            at += n * esz;
            s
        };
        let widen = |bytes: &[u8]| -> Vec<f32> {
            match snap.dtype {
                KvDtype::F16 => bytes.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                KvDtype::F32 => bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
            }
        };
        for (layer, w) in self.layout.layer_windows.clone().iter().enumerate() {
            let ri = usize::from(w.is_some());
            let cap = self.rings[ri].capacity;
            let range = snap.held[ri].clone();
            match self.host.as_mut() {
                Some(h) => {
                    for p in range {
                        let slot = p % cap;
                        for buf in [&mut h.k[layer], &mut h.v[layer]] {
                            for hh in 0..kvh {
                                let dst = &mut buf[(hh * cap + slot) * hd..(hh * cap + slot + 1) * hd];
                                let src = take(hd);
                                match snap.dtype {
                                    KvDtype::F16 => {
                                        for (d, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                                            *d = f16::from_le_bytes([b[0], b[1]]);
                                        }
                                    }
                                    // A device snapshot on the CPU: rounded to f16, as the CPU
                                    // path rounds every key and value it stores.
                                    KvDtype::F32 => dst.convert_from_f32_slice(&widen(src)),
                                }
                            }
                        }
                    }
                }
                None => {
                    let mut kb = vec![0f32; kvh * cap * hd];
                    let mut vb = vec![0f32; kvh * cap * hd];
                    for p in range {
                        let slot = p % cap;
                        for buf in [&mut kb, &mut vb] {
                            for hh in 0..kvh {
                                let src = widen(take(hd));
                                buf[(hh * cap + slot) * hd..(hh * cap + slot + 1) * hd].copy_from_slice(&src);
                            }
                        }
                    }
                    let up = |b: Vec<f32>| Tensor::<3>::from_data(TensorData::new(b, [kvh, cap, hd]), &self.device);
                    self.k[layer] = up(kb);
                    self.v[layer] = up(vb);
                }
            }
        }
        for (ring, range) in self.rings.iter_mut().zip(&snap.held) {
            for p in range.clone() {
                ring.slot_pos[p % ring.capacity] = p as i64;
            }
        }
        self.len = snap.len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring_positions(r: &Ring) -> Vec<i64> {
        r.slot_pos.clone()
    }

    #[test]
    fn sliding_mask_sees_window_including_self() {
        let mut r = Ring::new(6, Some(3));
        for p in 0..5 {
            r.slot_pos[p % 6] = p as i64;
        }
        // Query at position 4 sees 2, 3, 4 only.
        let m = r.mask(4, 1, 5);
        assert_eq!(m.iter().map(|&x| x == 0.0).collect::<Vec<_>>(), vec![false, false, true, true, true]);
    }

    #[test]
    fn causal_mask() {
        let mut r = Ring::new(4, None);
        for p in 0..3 {
            r.slot_pos[p] = p as i64;
        }
        let m = r.mask(1, 2, 3);
        let allowed: Vec<bool> = m.iter().map(|&x| x == 0.0).collect();
        assert_eq!(allowed, vec![true, true, false, true, true, true]);
    }

    #[test]
    fn ring_wraps_and_truncate_detects_lost_keys() {
        let dev = Device::flex();
        let layout =
            CacheLayout { layer_windows: vec![Some(4), None], kv_heads: 1, head_dim: 2, max_context: 32, max_chunk: 2 };
        let mut c = KvCache::new(layout, &dev).unwrap();
        assert_eq!(c.rings[1].capacity, 5);
        for _ in 0..6 {
            c.begin(2).unwrap();
            let t = [1f32; 4];
            c.store_host(0, &t, &t).unwrap();
            c.store_host(1, &t, &t).unwrap();
            // The tensor store is the device path's; a CPU cache refuses it (typed error).
            let x = || Tensor::<3>::from_data(TensorData::new(vec![1f32; 4], [1, 2, 2]), &dev);
            assert!(matches!(c.store(0, x(), x()), Err(Error::Backend { .. })));
            c.commit();
        }
        assert_eq!(c.len(), 12);
        // Ring holds positions 7..12 in some slot order.
        let mut held = ring_positions(&c.rings[1]);
        held.sort();
        assert_eq!(held, vec![7, 8, 9, 10, 11]);
        // Truncating to 11 needs 8..11: still there.
        assert!(c.truncate(11));
        // Truncating to 5 needs 2..5: gone, so the cache resets.
        assert!(!c.truncate(5));
        assert_eq!(c.len(), 0);
        assert!(matches!(c.begin(3), Err(Error::InvalidParameter { .. })));
    }

    #[test]
    fn overflow_is_typed() {
        let dev = Device::flex();
        let layout = CacheLayout { layer_windows: vec![None], kv_heads: 1, head_dim: 2, max_context: 4, max_chunk: 4 };
        let mut c = KvCache::new(layout, &dev).unwrap();
        c.begin(3).unwrap();
        c.commit();
        assert!(matches!(c.begin(2), Err(Error::ContextOverflow { max: 4, requested: 5 })));
    }

    /// A cache with one recurrent layer whose state is the token count, after `turns` passes of
    /// 2 tokens with a checkpoint after each, keeping `max` checkpoints.
    fn recurrent_cache(max: usize, turns: usize) -> KvCache {
        let layout = CacheLayout { layer_windows: vec![None], kv_heads: 1, head_dim: 2, max_context: 64, max_chunk: 8 };
        let mut c = KvCache::new(layout, &Device::flex()).unwrap().with_recurrent(&[(1, 1)]);
        c.set_max_checkpoints(max);
        for _ in 0..turns {
            c.begin(2).unwrap();
            let len = c.len() + 2;
            c.recurrent_layers().unwrap()[0].state[0] = len as f32;
            c.commit();
            c.checkpoint();
        }
        c
    }

    /// The number of recurrent checkpoints is the cache's setting: the earliest and the newest
    /// with two or more, the newest with one, none with zero; lowering it drops the ones in
    /// between; a rewind restores the state of the checkpoint it lands on; a snapshot with more
    /// checkpoints than the setting is refused.
    #[test]
    fn recurrent_checkpoints_follow_the_setting() {
        assert_eq!(recurrent_cache(MAX_RECURRENT_CHECKPOINTS, 6).checkpoints(), vec![2, 8, 10, 12]);
        assert_eq!(recurrent_cache(2, 6).checkpoints(), vec![2, 12]);
        assert_eq!(recurrent_cache(1, 6).checkpoints(), vec![12]);
        assert!(recurrent_cache(0, 6).checkpoints().is_empty());
        assert_eq!(recurrent_cache(10, 6).checkpoints(), vec![2, 4, 6, 8, 10, 12]);
        let mut c = recurrent_cache(10, 6);
        c.set_max_checkpoints(3);
        assert_eq!(c.checkpoints(), vec![2, 10, 12]);
        assert_eq!(c.rewind(9), 2);
        assert_eq!(c.recurrent_state().unwrap().unwrap()[0].state, vec![2.0]);
        // Capped at the limit.
        let mut c = recurrent_cache(1000, 0);
        c.set_max_checkpoints(1000);
        assert_eq!(c.recurrent.as_ref().unwrap().max_checkpoints, RECURRENT_CHECKPOINTS_LIMIT);
        // A snapshot of six checkpoints into caches keeping six and three.
        let snap = recurrent_cache(10, 6).recurrent_snapshot().unwrap().unwrap();
        let kv = recurrent_cache(10, 6).snapshot().unwrap();
        for (max, ok) in [(6, true), (3, false)] {
            let mut c = recurrent_cache(max, 0);
            c.restore(&kv).unwrap();
            assert_eq!(c.restore_recurrent(Some(&snap)).is_ok(), ok, "{max}");
        }
    }
}
