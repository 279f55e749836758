#!/usr/bin/env python3
"""bench_serve_load.py: `sluice serve` under load, on a streamed model (issue 18's load test).

  tools/bench_serve_load.py SLUICE MODEL [--mem-budget 256MiB] [--clients 32] [--requests 8]
                            [--max-tokens 16] [--memcap 1G] [--json OUT.json]

Three servers in turn, on the same model file, over HTTP on localhost:
  1. the reference: in RAM (no --mem-budget) with one KV slot, so every request runs alone;
     it answers all CLIENTS x REQUESTS prompts one after another;
  2. the streamed server (--mem-budget, --parallel CLIENTS), one client sending REQUESTS
     requests in turn: tokens/s at one client;
  3. the same server, CLIENTS clients at once, REQUESTS requests each (every prompt distinct):
     tokens/s, p50/p99 latency, and every answer compared with the reference's (greedy).
Prints a table and exits 1 when an answer differs, a request failed, or tokens/s at CLIENTS
clients is below 8x one client's (the issue's goal); --min-ratio changes that bar.
A benchmark, not a unit test: the ratio is measured in one run, on one machine.
"""
import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

here = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(base, body, timeout=3600):
    req = urllib.request.Request(base + "/v1/completions", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read().decode())


class Server:
    def __init__(self, args, name, extra, memcap=None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(args.workdir, f"serve_{name}.log")
        self.log = open(self.log_path, "w")
        cmd = [args.sluice, "serve", "-m", args.model, "--port", str(self.port), "-c", str(args.ctx),
               "--max-queue", str(args.clients * args.requests + 8), "--max-connections", str(args.clients + 8)] + extra
        if memcap:
            cmd = [os.path.join(here, "memcap.sh"), "--report", os.path.join(args.workdir, f"memcap_{name}.json"), memcap, "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        deadline = time.time() + 600
        while time.time() < deadline:
            if self.proc.poll() is not None:
                sys.exit(f"bench_serve_load: the {name} server exited ({self.proc.returncode}); see {self.log_path}")
            try:
                with urllib.request.urlopen(self.base + "/health", timeout=2):
                    return
            except (urllib.error.URLError, ConnectionError, OSError):
                time.sleep(0.2)
        sys.exit(f"bench_serve_load: the {name} server did not answer /health in 600 s; see {self.log_path}")

    def metrics(self):
        with urllib.request.urlopen(self.base + "/metrics", timeout=30) as r:
            out = {}
            for line in r.read().decode().splitlines():
                if line and not line.startswith("#"):
                    k, v = line.split()
                    out[k] = float(v)
            return out

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def prompt_of(c, i):
    words = "once upon a time there was a little girl named lily she loved to play in the park".split()
    return f"{words[c % 16]} {words[(c * 7 + i) % 16]} {words[(c + i * 5) % 16]} {c} {i}"


def request_body(args, c, i):
    return {"prompt": prompt_of(c, i), "max_tokens": args.max_tokens, "temperature": 0}


def run_clients(base, args, clients, requests_each):
    """clients threads, each sending requests_each requests in turn: answers, latencies, tokens, wall."""
    answers, latencies, errors = {}, [], []
    tokens = [0]
    lock = threading.Lock()

    def client(c):
        for i in range(requests_each):
            t0 = time.perf_counter()
            try:
                r = post(base, request_body(args, c, i))
            except Exception as e:  # noqa: BLE001 -- every failure is reported, none stops the others
                with lock:
                    errors.append(f"client {c} request {i}: {e}")
                continue
            dt = time.perf_counter() - t0
            with lock:
                answers[(c, i)] = r["choices"][0]["text"]
                latencies.append(dt)
                tokens[0] += r["usage"]["completion_tokens"]

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers, latencies, tokens[0], time.perf_counter() - t0, errors


def pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))] if s else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sluice")
    ap.add_argument("model")
    ap.add_argument("--mem-budget", default="256MiB")
    ap.add_argument("--memcap", default=None, help="also run the streamed server under tools/memcap.sh LIMIT")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=16)
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--min-ratio", type=float, default=8.0)
    ap.add_argument("--json", default=None)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    args.workdir = args.workdir or tempfile.mkdtemp(prefix="sluice-load-")
    os.makedirs(args.workdir, exist_ok=True)
    failures = []

    print(f"== reference: in RAM, one KV slot, {args.clients * args.requests} requests alone", flush=True)
    ref = Server(args, "reference", ["--parallel", "1"])
    reference = {}
    try:
        for c in range(args.clients):
            for i in range(args.requests):
                reference[(c, i)] = post(ref.base, request_body(args, c, i))["choices"][0]["text"]
    finally:
        ref.stop()

    print(f"== streamed: --mem-budget {args.mem_budget}, --parallel {args.clients}", flush=True)
    srv = Server(args, "streamed", ["--mem-budget", args.mem_budget, "--parallel", str(args.clients)], args.memcap)
    try:
        one = run_clients(srv.base, args, 1, args.requests)
        m1 = srv.metrics()
        many = run_clients(srv.base, args, args.clients, args.requests)
        m2 = srv.metrics()
    finally:
        srv.stop()
    with open(srv.log_path) as f:
        streamed_log = f.read()
    resident = re.search(r"(\d+) of (\d+) blocks resident", streamed_log)
    if not resident or int(resident.group(1)) >= int(resident.group(2)):
        failures.append(f"the model does not stream under --mem-budget {args.mem_budget} (see {srv.log_path})")

    rows = []
    for name, (answers, lat, toks, wall, errors), n_clients in (("1 client", one, 1), (f"{args.clients} clients", many, args.clients)):
        failures += errors
        for key, text in answers.items():
            if text != reference[key]:
                failures.append(f"{name}: client {key[0]} request {key[1]} answered {text!r}, alone {reference[key]!r}")
        rows.append({"clients": n_clients, "requests": len(answers), "generated_tokens": toks, "seconds": wall,
                     "tokens_per_second": toks / wall if wall > 0 else 0.0, "p50_s": pct(lat, 0.50), "p99_s": pct(lat, 0.99)})
    passes_one = m1.get("sluice_passes_total", 0)
    passes_many = m2.get("sluice_passes_total", 0) - passes_one
    rows[0]["passes"], rows[1]["passes"] = passes_one, passes_many
    bytes_many = m2.get("sluice_bytes_read_total", 0) - m1.get("sluice_bytes_read_total", 0)
    ratio = rows[1]["tokens_per_second"] / rows[0]["tokens_per_second"] if rows[0]["tokens_per_second"] > 0 else 0.0

    print("| clients | requests | generated tokens | seconds | tok/s | p50 latency s | p99 latency s | passes |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clients']} | {r['requests']} | {r['generated_tokens']} | {r['seconds']:.2f} | {r['tokens_per_second']:.2f} | "
              f"{r['p50_s']:.2f} | {r['p99_s']:.2f} | {r['passes']:.0f} |")
    print(f"tok/s at {args.clients} clients / 1 client: {ratio:.2f}x (goal >= {args.min_ratio:g}x); "
          f"{bytes_many / 1e9:.2f} GB read at {args.clients} clients; "
          f"{len(many[0])} of {args.clients * args.requests} answers equal the request run alone" if not failures else
          f"tok/s ratio {ratio:.2f}x")
    if ratio < args.min_ratio:
        failures.append(f"tok/s at {args.clients} clients is {ratio:.2f}x one client's, below {args.min_ratio:g}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"model": args.model, "mem_budget": args.mem_budget, "max_tokens": args.max_tokens, "rows": rows,
                       "ratio": ratio, "bytes_read_many": bytes_many, "failures": failures}, f, indent=1)
    for f in failures[:20]:
        print("FAIL:", f)
    if failures:
        print(f"bench_serve_load: {len(failures)} failures (server logs in {args.workdir})")
        sys.exit(1)
    print("bench_serve_load: ok")


if __name__ == "__main__":
    main()
