#!/usr/bin/env python3
"""`sluice bench -o md|csv|json|jsonl` on a synthetic model: each format parses and carries the
llama-bench fields and the pp/tg tests asked for; the defaults are llama-bench's pp512 / tg128; the
md table gains sluice's streaming columns when the model streams; --json FILE still writes
sluice's own report.
Usage: test_bench_formats.py SLUICE"""
import csv
import io
import json
import os
import subprocess
import sys
import tempfile

sluice = sys.argv[1]
failed = False


def check(ok, what):
    global failed
    if not ok:
        failed = True
        print("FAIL:", what)


def bench(*args):
    r = subprocess.run([sluice, "bench", "-m", model, "-t", "1", *args], capture_output=True, text=True, timeout=240)
    if r.returncode != 0:
        print(r.stdout, r.stderr)
        sys.exit(f"FAIL: bench {' '.join(args)} exited {r.returncode}")
    return r.stdout


with tempfile.TemporaryDirectory() as work:
    model = os.path.join(work, "m.gguf")
    subprocess.run([sluice, "synth", "--shape", "tiny", "--layers", "2", "--vocab-size", "1000", model],
                   check=True, capture_output=True)
    small = ["-p", "8", "-n", "4", "-r", "2"]

    # md: llama-bench's header, a rule, one row per test; t/s as "mean ± stddev".
    md = bench(*small).splitlines()
    check(len(md) == 4, f"md: want header, rule and 2 rows: {md}")
    cells = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]
    header = cells(md[0])
    check(header == ["model", "size", "params", "backend", "threads", "test", "t/s"], f"md header: {header}")
    check(set(md[1].replace("|", "").replace(" ", "")) <= set("-:"), f"md rule: {md[1]}")
    rows = [dict(zip(header, cells(line))) for line in md[2:]]
    check([r["test"] for r in rows] == ["pp8", "tg4"], f"md tests: {rows}")
    for r in rows:
        mean, _, stddev = r["t/s"].partition(" ± ")
        check(float(mean) > 0 and float(stddev) >= 0, f"md t/s: {r}")
        check(r["size"].endswith(" GiB") and r["params"].endswith(" M"), f"md size/params: {r}")
        check(r["backend"] == "CPU" and r["threads"] == "1", f"md backend/threads: {r}")
        check(r["model"].startswith("llama "), f"md model: {r}")

    # json: an array of objects with llama-bench's keys.
    got = json.loads(bench(*small, "-o", "json"))
    check(isinstance(got, list) and len(got) == 2, f"json: {got}")
    for row, (test, n_prompt, n_gen) in zip(got, [("pp8", 8, 0), ("tg4", 0, 4)]):
        for key in ("build_commit", "model_type", "model_size", "model_n_params", "n_threads", "n_prompt", "n_gen", "avg_ts", "stddev_ts",
                    "avg_ns", "samples_ts", "test_time", "backends"):
            check(key in row, f"json: no {key} in {row}")
        check(row["test"] == test and row["n_prompt"] == n_prompt and row["n_gen"] == n_gen, f"json test: {row}")
        check(row["avg_ts"] > 0 and len(row["samples_ts"]) == 2 and row["n_threads"] == 1, f"json values: {row}")
        check(row["model_size"] > 0 and 0 < row["model_n_params"] < 10**8, f"json model: {row}")
        check(row["streamed"] is False and row["read_gbps"] is None, f"json in RAM: {row}")

    # jsonl: one object a line.
    lines = [json.loads(line) for line in bench(*small, "--output-format", "jsonl").splitlines()]
    check([r["test"] for r in lines] == ["pp8", "tg4"], f"jsonl: {lines}")

    # csv: a header and a row per test, the same fields.
    rows = list(csv.DictReader(io.StringIO(bench(*small, "-o", "csv"))))
    check([r["test"] for r in rows] == ["pp8", "tg4"], f"csv tests: {rows}")
    check(all(float(r["avg_ts"]) > 0 and r["n_threads"] == "1" for r in rows), f"csv values: {rows}")
    check(rows and rows[0]["n_prompt"] == "8" and rows[1]["n_gen"] == "4", f"csv n_prompt/n_gen: {rows}")

    # Streamed under a budget: sluice's columns after llama-bench's; --json FILE keeps its report.
    report = os.path.join(work, "report.json")
    md = bench("-p", "4", "-n", "2", "-r", "1", "--stream", "on", "--json", report).splitlines()
    header = cells(md[0])
    check(header[:7] == ["model", "size", "params", "backend", "threads", "test", "t/s"]
          and {"read GB/s", "overlap", "io busy", "s/pass"} <= set(header), f"streamed md header: {header}")
    check([t["test"] for t in json.load(open(report))["tests"]] == ["pp", "tg"], "--json FILE report")

    # The defaults are llama-bench's pp512 and tg128: the plan's context is 512 + 128 + 1.
    got = subprocess.run([sluice, "bench", "-m", model, "--plan-only"], capture_output=True, text=True).stdout
    check("1 sequences x 641 context" in got, f"defaults not pp512/tg128: {got}")

    # An unknown format is refused naming the flag.
    r = subprocess.run([sluice, "bench", "-m", model, "-o", "xml"], capture_output=True, text=True)
    check(r.returncode != 0 and "output" in r.stderr, f"-o xml: {r.returncode} {r.stderr}")

sys.exit(1 if failed else 0) if failed else print("PASS")
