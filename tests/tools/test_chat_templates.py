#!/usr/bin/env python3
"""Chat templates in run, chat and serve, on synthetic models (no ../shared):
 - `run --chat-template chatml -sys TEXT -p hi` (and `-sys` from llama.cpp) feeds the prompt as a user
   message after a system message, the assistant's turn opened (--verbose-prompt shows the tokens);
   without those flags the prompt goes raw; -sys on a model without a template asks for --chat-template;
 - a model whose GGUF carries tokenizer.chat_template (a Qwen2.5-like one with a default system
   prompt, written by `sluice synth --chat-template-file`): run, chat and serve render it by
   default (the same prompt token count in all three, more than the built-in chatml's), and
   --chat-template chatml overrides it; chat's second turn reuses the first's cache.
 - a Qwen2.5 Instruct GGUF when installed (~/.cache/sluice/models): "hi" is 30 prompt tokens with
   its own template's default system prompt (9 with the bare chatml); skipped with a message when absent.
Usage: test_chat_templates.py SLUICE"""
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import check, failures, free_port  # noqa: E402

sluice = sys.argv[1]


def run(args, stdin=None):
    r = subprocess.run([sluice, *args], capture_output=True, text=True, errors="replace", input=stdin, timeout=240)
    return r.returncode, r.stdout, r.stderr


def prompt_tokens(err):
    m = re.search(r"number of tokens in prompt = (\d+)", err)
    return int(m.group(1)) if m else -1


QWEN_LIKE = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nYou are Sluicy, a synthetic test model.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
CHATML_HI = "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"

with tempfile.TemporaryDirectory() as work:
    plain = os.path.join(work, "m.gguf")
    owned = os.path.join(work, "t.gguf")
    jinja = os.path.join(work, "qwen-like.jinja")
    open(jinja, "w").write(QWEN_LIKE)
    synth = [sluice, "synth", "--shape", "tiny", "--layers", "2", "--vocab-size", "1000"]
    subprocess.run([*synth, plain], check=True, capture_output=True)
    subprocess.run([*synth, "--chat-template-file", jinja, owned], check=True, capture_output=True)
    gen = ["-n", "2", "--temp", "0", "-c", "256"]

    # --- B: run --chat-template / -sys.
    rc, out, err = run(["run", "-m", plain, "--chat-template", "chatml", "-sys", "be brief", "-p", "hi", "--verbose-prompt", *gen])
    check(rc == 0 and CHATML_HI in err, f"run --chat-template chatml -sys: exit {rc}, no rendered prompt in: {err[-2000:]}")
    templated = prompt_tokens(err)
    rc, _, err2 = run(["run", "-m", plain, "--chat-template", "chatml", "--system-prompt", "be brief", "-p", "hi", "--verbose-prompt", *gen])
    check(rc == 0 and prompt_tokens(err2) == templated, f"--system-prompt differs from -sys: {prompt_tokens(err2)} vs {templated}")
    rc, _, err = run(["run", "-m", plain, "-p", "hi", "--verbose-prompt", *gen])
    check(rc == 0 and "<|im_start|>" not in err and 0 < prompt_tokens(err) < templated,
          f"run without a template should send the prompt raw: exit {rc}, {err[-1500:]}")
    rc, _, err = run(["run", "-m", plain, "-sys", "be brief", "-p", "hi", *gen])
    check(rc != 0 and "--chat-template" in err, f"-sys on a model without a template: exit {rc}, {err[-800:]}")
    rc, _, err = run(["run", "-m", plain, "--chat-template", "vicuna", "-p", "hi", *gen])
    check(rc != 0 and "--chat-template vicuna" in err, f"--chat-template vicuna: exit {rc}, {err[-800:]}")
    rc, _, err = run(["run", "-m", plain, "--chat-template", "chatml", "-cnv", "-p", "hi", *gen], stdin="hello\n")
    check(rc == 0 and "run -cnv is a conversation" in err, f"run -cnv should be sluice chat: exit {rc}, {err[-800:]}")
    print("ok: run --chat-template / -sys", flush=True)

    # --- C: the model's own template in run, chat and serve.
    rc, _, err = run(["run", "-m", owned, "--chat-template", "model", "-p", "hi", "--verbose-prompt", *gen])
    own_n = prompt_tokens(err)
    check(rc == 0 and "You are Sluicy, a synthetic test model." in err and "<|im_start|>user\nhi<|im_end|>" in err,
          f"run --chat-template model: exit {rc}, {err[-2000:]}")
    rc, _, err = run(["run", "-m", owned, "-sys", "be brief", "-p", "hi", "--verbose-prompt", *gen])
    check(rc == 0 and CHATML_HI in err and "Sluicy" not in err, f"run -sys on the model's template: exit {rc}, {err[-2000:]}")
    rc, _, err = run(["run", "-m", owned, "--chat-template", "chatml", "-p", "hi", "--verbose-prompt", *gen])
    chatml_n = prompt_tokens(err)
    check(rc == 0 and "Sluicy" not in err and 0 < chatml_n < own_n, f"--chat-template chatml overrides: {chatml_n} vs {own_n}")

    rc, _, err = run(["chat", "-m", owned, "--stats", *gen], stdin="hi\nand more\n")
    turns = re.findall(r"\[(\d+) prompt tokens, (\d+) of them reused", err)
    # own_n > chatml_n: the model's default system prompt is there, so the count tells which template rendered.
    check(rc == 0 and len(turns) == 2 and int(turns[0][0]) == own_n > chatml_n, f"chat: first turn {turns} want {own_n} tokens: {err[-1500:]}")
    check(len(turns) == 2 and int(turns[1][1]) >= own_n, f"chat: the second turn should reuse the first's tokens: {turns}")
    rc, _, err = run(["chat", "-m", owned, "--chat-template", "chatml", "--stats", *gen], stdin="hi\n")
    turns = re.findall(r"\[(\d+) prompt tokens", err)
    check(rc == 0 and turns == [str(chatml_n)], f"chat --chat-template chatml: {turns} want {chatml_n}")

    port = free_port()
    log = open(os.path.join(work, "serve.log"), "w")
    server = subprocess.Popen([sluice, "serve", "-m", owned, "--port", str(port), "-c", "256"], stdout=log, stderr=log)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
                break
            except OSError:
                time.sleep(0.1)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions",
                                     data=json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2,
                                                      "temperature": 0}).encode(),
                                     headers={"Content-Type": "application/json"})
        body = json.loads(urllib.request.urlopen(req, timeout=120).read())
        check(body["usage"]["prompt_tokens"] == own_n > chatml_n, f"serve: {body['usage']} want {own_n} prompt tokens")
    except Exception as e:  # noqa: BLE001 - any failure is the test's
        check(False, f"serve: {e}: {open(os.path.join(work, 'serve.log')).read()[-1500:]}")
    finally:
        server.terminate()
        server.wait(timeout=30)
    print("ok: the model's own template in run, chat and serve", flush=True)

    # --- The real Qwen2.5 (its default system prompt, "You are Qwen, created by Alibaba Cloud. You are
    # a helpful assistant."): "hi" is 30 tokens by its own template in run, chat and serve alike,
    # 9 by the bare chatml.
    qwen = sorted(glob.glob(os.path.expanduser("~/.cache/sluice/models/**/*[Qq]wen2.5*[Ii]nstruct*.gguf"), recursive=True))
    if not qwen:
        print("skipped: no Qwen2.5 Instruct GGUF under ~/.cache/sluice/models", flush=True)
    else:
        q = [g for g in qwen if "0.5b" in g.lower()] or qwen
        few = ["-n", "1", "--temp", "0", "-c", "256"]
        rc, _, err = run(["run", "-m", q[0], "--chat-template", "model", "-p", "hi", "--verbose-prompt", *few])
        check(rc == 0 and prompt_tokens(err) == 30 and "You are Qwen, created by Alibaba Cloud." in err,
              f"{q[0]}: {prompt_tokens(err)} prompt tokens, want 30: {err[-1500:]}")
        rc, _, err = run(["run", "-m", q[0], "--chat-template", "chatml", "-p", "hi", "--verbose-prompt", *few])
        check(rc == 0 and prompt_tokens(err) == 9, f"{q[0]} chatml: {prompt_tokens(err)} prompt tokens, want 9")
        rc, _, err = run(["chat", "-m", q[0], "--stats", *few], stdin="hi\n")
        check(rc == 0 and re.findall(r"\[(\d+) prompt tokens", err) == ["30"], f"{q[0]} chat: {err[-800:]}")
        print(f"ok: {os.path.basename(q[0])} renders its own template", flush=True)

if failures:
    sys.exit(1)
print("PASS")
