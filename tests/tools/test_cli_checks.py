#!/usr/bin/env python3
"""CLI checks on stories260K (../shared/models):
  flags    every bad sampling / thread / context / pass-size flag is a CLI error naming the flag
           (CLI11's exit 105 with a message), never a hang, a NaN or an empty answer with exit 0;
  stdout   `run`, `eval`, `perplexity`, `inspect` writing to /dev/full exit non-zero;
  inputs   `run -f /dev/zero` is refused (bounded read); a prompt too long for the context is
           refused before anything is printed;
  fuzz     a seeded fuzz of random flag values and short inputs for `run` and `batch`: no run
           ends by a signal or hangs (the seed is printed; SLUICE_FUZZ_SEED overrides it).
Usage: test_cli_checks.py SLUICE MODELS_DIR"""
import os
import random
import subprocess
import sys
import tempfile

sluice, models = sys.argv[1], sys.argv[2]
stories = os.path.join(models, "stories260K.gguf")
if not os.path.exists(stories):
    print(f"SKIPPED: {stories} not found (../shared/models)")
    sys.exit(77)
work = tempfile.mkdtemp(prefix="sluice-cli-")
failures = []
passed = 0


def check(cond, what, detail=""):
    global passed
    if cond:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what, detail[-1500:] if detail else "")


def run(args, stdout=subprocess.PIPE, timeout=60, stdin=subprocess.DEVNULL):
    try:
        r = subprocess.run([sluice, *args], stdout=stdout, stderr=subprocess.PIPE, stdin=stdin, timeout=timeout)
        return r.returncode, (r.stdout or b"").decode(errors="replace"), r.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        return "timeout", "", ""


# --- flags: each is refused by the CLI, naming the flag.
base_run = ["run", "-m", stories, "-p", "Once upon a time", "-n", "4", "-c", "64"]
bad_flags = [
    (base_run, ["--temp", "-1"], "--temp"), (base_run, ["--temp", "nan"], "--temp"), (base_run, ["--temp", "inf"], "--temp"),
    (base_run, ["--top-p", "2"], "--top-p"), (base_run, ["--top-p", "nan"], "--top-p"), (base_run, ["--top-k", "-5"], "--top-k"),
    (base_run, ["--min-p", "5"], "--min-p"), (base_run, ["--repeat-penalty", "0"], "--repeat-penalty"),
    (base_run, ["--repeat-penalty", "-1"], "--repeat-penalty"), (base_run, ["--repeat-last-n", "-7"], "--repeat-last-n"),
    (base_run, ["-t", "-3"], "--threads"), (base_run, ["-t", "1000"], "--threads"), (base_run, ["-c", "-1"], "--ctx-size"),
    (base_run, ["-n", "-2"], "--n-predict"), (base_run, ["--pass-tokens", "0"], "--pass-tokens"),
    (["bench", "-m", stories, "-p", "4", "-n", "2"], ["--pass-tokens", "0"], "--pass-tokens"),
    (["bench", "-m", stories, "-p", "4", "-n", "2"], ["--pass-tokens", "-5"], "--pass-tokens"),
    (["bench", "-m", stories, "-p", "4", "-n", "2"], ["-t", "1000"], "--threads"),
    (["perplexity", "-m", stories, "-f", "/usr/share/common-licenses/GPL-3", "-c", "64"], ["--chunks", "0"], "--chunks"),
    (["perplexity", "-m", stories, "-f", "/usr/share/common-licenses/GPL-3", "-c", "64"], ["--chunks", "-4"], "--chunks"),
    (["perplexity", "-m", stories, "-f", "/usr/share/common-licenses/GPL-3", "-c", "64"], ["-t", "-1"], "--threads"),
    (["eval", "-m", stories, "-p", "Once"], ["-t", "1000"], "--threads"),
    (["eval", "-m", stories, "-p", "Once"], ["-c", "-1"], "--ctx-size"),
    (["batch", "-m", stories, "-i", stories, "-o", "/tmp/sluice-never-written"], ["-t", "1000"], "--threads"),
    (["batch", "-m", stories, "-i", stories, "-o", "/tmp/sluice-never-written"], ["--max-tokens", "-5"], "--max-tokens"),
    (["batch", "-m", stories, "-i", stories, "-o", "/tmp/sluice-never-written"], ["--pass-tokens", "0"], "--pass-tokens"),
    (["batch", "-m", stories, "-i", stories, "-o", "/tmp/sluice-never-written"], ["-c", "-1"], "--ctx-size"),
]
for cmd, extra, flag in bad_flags:
    rc, out, err = run(cmd + extra, timeout=30)
    check(rc not in (0, "timeout") and isinstance(rc, int) and rc > 0 and flag in err,
          f"{' '.join(cmd[:1] + extra)} should be a CLI error naming {flag}", f"rc={rc} err={err}")

rc, out, err = run(["eval", "-m", stories, "--tokens", "1,2,99999"])
check(rc == 1 or rc == 105, "eval --tokens with an id past the vocabulary is refused", f"rc={rc} {err}")

# --- the session flags are declared once: every command that opens a model has all of them.
for cmd in ("run", "bench", "perplexity", "batch"):
    rc, out, err = run([cmd, "--help"])
    missing = [f for f in ("--model", "--threads", "--mem-budget", "--stream", "--slots", "--kv-type", "--kv-spill",
                           "--kv-spill-dir", "--disk-gbps", "--pass-tokens") if f not in out]
    check(rc == 0 and not missing, f"{cmd} --help lists every session flag", f"missing {missing}")

# --- eval's JSON stays valid when greedy text ends inside a UTF-8 character (byte tokens).
synth_model = os.path.join(work, "builtin.gguf")
rc, _, err = run(["synth", synth_model, "--vocab-size", "400", "--layers", "2"])
check(rc == 0, "synth --vocab-size", err)
import json as _json
bad_utf8 = 0
for seed_text in ("Once", "a", "zq", "The"):
    rc, out, err = run(["eval", "-m", synth_model, "-p", seed_text, "--greedy", "24"])
    try:
        _json.loads(out.strip().splitlines()[-1])
    except Exception:
        bad_utf8 += 1
        print("eval output:", rc, err[-300:])
check(bad_utf8 == 0, "eval --greedy prints valid JSON whatever the generated bytes")

# --- stdout: a full disk is an error.
pack = os.path.join(work, "s.sluice")
rc, _, err = run(["convert", stories, pack])
check(rc == 0, "convert stories260K", err)
for args in (base_run, ["eval", "-m", stories, "-p", "Once"], ["inspect", pack],
             ["perplexity", "-m", stories, "-f", "/usr/share/common-licenses/GPL-3", "-c", "64", "--chunks", "1"]):
    with open("/dev/full", "wb") as full:
        rc, _, err = run(args, stdout=full)
    check(isinstance(rc, int) and rc != 0 and "standard output" in err, f"{args[0]} > /dev/full exits non-zero", f"rc={rc} {err}")

# --- inputs: bounded reads; a prompt too long for the context is refused before it is printed.
rc, out, err = run(["run", "-m", stories, "-f", "/dev/zero", "-n", "1"], timeout=60)
check(isinstance(rc, int) and rc != 0 and "/dev/zero" in err, "run -f /dev/zero is refused", f"rc={rc} {err}")
long_prompt = os.path.join(work, "long.txt")
with open(long_prompt, "w") as f:
    f.write("Once upon a time there was a little girl. " * 200)
rc, out, err = run(["run", "-m", stories, "-f", long_prompt, "-n", "4", "-c", "64"])
check(rc == 1 and out == "" and "exceed the context" in err, "a too-long prompt is refused before anything is printed",
      f"rc={rc} stdout={len(out)} bytes, err={err}")

# --- fuzz: random flag values and short inputs; no run may end by a signal or hang.
seed = int(os.environ.get("SLUICE_FUZZ_SEED", "20261205"))
print(f"fuzz seed {seed} (SLUICE_FUZZ_SEED)")
rng = random.Random(seed)
values = ["-1", "0", "1", "2", "3", "7", "64", "-5", "1e9", "nan", "inf", "-inf", "0.5", "abc", "", "4096", "2147483648",
          "99999999999", "1.5"]
run_flags = ["-n", "-c", "-t", "--temp", "--top-k", "--top-p", "--min-p", "--repeat-penalty", "--repeat-last-n", "--seed",
             "--pass-tokens", "--parallel", "--batch", "--slots", "--mem-budget", "--kv-type", "--kv-spill", "--stream"]
batch_flags = ["--max-tokens", "-c", "-t", "--batch", "--max-errors", "--seed", "--pass-tokens", "--mem-budget",
               "--fsync-interval", "--progress-interval", "--kv-type", "--shard"]
texts = ["", "\n", "Once", "<s>", "<|im_start|>assistant", "\x00\x01\x02", "é" * 50, "{", '{"prompt": "hi"}',
         '{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x", "max_tokens": -3}}',
         '{"custom_id": "b", "method": "POST", "url": "/v1/chat/completions", "body": {"messages": [{"role": "user", "content": 5}]}}',
         "x" * 3000]
signals = 0
n_runs = int(os.environ.get("SLUICE_FUZZ_RUNS", "60"))
for i in range(n_runs):
    model = rng.choice([stories, pack])
    inp = os.path.join(work, f"in{i}.txt")
    with open(inp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write("\n".join(rng.choice(texts) for _ in range(rng.randint(0, 4))))
    if rng.random() < 0.5:
        args = ["run", "-m", model, "-c", "64", "-n", "8"] + (["-f", inp] if rng.random() < 0.5 else ["-p", rng.choice(texts).replace("\x00", "") or "x"])
        flags = run_flags
    else:
        out = os.path.join(work, f"out{i}.jsonl")
        args = ["batch", "-m", model, "-i", inp, "-o", out, "-c", "64", "--max-tokens", "4", "--progress", "log",
                "--chat-template", "chatml"]
        flags = batch_flags
    for _ in range(rng.randint(1, 3)):
        args += [rng.choice(flags), rng.choice(values)]
    rc, out, err = run(args, timeout=120)
    ok = rc != "timeout" and rc >= 0
    if not ok:
        signals += 1
        print(f"FAIL: fuzz case {i} ended by {'a timeout' if rc == 'timeout' else f'signal {-rc}'}: {args}\n{err[-1000:]}")
check(signals == 0, f"fuzz: {signals} of {n_runs} runs ended by a signal or a hang (seed {seed})")

print(f"{passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
