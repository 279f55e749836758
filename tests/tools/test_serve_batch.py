#!/usr/bin/env python3
"""The Batch API of `sluice serve` (--state-dir) on a synthetic model, over HTTP on localhost.

- upload a batch file, create a batch, poll until completed, download the output: it is
  byte-identical to `sluice batch` on the same file (same model, template, context and input
  mtime -- an answer's "created" is its input's mtime, the upload's created_at); with the official
  `openai` client when this Python has it, else with plain HTTP;
- an interactive request is answered while a batch runs;
- a server stopped by SIGTERM mid-batch exits 0 and resumes the batch at its next start;
- a server SIGKILLed mid-batch (stopped at a known answer by SLUICE_TEST_BATCH_STOP_AFTER) and
  started again on the same --state-dir finishes the batch with the same output;
- cancel: a running batch becomes cancelled, with an output of what was finished;
- bad requests (unknown ids, wrong purpose/endpoint/window, malformed or missing multipart, too
  large an upload) get a JSON 4xx and the server goes on serving; without --state-dir the routes
  answer 501 naming it; a second server on the same --state-dir is refused.
Usage: test_serve_batch.py SLUICE
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, failures, free_port, small_tmpfs  # noqa: E402

sluice = sys.argv[1]
work = tempfile.mkdtemp()
key = "sk-batch"
auth = {"Authorization": f"Bearer {key}"}


class Server:
    def __init__(self, name, state_dir=None, env=None, extra=()):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = os.path.join(work, name + ".log")
        self.log = open(self.log_path, "w")
        args = [sluice, "serve", "-m", model, "--chat-template", "chatml", "--port", str(self.port), "--parallel", "4",
                "--api-key", key, "-c", "512", *extra]
        if state_dir:
            args += ["--state-dir", state_dir]
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=self.log, env={**os.environ, **(env or {})})
        for _ in range(300):
            try:
                if self.call("/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise SystemExit("FAIL: the server did not come up:\n" + open(self.log_path).read())

    def call(self, path, body=None, raw=None, content_type="application/json", method=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, headers={"Content-Type": content_type, **auth}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=120) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def json(self, path, body=None, **kw):
        status, data = self.call(path, body, **kw)
        try:
            return status, json.loads(data)
        except ValueError:
            return status, {"unparsable": data[:200].decode(errors="replace")}

    def upload(self, data, purpose="batch", filename="in.jsonl"):
        boundary = uuid.uuid4().hex
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n{purpose}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n"
                f"Content-Type: application/jsonl\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
        return self.json("/v1/files", raw=body, content_type=f"multipart/form-data; boundary={boundary}")

    def wait_batch(self, batch_id, until=("completed", "failed", "cancelled"), timeout=240):
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, b = self.json(f"/v1/batches/{batch_id}")
            if status == 200 and b["status"] in until:
                return b
            time.sleep(0.1)
        raise SystemExit(f"FAIL: batch {batch_id} not {until} in {timeout} s:\n" + open(self.log_path).read()[-3000:])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                check(self.proc.wait(timeout=60) == 0, f"SIGTERM: the server exited {self.proc.returncode}")
            except subprocess.TimeoutExpired:
                self.proc.kill()
                check(False, "SIGTERM did not stop the server")
        self.log.close()


def is_json_error(status, body, low=400, high=500):
    return low <= status < high and isinstance(body, dict) and "message" in body.get("error", {})


def reference(input_path, created_at, name):
    """`sluice batch` on the same lines, its input's mtime the upload's created_at."""
    os.utime(input_path, (created_at, created_at))
    out = os.path.join(work, name)
    subprocess.run([sluice, "batch", "-m", model, "--chat-template", "chatml", "-c", "512", "-i", input_path, "-o", out],
                   check=True, capture_output=True)
    return open(out, "rb").read()


model = os.path.join(work, "m.gguf")
subprocess.run([sluice, "synth", "--shape", "tiny", "--layers", "2", "--vocab-size", "1000", model], check=True, capture_output=True)

# 24 requests: chats and completions, greedy and sampled without a seed (seeded by custom_id), and
# one bad line, which both answer with the same status_code 400 line.
lines = []
for i in range(24):
    chat = i % 2 == 0
    body = {"max_tokens": 6 + i % 5}
    if chat:
        body["messages"] = [{"role": "user", "content": f"question {i}"}]
    else:
        body["prompt"] = f"prompt number {i} says"
    if i % 3 == 0:
        body["temperature"] = 0.9
    elif i % 3 == 1:
        body["temperature"] = 0
    url = "/v1/chat/completions" if chat else "/v1/completions"
    lines.append({"custom_id": f"req-{i}", "method": "POST", "url": url, "body": body})
lines[7]["body"]["max_tokens"] = "many"
input_path = os.path.join(work, "in.jsonl")
input_bytes = "".join(json.dumps(l) + "\n" for l in lines).encode()
open(input_path, "wb").write(input_bytes)

servers = []
try:
    state = os.path.join(work, "state")
    a = Server("a", state, extra=("--max-file-size", "64KiB"))
    servers.append(a)

    # Upload, batch, download: with the official client where this Python has it.
    try:
        import openai
    except ImportError:
        openai = None
        print("openai package not installed: plain HTTP instead of the official client")
    if openai:
        client = openai.OpenAI(base_url=a.base + "/v1", api_key=key)
        f = client.files.create(file=("in.jsonl", input_bytes), purpose="batch")
        check(f.id.startswith("file-") and f.bytes == len(input_bytes) and f.purpose == "batch", f"file object: {f}")
        b = client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                  metadata={"job": "test"})
        check(b.id.startswith("batch_") and b.status in ("validating", "in_progress", "completed"), f"batch object: {b}")
        file_id, created_at, batch_id = f.id, f.created_at, b.id
    else:
        status, f = a.upload(input_bytes)
        check(status == 200 and f["id"].startswith("file-") and f["bytes"] == len(input_bytes), f"upload: {status} {f}")
        status, b = a.json("/v1/batches", {"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
        check(status == 200 and b["object"] == "batch", f"create: {status} {b}")
        file_id, created_at, batch_id = f["id"], f["created_at"], b["id"]
    # An interactive request while the batch runs (or after: the tiny model is fast).
    status, r = a.json("/v1/completions", {"prompt": "hello", "max_tokens": 4, "temperature": 0})
    check(status == 200 and r["usage"]["completion_tokens"] == 4, f"interactive request beside a batch: {status} {r}")
    done = a.wait_batch(batch_id)
    check(done["status"] == "completed" and done["output_file_id"], f"batch: {done}")
    check(done["request_counts"] == {"total": 24, "completed": 23, "failed": 1}, f"request_counts: {done['request_counts']}")
    check(done["in_progress_at"] is not None and done["completed_at"] is not None, f"timestamps: {done}")
    expected = reference(input_path, created_at, "ref-a.jsonl")
    if openai:
        got = client.files.content(done["output_file_id"]).content
        check(client.batches.retrieve(batch_id).status == "completed", "openai client: retrieve")
        check(any(x.id == batch_id for x in client.batches.list(limit=5).data), "openai client: list")
    else:
        got = a.call(f"/v1/files/{done['output_file_id']}/content")[1]
    check(got == expected, f"the batch's output differs from `sluice batch`'s:\n{got[:600]}\n---\n{expected[:600]}")
    check(len(got.splitlines()) == 24, f"{len(got.splitlines())} output lines")
    status, meta = a.json(f"/v1/files/{done['output_file_id']}")
    check(status == 200 and meta["purpose"] == "batch_output" and meta["bytes"] == len(got), f"output file: {meta}")
    status, listing = a.json("/v1/files")
    check(status == 200 and {file_id, done["output_file_id"]} <= {x["id"] for x in listing["data"]}, f"file list: {listing}")

    # Cancel a running batch: 300 requests of 200 tokens run long enough to catch it.
    big = "".join(json.dumps({"custom_id": f"c{i}", "method": "POST", "url": "/v1/completions",
                              "body": {"prompt": f"long {i}", "max_tokens": 200}}) + "\n" for i in range(300)).encode()
    status, f = a.upload(big)
    check(status == 200, f"upload of the batch to cancel: {status} {f}")
    status, b = a.json("/v1/batches", {"input_file_id": f["id"], "endpoint": "/v1/completions", "completion_window": "24h"})
    running = a.wait_batch(b["id"], until=("in_progress", "completed"))
    status, c = a.json(f"/v1/batches/{b['id']}/cancel", {})
    check(status == 200 and c["status"] in ("cancelling", "cancelled"), f"cancel: {status} {c}")
    c = a.wait_batch(b["id"])
    check(c["status"] == "cancelled" and c["cancelled_at"], f"cancelled batch: {c}")
    if c["output_file_id"]:
        partial = a.call(f"/v1/files/{c['output_file_id']}/content")[1].decode().splitlines()
        ids = [json.loads(l)["custom_id"] for l in partial]
        check(len(ids) == len(set(ids)) < 300, f"cancelled output: {len(ids)} lines, {len(set(ids))} distinct")
    status, again = a.json(f"/v1/batches/{b['id']}/cancel", {})
    check(is_json_error(status, again, 409, 410), f"cancel of a cancelled batch: {status} {again}")
    status, blist = a.json("/v1/batches?limit=1")
    check(status == 200 and [x["id"] for x in blist["data"]] == [b["id"]] and blist["has_more"], f"newest first, limit: {blist}")

    # Bad requests: a JSON 4xx each, and the server goes on.
    boundary = "xyz"
    for what, (status, body), code in [
        ("unknown file", a.json("/v1/files/file-nope"), 404),
        ("unknown file content", a.json("/v1/files/file-nope/content"), 404),
        ("unknown batch", a.json("/v1/batches/batch_nope"), 404),
        ("cancel of an unknown batch", a.json("/v1/batches/batch_nope/cancel", {}), 404),
        ("batch of an unknown file", a.json("/v1/batches", {"input_file_id": "file-nope", "endpoint": "/v1/completions",
                                                           "completion_window": "24h"}), 404),
        ("wrong endpoint", a.json("/v1/batches", {"input_file_id": file_id, "endpoint": "/v1/embeddings",
                                                  "completion_window": "24h"}), 400),
        ("wrong window", a.json("/v1/batches", {"input_file_id": file_id, "endpoint": "/v1/completions",
                                                "completion_window": "1h"}), 400),
        ("batch of an output file", a.json("/v1/batches", {"input_file_id": done["output_file_id"], "endpoint": "/v1/completions",
                                                           "completion_window": "24h"}), 400),
        ("batch body not JSON", a.json("/v1/batches", raw=b"{nope"), 400),
        ("wrong purpose", a.upload(input_bytes, purpose="fine-tune"), 400),
        ("not multipart", a.json("/v1/files", raw=b"hello", content_type="text/plain"), 400),
        ("malformed multipart", a.json("/v1/files", raw=b"--xyz\r\ngarbage without headers",
                                       content_type=f"multipart/form-data; boundary={boundary}"), 400),
        ("too large an upload", a.upload(b"x" * 100000), 413),
    ]:
        check(status == code and is_json_error(status, body, code, code + 1), f"{what}: expected a JSON {code}, got {status} {body}")
    check(a.json("/v1/models")[0] == 200, "the server stopped answering after bad requests")
    # A second server on the same --state-dir would run the same batches: refused.
    second = subprocess.run([sluice, "serve", "-m", model, "--port", str(free_port()), "--state-dir", state], capture_output=True,
                            text=True, timeout=60)
    check(second.returncode != 0 and "another sluice serve uses it" in second.stderr, f"a second server: {second.stderr[-300:]}")
    a.stop()

    # SIGKILL mid-batch, then the same --state-dir again: the batch finishes with the same output.
    crash_state = os.path.join(work, "crash")
    b1 = Server("b1", crash_state, env={"SLUICE_TEST_BATCH_STOP_AFTER": "9"})
    servers.append(b1)
    status, f = b1.upload(input_bytes)
    status, b = b1.json("/v1/batches", {"input_file_id": f["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"})
    for _ in range(600):  # the batch thread SIGSTOPs the server after 9 answers
        if open(f"/proc/{b1.proc.pid}/stat").read().split(")")[1].split()[0] == "T":
            break
        time.sleep(0.05)
    else:
        check(False, "the server did not stop itself at the 9th answer")
    b1.proc.send_signal(signal.SIGKILL)
    b1.proc.wait()
    b1.log.close()
    meta = json.load(open(os.path.join(crash_state, "batches", b["id"] + ".json")))
    check(meta["status"] == "in_progress", f"killed mid-batch, its status is {meta['status']}")
    b2 = Server("b2", crash_state)
    servers.append(b2)
    resumed = b2.wait_batch(b["id"])
    check(resumed["status"] == "completed", f"resumed batch: {resumed}")
    got = b2.call(f"/v1/files/{resumed['output_file_id']}/content")[1]
    check(got == reference(input_path, f["created_at"], "ref-b.jsonl"), "the resumed batch's output differs from `sluice batch`'s")
    check("resuming: 9 already answered" in open(b2.log_path).read(), "the restarted server did not resume from the journal")
    b2.stop()

    # SIGTERM mid-batch: the server exits 0, the batch stays in_progress, the next start finishes it.
    long_path = os.path.join(work, "long.jsonl")
    open(long_path, "wb").write(big[:big.index(b"c60")].rsplit(b"\n", 1)[0] + b"\n")  # c0..c59
    term_state = os.path.join(work, "term")
    d1 = Server("d1", term_state)
    servers.append(d1)
    status, f = d1.upload(open(long_path, "rb").read())
    status, b = d1.json("/v1/batches", {"input_file_id": f["id"], "endpoint": "/v1/completions", "completion_window": "24h"})
    for _ in range(600):
        if d1.json(f"/v1/batches/{b['id']}")[1]["request_counts"]["completed"] >= 4:
            break
        time.sleep(0.02)
    # Interactive traffic shares the engine with the running batch (one slot kept free for it).
    started = time.time()
    status, r = d1.json("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4})
    check(status == 200 and r["usage"]["completion_tokens"] == 4, f"a chat while a batch runs: {status} {r}")
    check(d1.json(f"/v1/batches/{b['id']}")[1]["status"] == "in_progress", "the batch ended before the chat was answered")
    print(f"a chat beside a running batch: {time.time() - started:.2f} s")
    d1.stop()
    meta = json.load(open(os.path.join(term_state, "batches", b["id"] + ".json")))
    check(meta["status"] == "in_progress", f"stopped by SIGTERM mid-batch, its status is {meta['status']}")
    d2 = Server("d2", term_state)
    servers.append(d2)
    counts = d2.json(f"/v1/batches/{b['id']}")[1]["request_counts"]
    check(counts["completed"] >= 4 and counts["total"] == 60, f"request_counts after the restart: {counts}")
    resumed = d2.wait_batch(b["id"])
    got = d2.call(f"/v1/files/{resumed['output_file_id']}/content")[1]
    check(resumed["status"] == "completed" and got == reference(long_path, f["created_at"], "ref-d.jsonl"),
          f"the batch resumed after SIGTERM: {resumed['status']}, its output differs from `sluice batch`'s")
    check("resuming:" in open(d2.log_path).read(), "the batch did not resume after SIGTERM")
    d2.stop()

    # A full disk under the state directory: the upload gets a JSON 507 naming it, leaves no
    # partial or temporary file behind, and the server goes on (a smaller upload then fits).
    tiny = os.path.join(work, "tiny")
    with small_tmpfs(tiny, "256k", "full disk") as mounted:
        if mounted:
            e = Server("e", tiny)
            servers.append(e)
            line = json.dumps({"custom_id": "x", "method": "POST", "url": "/v1/completions",
                               "body": {"prompt": "p" * 900, "max_tokens": 2}}) + "\n"
            status, body = e.upload((line * 400).encode())  # ~370 KB into 256 KiB
            check(is_json_error(status, body, 507, 508) and "No space" in body["error"]["message"],
                  f"an upload onto a full disk: {status} {body}")
            left = sorted(os.listdir(os.path.join(tiny, "files")))
            check(left == [], f"a failed upload left files behind: {left}")
            status, body = e.upload(line.encode())
            check(status == 200 and body.get("object") == "file", f"a small upload after a full disk: {status} {body}")
            e.stop()

    # Without --state-dir: 501 naming it.
    c = Server("c")
    servers.append(c)
    status, body = c.json("/v1/batches")
    check(status == 501 and "--state-dir" in body["error"]["message"], f"no --state-dir: {status} {body}")
    c.stop()
finally:
    for s in servers:
        if s.proc.poll() is None:
            s.proc.kill()
            s.proc.wait()

if failures:
    for s in servers:
        print(f"--- {s.log_path}\n" + open(s.log_path).read()[-3000:])
    print(f"{len(failures)} failures")
    sys.exit(1)
subprocess.run(["rm", "-rf", work])
print("serve_batch: OK")
