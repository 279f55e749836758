#!/usr/bin/env python3
"""llama.cpp habits on the `sluice` command line (tools/front_door.cpp, issue 18):
  version   `sluice --version` and `sluice version`: "sluice X.Y.Z (commit ...)", the compiler and the
            CPU kernel level; usage lines name the program.
  commands  an unknown command is named (exit 2) with the list of commands and a did-you-mean for a
            near miss; flags before any command get a command-first hint (exit 2).
  flags     each llama.cpp flag sluice does not take is answered with one line (ignored with a note,
            mapped to --kv-type, or refused with exit 2), never misparsed by CLI11 (`-cnv` as `-c nv`);
            values are consumed; an ignored flag leaves the greedy text unchanged; a note is said once.
  seeds     `run` samples with a random seed unless -s is given (-s -1: random), printed on stderr;
            -s N twice gives the same text; --temp 0 prints no seed and its text does not change.
  install   `cmake --install BUILD --prefix TMP` puts a working bin/sluice there.
Needs ../shared/models/stories260K.gguf (exit 77 without it).
Usage: test_cli_habits.py SLUICE MODELS_DIR CMAKE BUILD_DIR"""
import os
import re
import subprocess
import sys
import tempfile

sluice, models, cmake, build_dir = sys.argv[1:5]
stories = os.path.join(models, "stories260K.gguf")
if not os.path.isfile(stories):
    print(f"SKIPPED: {stories} not found (../shared/models)")
    sys.exit(77)

failures = []


def check(ok, what):
    if not ok:
        failures.append(what)
        print(f"FAIL: {what}")


def run(args, timeout=120, stdin=""):
    r = subprocess.run([sluice, *args], input=stdin.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return r.returncode, r.stdout.decode(errors="replace"), r.stderr.decode(errors="replace")


# CLI11's words when it misparses a flag (what a llama.cpp user saw before).
MISPARSE = re.compile(r"Could not convert|not in range|File does not exist|was not expected|not found|A subcommand is required")

# --- version
rc, out, err = run(["--version"])
check(rc == 0, f"--version exited {rc}: {err}")
lines = out.splitlines()
check(bool(lines) and re.fullmatch(r"sluice \d+\.\d+\.\d+ \((commit [0-9a-f]{7,40}|commit unknown: .*)\)", lines[0]),
      f"--version's first line: {out!r}")
check(any(re.fullmatch(r"built with \S+ \S+ \(.*\)", l) for l in lines), f"--version names no compiler: {out!r}")
check(any(re.fullmatch(r"cpu kernels: (scalar|avx2|avx512)( \(.*\))?( \+ amx-int8)?", l) for l in lines), f"--version names no kernel level: {out!r}")
rc2, out2, _ = run(["version"])
check(rc2 == 0 and out2 == out, f"`sluice version` ({rc2}) differs from --version: {out2!r}")
rc, out, _ = run(["run", "--help"])
check(rc == 0 and "Usage: sluice run" in out, f"run --help's usage line does not name the program: {out[:200]!r}")

# --- unknown commands
rc, out, err = run(["foo"])
check(rc == 2 and "sluice: unknown command 'foo'" in err and "commands: " in err and "run" in err and "batch" in err,
      f"`sluice foo`: exit {rc}, {err!r}")
check("did you mean" not in err, f"`sluice foo` suggested something: {err!r}")
rc, out, err = run(["rn", "-m", stories])
check(rc == 2 and "unknown command 'rn'" in err and "did you mean 'run'?" in err, f"`sluice rn`: exit {rc}, {err!r}")
rc, out, err = run(["bech"])
check(rc == 2 and "did you mean 'bench'?" in err, f"`sluice bech`: exit {rc}, {err!r}")
for args in ([], ["-m", stories, "-p", "Once"]):
    rc, out, err = run(args)
    check(rc == 2 and "a command comes first" in err and "commands: " in err, f"`sluice {' '.join(args)}`: exit {rc}, {err!r}")

# --- llama.cpp flags. The flag goes first, so a value left unconsumed would become a positional
# argument (refused by CLI11) or the value of the next flag.
base = ["-m", stories, "-p", "Once upon a time", "-n", "8", "--temp", "0", "-c", "64"]
rc, plain, err = run(["run", *base])
check(rc == 0 and plain.startswith("Once upon a time"), f"plain greedy run: exit {rc}, {err}")
ignored = {
    ("-ngl", "99"): "no GPU offload", ("--n-gpu-layers", "99"): "no GPU offload", ("--gpu-layers", "40"): "no GPU offload",
    ("--n-gpu-layers=99",): "no GPU offload", ("-ngl", "0"): "runs on the CPU", ("-fa",): "fused", ("-fa", "on"): "fused",
    ("--flash-attn", "auto"): "fused", ("--mlock",): "--mem-budget", ("--no-mmap",): "--stream on", ("-co",): "plain text",
    ("--color",): "plain text", ("--log-disable",): "stderr", ("-ctk", "f16"): "--kv-type f16",
    ("--cache-type-k", "q8_0"): "--kv-type q8_0", ("-ctv", "q8_0"): "--kv-type q8_0", ("-ctk", "q8_0", "-ctv", "q8_0"): "--kv-type q8_0",
}
for flag, words in ignored.items():
    rc, out, err = run(["run", *flag, *base])
    notes = [l for l in err.splitlines() if l.startswith("sluice: note: ")]
    check(rc == 0, f"{' '.join(flag)}: exit {rc}: {err}")
    check(not MISPARSE.search(err), f"{' '.join(flag)} misparsed: {err}")
    check(len(notes) >= 1 and all(words in n for n in notes), f"{' '.join(flag)}: no note saying {words!r}: {notes}")
    check(out == plain, f"{' '.join(flag)} changed the greedy text: {out!r} vs {plain!r}")
rc, out, err = run(["run", "-fa", "-fa", "-ngl", "99", "-ngl", "99", *base])
check(rc == 0 and err.count("sluice: note: -fa") == 1 and err.count("sluice: note: -ngl 99") == 1, f"notes not said once: {err}")
# -ctk maps to --kv-type: the plan says so.
_, want, _ = run(["run", "-m", stories, "--plan-only", "-c", "4096", "--mem-budget", "1GiB", "--kv-type", "q8_0"])  # a fixed budget: the default follows free memory
rc, got, err = run(["run", "-m", stories, "--plan-only", "-c", "4096", "--mem-budget", "1GiB", "-ctk", "q8_0"])
check(rc == 0 and "KV cache (q8_0)" in got and got == want, f"-ctk q8_0 did not plan a q8_0 KV cache: {got}")
refused = {
    ("-ctk", "q4_0"): "f16 or q8_0", ("-ctv", "bf16"): "f16 or q8_0",
    ("-ctk", "f16", "-ctv", "q8_0"): "one type", ("-ctk", "q8_0", "--kv-type", "f16"): "give one of them", ("-ngl",): "needs a number", ("--mlock=1",): "takes no value",
}
for flag, words in refused.items():
    rc, out, err = run(["run", *flag, *base])
    check(rc == 2 and words in err and not MISPARSE.search(err) and out == "", f"{' '.join(flag)}: exit {rc}, {err!r}")
# `run -cnv` is llama-cli's conversation mode: `sluice chat`, -p its system prompt; elsewhere -cnv points to chat.
for flag in ("-cnv", "--conversation"):
    rc, out, err = run(["bench", flag, "-m", stories, "-p", "4", "-n", "2"])
    check(rc == 2 and "sluice chat -m MODEL" in err and not MISPARSE.search(err) and out == "", f"bench {flag}: exit {rc}, {err!r}")
    rc, out, err = run(["run", flag, "-m", stories, "--chat-template", "chatml", "-p", "Be brief.", "-n", "4", "--temp", "0",
                        "--stats"], stdin="hello\n")
    check(rc == 0 and "run -cnv is a conversation" in err and "system prompt" in err and "prompt tokens" in err
          and not MISPARSE.search(err), f"run {flag}: exit {rc}, {err!r}")
_, _, err_sys = run(["chat", "-m", stories, "--chat-template", "chatml", "-sys", "Be brief.", "-n", "4", "--temp", "0", "--stats"],
                    stdin="hello\n")
_, _, err_cnv = run(["run", "-cnv", "-m", stories, "--chat-template", "chatml", "-p", "Be brief.", "-n", "4", "--temp", "0",
                     "--stats"], stdin="hello\n")
turn = re.compile(r"\[(\d+) prompt tokens")
check(turn.findall(err_cnv) and turn.findall(err_cnv) == turn.findall(err_sys),
      f"run -cnv -p should be chat -sys: {turn.findall(err_cnv)} vs {turn.findall(err_sys)}")
# Without a prompt and with stdin not a terminal, `run` generates from BOS as before (no chat).
rc, out, err = run(["run", "-m", stories, "-n", "4", "--temp", "0"])
check(rc == 0 and "conversation" not in err, f"run without -p from a pipe: exit {rc}, {err[-500:]!r}")
# -sys is `run`'s --system-prompt (the prompt then goes through a chat template: test_chat_templates.py);
# a command with no system prompt says where one belongs.
for flag in (("-sys", "hi"), ("--system-prompt", "you are")):
    rc, out, err = run(["bench", *flag, "-m", stories, "-p", "4", "-n", "2"])
    check(rc == 2 and "sluice chat -m MODEL -sys" in err and out == "", f"bench {' '.join(flag)}: exit {rc}, {err!r}")
# In `sluice chat`, -sys is its --system-prompt and -cnv says the chat is a conversation already.
rc, out, err = run(["chat", "-m", stories, "--chat-template", "chatml", "-sys", "Be brief.", "-cnv", "-n", "4", "--temp", "0",
                    "-c", "128", "--stats"], stdin="hello\n")
check(rc == 0 and "-cnv ignored" in err and not MISPARSE.search(err) and "prompt tokens" in err, f"chat -sys -cnv: exit {rc}, {err!r}")
rc2, out2, err2 = run(["chat", "-m", stories, "--chat-template", "chatml", "--system-prompt", "Be brief.", "-n", "4", "--temp", "0",
                       "-c", "128", "--stats"], stdin="hello\n")
check(rc2 == 0 and out2 == out, f"chat -sys should equal --system-prompt: {out!r} vs {out2!r}")
rc, out, err = run(["convert", "-ctk", "q8_0", stories, "/nonexistent/x.sluice"])
check(rc == 2 and "`sluice convert`" in err and "--kv-type" in err, f"convert -ctk: exit {rc}, {err!r}")
# A prompt that reads like a flag is the prompt.
rc, out, err = run(["run", "-m", stories, "-p", "-fa", "-n", "2", "--temp", "0", "-c", "64"])
check(rc == 0 and out.startswith("-fa") and "note" not in err, f"-p -fa: exit {rc}, {out!r}, {err!r}")

# --- seeds
SEED = re.compile(r"^seed: (\d+) \(random; -s \1 repeats this run\)$", re.M)
sampled = ["-m", stories, "-p", "Once upon a time", "-n", "24", "--temp", "0.8", "-c", "64"]
seeds = []
for extra in ([], ["-s", "-1"]):
    rc, out, err = run(["run", *sampled, *extra])
    m = SEED.search(err)
    check(rc == 0 and m is not None, f"run {' '.join(extra) or '(no -s)'}: no random seed line: {err}")
    if m:
        seeds.append(int(m.group(1)))
        rc, again, err2 = run(["run", *sampled, "-s", m.group(1)])
        check(rc == 0 and again == out, f"-s {m.group(1)} does not repeat the random run: {again!r} vs {out!r}")
        check(re.search(rf"^seed: {m.group(1)}$", err2, re.M) is not None, f"-s {m.group(1)}: the seed line: {err2}")
check(len(seeds) == 2 and seeds[0] != seeds[1], f"two random runs printed the same seed: {seeds}")
_, a, _ = run(["run", *sampled, "-s", "1234"])
_, b, _ = run(["run", *sampled, "-s", "1234"])
check(a == b and a.startswith("Once upon a time"), f"-s 1234 twice differs: {a!r} vs {b!r}")
rc, out, err = run(["run", *base])
check(rc == 0 and "seed:" not in err and out == plain, f"--temp 0 printed a seed or changed: {err}")
rc, out, err = run(["run", *sampled, "-s", "-2"])
check(rc != 0 and "--seed" in err, f"-s -2 accepted: exit {rc}, {err}")

# --- cmake --install
with tempfile.TemporaryDirectory() as prefix:
    r = subprocess.run([cmake, "--install", build_dir, "--prefix", prefix], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    check(r.returncode == 0, f"cmake --install: {r.stdout.decode(errors='replace')}")
    installed = os.path.join(prefix, "bin", "sluice")
    check(os.access(installed, os.X_OK), f"no {installed}")
    if os.access(installed, os.X_OK):
        r = subprocess.run([installed, "--version"], stdout=subprocess.PIPE)
        check(r.returncode == 0 and r.stdout.startswith(b"sluice "), f"installed sluice --version: {r.stdout!r}")

if failures:
    sys.exit(f"{len(failures)} failures")
print("OK")
