#!/usr/bin/env python3
"""Dump a GGUF file's tokenizer metadata as JSON, for inspecting vocabularies and cross-checking
the C++ readers (the fields are sluice::tok::Vocab's, model/tokenizer.hpp).

Usage: python3 tools/dump_vocab.py FILE.gguf OUT.json
Needs the PyPI `gguf` package (pip install gguf numpy).

Output: {"model", "pre", "tokens", "scores", "types", "merges", "bos", "eos", "unk", "pad", "eot",
"add_bos", "add_eos", "add_space_prefix", "token_bytes_hex"}. Absent keys are null (arrays: []).
Special ids that do not fit an int32 (0xFFFFFFFF means "none") are -1. Token texts that are not
valid UTF-8 are written with U+FFFD replacements in "tokens" and exactly, as hex, in
"token_bytes_hex" (index -> hex string).
"""
import json
import sys

import gguf

INT32_MAX = 2**31 - 1


def field_bytes(field, i):
    """Raw bytes of the i-th string of an array field."""
    return bytes(field.parts[field.data[i]])


def scalar(reader, key):
    field = reader.get_field(key)
    if field is None:
        return None
    value = field.contents()
    return value


def special_id(reader, key):
    value = scalar(reader, key)
    if value is None:
        return -1
    value = int(value)
    return value if 0 <= value <= INT32_MAX else -1


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: dump_vocab.py FILE.gguf OUT.json")
    reader = gguf.GGUFReader(sys.argv[1])

    tokens, token_bytes_hex = [], {}
    field = reader.get_field("tokenizer.ggml.tokens")
    if field is not None:
        for i in range(len(field.data)):
            raw = field_bytes(field, i)
            try:
                tokens.append(raw.decode("utf-8"))
            except UnicodeDecodeError:
                tokens.append(raw.decode("utf-8", errors="replace"))
                token_bytes_hex[str(i)] = raw.hex()

    merges = []
    field = reader.get_field("tokenizer.ggml.merges")
    if field is not None:
        merges = [field_bytes(field, i).decode("utf-8", errors="replace") for i in range(len(field.data))]

    def number_array(key, cast):
        field = reader.get_field(key)
        return [] if field is None else [cast(v) for v in field.contents()]

    def flag(key):
        value = scalar(reader, key)
        return None if value is None else bool(value)

    out = {
        "model": scalar(reader, "tokenizer.ggml.model"),
        "pre": scalar(reader, "tokenizer.ggml.pre") or "",
        "tokens": tokens,
        "scores": number_array("tokenizer.ggml.scores", float),
        "types": number_array("tokenizer.ggml.token_type", int),
        "merges": merges,
        "bos": special_id(reader, "tokenizer.ggml.bos_token_id"),
        "eos": special_id(reader, "tokenizer.ggml.eos_token_id"),
        "unk": special_id(reader, "tokenizer.ggml.unknown_token_id"),
        "pad": special_id(reader, "tokenizer.ggml.padding_token_id"),
        "eot": special_id(reader, "tokenizer.ggml.eot_token_id"),
        "add_bos": flag("tokenizer.ggml.add_bos_token"),
        "add_eos": flag("tokenizer.ggml.add_eos_token"),
        "add_space_prefix": flag("tokenizer.ggml.add_space_prefix"),
        "token_bytes_hex": token_bytes_hex,
    }
    with open(sys.argv[2], "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False)


if __name__ == "__main__":
    main()
