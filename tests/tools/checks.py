"""Shared by the Python tests of sluice's commands: checks that record a failure and go on (a test
reports every failure at the end, not only the first), and a free localhost port for a server."""
import socket

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
