#!/usr/bin/env python3
"""The parity harness tells a crashed reference from a sluice mismatch: parity.run_isolated runs
the comparison in a child, and a child killed by a signal (llama.cpp faulting, as its AMX path did
on CPUs that advertise AMX to a guest that may not use it) is reported as "llama.cpp crashed:
signal N on MODEL" and fails; ordinary exit codes pass through unchanged."""
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
for f in failures:
    print("FAIL:", f)
print(f"{len(cases) - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
