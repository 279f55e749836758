#!/usr/bin/env python3
"""Cross-check a GGUF file written by sluice's gguf::Writer with the reference reader, gguf-py.

Usage: python3 tests/model/check_gguf_with_gguf_py.py FILE.gguf EXPECTED.json

Reads FILE.gguf with the PyPI `gguf` package's GGUFReader (the reader llama.cpp's Python tools
use) and compares it with EXPECTED.json, which says what the file must contain:

    {
      "version": 3,
      "alignment": 64,
      "metadata": [                                   # in file order, every key in the file
        {"key": "general.architecture", "value": {"type": "string", "value": "llama"}},
        {"key": "t.u8",    "value": {"type": "u8", "value": 255}},
        {"key": "t.ints",  "value": {"type": "array", "element_type": "i32", "value": [1, -1]}},
        {"key": "t.nested","value": {"type": "array", "element_type": "array",
                                     "value": [{"type": "array", "element_type": "u16", "value": [1, 2]}]}}
      ],
      "tensors": [                                    # in file order, every tensor in the file
        {"name": "a.weight", "type": 0, "dims": [8, 2], "offset": 0, "bytes_hex": "00ff..."}
      ]
    }

Type names are sluice's (gguf::value_type_name): u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bool
string array. f32 values compare after rounding the expectation to float32; all else exactly.
"dims" are in ggml order (dims[0] is the row length); "offset" is relative to the data section;
"bytes_hex" is the tensor's data. The GgufPyInterop.WritesSampleAndExpectation gtest writes a
matching sample.gguf + sample.json pair into $SLUICE_GGUF_PY_OUT.

Exit status: 0 when everything matches; 1 with one line per difference on stdout when not;
2 when the arguments, the JSON or the gguf package are unusable (message on stderr).
"""

import json
import sys

try:
    import numpy as np
    from gguf import GGUFReader, GGUFValueType
except ImportError as e:  # the harness decides whether a missing package is a skip or a failure
    print(f"check_gguf_with_gguf_py: needs the PyPI packages gguf and numpy: {e}", file=sys.stderr)
    sys.exit(2)

TYPE_NAMES = {
    GGUFValueType.UINT8: "u8", GGUFValueType.INT8: "i8", GGUFValueType.UINT16: "u16",
    GGUFValueType.INT16: "i16", GGUFValueType.UINT32: "u32", GGUFValueType.INT32: "i32",
    GGUFValueType.FLOAT32: "f32", GGUFValueType.BOOL: "bool", GGUFValueType.STRING: "string",
    GGUFValueType.ARRAY: "array", GGUFValueType.UINT64: "u64", GGUFValueType.INT64: "i64",
    GGUFValueType.FLOAT64: "f64",
}
# Fields GGUFReader adds from the header; they are not key-value pairs in the file.
VIRTUAL_FIELDS = ("GGUF.version", "GGUF.tensor_count", "GGUF.kv_count")


def decode(parts, i, gtype):
    """Decodes one value of `gtype` from a ReaderField's parts starting at parts[i].

    GGUFReader flattens nested arrays (ReaderField.contents() cannot rebuild them), so this
    walks the parts in the order the reader produced them: a string is [length, bytes], a
    scalar is [value], an array is [element type, count, element parts...].
    Returns ({"type", ["element_type",] "value"}, next index).
    """
    name = TYPE_NAMES[GGUFValueType(gtype)]
    if gtype == GGUFValueType.STRING:
        return {"type": name, "value": bytes(parts[i + 1]).decode("utf-8")}, i + 2
    if gtype == GGUFValueType.ARRAY:
        element_type = int(parts[i][0])
        count = int(parts[i + 1][0])
        i += 2
        values = []
        for _ in range(count):
            element, i = decode(parts, i, element_type)
            # Elements of scalar/string arrays are listed bare, arrays of arrays keep their types.
            values.append(element if element_type == GGUFValueType.ARRAY else element["value"])
        return {"type": name, "element_type": TYPE_NAMES[GGUFValueType(element_type)], "value": values}, i
    scalar = parts[i][0]
    if gtype == GGUFValueType.BOOL:
        value = bool(scalar)
    elif gtype in (GGUFValueType.FLOAT32, GGUFValueType.FLOAT64):
        value = float(scalar)
    else:
        value = int(scalar)
    return {"type": name, "value": value}, i + 1


def same_value(expected, actual, where, diffs):
    """Appends a line to `diffs` for each way `actual` differs from `expected`."""
    if expected["type"] != actual["type"]:
        diffs.append(f"{where}: type {actual['type']}, expected {expected['type']}")
        return
    if expected["type"] == "array":
        if expected["element_type"] != actual["element_type"]:
            diffs.append(f"{where}: element type {actual['element_type']}, expected {expected['element_type']}")
            return
        ev, av = expected["value"], actual["value"]
        if len(ev) != len(av):
            diffs.append(f"{where}: {len(av)} elements, expected {len(ev)}")
            return
        for k, (e, a) in enumerate(zip(ev, av)):
            if expected["element_type"] == "array":
                same_value(e, a, f"{where}[{k}]", diffs)
            else:
                same_value({"type": expected["element_type"], "value": e},
                           {"type": actual["element_type"], "value": a}, f"{where}[{k}]", diffs)
        return
    e, a = expected["value"], actual["value"]
    if expected["type"] == "f32":
        e = float(np.float32(e))
    if e != a:
        diffs.append(f"{where}: value {a!r}, expected {e!r}")


def check(path, expected):
    reader = GGUFReader(path)
    diffs = []
    version = int(reader.fields["GGUF.version"].parts[0][0])
    if version != expected["version"]:
        diffs.append(f"version {version}, expected {expected['version']}")
    if reader.alignment != expected["alignment"]:
        diffs.append(f"alignment {reader.alignment}, expected {expected['alignment']}")

    fields = [(name, f) for name, f in reader.fields.items() if name not in VIRTUAL_FIELDS]
    actual_keys = [name for name, _ in fields]
    expected_keys = [kv["key"] for kv in expected["metadata"]]
    if actual_keys != expected_keys:
        diffs.append(f"keys {actual_keys}, expected {expected_keys}")
    by_name = dict(fields)
    for kv in expected["metadata"]:
        field = by_name.get(kv["key"])
        if field is None:
            continue
        # parts: key length, key bytes, value type, then the value's parts.
        actual, end = decode(field.parts, 3, int(field.parts[2][0]))
        if end != len(field.parts):
            diffs.append(f"key {kv['key']}: {len(field.parts) - end} parts left over after decoding")
        same_value(kv["value"], actual, f"key {kv['key']}", diffs)

    actual_names = [t.name for t in reader.tensors]
    expected_names = [t["name"] for t in expected["tensors"]]
    if actual_names != expected_names:
        diffs.append(f"tensors {actual_names}, expected {expected_names}")
    tensors = {t.name: t for t in reader.tensors}
    for e in expected["tensors"]:
        t = tensors.get(e["name"])
        if t is None:
            continue
        where = f"tensor {e['name']}"
        if int(t.tensor_type) != e["type"]:
            diffs.append(f"{where}: type {int(t.tensor_type)}, expected {e['type']}")
        dims = [int(d) for d in t.shape]
        if dims != e["dims"]:
            diffs.append(f"{where}: dims {dims}, expected {e['dims']}")
        offset = t.data_offset - reader.data_offset
        if offset != e["offset"]:
            diffs.append(f"{where}: offset {offset}, expected {e['offset']}")
        data = np.asarray(t.data).tobytes()
        if data.hex() != e["bytes_hex"]:
            diffs.append(f"{where}: {len(data)} data bytes differ from the expected {len(e['bytes_hex']) // 2}")
    return diffs


def main(argv):
    if len(argv) != 3:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        with open(argv[2], encoding="utf-8") as f:
            expected = json.load(f)
    except (OSError, ValueError) as e:
        print(f"check_gguf_with_gguf_py: cannot read {argv[2]}: {e}", file=sys.stderr)
        return 2
    diffs = check(argv[1], expected)
    for d in diffs:
        print(f"{argv[1]}: {d}")
    if not diffs:
        print(f"{argv[1]}: matches {argv[2]} ({len(expected['metadata'])} keys, {len(expected['tensors'])} tensors)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
