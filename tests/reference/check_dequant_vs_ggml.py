#!/usr/bin/env python3
"""Cross-check the dequantization goldens (made with the Python `gguf` package) against ggml's own C
dequantizers (ggml_get_type_traits(type)->to_float, from the libggml-base shipped in llama-cpp-python).

  /opt/refenv/bin/python tests/reference/check_dequant_vs_ggml.py

Writes nothing; prints, per type, how many values are bit-identical and the largest differences, and
exits non-zero if any difference exceeds the tolerance stated in the golden files
(|got - want| <= 1e-6 * max(1, |want|)).
"""
from __future__ import annotations

import ctypes
import glob
import json
import os
import sys

import numpy as np

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN = os.path.join(REPO_ROOT, "tests", "golden", "dequant")


class TypeTraits(ctypes.Structure):
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_int64)


def load_ggml():
    import llama_cpp
    libdir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    lib = ctypes.CDLL(sorted(glob.glob(os.path.join(libdir, "libggml-base.so*")))[0])
    lib.ggml_get_type_traits.restype = ctypes.POINTER(TypeTraits)
    lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
    return lib


def ggml_dequant(lib, type_id: int, raw: bytes, n: int) -> np.ndarray:
    tr = lib.ggml_get_type_traits(type_id).contents
    if tr.to_float is None:
        if type_id == 0:  # F32 has no to_float: the bytes are the values
            return np.frombuffer(raw, dtype="<f4").copy()
        raise SystemExit(f"no to_float for type {type_id}")
    buf = ctypes.create_string_buffer(raw, len(raw))
    out = (ctypes.c_float * n)()
    TO_FLOAT(tr.to_float)(ctypes.cast(buf, ctypes.c_void_p), out, n)
    return np.ctypeslib.as_array(out).copy()


def compare(label: str, got: np.ndarray, want: np.ndarray) -> bool:
    same = int(np.sum(got.view(np.uint32) == want.view(np.uint32)))
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    bound = 1e-6 * np.maximum(1.0, np.abs(want.astype(np.float64)))
    ok = bool(np.all(diff <= bound))
    print(f"{label:45s} {same:5d}/{want.size:<5d} bit-identical, max |diff| {diff.max():.3g}, "
          f"max |diff|/max(1,|want|) {np.max(diff / np.maximum(1.0, np.abs(want))):.3g} {'ok' if ok else 'FAIL'}")
    return ok


def main() -> None:
    lib = load_ggml()
    ok = True
    syn = json.load(open(os.path.join(GOLDEN, "synthetic.json")))
    for c in syn["cases"]:
        want = np.array(c["expected"], dtype=np.float32)
        got = ggml_dequant(lib, c["ggml_type_id"], bytes.fromhex(c["raw_hex"]), c["n_elements"])
        ok &= compare(f"synthetic {c['type']}", got, want)
    real = json.load(open(os.path.join(GOLDEN, "gemma3_270m_rows.json")))
    for t in real["tensors"]:
        for r in t["rows"]:
            want = np.array(r["expected"], dtype=np.float32)
            got = ggml_dequant(lib, t["ggml_type_id"], bytes.fromhex(r["raw_hex"]), t["row_len"])
            ok &= compare(f"{t['type']} {t['name']}[{r['row']}]", got, want)
    print("all within tolerance" if ok else "SOME DIFFERENCES EXCEED THE TOLERANCE")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
