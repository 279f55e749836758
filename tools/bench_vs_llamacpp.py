#!/usr/bin/env python3
"""sluice vs llama.cpp (llama-cpp-python) throughput on the same GGUF, in one run.

pp: a batch of P prompt tokens evaluated at once; tg: G tokens evaluated one at a time after it.
Both engines use the same thread count; each test is repeated R times and the mean reported.
Usage: bench_vs_llamacpp.py MODEL.gguf [--sluice build/tools/sluice] [-p 64] [-n 32] [-r 3] [-t 2]
"""
import argparse
import json
import re
import statistics
import subprocess
import sys
import time


def llama_cpp_bench(model, p, n, r, t):
    import llama_cpp
    llm = llama_cpp.Llama(model_path=model, n_ctx=p + n + 8, n_threads=t, n_threads_batch=t, n_batch=max(p, 8),
                          verbose=False)
    vocab = llm.n_vocab()
    tokens = [10 + i % (vocab - 10) for i in range(p + n)]
    pp, tg = [], []
    for _ in range(r):
        llm.reset()
        start = time.perf_counter()
        llm.eval(tokens[:p])
        pp.append(p / (time.perf_counter() - start))
        start = time.perf_counter()
        for i in range(n):
            llm.eval([tokens[p + i]])
        tg.append(n / (time.perf_counter() - start))
    return statistics.mean(pp), statistics.mean(tg)


def sluice_bench(binary, model, p, n, r, t):
    out = subprocess.run([binary, "bench", "-m", model, "-p", str(p), "-n", str(n), "-r", str(r), "-t", str(t), "-o", "json"],
                         check=True, capture_output=True, text=True).stdout
    rows = {row["test"]: row["avg_ts"] for row in json.loads(out)}
    return rows[f"pp{p}"], rows[f"tg{n}"]


def main():
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("model")
    a.add_argument("--sluice", default="build/tools/sluice")
    a.add_argument("-p", type=int, default=64)
    a.add_argument("-n", type=int, default=32)
    a.add_argument("-r", type=int, default=3)
    a.add_argument("-t", type=int, default=2)
    args = a.parse_args()
    s_pp, s_tg = sluice_bench(args.sluice, args.model, args.p, args.n, args.r, args.t)
    l_pp, l_tg = llama_cpp_bench(args.model, args.p, args.n, args.r, args.t)
    print(f"{'engine':<10} {'pp' + str(args.p):>10} {'tg' + str(args.n):>10}   (tokens/s, {args.t} threads, mean of {args.r})")
    print(f"{'sluice':<10} {s_pp:>10.2f} {s_tg:>10.2f}")
    print(f"{'llama.cpp':<10} {l_pp:>10.2f} {l_tg:>10.2f}")
    print(f"{'ratio':<10} {s_pp / l_pp:>10.2f} {s_tg / l_tg:>10.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
