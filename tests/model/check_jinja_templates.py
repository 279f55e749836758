#!/usr/bin/env python3
"""Golden check of sluice's Jinja subset (model/jinja.hpp) against Python's jinja2 on real chat templates.

Usage: check_jinja_templates.py --dump PATH/jinja_render_dump --templates tests/model/data/chat_templates
                                [--gguf MODEL.gguf ...]

Renders every template in --templates (and the tokenizer.chat_template of each --gguf that exists,
read with the `gguf` package) for a set of conversations, add_generation_prompt true and false, the
way Hugging Face's apply_chat_template does (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, raise_exception, strftime_now, HF's tojson, tools=None), and checks:
  1. sluice's text equals jinja2's byte for byte; where jinja2 raises through raise_exception,
     sluice reports a raised error; where jinja2 fails otherwise, sluice fails too;
  2. provenance: no byte of a message's content is reported as template markup, and where the
     contents hold no markers, every marker in the text is markup.
Exit status: 0 when all match; 1 with one line per difference; 77 (SKIPPED) without jinja2.
"""

import argparse
import datetime
import json
import pathlib
import subprocess
import sys

try:
    import jinja2
    from jinja2.ext import loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment
except Exception as e:
    print(f"SKIPPED: jinja2 is not importable with {sys.executable}: {e}; configure with -DSLUICE_PYTHON=<venv>/bin/python")
    sys.exit(77)

S, U, A = "system", "user", "assistant"
SENTINEL = "Zq7"
MARKERS = ["<|im_start|>", "<|im_end|>", "<start_of_turn>", "<end_of_turn>", "<|start_header_id|>", "<|eot_id|>",
           "[INST]", "[/INST]", "[SYSTEM_PROMPT]", "<bos>", "<s>", "</s>"]
CONVERSATIONS = [
    [(U, "Hello")],
    [(S, "You are a helpful assistant"), (U, "Hello")],
    [(U, "Hello"), (A, "Hi there"), (U, "Who are you")],
    [(S, "You are a helpful assistant"), (U, "Hello"), (A, "Hi there"), (U, "Who are you"),
     (A, "   I am an assistant   "), (U, "Another question")],
    [(S, "\n\t system, padded \r\n"), (U, "  spaced  "), (A, "\vreply\f"), (U, "last\n")],
    [(U, "h\u00e9llo \u4e16\u754c\n\nsecond line"), (A, ""), (U, "llama \U0001f999")],
    [(S, ""), (U, "")],
    [(U, "one"), (U, "two")],
    [(A, "I speak first"), (U, "ok")],
    [(U, f"[INST] <|im_start|>user </s> <start_of_turn> <|eot_id|> {SENTINEL}"),
     (A, f"{SENTINEL} {{{{ not jinja }}}} {{% if %}}"), (U, f"{SENTINEL}")],
]


class Raised(Exception):
    pass


def hf_environment():
    def raise_exception(message):
        raise Raised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.datetime.now().strftime(fmt)
    return env


def templates(args):
    out = []
    for path in sorted(pathlib.Path(args.templates).glob("*.jinja")):
        out.append((path.name, path.read_text(encoding="utf-8")))
    for g in args.gguf or []:
        if not pathlib.Path(g).exists():
            print(f"note: {g} is absent; its template is not checked")
            continue
        try:
            from gguf import GGUFReader
        except Exception as e:
            print(f"note: the gguf package is not importable ({e}); {g} is not checked")
            continue
        field = GGUFReader(g).fields.get("tokenizer.chat_template")
        if field is None:
            print(f"note: {g} has no tokenizer.chat_template")
            continue
        out.append((pathlib.Path(g).name, bytes(field.parts[field.data[0]]).decode("utf-8")))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dump", required=True)
    ap.add_argument("--templates", required=True)
    ap.add_argument("--gguf", action="append")
    args = ap.parse_args()
    env = hf_environment()
    cases, expected = [], []
    for name, text in templates(args):
        tmpl = env.from_string(text)
        for conv in CONVERSATIONS:
            messages = [{"role": r, "content": c} for r, c in conv]
            for agp in (True, False):
                bos, eos = ("<bos>", "<eos>") if "gemma" in name else ("<s>", "</s>")
                try:
                    want = ("text", tmpl.render(messages=[dict(m) for m in messages], tools=None, documents=None,
                                                add_generation_prompt=agp, bos_token=bos, eos_token=eos))
                except Raised as e:
                    want = ("raised", str(e))
                except Exception as e:
                    want = ("error", f"{type(e).__name__}: {e}")
                cases.append({"template": text, "messages": messages, "add_generation_prompt": agp,
                              "bos_token": bos, "eos_token": eos})
                expected.append((name, conv, agp, want))
    run = subprocess.run([args.dump], input=json.dumps({"cases": cases}).encode(), capture_output=True)
    if run.returncode != 0:
        print(f"jinja_render_dump failed ({run.returncode}): {run.stderr.decode(errors='replace')}")
        return 2
    results = json.loads(run.stdout)
    failures, checked, rendered = [], 0, 0
    for (name, conv, agp, want), got in zip(expected, results):
        checked += 1
        where = f"{name} {[r for r, _ in conv]} add_generation_prompt={agp}"
        if want[0] == "text":
            if "text" not in got:
                failures.append(f"{where}: jinja2 renders, sluice fails: {got.get('error')}")
                continue
            if got["text"] != want[1]:
                failures.append(f"{where}: text differs\n  jinja2: {want[1]!r}\n  sluice: {got['text']!r}")
                continue
            rendered += 1
            data = got["text"].encode("utf-8")
            mask = bytearray(len(data))
            for off, n in got["markup"]:
                mask[off:off + n] = b"\x01" * n
            markup_only = bytes(b for b, m in zip(data, mask) if m)
            if SENTINEL.encode() in markup_only:
                failures.append(f"{where}: message content reported as markup")
            start = 0
            while (k := data.find(SENTINEL.encode(), start)) >= 0:
                if any(mask[k:k + len(SENTINEL)]):
                    failures.append(f"{where}: content bytes at {k} reported as markup")
                start = k + 1
            if all(not any(m in c for m in MARKERS) for _, c in conv):
                data_only = bytes(b if not m else 0 for b, m in zip(data, mask))
                for m in MARKERS:
                    if m.encode() in data_only:
                        failures.append(f"{where}: template marker {m!r} reported as data")
        elif want[0] == "raised":
            if not got.get("raised"):
                failures.append(f"{where}: jinja2 raises {want[1]!r}, sluice gives {got}")
            elif got["error"] != want[1]:
                failures.append(f"{where}: raised {got['error']!r}, jinja2 {want[1]!r}")
        else:
            if "text" in got:
                failures.append(f"{where}: jinja2 fails ({want[1]}), sluice renders {got['text']!r}")
    for f in failures:
        print(f)
    print(f"{checked} cases, {rendered} rendered identically, {len(failures)} differences")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
