#!/usr/bin/env python3
"""Cross-check sluice's scalar (de)quantizers against the PyPI `gguf` package (gguf-py, the
Python reader that ships with llama.cpp).

Runs the `dequant_dump` tool, which writes, per weight type, seeded float rows, their bytes from
sluice's quantize_row_reference and sluice's dequantization of those bytes. Then:

  1. dequantization: gguf.quants.dequantize(bytes) must equal sluice's floats bit for bit (both
     follow ggml's operation order in fp32, so no rounding slack is allowed);
  2. quantization: where gguf.quants.quantize implements the type (F32, F16, BF16, Q4_0, Q4_1,
     Q5_0, Q5_1, Q8_0, MXFP4 in gguf 0.19; K-quants are dequantize-only there), its bytes must
     equal sluice's bytes exactly;
  2b. raw blocks (raw_manifest.tsv: MXFP4, whose every byte pattern is a block): bytes no quantizer
     writes, every exponent byte 0..255 among them, dequantized bit for bit as gguf does.

With --ggml-lib DIR (a directory holding libggml-base.so and libggml-cpu.so, e.g. the lib/ of a
llama-cpp-python install), it also checks against ggml's C code itself, through ctypes:

  3. quantize_row_<type>_ref: identical bytes for every quantized type, the K-quants included
     (and for the raw blocks, dequantize_row_<type>: identical floats);
  4. the activation quantizers llama.cpp's CPU backend runs on x86, quantize_row_q8_0 / q8_1
     (libggml-cpu: id = 127/amax, round to nearest even; the _ref ones use 1/d and roundf) and
     quantize_row_q8_K_ref: identical bytes;
  5. dot products: sluice's scalar vec_dot against ggml_vec_dot_<type>_<act> (the kernel
     llama.cpp runs on this CPU) within the rounding bound of the C++ tests (float accumulation
     order differs; the integer block sums are exact), and, for information, how many results are
     bit-identical to ggml_vec_dot_<type>_<act>_generic. ggml's generic kernels are plain C; a
     build with -march=native contracts their a*b+c into FMAs (sluice's reference does not), so
     bit-identity there depends on how that library was compiled.

Exit codes: 0 all checks passed, 1 a mismatch, 77 gguf/numpy not importable (ctest SKIP).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import pathlib
import subprocess
import sys

try:
    import numpy as np
    import gguf
    import gguf.quants as gguf_quants
    from gguf import GGMLQuantizationType
except ImportError as exc:  # pragma: no cover - depends on the interpreter
    print(f"SKIPPED: gguf python package not available (set SLUICE_PYTHON): {exc}")
    sys.exit(77)

SKIP_RETURN_CODE = 77
MAX_REPORTED_MISMATCHES = 5


def ulp_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in units in the last place between fp32 arrays (monotone integer mapping)."""
    def ordered(x: np.ndarray) -> np.ndarray:
        i = x.view(np.int32).astype(np.int64)
        return np.where(i < 0, -(i & 0x7FFFFFFF), i)
    return np.abs(ordered(a) - ordered(b))


def check_type(workdir: pathlib.Path, name: str, type_id: int, rows: int, cols: int) -> tuple[bool, str, str]:
    qtype = GGMLQuantizationType(type_id)
    if qtype.name != name:
        return False, f"type id {type_id} is {qtype.name} in gguf, {name} in sluice", "-"
    inputs = np.fromfile(workdir / f"{name}.input.f32", dtype=np.float32).reshape(rows, cols)
    quant = np.fromfile(workdir / f"{name}.quant.bin", dtype=np.uint8).reshape(rows, -1)
    ours = np.fromfile(workdir / f"{name}.dequant.f32", dtype=np.float32).reshape(rows, cols)

    ok = True
    theirs = np.asarray(gguf_quants.dequantize(quant, qtype), dtype=np.float32).reshape(rows, cols)
    same = ours.view(np.uint32) == theirs.view(np.uint32)
    if same.all():
        deq_note = "bit-exact"
    else:
        ok = False
        ulps = ulp_distance(ours, theirs)
        where = np.argwhere(~same)[:MAX_REPORTED_MISMATCHES]
        detail = ", ".join(f"[{r},{c}] ours={ours[r, c]!r} gguf={theirs[r, c]!r}" for r, c in where)
        deq_note = f"{int((~same).sum())} differ, max {int(ulps.max())} ulp: {detail}"

    try:
        ref = gguf_quants.quantize(inputs, qtype)
    except NotImplementedError:
        quant_note = "n/a (gguf has no quantizer)"
    else:
        ref_bytes = np.ascontiguousarray(ref).view(np.uint8).reshape(rows, -1)
        if ref_bytes.shape == quant.shape and np.array_equal(ref_bytes, quant):
            quant_note = "identical bytes"
        else:
            ok = False
            if ref_bytes.shape != quant.shape:
                quant_note = f"shape {ref_bytes.shape} vs ours {quant.shape}"
            else:
                diff_rows = sorted({int(r) for r in np.argwhere(ref_bytes != quant)[:, 0]})
                first = np.argwhere(ref_bytes != quant)[0]
                quant_note = (f"{int((ref_bytes != quant).sum())} bytes differ in rows {diff_rows}; first at "
                              f"[{first[0]},{first[1]}] gguf={ref_bytes[first[0], first[1]]} ours={quant[first[0], first[1]]}")
    return ok, deq_note, quant_note


# sluice type name -> (ggml reference quantizer, activation quantizer, vec_dot) in ggml; the
# generic dot product is the vec_dot name + "_generic".
GGML_NAMES = {
    "Q4_0": ("quantize_row_q4_0_ref", "quantize_row_q8_0", "ggml_vec_dot_q4_0_q8_0"),
    "Q4_1": ("quantize_row_q4_1_ref", "quantize_row_q8_1", "ggml_vec_dot_q4_1_q8_1"),
    "Q5_0": ("quantize_row_q5_0_ref", "quantize_row_q8_0", "ggml_vec_dot_q5_0_q8_0"),
    "Q5_1": ("quantize_row_q5_1_ref", "quantize_row_q8_1", "ggml_vec_dot_q5_1_q8_1"),
    "Q8_0": ("quantize_row_q8_0_ref", "quantize_row_q8_0", "ggml_vec_dot_q8_0_q8_0"),
    "Q2_K": ("quantize_row_q2_K_ref", "quantize_row_q8_K_ref", "ggml_vec_dot_q2_K_q8_K"),
    "Q3_K": ("quantize_row_q3_K_ref", "quantize_row_q8_K_ref", "ggml_vec_dot_q3_K_q8_K"),
    "Q4_K": ("quantize_row_q4_K_ref", "quantize_row_q8_K_ref", "ggml_vec_dot_q4_K_q8_K"),
    "Q5_K": ("quantize_row_q5_K_ref", "quantize_row_q8_K_ref", "ggml_vec_dot_q5_K_q8_K"),
    "Q6_K": ("quantize_row_q6_K_ref", "quantize_row_q8_K_ref", "ggml_vec_dot_q6_K_q8_K"),
    "MXFP4": ("quantize_row_mxfp4_ref", "quantize_row_q8_0", "ggml_vec_dot_mxfp4_q8_0"),
}
ACT_TYPES = {"quantize_row_q8_0": "Q8_0", "quantize_row_q8_1": "Q8_1", "quantize_row_q8_K_ref": "Q8_K"}
FLT_EPSILON = float(np.finfo(np.float32).eps)


def dot_rounding_bound(w: np.ndarray, a: np.ndarray) -> float:
    """tests/compute/kernel_test_util.hpp dot_rounding_bound: (n/16 + 32) * eps * magnitude, the
    magnitude summing 4 * max|w| * sum|a| over 32-element chunks."""
    chunks_w = np.abs(w.astype(np.float64)).reshape(-1, 32)
    chunks_a = np.abs(a.astype(np.float64)).reshape(-1, 32)
    magnitude = float((4.0 * chunks_w.max(axis=1) * chunks_a.sum(axis=1)).sum())
    return (w.size / 16 + 32) * FLT_EPSILON * magnitude
# Bytes of a Q8_K block and the offset of its bsums, which ggml leaves unwritten for an all-zero
# block (sluice zeroes them): such blocks are compared without their bsums.
Q8_K_BLOCK_BYTES = 292
Q8_K_BSUMS_OFFSET = 260


class Ggml:
    """ggml's C quantizers and generic dot products, loaded with ctypes."""

    def __init__(self, lib_dir: pathlib.Path):
        self.base = ctypes.CDLL(str(lib_dir / "libggml-base.so"), mode=ctypes.RTLD_GLOBAL)
        self.cpu = ctypes.CDLL(str(lib_dir / "libggml-cpu.so"))
        # Fills the fp16 -> fp32 table the generic kernels read scales through.
        self.cpu.ggml_cpu_init()

    def quantize(self, fn: str, row: np.ndarray, out_bytes: int) -> np.ndarray:
        out = np.zeros(out_bytes, dtype=np.uint8)
        # The _ref quantizers live in ggml-base, the CPU backend's own (quantize_row_q8_0) in ggml-cpu.
        f = getattr(self.base, fn) if fn.endswith("_ref") else getattr(self.cpu, fn)
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        f.restype = None
        row = np.ascontiguousarray(row, dtype=np.float32)
        f(row.ctypes.data, out.ctypes.data, row.size)
        return out

    def dequantize(self, fn: str, row: np.ndarray, n: int) -> np.ndarray:
        out = np.zeros(n, dtype=np.float32)
        f = getattr(self.base, fn)
        f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
        f.restype = None
        row = np.ascontiguousarray(row)
        f(row.ctypes.data, out.ctypes.data, n)
        return out

    def vec_dot(self, fn: str, n: int, w: np.ndarray, a: np.ndarray) -> np.float32:
        f = getattr(self.cpu, fn)
        f.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t,
                      ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        f.restype = None
        s = np.zeros(1, dtype=np.float32)
        w = np.ascontiguousarray(w)
        a = np.ascontiguousarray(a)
        f(n, s.ctypes.data, 0, w.ctypes.data, 0, a.ctypes.data, 0, 1)
        return s[0]


def mask_unwritten_q8_k_bsums(ours: np.ndarray, theirs: np.ndarray) -> None:
    for b in range(ours.size // Q8_K_BLOCK_BYTES):
        block = slice(b * Q8_K_BLOCK_BYTES, (b + 1) * Q8_K_BLOCK_BYTES)
        if not ours[block][:Q8_K_BSUMS_OFFSET].any():
            bsums = slice(b * Q8_K_BLOCK_BYTES + Q8_K_BSUMS_OFFSET, (b + 1) * Q8_K_BLOCK_BYTES)
            theirs[bsums] = ours[bsums]


def check_against_ggml(ggml: Ggml, workdir: pathlib.Path, name: str, rows: int, cols: int) -> tuple[bool, str]:
    if name not in GGML_NAMES:
        return True, "ggml: n/a (float type)"
    quant_fn, act_fn, dot_fn = GGML_NAMES[name]
    inputs = np.fromfile(workdir / f"{name}.input.f32", dtype=np.float32).reshape(rows, cols)
    quant = np.fromfile(workdir / f"{name}.quant.bin", dtype=np.uint8).reshape(rows, -1)
    acts = np.fromfile(workdir / f"{name}.act.f32", dtype=np.float32).reshape(rows, cols)
    act_quant = np.fromfile(workdir / f"{name}.act.bin", dtype=np.uint8).reshape(rows, -1)
    dots = np.fromfile(workdir / f"{name}.dot.f32", dtype=np.float32)
    problems = []
    generic_identical = 0
    generic_far = []
    weights = np.asarray(gguf_quants.dequantize(quant, GGMLQuantizationType[name]), dtype=np.float32)
    act_type = ACT_TYPES[act_fn]
    for r in range(rows):
        theirs = ggml.quantize(quant_fn, inputs[r], quant.shape[1])
        if not np.array_equal(theirs, quant[r]):
            problems.append(f"{quant_fn} row {r}: {int((theirs != quant[r]).sum())} bytes differ")
        theirs_act = ggml.quantize(act_fn, acts[r], act_quant.shape[1])
        if act_fn == "quantize_row_q8_K_ref":
            mask_unwritten_q8_k_bsums(act_quant[r], theirs_act)
        if not np.array_equal(theirs_act, act_quant[r]):
            problems.append(f"{act_fn} row {r}: {int((theirs_act != act_quant[r]).sum())} bytes differ")
        a_vals = dequantize_activation(act_type, act_quant[r])
        bound = dot_rounding_bound(weights[r], a_vals)
        production = ggml.vec_dot(dot_fn, cols, quant[r], act_quant[r])
        if not abs(float(production) - float(dots[r])) <= bound:
            problems.append(f"{dot_fn} row {r}: ggml {production!r} sluice {dots[r]!r} bound {bound:.3g}")
        generic = ggml.vec_dot(dot_fn + "_generic", cols, quant[r], act_quant[r])
        if generic.view(np.uint32) == dots[r].view(np.uint32):
            generic_identical += 1
        elif not abs(float(generic) - float(dots[r])) <= bound:
            generic_far.append(r)
    if problems:
        return False, "ggml: " + "; ".join(problems[:MAX_REPORTED_MISMATCHES])
    note = (f"ggml: ref and activation quantizers identical, vec_dot within bound of {dot_fn}, "
            f"{generic_identical}/{rows} bit-identical to _generic")
    if generic_far:
        note += f" (_generic beyond the bound in rows {generic_far}: that library's generic kernel disagrees)"
    return True, note


def compare_floats(ours: np.ndarray, theirs: np.ndarray) -> tuple[bool, str]:
    """Bit-for-bit comparison of two fp32 arrays of the same shape (rows x cols)."""
    same = ours.view(np.uint32) == theirs.view(np.uint32)
    if same.all():
        return True, "bit-exact"
    where = np.argwhere(~same)[:MAX_REPORTED_MISMATCHES]
    detail = ", ".join(f"[{r},{c}] ours={ours[r, c]!r} theirs={theirs[r, c]!r}" for r, c in where)
    return False, f"{int((~same).sum())} differ: {detail}"


def check_raw(workdir: pathlib.Path, name: str, type_id: int, rows: int, cols: int,
              ggml: "Ggml | None") -> tuple[bool, str]:
    """Blocks sluice's quantizer never writes (raw_manifest.tsv), dequantized by gguf (and ggml)."""
    qtype = GGMLQuantizationType(type_id)
    if qtype.name != name:
        return False, f"type id {type_id} is {qtype.name} in gguf, {name} in sluice"
    raw = np.fromfile(workdir / f"{name}.raw.bin", dtype=np.uint8).reshape(rows, -1)
    ours = np.fromfile(workdir / f"{name}.raw.dequant.f32", dtype=np.float32).reshape(rows, cols)
    with np.errstate(over="ignore"):  # the top exponents overflow to inf, as in ggml
        theirs = np.asarray(gguf_quants.dequantize(raw, qtype), dtype=np.float32).reshape(rows, cols)
    ok, note = compare_floats(ours, theirs)
    note = f"gguf {note}"
    if ggml is not None:
        c_rows = np.stack([ggml.dequantize(f"dequantize_row_{name.lower()}", raw[r], cols) for r in range(rows)])
        c_ok, c_note = compare_floats(ours, c_rows)
        ok &= c_ok
        note += f"; ggml dequantize_row_{name.lower()} {c_note}"
    return ok, note


def dequantize_activation(act_type: str, row: np.ndarray) -> np.ndarray:
    """Values of an activation row; gguf dequantizes Q8_0 but not Q8_1 or Q8_K."""
    if act_type == "Q8_0":
        return np.asarray(gguf_quants.dequantize(row, GGMLQuantizationType.Q8_0), dtype=np.float32).ravel()
    if act_type == "Q8_1":  # fp16 d, fp16 s, 32 x int8
        blocks = row.reshape(-1, 36)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        return (blocks[:, 4:].view(np.int8).astype(np.float32) * d).ravel()
    blocks = row.reshape(-1, Q8_K_BLOCK_BYTES)  # Q8_K: fp32 d, 256 x int8, 16 x int16 bsums
    d = blocks[:, 0:4].copy().view(np.float32)
    return (blocks[:, 4:Q8_K_BSUMS_OFFSET].view(np.int8).astype(np.float32) * d).ravel()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dump", help="path of the dequant_dump executable (omit with --no-run)")
    parser.add_argument("--workdir", required=True, help="directory for dequant_dump's files")
    parser.add_argument("--no-run", action="store_true", help="use files already in --workdir")
    parser.add_argument("--ggml-lib", help="directory with libggml-base.so and libggml-cpu.so (optional)")
    args = parser.parse_args()
    ggml = Ggml(pathlib.Path(args.ggml_lib)) if args.ggml_lib else None

    workdir = pathlib.Path(args.workdir)
    if not args.no_run:
        if not args.dump:
            parser.error("--dump is required unless --no-run")
        subprocess.run([args.dump, str(workdir)], check=True)

    print(f"gguf {importlib.metadata.version('gguf')} from {pathlib.Path(gguf.__file__).parent}, numpy {np.__version__}")
    all_ok = True
    for line in (workdir / "manifest.tsv").read_text().splitlines():
        name, type_id, rows, cols = line.split("\t")
        ok, deq_note, quant_note = check_type(workdir, name, int(type_id), int(rows), int(cols))
        ggml_note = ""
        if ggml is not None:
            ggml_ok, ggml_note = check_against_ggml(ggml, workdir, name, int(rows), int(cols))
            ok &= ggml_ok
            ggml_note = "; " + ggml_note
        all_ok &= ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:5} {rows}x{cols}: dequantize {deq_note}; quantize {quant_note}{ggml_note}")
    raw_manifest = workdir / "raw_manifest.tsv"
    for line in raw_manifest.read_text().splitlines() if raw_manifest.exists() else []:
        name, type_id, rows, cols = line.split("\t")
        ok, note = check_raw(workdir, name, int(type_id), int(rows), int(cols), ggml)
        all_ok &= ok
        print(f"{'ok  ' if ok else 'FAIL'} {name:5} {rows}x{cols} raw blocks: dequantize {note}")
    print("all checks passed" if all_ok else "MISMATCH against gguf")
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
