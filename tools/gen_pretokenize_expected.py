#!/usr/bin/env python3
"""Regenerate tests/model/data/pretokenize_expected_gpt4o.json: the words llama.cpp's own
pre-tokenizer (unicode_regex_split in llama-cpp-python's libllama.so) makes of the hard strings,
the gpt-4o strings and seeded random strings, with the regex llama.cpp's src/llama-vocab.cpp
uses for tokenizer.ggml.pre "gpt-4o" (LLAMA_VOCAB_PRE_TYPE_GPT4O). The C++ test
tests/model/test_tokenizer.cpp (PreTokenizer.Gpt4oSameWordsAsLlamaCpp) compares
sluice::tok::pre_tokenize with them word for word; the token-id tests
(tokenizer_expected_{llama-bpe-gpt4o,o200k}.json) tie that regex to the "gpt-4o" name.

Builds tools/llamacpp_split_oracle.cpp with the system C++ compiler against libllama.so.
Usage: python3 tools/gen_pretokenize_expected.py [--out tests/model/data]
Needs: llama-cpp-python==0.3.36 (its libllama.so exports unicode_regex_split), a C++ compiler.
"""
import argparse
import json
import pathlib
import subprocess
import sys
import tempfile

import llama_cpp

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from gen_tokenizer_expected import GPT4O_STRINGS, HARD_STRINGS, INVALID_UTF8, REPO, RANDOM_PIECES, text_field  # noqa: E402

# llama.cpp's regex for gpt-4o (o200k's own regex with \p{Lu}... approximated by ASCII case).
GPT4O_REGEX = (r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
               r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
               r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
               r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?|"
               r"\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+")
RANDOM_CASES = 600
RANDOM_SEED = 15  # sluice issue 15
MAX_PIECES = 24


def random_strings():
    import random

    rng = random.Random(RANDOM_SEED)
    return ["".join(rng.choice(RANDOM_PIECES) for _ in range(rng.randrange(1, MAX_PIECES + 1)))
            for _ in range(RANDOM_CASES)]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "tests/model/data")
    args = parser.parse_args()
    lib_dir = pathlib.Path(llama_cpp.__file__).parent / "lib"
    texts = [s.encode() for s in HARD_STRINGS + GPT4O_STRINGS + random_strings()] + INVALID_UTF8
    with tempfile.TemporaryDirectory() as tmp:
        oracle = pathlib.Path(tmp) / "oracle"
        subprocess.run(["c++", "-std=c++17", "-O1", str(REPO / "tools/llamacpp_split_oracle.cpp"), "-o", str(oracle),
                        f"-L{lib_dir}", "-l:libllama.so.0", f"-Wl,-rpath,{lib_dir}"], check=True)
        out = subprocess.run([str(oracle), GPT4O_REGEX], input="".join(t.hex() + "\n" for t in texts),
                             capture_output=True, text=True, check=True).stdout.splitlines()
    if len(out) != len(texts):
        raise SystemExit(f"oracle answered {len(out)} lines for {len(texts)} texts")
    cases = []
    for raw, line in zip(texts, out):
        case = text_field("text", raw)
        words = [bytes.fromhex(w) for w in line.split()]
        try:
            case["words"] = [w.decode("utf-8") for w in words]
        except UnicodeDecodeError:  # a surrogate code point comes back as its 3-byte form
            case["words_hex"] = [w.hex() for w in words]
        cases.append(case)
    path = args.out / "pretokenize_expected_gpt4o.json"
    with open(path, "w", encoding="utf-8") as f:
        f.write("{\n")
        f.write(f'  "generator": "tools/gen_pretokenize_expected.py with llama-cpp-python {llama_cpp.__version__}",\n')
        f.write(f'  "regex": {json.dumps(GPT4O_REGEX)},\n')
        f.write('  "cases": [\n')
        f.write(",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n  ]\n}\n")
    print(f"{path}: {len(cases)} cases")


if __name__ == "__main__":
    main()
