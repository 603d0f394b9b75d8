#!/usr/bin/env python3
"""Generate dequantization golden files from the Python `gguf` package (the reference).

Outputs (relative to the repository root):
  tests/golden/dequant/synthetic.json        seeded synthetic blocks for every supported type
  tests/golden/dequant/gemma3_270m_rows.json  rows of real tensors of the Gemma 3 270M Q4_K_M GGUF

Run with the reference venv:
  /opt/refenv/bin/python tests/reference/make_dequant_goldens.py [--model PATH]

Expected values come from `gguf.quants.dequantize` only; nothing here is derived from Edgewise code.
Floats are written as the shortest decimal string that round-trips to the same float32, so a Rust
test that parses them as f32 gets the reference's exact float32 values back.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from importlib import metadata

import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf import GGML_QUANT_SIZES

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_MODEL = "/tmp/model/gemma-3-270m-q4_k_m.gguf"
EXPECTED_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
SEED = 20261125

TOLERANCE_NOTE = (
    "Values are float32 written in shortest round-trip form (parse as f32 to get the exact value). "
    "Every value in these files is bit-identical to ggml's own C dequantizers (checked by "
    "tests/reference/check_dequant_vs_ggml.py against ggml_get_type_traits()->to_float). An "
    "implementation that follows ggml's formulas in ggml's operation order gets them bit-exactly; allow "
    "|got - want| <= 1e-6 * max(1, |want|) only for a different multiply/add order or fused multiply-add "
    "(a few ulp at these magnitudes; a real bug is orders of magnitude larger)."
)


def f32_list(a: np.ndarray) -> list[float]:
    """Floats that json.dumps writes as the shortest string round-tripping to the same float32."""
    a = np.asarray(a, dtype=np.float32).ravel()
    if not np.all(np.isfinite(a)):
        raise SystemExit("non-finite value in reference output")
    # str(np.float32) is numpy's shortest unique repr for float32; float() of it is printed back
    # identically by Python's repr (shortest round-trip for float64 of the same decimal).
    out = []
    for x in a:
        s = str(x)
        v = float(s)
        if np.float32(v) != x:
            raise SystemExit(f"float formatting does not round-trip: {s!r}")
        out.append(v)
    return out


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def header(model_sha: str | None) -> dict:
    return {
        "reference": "gguf (Python package, gguf.quants.dequantize)",
        "reference_version": metadata.version("gguf"),
        "numpy_version": np.__version__,
        "python": sys.version.split()[0],
        "generator": "tests/reference/make_dequant_goldens.py",
        "model_sha256": model_sha,
        "tolerance": TOLERANCE_NOTE,
    }


# --------------------------------------------------------------------------------------------
# Synthetic blocks
# --------------------------------------------------------------------------------------------

# Byte offsets of the f16 scale fields inside one block (ggml's block_* structs, ggml-common.h).
# Each entry: (offset, kind) with kind "d" (signed scale) or "m" (min / dmin).
F16_FIELDS: dict[T, list[tuple[int, str]]] = {
    T.Q4_0: [(0, "d")],                      # d, qs[16]
    T.Q4_1: [(0, "d"), (2, "m")],            # d, m, qs[16]
    T.Q5_0: [(0, "d")],                      # d, qh[4], qs[16]
    T.Q5_1: [(0, "d"), (2, "m")],            # d, m, qh[4], qs[16]
    T.Q8_0: [(0, "d")],                      # d, qs[32]
    T.Q2_K: [(80, "d"), (82, "m")],          # scales[16], qs[64], d, dmin
    T.Q3_K: [(108, "d")],                    # hmask[32], qs[64], scales[12], d
    T.Q4_K: [(0, "d"), (2, "m")],            # d, dmin, scales[12], qs[128]
    T.Q5_K: [(0, "d"), (2, "m")],            # d, dmin, scales[12], qh[32], qs[128]
    T.Q6_K: [(208, "d")],                    # ql[128], qh[64], scales[16], d
}
# Expected (block elements, block bytes) per ggml; checked against gguf.GGML_QUANT_SIZES.
EXPECTED_SIZES: dict[T, tuple[int, int]] = {
    T.F32: (1, 4), T.F16: (1, 2), T.BF16: (1, 2),
    T.Q4_0: (32, 18), T.Q4_1: (32, 20), T.Q5_0: (32, 22), T.Q5_1: (32, 24), T.Q8_0: (32, 34),
    T.Q2_K: (256, 84), T.Q3_K: (256, 110), T.Q4_K: (256, 144), T.Q5_K: (256, 176), T.Q6_K: (256, 210),
}

N_BLOCKS = 4
N_FLOAT_ELEMS = 64  # elements for the plain float types


def finite_bits(rng: np.random.Generator, n: int, bits: int, exp_mask: int, specials: list[int]) -> np.ndarray:
    """Random bit patterns of width `bits` with Inf/NaN (all-ones exponent) excluded.
    Subnormals and both zeros are kept: they are what a float converter gets wrong."""
    dt = {16: np.uint16, 32: np.uint32}[bits]
    out = []
    while len(out) < n - len(specials):
        v = int(rng.integers(0, 1 << bits, dtype=np.uint64))
        if (v & exp_mask) != exp_mask:
            out.append(v)
    return np.array(specials + out, dtype=dt)


def synth_float(rng: np.random.Generator, qtype: T) -> bytes:
    if qtype == T.F32:
        specials = [0x00000000, 0x80000000, 0x00000001, 0x007FFFFF, 0x00800000, 0x3F800000, 0xBF800000, 0x7F7FFFFF]
        # Most values in a sane range so they read well, plus random bit patterns over the whole range.
        sane = rng.standard_normal(N_FLOAT_ELEMS // 2).astype(np.float32).view(np.uint32)
        raw = finite_bits(rng, N_FLOAT_ELEMS // 2, 32, 0x7F800000, specials)
        return np.concatenate([sane, raw]).astype("<u4").tobytes()
    if qtype == T.F16:
        specials = [0x0000, 0x8000, 0x0001, 0x03FF, 0x0400, 0x3C00, 0xBC00, 0x7BFF, 0xFBFF, 0x8001]
        raw = finite_bits(rng, N_FLOAT_ELEMS, 16, 0x7C00, specials)
        return raw.astype("<u2").tobytes()
    if qtype == T.BF16:
        specials = [0x0000, 0x8000, 0x0001, 0x007F, 0x0080, 0x3F80, 0xBF80, 0x7F7F, 0xFF7F]
        raw = finite_bits(rng, N_FLOAT_ELEMS, 16, 0x7F80, specials)
        return raw.astype("<u2").tobytes()
    raise AssertionError(qtype)


def synth_quant(rng: np.random.Generator, qtype: T) -> bytes:
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = []
    for _ in range(N_BLOCKS):
        b = bytearray(rng.integers(0, 256, size=type_size, dtype=np.uint8).tobytes())
        for off, kind in F16_FIELDS[qtype]:
            mag = rng.uniform(1e-3, 1e-1)
            sign = -1.0 if rng.random() < 0.5 else 1.0
            v = np.float16(sign * mag)
            assert np.isfinite(v) and v != 0
            b[off:off + 2] = np.array([v], dtype="<f2").tobytes()
        blocks.append(bytes(b))
    return b"".join(blocks)


def dequant(raw: bytes, qtype: T) -> np.ndarray:
    _, type_size = GGML_QUANT_SIZES[qtype]
    arr = np.frombuffer(raw, dtype=np.uint8).reshape(1, len(raw))
    assert len(raw) % type_size == 0
    out = gguf.quants.dequantize(arr, qtype)
    return np.asarray(out, dtype=np.float32).ravel()


def make_synthetic(out_path: str) -> None:
    rng = np.random.default_rng(SEED)
    cases = []
    for qtype in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                  T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K]:
        block_size, type_size = GGML_QUANT_SIZES[qtype]
        if (block_size, type_size) != EXPECTED_SIZES[qtype]:
            raise SystemExit(f"{qtype.name}: gguf says {(block_size, type_size)}, expected {EXPECTED_SIZES[qtype]}")
        raw = synth_float(rng, qtype) if qtype in (T.F32, T.F16, T.BF16) else synth_quant(rng, qtype)
        want = dequant(raw, qtype)
        n_blocks = len(raw) // type_size
        assert want.size == n_blocks * block_size
        cases.append({
            "type": qtype.name,
            "ggml_type_id": int(qtype.value),
            "block_elements": block_size,
            "block_bytes": type_size,
            "n_blocks": n_blocks,
            "n_elements": int(want.size),
            "f16_fields_overwritten": [{"offset": o, "field": k} for o, k in F16_FIELDS.get(qtype, [])],
            "raw_hex": raw.hex(),
            "expected": f32_list(want),
        })
        print(f"synthetic {qtype.name:5s}: {n_blocks} blocks x {type_size} B -> {want.size} floats, "
              f"|max| {float(np.max(np.abs(want))):.4g}")
    doc = header(None)
    doc["seed"] = SEED
    doc["description"] = (
        "Seeded random bytes, N blocks per quantized type, with every f16 scale/min field overwritten by "
        "+-uniform(1e-3, 1e-1) so no NaN/Inf arise; plain float types hold random finite bit patterns "
        "including zeros, subnormals and extremes. Decode raw_hex (little-endian, ggml block layout) and "
        "compare with expected."
    )
    doc["cases"] = cases
    write_json(out_path, doc)


# --------------------------------------------------------------------------------------------
# Real tensor rows
# --------------------------------------------------------------------------------------------

REAL_TENSORS: dict[str, list[str]] = {
    "F32": ["output_norm.weight", "blk.0.attn_q_norm.weight"],
    "Q8_0": ["token_embd.weight", "blk.0.attn_v.weight"],
    "Q5_0": ["blk.0.attn_k.weight", "blk.0.ffn_gate.weight"],
    "Q4_K": ["blk.0.attn_output.weight", "blk.2.ffn_down.weight"],
    "Q6_K": ["blk.0.ffn_down.weight", "blk.7.ffn_down.weight"],
}


def make_real(model: str, model_sha: str, out_path: str) -> None:
    reader = gguf.GGUFReader(model)
    by_name = {t.name: t for t in reader.tensors}
    present = sorted({t.tensor_type.name for t in reader.tensors})
    if set(present) != set(REAL_TENSORS):
        raise SystemExit(f"types in file {present} differ from the planned set {sorted(REAL_TENSORS)}")
    tensors = []
    for type_name, names in REAL_TENSORS.items():
        for name in names:
            t = by_name[name]
            assert t.tensor_type.name == type_name, (name, t.tensor_type.name)
            qtype = t.tensor_type
            block_size, type_size = GGML_QUANT_SIZES[qtype]
            ne = [int(x) for x in t.shape]  # ggml order: ne[0] is the row length
            row_len = ne[0]
            n_rows = int(np.prod(ne[1:])) if len(ne) > 1 else 1
            row_bytes = row_len // block_size * type_size
            data = np.asarray(t.data)
            raw_all = data.view(np.uint8).reshape(n_rows, row_bytes)
            rows = sorted({0, 1, n_rows // 2} & set(range(n_rows)))
            out_rows = []
            for r in rows:
                raw = raw_all[r].tobytes()
                want = np.asarray(gguf.quants.dequantize(raw_all[r:r + 1], qtype), dtype=np.float32).ravel()
                assert want.size == row_len
                out_rows.append({
                    "row": r,
                    "byte_offset_in_tensor": r * row_bytes,
                    "raw_sha256": hashlib.sha256(raw).hexdigest(),
                    "raw_hex": raw.hex(),
                    "expected": f32_list(want),
                })
            tensors.append({
                "name": name,
                "type": type_name,
                "ggml_type_id": int(qtype.value),
                "ne": ne,
                "row_len": row_len,
                "n_rows": n_rows,
                "row_bytes": row_bytes,
                "tensor_data_offset_in_file": int(t.data_offset),
                "rows": out_rows,
            })
            print(f"real {type_name:5s} {name:28s} ne={ne} rows={rows}")
    doc = header(model_sha)
    doc["model_file"] = os.path.basename(model)
    doc["description"] = (
        "For each quantized type present in the Gemma 3 270M Q4_K_M GGUF, two tensors; rows 0, 1 and "
        "n_rows/2 (1-D tensors have only row 0). A row is ne[0] consecutive elements. Read the row's "
        "bytes with the GGUF reader under test (raw_sha256/raw_hex let the test check it read the same "
        "bytes), dequantize, compare with expected. tensor_data_offset_in_file is absolute."
    )
    doc["tensors"] = tensors
    write_json(out_path, doc)


def write_json(path: str, doc: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    print(f"wrote {os.path.relpath(path, REPO_ROOT)} ({os.path.getsize(path)} bytes)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=os.environ.get("EDGEWISE_MODEL", DEFAULT_MODEL))
    ap.add_argument("--out-dir", default=os.path.join(REPO_ROOT, "tests", "golden", "dequant"))
    args = ap.parse_args()
    make_synthetic(os.path.join(args.out_dir, "synthetic.json"))
    sha = sha256_file(args.model)
    if sha != EXPECTED_SHA256:
        raise SystemExit(f"model sha256 {sha} != expected {EXPECTED_SHA256}")
    make_real(args.model, sha, os.path.join(args.out_dir, "gemma3_270m_rows.json"))


if __name__ == "__main__":
    main()
