#!/usr/bin/env python3
"""Decode speed of llama.cpp (llama-cpp-python) on a GGUF, for comparisons under a memory cap:
   tools/memcap.sh 4G -- ~/.cache/sluice/venv/bin/python tools/llamacpp_decode.py MODEL.gguf -n 4
Prints prompt time and seconds per generated token (greedy), like `sluice run`'s timing line."""
import argparse
import time

import llama_cpp

a = argparse.ArgumentParser()
a.add_argument("model")
a.add_argument("-n", type=int, default=4)
a.add_argument("-t", type=int, default=2)
a.add_argument("--no-mmap", action="store_true")
a.add_argument("--no-repack", action="store_true",
               help="turn off llama.cpp's CPU weight repacking (use_extra_bufts), which copies the weights "
                    "into anonymous memory: under a cap below the model's size that copy is OOM-killed")
args = a.parse_args()
if args.no_repack:
    import llama_cpp.llama_cpp as lowlevel
    default_params = lowlevel.llama_model_default_params

    def params_without_repack():
        p = default_params()
        p.use_extra_bufts = False
        return p

    lowlevel.llama_model_default_params = params_without_repack
start = time.perf_counter()
llm = llama_cpp.Llama(model_path=args.model, n_ctx=256, n_threads=args.t, verbose=False, use_mmap=not args.no_mmap)
load = time.perf_counter() - start
tokens = llm.tokenize(b"Once upon a time", add_bos=True)
start = time.perf_counter()
llm.eval(tokens)
prompt = time.perf_counter() - start

def disk_read_bytes():
    """Bytes this process caused to be read from storage (page faults on the mmap included)."""
    with open("/proc/self/io") as f:
        return int(next(line for line in f if line.startswith("read_bytes:")).split()[1])

print(f"llama.cpp: load {load:.2f} s, prompt {len(tokens)} tokens {prompt:.2f} s", flush=True)
times = []
for i in range(args.n):
    start = time.perf_counter()
    before = disk_read_bytes()
    llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])
    times.append(time.perf_counter() - start)
    # One line per token, so a run stopped by a timeout still leaves its measurements.
    print(f"llama.cpp: token {i + 1}: {times[-1]:.2f} s, {(disk_read_bytes() - before) / 1e9:.2f} GB read from disk", flush=True)
print(f"llama.cpp: load {load:.2f} s, prompt {len(tokens)} tokens {prompt:.2f} s, "
      f"decode {args.n} tokens: {sum(times) / len(times):.2f} s/token ({len(times) / sum(times):.3f} tok/s); per token {[round(t, 2) for t in times]}")
