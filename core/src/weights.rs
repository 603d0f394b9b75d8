//! The weight-source abstraction between model files and models.
//!
//! A model asks for logical weights ([`WeightId`]) and receives raw, still-quantized data
//! ([`RawWeight`]); how those bytes become device tensors (dequantized now, kept as GGUF blocks
//! by the quantized kernels) is decided by the backend layer, not by the model code. The mapping
//! from `WeightId` to a file's tensor names is one table per format (`gguf::names`).

use std::sync::Arc;

use crate::gguf::{names, GgufFile};
use crate::quant::GgmlType;
use crate::{Error, Result};

/// A logical weight of a decoder-only transformer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(missing_docs)]
pub enum WeightId {
    TokenEmbedding,
    OutputNorm,
    /// The LM head, when not tied to the embedding.
    Output,
    /// Llama 3's RoPE frequency factors (`hd/2` divisors).
    RopeFreqs,
    AttnNorm {
        layer: usize,
    },
    AttnQ {
        layer: usize,
    },
    AttnK {
        layer: usize,
    },
    AttnV {
        layer: usize,
    },
    AttnOutput {
        layer: usize,
    },
    AttnQNorm {
        layer: usize,
    },
    AttnKNorm {
        layer: usize,
    },
    AttnQBias {
        layer: usize,
    },
    AttnKBias {
        layer: usize,
    },
    AttnVBias {
        layer: usize,
    },
    PostAttnNorm {
        layer: usize,
    },
    FfnNorm {
        layer: usize,
    },
    FfnGate {
        layer: usize,
    },
    FfnUp {
        layer: usize,
    },
    FfnDown {
        layer: usize,
    },
    PostFfnNorm {
        layer: usize,
    },
    /// Another tensor of block `layer`, by its GGUF name after `blk.{layer}.` (an architecture's
    /// own tensors, e.g. Qwen 3.5's `ssm_conv1d.weight`), so a new layer family needs no new variant.
    Block {
        layer: usize,
        name: &'static str,
    },
}

/// A weight's raw data as stored in the file.
#[derive(Debug, Clone, Copy)]
pub struct RawWeight<'a> {
    /// Element type of the blocks.
    pub ty: GgmlType,
    /// Rows (output features; 1 for vectors).
    pub rows: usize,
    /// Row length (input features), the dimension the blocks run along.
    pub cols: usize,
    /// The blocks, `rows * bytes_per_row` bytes.
    pub bytes: &'a [u8],
}

impl RawWeight<'_> {
    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.bytes.len() / self.rows.max(1)
    }

    /// Dequantizes the whole weight to f32, row-major `[rows, cols]`.
    pub fn to_f32(&self) -> Result<Vec<f32>> {
        crate::quant::dequantize(self.ty, self.bytes, self.rows * self.cols)
    }
}

/// A weight's blocks held by reference to their shared owner (the memory map): what the CPU
/// kernels read in place, so no copy of the weights is ever made.
#[derive(Clone)]
pub struct SharedWeight {
    /// Element type of the blocks.
    pub ty: GgmlType,
    /// Rows (output features).
    pub rows: usize,
    /// Row length (input features).
    pub cols: usize,
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for SharedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedWeight({} {}x{})", self.ty, self.rows, self.cols)
    }
}

impl SharedWeight {
    /// A weight of `len` bytes at `start` in `owner`; `Error::Tensor` when that is outside it.
    pub fn new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        start: usize,
        len: usize,
    ) -> Result<Self> {
        if start.checked_add(len).is_none_or(|end| end > (*owner).as_ref().len()) {
            return Err(Error::Tensor { name: format!("{ty} {rows}x{cols}"), reason: "data outside its file".into() });
        }
        Ok(Self { ty, rows, cols, owner, start, len })
    }

    /// The blocks.
    pub fn bytes(&self) -> &[u8] {
        // In range by construction (checked when built from a RawWeight of the same owner).
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.len / self.rows.max(1)
    }
}

/// Where a model's weights come from.
pub trait WeightSource: Send + Sync {
    /// The raw data of a weight; `Error::Tensor` when it is missing.
    fn raw(&self, id: WeightId) -> Result<RawWeight<'_>>;
    /// The weight as a shared, owned handle on its blocks.
    fn shared(&self, id: WeightId) -> Result<SharedWeight>;
    /// Whether the weight exists.
    fn has(&self, id: WeightId) -> bool;
    /// The weight's tensor name in its file (for errors).
    fn name(&self, id: WeightId) -> String {
        names::tensor_name(id)
    }
    /// Hands back the resident memory of `len` bytes at `start` of a weight's data that now
    /// live elsewhere (uploaded to the GPU), where the source can re-read them on demand (a file
    /// mapping); a no-op otherwise.
    fn release(&self, _id: WeightId, _start: usize, _len: usize) {}
}

/// Checks that each weight in `expected` exists with `[rows, row length]` as given (a vector is
/// one row): [`Error::TensorShape`] names the first that does not, [`Error::Tensor`] a missing one.
pub fn check_shapes(src: &dyn WeightSource, expected: &[(WeightId, [usize; 2])]) -> Result<()> {
    for &(id, want) in expected {
        let w = src.raw(id)?;
        if [w.rows, w.cols] != want {
            return Err(Error::TensorShape { name: src.name(id), expected: want, found: [w.rows, w.cols] });
        }
    }
    Ok(())
}

/// Weights read zero-copy from a memory-mapped GGUF file.
#[derive(Debug, Clone)]
pub struct GgufWeights {
    file: Arc<GgufFile>,
}

impl GgufWeights {
    /// Wraps an opened file.
    pub fn new(file: Arc<GgufFile>) -> Self {
        Self { file }
    }

    /// The underlying file.
    pub fn file(&self) -> &GgufFile {
        &self.file
    }
}

impl WeightSource for GgufWeights {
    fn raw(&self, id: WeightId) -> Result<RawWeight<'_>> {
        let name = names::tensor_name(id);
        let t = self.file.tensor(&name)?;
        if t.shape.len() > 2 {
            return Err(Error::Tensor { name, reason: format!("expected at most 2 dimensions, got {:?}", t.shape) });
        }
        let cols = usize::try_from(t.row_len())
            .map_err(|_| Error::Tensor { name: name.clone(), reason: "too large".into() })?;
        let rows = usize::try_from(t.n_rows())
            .map_err(|_| Error::Tensor { name: name.clone(), reason: "too large".into() })?;
        Ok(RawWeight { ty: t.ty, rows, cols, bytes: self.file.tensor_data(t)? })
    }

    fn has(&self, id: WeightId) -> bool {
        self.file.has_tensor(&names::tensor_name(id))
    }

    fn shared(&self, id: WeightId) -> Result<SharedWeight> {
        let raw = self.raw(id)?;
        let base = self.file.bytes().as_ptr() as usize;
        let start = raw.bytes.as_ptr() as usize - base;
        let len = raw.bytes.len();
        SharedWeight::new(raw.ty, raw.rows, raw.cols, self.file.clone(), start, len)
    }

    fn release(&self, id: WeightId, start: usize, len: usize) {
        if let Ok(t) = self.file.tensor(&names::tensor_name(id)) {
            let len = (len as u64).min(t.size.saturating_sub(start as u64));
            self.file.release_range(t.offset.saturating_add(start as u64), len);
        }
    }
}
