#!/usr/bin/env python3
"""`sluice run --stop STR` (repeatable) on a synthetic model (built-in vocabulary: runs in any
checkout): the streamed single-prompt output and every answer of --prompts end right before the
first stop string; a stop string that never appears changes nothing; the batch header says "stop".
Also the error line of an operating error (a sluice::Exception): exit 1, "sluice: MESSAGE [KIND error]".
Usage: test_run_stop.py SLUICE"""
import os
import re
import subprocess
import sys
import tempfile

sluice = sys.argv[1]


def run(*args):
    r = subprocess.run([sluice, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if r.returncode != 0:
        sys.exit(f"FAIL: sluice {' '.join(args)} exited {r.returncode}: {r.stderr.decode(errors='replace')}")
    return r.stdout


def stop_in(text: bytes) -> bytes:
    """Three ASCII letters from the middle of generated text (likely spanning tokens)."""
    for m in re.finditer(rb"[A-Za-z]{3}", text):
        if m.start() >= 4:
            return m.group(0)
    sys.exit(f"FAIL: no ASCII word in the generated text {text!r}")


with tempfile.TemporaryDirectory() as work:
    model = os.path.join(work, "m.gguf")
    subprocess.run([sluice, "synth", model, "--layers", "2", "--vocab-size", "512"], check=True, stdout=subprocess.DEVNULL)
    common = ["-m", model, "-n", "32", "--temp", "0"]

    # One prompt: streamed to stdout as it is generated.
    prompt = b"Once upon"
    full = run(*common, "-p", prompt.decode())
    assert full.startswith(prompt) and full.endswith(b"\n"), full
    generated = full[len(prompt):-1]
    stop = stop_in(generated)
    cut = generated.find(stop)
    got = run(*common, "-p", prompt.decode(), "--stop", "\x01never", "--stop", stop.decode())
    assert got == prompt + generated[:cut] + b"\n", (got, stop, full)
    assert run(*common, "-p", prompt.decode(), "--stop", "\x01never") == full, "a stop string that never appears changed the output"
    print(f"single prompt: cut before {stop!r} at byte {cut} of {len(generated)}")

    # Several prompts: one batch, each answer cut before its own first stop string.
    prompts = os.path.join(work, "prompts.txt")
    with open(prompts, "wb") as f:
        f.write(b"Once upon\nThe cat sat\n")
    batch_full = run(*common, "--prompts", prompts)
    answers = re.split(rb"^--- prompt \d+ .*\n", batch_full, flags=re.M)[1:]
    assert len(answers) == 2, batch_full
    assert answers[0] == full, "the batch's first answer differs from the single-prompt run"
    batch_stop = run(*common, "--prompts", prompts, "--stop", stop.decode())
    headers = re.findall(rb"^--- prompt \d+ .*$", batch_stop, flags=re.M)
    cut_answers = re.split(rb"^--- prompt \d+ .*\n", batch_stop, flags=re.M)[1:]
    for i, (whole, got, header) in enumerate(zip(answers, cut_answers, headers)):
        p = [b"Once upon", b"The cat sat"][i]
        gen = whole[len(p):-1]
        at = gen.find(stop)
        want = p + (gen[:at] if at >= 0 else gen) + b"\n"
        assert got == want, (i, got, want)
        assert header.endswith(b"stop)" if at >= 0 else b"length)"), header

    # Not a model: one line naming the file, with the error's kind and offset.
    bogus = os.path.join(work, "bogus.gguf")
    with open(bogus, "wb") as f:
        f.write(b"not a model at all")
    r = subprocess.run([sluice, "run", "-m", bogus, "-p", "x"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    err = r.stderr.decode()
    assert r.returncode == 1, (r.returncode, err)
    assert err.startswith("sluice: " + bogus) and "[corrupt error, offset 0]" in err and err.count("\n") == 1, err
    print("run stop ok")
