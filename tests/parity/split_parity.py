#!/usr/bin/env python3
"""llama.cpp loads the shards `sluice split` writes, and they are the same model.

For a GGUF model: `sluice split --max-tensors ceil(n/3)` cuts it into exactly 3 shards; then
  1. llama.cpp (llama-cpp-python) opened on the first shard gives logits for every position of a
     prompt bit-identical to llama.cpp on the unsplit file (the same weights, the same compute);
  2. `sluice convert` of the shards gives a pack whose logits (`sluice eval`) are bit-identical to
     sluice's on the unsplit file; the max |diff| to llama.cpp is printed for reference (its bound
     is the parity_logits tests' business).
Exit 0 on agreement, 1 on a difference, 77 (skipped, with a message) without llama-cpp-python in
this interpreter or without the model.
Usage: split_parity.py --sluice SLUICE --model MODEL.gguf [--prompt TEXT]
"""
import argparse
import math
import os
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from parity import SKIP, load_reference, open_llama, run_isolated, sluice_eval  # noqa: E402


def tensor_count(path):
    with open(path, "rb") as f:
        magic, _version, n_tensors = struct.unpack("<4sIQ", f.read(16))
    if magic != b"GGUF":
        raise SystemExit(f"{path}: not a GGUF file")
    return n_tensors


def llama_logits(llama_cpp, model, tokens):
    import numpy as np
    llm = open_llama(llama_cpp, model, logits_all=True)
    llm.reset()
    llm.eval(tokens)
    out = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    del llm
    return out


def sluice_logits(binary, model, tokens, tmp, name):
    import numpy as np
    path = os.path.join(tmp, name + ".f32")
    got = sluice_eval(binary, model, ["--tokens", ",".join(map(str, tokens)), "--logits-rows", str(len(tokens)),
                                      "--logits-out", path])
    return np.fromfile(path, dtype=np.float32).reshape(got["logits_rows"], got["n_vocab"])


def check(a):
    llama_cpp = load_reference()  # first: without numpy either, the test skips instead of failing
    import numpy as np
    with tempfile.TemporaryDirectory(dir=os.environ.get("SPLIT_PARITY_DIR")) as tmp:
        prefix = os.path.join(tmp, "model")
        per_shard = math.ceil(tensor_count(a.model) / 3)
        out = subprocess.run([a.sluice, "split", "--max-tensors", str(per_shard), a.model, prefix],
                             capture_output=True, text=True)
        print(out.stdout.strip())
        if out.returncode != 0:
            print(f"FAIL: sluice split exited {out.returncode}: {out.stderr.strip()}")
            return 1
        shards = sorted(f for f in os.listdir(tmp) if f.startswith("model-"))
        if shards != [f"model-0000{i}-of-00003.gguf" for i in (1, 2, 3)]:
            print(f"FAIL: expected 3 shards, found {shards}")
            return 1
        first = os.path.join(tmp, shards[0])

        probe = open_llama(llama_cpp, a.model)
        tokens = probe.tokenize(a.prompt.encode(), add_bos=True, special=True)
        del probe
        ref = llama_logits(llama_cpp, a.model, tokens)
        on_shards = llama_logits(llama_cpp, first, tokens)
        ok = True
        same = on_shards.shape == ref.shape and np.array_equal(on_shards, ref)
        diff = float(np.max(np.abs(on_shards - ref))) if on_shards.shape == ref.shape else float("inf")
        print(f"llama.cpp on the 3 shards vs on {os.path.basename(a.model)}: {len(tokens)} positions x "
              f"{ref.shape[1]} logits, {'bit-identical' if same else f'DIFFERENT (max |diff| {diff})'}")
        ok &= same

        pack = os.path.join(tmp, "shards.sluice")
        conv = subprocess.run([a.sluice, "convert", first, pack], capture_output=True, text=True)
        if conv.returncode != 0:
            print(f"FAIL: sluice convert of the shards exited {conv.returncode}: {conv.stderr.strip()[-500:]}")
            return 1
        ours_whole = sluice_logits(a.sluice, a.model, tokens, tmp, "whole")
        ours_pack = sluice_logits(a.sluice, pack, tokens, tmp, "pack")
        same = np.array_equal(ours_whole, ours_pack)
        print(f"sluice on the shards' pack vs on {os.path.basename(a.model)}: "
              f"{'bit-identical' if same else 'DIFFERENT'}")
        ok &= same
        n_vocab = ours_pack.shape[1]
        print(f"sluice (shards' pack) vs llama.cpp (shards): max |diff| "
              f"{float(np.max(np.abs(ours_pack - on_shards[:, :n_vocab]))):.5f} (for reference: the parity_logits tests bound sluice against llama.cpp)")
    print(f"split parity {os.path.basename(a.model)}: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sluice", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", default="Once upon a time there was a little girl named Lily who loved to play")
    a = p.parse_args()
    if not os.path.exists(a.model):
        print(f"SKIPPED: model {a.model} not found", flush=True)
        return SKIP
    return run_isolated(lambda: check(a), a.model)


if __name__ == "__main__":
    sys.exit(main())
