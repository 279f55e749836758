#!/usr/bin/env python3
"""Parity of sluice's chat templates (model/chat_template.hpp) with llama.cpp's built-in renderers.

Usage: check_chat_template.py --dump PATH/chat_template_dump --templates tests/model/data/chat_templates

Calls llama.cpp's C API through llama-cpp-python, llama_chat_apply_template(tmpl, chat, n_msg,
add_ass=True, buf, length), the function behind llama.cpp's non-Jinja chat formatting, and compares
it with chat_template_dump (sluice's render_chat and detect_chat_template):

  1. rendering: for each kind, sluice's text for a set of conversations equals llama.cpp's with the
     template named by llama.cpp's name for that renderer (llama2 -> "llama2-sys-strip",
     mistral -> "mistral-v7", the others their own name), byte for byte. Conversations the kind
     rejects (roles out of the order the real template demands) must raise in sluice instead.
  2. detection: for each real template in --templates and a table of marker combinations, the kind
     sluice detects is the renderer llama.cpp picks for that text (found by rendering a probe
     conversation with the text as tmpl and matching it against every built-in renderer); where
     sluice detects nothing, llama.cpp must pick none of sluice's five renderers.

Exit status: 0 when everything matches; 1 with one line per difference; 77 (skipped, with a line
starting "SKIPPED:") when llama_cpp is not importable; 2 when chat_template_dump fails.
"""

import argparse
import ctypes
import json
import pathlib
import subprocess
import sys

try:
    import llama_cpp
except Exception as e:  # ImportError, or OSError from loading libllama
    print(f"SKIPPED: llama_cpp (llama-cpp-python) is not importable with {sys.executable}: {e}; "
          "run tools/setup-venv.sh and configure with -DSLUICE_PYTHON=<venv>/bin/python")
    sys.exit(77)

# sluice kind -> llama.cpp's name for the same renderer.
LLAMA_CPP_NAME = {
    "llama2": "llama2-sys-strip",
    "llama3": "llama3",
    "chatml": "chatml",
    "mistral": "mistral-v7",
    "gemma": "gemma",
    "gpt-oss": "gpt-oss",
}
ALTERNATING = ("llama2", "mistral", "gemma")  # [system] user assistant ... user, as their templates demand

S, U, A = "system", "user", "assistant"

# Conversations every kind accepts.
CONVERSATIONS = [
    [(U, "Hello")],
    [(S, "You are a helpful assistant"), (U, "Hello")],
    [(U, "Hello"), (A, "Hi there"), (U, "Who are you")],
    # llama.cpp's tests/test-chat-template.cpp conversation (padded assistant reply included).
    [(S, "You are a helpful assistant"), (U, "Hello"), (A, "Hi there"), (U, "Who are you"),
     (A, "   I am an assistant   "), (U, "Another question")],
    [(S, "\n\t system, padded \r\n"), (U, "  spaced  "), (A, "\vreply\f"), (U, "last\n")],
    [(U, "h\u00e9llo \u4e16\u754c\n\nsecond line"), (A, ""), (U, "llama \U0001f999")],
    [(S, ""), (U, "")],
    [(S, "   "), (U, "  x")],
    [(U, "[INST] <|im_start|>user </s> <start_of_turn> <|eot_id|>")],
]
# Conversations only chatml and llama3 accept (any order of the three roles).
FREE_ORDER = [
    [(U, "one"), (U, "two")],
    [(S, "first"), (S, "second"), (U, "question"), (A, "answer")],
    [(A, "I speak first"), (S, "late system"), (U, "ok")],
    [(S, "only a system message")],
]
# Probe for detection: distinguishes the renderers (system message, padding, several turns).
PROBE = [(S, " You are a helpful assistant "), (U, "Hello"), (A, "Hi there"), (U, "Who are you"),
         (A, "   I am an assistant   "), (U, "Another question")]

# Marker combinations: which renderer llama.cpp picks when several families' markers meet.
MARKER_CASES = [
    "<|im_start|>{{ message['role'] }}<start_of_turn><|start_header_id|><|end_header_id|>",
    "<|im_start|><|im_sep|>",
    "<|im_start|><end_of_utterance>",
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}<start_of_turn>",
    "[INST] <<SYS>> content.strip()",
    "[INST] <<SYS>> bos_token + '[INST] '",
    "[INST] <<SYS>>",
    "[INST][SYSTEM_PROMPT] content.strip()",
    "[INST] [AVAILABLE_TOOLS] content.strip()",
    "mistral anything",
    "<start_of_turn>user<|start_header_id|><|end_header_id|>",
    "<|user|><|endoftext|><start_of_turn>",
    "<|assistant|><|end|><start_of_turn>",
    "bos_token + message['role'] <start_of_turn>",
    "USER: ASSISTANT: <|start_header_id|><|end_header_id|>",
    "<|START_OF_TURN_TOKEN|><|USER_TOKEN|><|start_header_id|><|end_header_id|>",
    "<|start_header_id|><|end_header_id|>",
    "<|start_header_id|> alone",
    "<|header_start|><|header_end|>",
    "<|start|>{{ role }}<|message|><|channel|>",
    "<|start|><|channel|><|start_header_id|><|end_header_id|>",
    "<|start|><|channel|><|extra_0|><|extra_4|>",
    "<|start|><|channel|><|header_start|><|header_end|>",
    "<|start|>alone<|message|>",
    "gpt-oss",
    "chatml", "llama3", "gemma", "mistral-v7", "llama2-sys-strip",
    "llama2", "mistral-v3", "phi3", "qwen", "mistral",
    "{{ messages }}",
    "",
]


def apply(tmpl: bytes, conversation):
    """llama.cpp's rendering, or None when it does not know the template (-1)."""
    chat = (llama_cpp.llama_chat_message * max(1, len(conversation)))()
    keep = []
    for i, (role, content) in enumerate(conversation):
        r, c = role.encode(), content.encode()
        keep += [r, c]
        chat[i].role, chat[i].content = r, c
    n = llama_cpp.llama_chat_apply_template(tmpl, chat, len(conversation), True, None, 0)
    if n < 0:
        return None
    buf = ctypes.create_string_buffer(n + 1)
    n = llama_cpp.llama_chat_apply_template(tmpl, chat, len(conversation), True, buf, n + 1)
    return buf.raw[:n].decode("utf-8")


def builtin_names():
    n = llama_cpp.llama_chat_builtin_templates(None, 0)
    out = (ctypes.c_char_p * n)()
    llama_cpp.llama_chat_builtin_templates(out, n)
    return [name.decode() for name in out]


def run_dump(dump, cases):
    msgs = lambda conv: [{"role": r, "content": c} for r, c in conv]
    request = {"cases": [dict({k: v for k, v in c.items() if k != "messages"},
                              **({"messages": msgs(c["messages"])} if "messages" in c else {})) for c in cases]}
    p = subprocess.run([dump], input=json.dumps(request).encode(), capture_output=True, timeout=120)
    if p.returncode != 0:
        print(f"chat_template_dump failed (exit {p.returncode}): {p.stderr.decode(errors='replace')}", file=sys.stderr)
        sys.exit(2)
    return json.loads(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True, help="the chat_template_dump executable")
    ap.add_argument("--templates", required=True, help="folder of real tokenizer.chat_template texts (*.jinja)")
    args = ap.parse_args()
    failures = []

    # 1. Rendering.
    cases = []
    for kind in LLAMA_CPP_NAME:
        for conv in CONVERSATIONS + FREE_ORDER:
            cases.append({"kind": kind, "messages": conv})
    results = run_dump(args.dump, cases)
    per_kind = {k: [0, 0] for k in LLAMA_CPP_NAME}  # identical, rejected as expected
    for case, got in zip(cases, results):
        kind, conv = case["kind"], case["messages"]
        if kind in ALTERNATING and conv in FREE_ORDER:
            if "error" in got:
                per_kind[kind][1] += 1
            else:
                failures.append(f"{kind}: {conv!r} should be rejected, rendered {got.get('text')!r}")
            continue
        want = apply(LLAMA_CPP_NAME[kind].encode(), conv)
        if "error" in got:
            failures.append(f"{kind}: {conv!r}: sluice raised {got['error']!r}; llama.cpp renders {want!r}")
        elif got["text"] != want:
            failures.append(f"{kind}: {conv!r}:\n  sluice    {got['text']!r}\n  llama.cpp {want!r}")
        else:
            per_kind[kind][0] += 1
    for kind, (same, rejected) in per_kind.items():
        print(f"render {kind:8} (llama.cpp {LLAMA_CPP_NAME[kind]}): {same} conversations identical"
              + (f", {rejected} out-of-order ones rejected" if rejected else ""))

    # 2. Detection.
    reference = {name: apply(name.encode(), PROBE) for name in builtin_names()}
    texts = [(p.name, p.read_text(encoding="utf-8")) for p in sorted(pathlib.Path(args.templates).glob("*.jinja"))]
    if not texts:
        failures.append(f"no *.jinja templates in {args.templates}")
    texts += [(f"marker case {t!r}", t) for t in MARKER_CASES]
    detected = run_dump(args.dump, [{"template": t, "messages": PROBE} for _, t in texts])
    ours = set(LLAMA_CPP_NAME.values())
    for (label, text), got in zip(texts, detected):
        theirs = apply(text.encode(), PROBE)
        picks = sorted(n for n, out in reference.items() if theirs is not None and out == theirs)
        shown = ",".join(picks) if picks else ("unknown" if theirs is None else "no built-in matches")
        kind = got["kind"]
        if kind is None:
            ok = not (set(picks) & ours)
        else:
            ok = LLAMA_CPP_NAME[kind] in picks and got.get("text") == theirs
        print(f"detect {label}: sluice {kind or 'none'}, llama.cpp {shown}{'' if ok else '  <-- MISMATCH'}")
        if not ok:
            failures.append(f"detect {label}: sluice {kind}, llama.cpp {shown}")

    for f in failures:
        print("FAIL " + f)
    print(f"{'FAILED' if failures else 'OK'}: {len(failures)} difference(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
