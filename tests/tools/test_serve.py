#!/usr/bin/env python3
"""`sluice serve` on a synthetic model (no ../shared needed), over HTTP on localhost.

- /health, /v1/models, /v1/completions and /v1/chat/completions (plain and stream: true as
  server-sent events whose pieces add up to the plain answer, greedy);
- 16 concurrent clients x 2 requests: every greedy answer equals the same request run alone, and
  the engine ran them in shared passes (fewer passes than the requests' tokens);
- bad requests (malformed JSON, wrong types, unknown fields, unsupported values, unknown route, a huge body, no
  API key) get a JSON 4xx; a client stalled mid-request is dropped after --timeout and holds up no one
  and the server goes on serving;
- /metrics in Prometheus text;
- a second server on the same port is refused; the listen backlog holds a burst of clients;
- the official `openai` client (when this Python has it): a chat completion and a streamed one.
Usage: test_serve.py SLUICE
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, failures, free_port  # noqa: E402

sluice = sys.argv[1]


def call(path, body=None, headers=None, raw=None):
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


work = tempfile.mkdtemp()
model = os.path.join(work, "m.gguf")
subprocess.run([sluice, "synth", "--shape", "tiny", "--layers", "2", "--vocab-size", "1000", model], check=True,
               capture_output=True)
port = free_port()
base = f"http://127.0.0.1:{port}"
key = "sk-test-123"
log = open(os.path.join(work, "serve.log"), "w")
server = subprocess.Popen([sluice, "serve", "-m", model, "--chat-template", "chatml", "--port", str(port), "--parallel", "8",
                           "--api-key", key, "--max-body", "64KiB", "-c", "512", "--timeout", "3"], stdout=log, stderr=log)
auth = {"Authorization": f"Bearer {key}"}
try:
    for _ in range(300):
        try:
            if call("/health")[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.1)
    else:
        raise SystemExit("FAIL: the server did not come up:\n" + open(os.path.join(work, "serve.log")).read())

    status, body = call("/v1/models", headers=auth)
    check(status == 200 and json.loads(body)["data"][0]["object"] == "model", f"/v1/models: {status} {body}")
    status, body = call("/v1/models")
    check(status == 401 and "error" in json.loads(body), f"no API key should be 401 JSON: {status} {body}")

    def complete(i, stream=False, chat=False):
        body = {"max_tokens": 12, "temperature": 0, "stream": stream}
        if chat:
            body["messages"] = [{"role": "user", "content": f"question {i}"}]
        else:
            body["prompt"] = f"prompt number {i} says"
        return call("/v1/chat/completions" if chat else "/v1/completions", body, auth)

    status, body = complete(0)
    check(status == 200, f"completion: {status} {body}")
    alone = json.loads(body)["choices"][0]["text"]
    check(json.loads(body)["usage"]["completion_tokens"] == 12, f"usage: {body}")
    status, body = complete(0, chat=True)
    check(status == 200 and json.loads(body)["choices"][0]["message"]["role"] == "assistant", f"chat: {status} {body}")
    chat_alone = json.loads(body)["choices"][0]["message"]["content"]

    # Streaming: the pieces add up to the plain answer.
    status, body = complete(0, stream=True, chat=True)
    events = [l[len("data: "):] for l in body.splitlines() if l.startswith("data: ")]
    check(status == 200 and events and events[-1] == "[DONE]", f"stream: {status} {body[:300]}")
    pieces = "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1])
    check(pieces == chat_alone, f"streamed pieces {pieces!r} != the answer {chat_alone!r}")
    check(json.loads(events[-2])["choices"][0]["finish_reason"] == "length", "the last chunk carries the finish reason")

    # Alone, one by one, then all at once: the same greedy answers.
    n = 16
    expected = {}
    for i in range(n):
        expected[i] = json.loads(complete(i)[1])["choices"][0]["text"]
    metrics_before = call("/metrics", headers=auth)[1]
    passes_before = float([l for l in metrics_before.splitlines() if l.startswith("sluice_passes_total")][0].split()[1])
    got, errors = {}, []

    def client(i):
        for _ in range(2):
            s, b = complete(i)
            if s != 200:
                errors.append((s, b))
            else:
                got.setdefault(i, []).append(json.loads(b)["choices"][0]["text"])

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    check(not errors, f"concurrent clients got errors: {errors[:3]}")
    check(all(got.get(i) == [expected[i]] * 2 for i in range(n)), "concurrent answers differ from the same requests alone")
    metrics = call("/metrics", headers=auth)[1]
    passes = float([l for l in metrics.splitlines() if l.startswith("sluice_passes_total")][0].split()[1]) - passes_before
    # 32 requests x (prompt + 12 tokens) one at a time would take >= 32 x 12 passes; shared passes take far fewer.
    check(passes < 32 * 12 / 2, f"{passes} passes for 32 concurrent requests: not batched together")
    for name in ("sluice_requests_total", "sluice_generated_tokens_total", "sluice_queue_depth", "sluice_bytes_read_total"):
        check(f"# TYPE {name}" in metrics, f"/metrics lacks {name}")

    # Bad requests: a JSON 4xx each, and the server still answers.
    for what, (s, b) in {
        "malformed JSON": call("/v1/completions", headers=auth, raw=b"{not json"),
        "wrong type": call("/v1/completions", {"prompt": 42}, auth),
        "bad max_tokens": call("/v1/completions", {"prompt": "x", "max_tokens": "many"}, auth),
        "messages not a list": call("/v1/chat/completions", {"messages": "hi"}, auth),
        "unknown route": call("/v1/nothing", {"prompt": "x"}, auth),
        "huge body": call("/v1/completions", {"prompt": "x" * 200000}, auth),
        "past the context": call("/v1/completions", {"prompt": "word " * 400, "max_tokens": 400}, auth),
        "unknown field": call("/v1/completions", {"prompt": "x", "frobnicate": 1}, auth),
        "unsupported value": call("/v1/chat/completions", {"messages": [{"role": "user", "content": "x"}],
                                                           "frequency_penalty": 0.5}, auth),
    }.items():
        ok = 400 <= s < 500
        try:
            ok = ok and "message" in json.loads(b)["error"]
        except (ValueError, KeyError, TypeError):
            ok = False
        check(ok, f"{what}: expected a JSON 4xx, got {s} {b[:200]}")
    check(complete(1)[0] == 200, "the server stopped answering after bad requests")
    # A client that stalls mid-request holds up no one, and is dropped after --timeout (3 s).
    slow = socket.create_connection(("127.0.0.1", port))
    slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"prompt\":")
    stalled_at = time.time()
    check(complete(2)[0] == 200, "a stalled client held up another request")
    slow.settimeout(20)
    try:
        slow.recv(4096)  # the server's answer to it, or b"" when it closes the connection
        dropped_after = time.time() - stalled_at
    except socket.timeout:
        dropped_after = None
    slow.close()
    check(dropped_after is not None and dropped_after < 15, f"a stalled client was not dropped after --timeout 3 ({dropped_after})")
    # OpenAI's optional fields at their neutral values, and metadata, are accepted.
    s, b = call("/v1/completions", {"prompt": "x", "max_tokens": 2, "user": "u", "logprobs": None, "frequency_penalty": 0,
                                    "metadata": {"k": "v"}}, auth)
    check(s == 200, f"neutral optional fields: {s} {b[:200]}")

    # A second server on the same port is refused (cpp-httplib's SO_REUSEPORT would have let it
    # share the port and take half the connections), and the first one goes on serving.
    second = subprocess.run([sluice, "serve", "-m", model, "--chat-template", "chatml", "--port", str(port), "-c", "64"],
                            capture_output=True, text=True, timeout=120)
    check(second.returncode != 0 and "in use" in second.stderr,
          f"a second server on the same port: exit {second.returncode}, {second.stderr[-300:]!r}")
    check(call("/health")[0] == 200, "the first server stops answering after a second one tried its port")
    # The listen backlog is not cpp-httplib's 5: bursts of clients got "connection reset" under load.
    try:
        listening = subprocess.run(["ss", "-ltnH", f"sport = :{port}"], capture_output=True, text=True).stdout.split()
    except FileNotFoundError:
        print("ss (iproute2) not installed: the listen backlog check is skipped")
    else:
        backlog = int(listening[2]) if len(listening) > 2 else 0
        check(backlog >= 128, f"listen backlog {backlog} (ss: {listening}); bursts of clients overflow it")

    # The official client, where this Python has it.
    try:
        import openai
    except ImportError:
        print("openai package not installed: its part is skipped")
    else:
        client_ = openai.OpenAI(base_url=base + "/v1", api_key=key)
        r = client_.chat.completions.create(model="m", messages=[{"role": "user", "content": "question 0"}], max_tokens=12,
                                            temperature=0)
        check(r.choices[0].message.content == chat_alone, f"openai client: {r.choices[0].message.content!r}")
        text = "".join(c.choices[0].delta.content or "" for c in client_.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "question 0"}], max_tokens=12, temperature=0, stream=True))
        check(text == chat_alone, f"openai client, streamed: {text!r}")
        r = client_.completions.create(model="m", prompt="prompt number 0 says", max_tokens=12, temperature=0)
        check(r.choices[0].text == alone, "openai client completion")
finally:
    server.terminate()
    try:
        rc = server.wait(timeout=30)
        check(rc == 0, f"SIGTERM: the server exited {rc}")
    except subprocess.TimeoutExpired:
        server.kill()
        check(False, "SIGTERM did not stop the server")
    log.close()

if failures:
    print(open(os.path.join(work, "serve.log")).read()[-3000:])
    print(f"{len(failures)} failures")
    sys.exit(1)
subprocess.run(["rm", "-rf", work])
print("serve: OK")
