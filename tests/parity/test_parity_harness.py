#!/usr/bin/env python3
"""The parity harness tells a crashed reference from a sluice mismatch: parity.run_isolated runs
the comparison in a child, and a child killed by a signal (llama.cpp faulting, as its AMX path did
on CPUs that advertise AMX to a guest that may not use it) is reported as "llama.cpp crashed:
signal N on MODEL" and fails; ordinary exit codes pass through unchanged. And the greedy tie rule
(parity.tie_verdict) on made-up logits rows."""
import io
import os
import signal
import sys
from contextlib import redirect_stdout

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity  # noqa: E402

failures = []


def crash():
    os.kill(os.getpid(), signal.SIGSEGV)


cases = [("crash", crash, 1, "llama.cpp crashed: signal 11 (SIGSEGV) on model.gguf"),
         ("agree", lambda: 0, 0, None),
         ("disagree", lambda: 1, 1, None),
         ("skip", lambda: parity.SKIP, parity.SKIP, None),
         ("sys.exit", lambda: sys.exit(1), 1, None)]
for name, body, want_rc, want_text in cases:
    out = io.StringIO()
    # The child's prints go to the inherited fd 1; capture the parent's message only.
    with redirect_stdout(out):
        rc = parity.run_isolated(body, "model.gguf")
    text = out.getvalue()
    if rc != want_rc:
        failures.append(f"{name}: exit {rc}, expected {want_rc}")
    if want_text and want_text not in text:
        failures.append(f"{name}: message {text!r} lacks {want_text!r}")
    if not want_text and "crashed" in text:
        failures.append(f"{name}: reported a crash: {text!r}")
# The greedy tie rule (parity.tie_verdict): rows of 4 logits, llama.cpp's token 0, ours 1.
ties = [("gap within spread and cap", [10.0, 9.9, 0, 0], [9.8, 9.95, 0, 0], True),
        ("gap past the cap, same top with flash attention", [10.7, 10.1, 0, 0], [10.9, 10.0, 4, 0], False),
        ("gap past the cap, flash attention picks ours", [10.7, 10.1, 0, 0], [8.0, 12.0, 0, 0], True),
        ("flash attention picks a third token", [10.7, 10.1, 0, 0], [8.0, 9.0, 12.0, 0], False),
        ("gap inside the spread but past the cap", [10.0, 9.5, 0, 0], [9.0, 8.9, 0, 3], False)]
for name, ref_row, fa_row, want in ties:
    ok, message = parity.tie_verdict(ref_row, fa_row, 0, 1, 0.25)
    if ok != want:
        failures.append(f"tie rule, {name}: {ok}, expected {want}: {message}")
cases += ties
for f in failures:
    print("FAIL:", f)
print(f"{len(cases) - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
