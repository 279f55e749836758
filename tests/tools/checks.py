"""Shared by the Python tests of sluice's commands: checks that record a failure and go on (a test
reports every failure at the end, not only the first), a free localhost port for a server, and a
small tmpfs to fill (a full disk)."""
import contextlib
import os
import socket
import subprocess

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def small_tmpfs(path, size, what):
    """A tmpfs of `size` (mount's syntax: 64k) at `path`, created, for the block; unmounted after.
    Yields False, saying `what` is skipped, where none can be mounted (not root, a container)."""
    os.makedirs(path, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True, text=True)
    if mounted.returncode != 0:
        print(f"{what}: SKIPPED (cannot mount a tmpfs: {mounted.stderr.strip()})")
        yield False
        return
    try:
        yield True
    finally:
        subprocess.run(["umount", path], capture_output=True)
