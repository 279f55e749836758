#!/usr/bin/env python3
"""Parity of sluice with llama.cpp (PyPI llama-cpp-python, built from source) on the same GGUF.

Modes (each exits 0 on agreement, 1 on disagreement, 77 = skipped when the reference is missing):
  logits   logits of the first ROWS positions of a prompt (or --prompt-file): max |diff| within
           --atol and the same top-1 token at every position.
  greedy   greedy continuation of N tokens after a prompt: identical token ids.
  tokenize token ids of each string of a strings file (JSON list), and of each whole --text: identical.
  perplexity
           `sluice perplexity` on a text against llama.cpp's method computed here in Python over
           llama.cpp's logits (tokenize with BOS, chunks of --ctx from a fresh KV state with BOS
           first, the second half of each chunk scored): within --rtol of llama.cpp's value. With
           --pack-budget-fraction F the model is also converted to a pack and run under a memory
           budget of F x the GGUF's size (streaming): its mean negative log-likelihood must be
           identical to the GGUF's, digit for digit.

sluice is driven through `sluice eval` (JSON on stdout, float32 logits to a file).
"""
import argparse
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile

SKIP = 77


def load_reference():
    try:
        import numpy  # noqa: F401
        import llama_cpp  # noqa: F401
    except Exception as e:  # ImportError or a broken build
        print(f"SKIPPED: llama-cpp-python is not importable in {sys.executable} ({e}); "
              "run tools/setup-venv.sh (needs PyPI) to enable the parity checks", flush=True)
        sys.exit(SKIP)
    import llama_cpp
    return llama_cpp


def open_llama(llama_cpp, model, n_ctx=512, logits_all=False):
    return llama_cpp.Llama(model_path=model, n_ctx=n_ctx, n_threads=2, n_batch=512, logits_all=logits_all,
                           verbose=False, seed=0)


def sluice_eval(binary, model, args):
    out = subprocess.run([binary, "eval", "-m", model] + args, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def prompt_bytes(a):
    """The prompt: the text of --prompt-file when given, else --prompt."""
    if a.prompt_file:
        with open(a.prompt_file, "rb") as f:
            return f.read()
    return a.prompt.encode()


def mode_logits(a):
    llama_cpp = load_reference()  # first: without numpy either, the test skips instead of failing
    import numpy as np
    llm = open_llama(llama_cpp, a.model, logits_all=True)
    tokens = llm.tokenize(prompt_bytes(a), add_bos=True, special=True)
    llm.reset()
    llm.eval(tokens)
    ref = np.array(llm.scores[: len(tokens)], dtype=np.float32)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "logits.f32")
        got = sluice_eval(a.sluice, a.model, ["--tokens", ",".join(map(str, tokens)), "--logits-rows", str(a.rows),
                                              "--logits-out", path])
        n_vocab = got["n_vocab"]
        rows = got["logits_rows"]
        ours = np.fromfile(path, dtype=np.float32).reshape(rows, n_vocab)
    ref = ref[:rows, :n_vocab]
    # llama.cpp against itself (flash attention on vs off): the spread its own attention numerics
    # allow on each row. A top-1 flip is accepted only where llama.cpp's own top-2 gap is inside
    # that spread, i.e. where llama.cpp cannot decide between the two tokens either.
    llm_fa = llama_cpp.Llama(model_path=a.model, n_ctx=512, n_threads=2, n_batch=512, logits_all=True,
                             verbose=False, seed=0, flash_attn=True)
    llm_fa.reset()
    llm_fa.eval(tokens)
    ref_fa = np.array(llm_fa.scores[:rows, :n_vocab], dtype=np.float32)
    ok = True
    worst = 0.0
    ties = 0
    for r in range(rows):
        diff = float(np.max(np.abs(ours[r] - ref[r])))
        spread = float(np.max(np.abs(ref_fa[r] - ref[r])))
        top_ours, top_ref = int(np.argmax(ours[r])), int(np.argmax(ref[r]))
        worst = max(worst, diff)
        if top_ours != top_ref:
            gap = float(ref[r][top_ref] - ref[r][top_ours])
            if gap <= spread:
                ties += 1
                print(f"row {r}: top-1 tie: sluice {top_ours} vs llama.cpp {top_ref}, llama.cpp's gap {gap:.5f} "
                      f"<= its own flash-attn spread {spread:.5f}")
            else:
                ok = False
                print(f"row {r}: top-1 sluice {top_ours} vs llama.cpp {top_ref} (gap {gap:.5f} > spread {spread:.5f})")
        scale = float(np.max(np.abs(ref[r])))
        if diff > a.atol + a.rtol * scale + a.spread_factor * spread:
            ok = False
            print(f"row {r}: max |diff| {diff:.5f} > atol {a.atol} + rtol {a.rtol} x logit scale {scale:.3f}"
                  f" + {a.spread_factor} x llama.cpp's flash-attn spread {spread:.5f}")
        elif a.spread_factor > 0:
            print(f"row {r}: max |diff| {diff:.5f}, llama.cpp flash-attn vs not {spread:.5f}")
    self_diff = float(np.max(np.abs(ref_fa - ref)))
    print(f"logits parity {os.path.basename(a.model)}: {rows} rows x {n_vocab}, max |diff| {worst:.6f} "
          f"(llama.cpp flash-attn vs not: {self_diff:.6f}), atol {a.atol}, top-1: {rows - ties} equal, {ties} ties: "
          f"{'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def mode_greedy(a):
    llama_cpp = load_reference()
    llm = open_llama(llama_cpp, a.model)
    tokens = llm.tokenize(a.prompt.encode(), add_bos=True, special=True)
    ref = []
    for tok in llm.generate(tokens, temp=0.0, top_k=1, top_p=1.0, min_p=0.0, repeat_penalty=1.0):
        ref.append(int(tok))
        if len(ref) == a.n:
            break
    got = sluice_eval(a.sluice, a.model, ["--tokens", ",".join(map(str, tokens)), "--greedy", str(a.n)])
    ours = got["greedy"]
    same = ours == ref
    ok = same
    if not same:
        first = next((i for i, (x, y) in enumerate(zip(ours, ref)) if x != y), min(len(ours), len(ref)))
        print(f"greedy differs at token {first}: sluice {ours[first:first + 5]} vs llama.cpp {ref[first:first + 5]}")
        if a.allow_tie and first < min(len(ours), len(ref)):
            ok = greedy_tie(llama_cpp, a, tokens + ref[:first], ref[first], ours[first])
    print(f"greedy parity {os.path.basename(a.model)} {a.prompt!r}: {len(ref)} tokens: "
          f"{'OK' if same else ('OK up to a tie' if ok else 'FAIL')}")
    print(f"  text: {got.get('greedy_text', '')!r}")
    return 0 if ok else 1


def greedy_tie(llama_cpp, a, prefix, ref_token, our_token):
    """Is llama.cpp's choice at the first divergence a tie it does not decide itself? Its logits
    row after `prefix`, evaluated with and without flash attention, judged by tie_verdict."""
    import numpy as np
    rows = []
    for fa in (False, True):
        llm = llama_cpp.Llama(model_path=a.model, n_ctx=512, n_threads=2, n_batch=512, logits_all=True,
                              verbose=False, seed=0, flash_attn=fa)
        llm.reset()
        llm.eval(prefix)
        rows.append(np.array(llm.scores[len(prefix) - 1], dtype=np.float32))
    ref_row, fa_row = rows
    if not np.any(ref_row) or not np.any(fa_row):
        print("  llama.cpp returned no logits for the divergence row")
        return False
    ok, message = tie_verdict(ref_row, fa_row, ref_token, our_token, a.tie_max)
    print(message)
    return ok


def tie_verdict(ref_row, fa_row, ref_token, our_token, tie_max):
    """(ok, message) for a greedy divergence, from llama.cpp's logits row without (ref_row) and
    with (fa_row) flash attention: a tie llama.cpp does not decide when its top-2 gap is within
    min(its flash-attn spread on the row, tie_max), or when with flash attention it picks our
    token itself (a mixture-of-experts router near a tie moves whole rows). Plain sequences or
    numpy arrays."""
    gap = float(ref_row[ref_token] - ref_row[our_token])
    spread = float(max(abs(float(x) - float(y)) for x, y in zip(fa_row, ref_row)))
    bound = min(spread, tie_max)
    ok = gap <= bound
    message = (f"  at the divergence llama.cpp's logits: token {ref_token} {ref_row[ref_token]:.4f}, token "
               f"{our_token} {ref_row[our_token]:.4f}: gap {gap:.4f} {'<=' if ok else '>'} min(its flash-attn spread "
               f"{spread:.4f} on that row, {tie_max}){': a tie llama.cpp does not decide' if ok else ''}")
    fa_top = max(range(len(fa_row)), key=lambda i: float(fa_row[i]))
    if not ok and fa_top == our_token:
        message += (f"\n  llama.cpp with flash attention picks token {our_token} there itself: a choice llama.cpp "
                    f"does not decide")
        ok = True
    return ok, message


def mode_tokenize(a):
    llama_cpp = load_reference()
    llm = llama_cpp.Llama(model_path=a.model, vocab_only=True, verbose=False)
    with open(a.strings, encoding="utf-8") as f:
        strings = json.load(f)
    # Whole texts (--text, repeatable) too: real text reaches pre-tokenizer paths short strings miss.
    for path in a.text or []:
        with open(path, encoding="utf-8") as f:
            strings.append(f.read())
    bad = 0
    for s in strings:
        ref = llm.tokenize(s.encode(), add_bos=True, special=True)
        got = sluice_eval(a.sluice, a.model, ["-p", s, "--tokenize-only"])["tokens"]
        if got != ref:
            bad += 1
            first = next((i for i, (x, y) in enumerate(zip(got, ref)) if x != y), min(len(got), len(ref)))
            print(f"tokenize {s[:80]!r}{'...' if len(s) > 80 else ''} ({len(ref)} tokens): first difference at "
                  f"token {first}: sluice {got[first:first + 8]} vs llama.cpp {ref[first:first + 8]}")
    print(f"tokenizer parity {os.path.basename(a.model)}: {len(strings) - bad}/{len(strings)} strings identical")
    return 0 if bad == 0 else 1


def llama_cpp_perplexity(llama_cpp, model, text, ctx, chunks):
    """llama.cpp's perplexity (tools/perplexity/perplexity.cpp, perplexity()) over its own logits:
    returns (mean nll, ppl, standard error of ppl, running ppl per chunk, tokens)."""
    import numpy as np
    llm = llama_cpp.Llama(model_path=model, n_ctx=ctx, n_batch=ctx, n_ubatch=ctx, n_threads=2, logits_all=True,
                          verbose=False, seed=0)
    tokens = llm.tokenize(text, add_bos=True, special=False)
    if len(tokens) < 2 * ctx:
        raise SystemExit(f"{len(tokens)} tokens: a context of {ctx} needs {2 * ctx}")
    n_chunk = len(tokens) // ctx if chunks < 0 else min(chunks, len(tokens) // ctx)
    first = ctx // 2
    nll = nll2 = 0.0
    count = 0
    running = []
    add_bos = llm._model.add_bos_token()  # llama_vocab_get_add_bos, as the perplexity tool asks
    for i in range(n_chunk):
        chunk = tokens[i * ctx:(i + 1) * ctx]
        if add_bos:
            chunk = [llm.token_bos()] + chunk[1:]
        llm.reset()
        llm.eval(chunk)
        logits = np.asarray(llm.scores[first:ctx - 1], dtype=np.float32)
        top = logits.max(axis=1)
        # As llama.cpp's log_softmax: max in float, sum of expf in double, difference in double.
        sum_exp = np.exp(logits - top[:, None]).astype(np.float64).sum(axis=1)
        targets = np.array(tokens[i * ctx + first + 1:(i + 1) * ctx])
        v = -((logits[np.arange(len(targets)), targets] - top).astype(np.float64) - np.log(sum_exp))
        nll += float(v.sum())
        nll2 += float((v * v).sum())
        count += len(v)
        running.append(math.exp(nll / count))
    mean = nll / count
    ppl = math.exp(mean)
    return mean, ppl, math.sqrt((nll2 / count - mean * mean) / (count - 1)) * ppl, running, len(tokens)


def sluice_perplexity(binary, model, args):
    out = subprocess.run([binary, "perplexity", "-m", model] + args, capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stdout + out.stderr)
        raise SystemExit(f"sluice perplexity failed on {model}")
    found = re.search(r"mean nll ([0-9.]+), ppl ([0-9.]+)", out.stderr)
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", out.stdout)
    if not found or not final:
        print(out.stdout + out.stderr)
        raise SystemExit("sluice perplexity printed no estimate")
    return found.group(1), float(found.group(2)), float(final.group(2)), out


def mode_perplexity(a):
    llama_cpp = load_reference()
    with open(a.text, "rb") as f:
        text = f.read()
    mean, ppl, err, running, n_tokens = llama_cpp_perplexity(llama_cpp, a.model, text, a.ctx, a.chunks)
    print(f"llama.cpp: {n_tokens} tokens, {len(running)} chunks of {a.ctx}: "
          + ",".join(f"[{i + 1}]{p:.4f}" for i, p in enumerate(running)) + f"; PPL = {ppl:.4f} +/- {err:.5f}")
    args = ["-f", a.text, "-c", str(a.ctx), "--chunks", str(a.chunks)]
    nll_gguf, ours, ours_err, out = sluice_perplexity(a.sluice, a.model, args)
    print(f"sluice (gguf, in RAM): {out.stdout.strip().splitlines()[0]}; PPL = {ours:.4f} +/- {ours_err:.5f}, mean nll {nll_gguf}")
    rel = abs(ours - ppl) / ppl
    ok = rel <= a.rtol
    print(f"perplexity: sluice {ours:.4f} vs llama.cpp {ppl:.4f}: relative difference {rel:.5f} "
          f"{'<=' if ok else '>'} {a.rtol}")
    if a.pack_budget_fraction > 0:
        with tempfile.TemporaryDirectory() as tmp:
            pack = os.path.join(tmp, "model.sluice")
            subprocess.run([a.sluice, "convert", a.model, pack], check=True, capture_output=True)
            budget = int(os.path.getsize(a.model) * a.pack_budget_fraction)
            # A budget of half the model leaves room for few tokens per pass, so the pack run scores
            # only the first --pack-chunks chunks, against the GGUF run on the same chunks.
            pack_args = ["-f", a.text, "-c", str(a.ctx), "--chunks", str(a.pack_chunks)]
            if a.pack_chunks != a.chunks:
                nll_gguf, _, _, _ = sluice_perplexity(a.sluice, a.model, pack_args)
            nll_pack, ours_pack, _, out = sluice_perplexity(
                a.sluice, pack, pack_args + ["--mem-budget", str(budget), "--pass-tokens", str(a.pass_tokens)])
            streamed = re.search(r"streamed per pass\s+(\S+ \S+)", out.stderr)
            same = nll_pack == nll_gguf
            # The budget must hold: the streaming table's last column is the run's peak RSS (its row
            # is two lines under the header, whatever lines follow the table).
            lines = out.stderr.strip().splitlines()
            header = max((i for i, line in enumerate(lines) if "peak RSS" in line), default=None)
            row = lines[header + 2] if header is not None and header + 2 < len(lines) else ""
            peak = re.search(r"(\d+(?:\.\d+)?) (B|KiB|MiB|GiB)\s*$", row)
            units = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}
            peak_bytes = float(peak.group(1)) * units[peak.group(2)] if peak else None
            within = peak_bytes is not None and peak_bytes <= budget
            if a.no_rss_check:
                print(f"pack run peak RSS {peak.group(0) if peak else '?'}: not checked against the budget (sanitizer build)")
                within = True
            else:
                print(f"pack run peak RSS {peak.group(0) if peak else '?'} vs budget {budget} bytes: {'within' if within else 'OVER'}")
            ok = ok and same and within
            print(f"sluice (pack, {a.pack_chunks} chunk(s), --mem-budget {budget} = {a.pack_budget_fraction} x the GGUF, "
                  f"{streamed.group(1) if streamed else '?'} streamed per pass): PPL = {ours_pack:.4f}, mean nll {nll_pack}: "
                  f"{'identical to' if same else 'DIFFERENT from'} the GGUF's")
            print("\n".join(line for line in out.stderr.splitlines() if "|" not in line and line.strip())[-2000:])
    print(f"perplexity parity {os.path.basename(a.model)}: {'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("mode", choices=["logits", "greedy", "tokenize", "perplexity"])
    p.add_argument("--sluice", required=True, help="path to the sluice binary")
    p.add_argument("--model", required=True)
    p.add_argument("--prompt", default="Once upon a time")
    p.add_argument("--prompt-file", help="logits: read the prompt from this file instead of --prompt")
    p.add_argument("--rows", type=int, default=16)
    p.add_argument("--atol", type=float, default=1e-3)
    p.add_argument("--rtol", type=float, default=0.0, help="also allow rtol x max|logit| of the row")
    p.add_argument("-n", type=int, default=64)
    p.add_argument("--strings")
    p.add_argument("--spread-factor", type=float, default=0.0,
                   help="logits: also allow this many times llama.cpp's own flash-attn spread on the row")
    p.add_argument("--allow-tie", action="store_true",
                   help="greedy: accept a first divergence where llama.cpp's top-2 gap is within its own spread")
    p.add_argument("--tie-max", type=float, default=0.25,
                   help="greedy --allow-tie: the largest llama.cpp top-2 gap accepted as a tie")
    p.add_argument("--text", action="append",
                   help="perplexity: the text file; tokenize: a whole text also compared (repeatable)")
    p.add_argument("--ctx", type=int, default=512, help="perplexity: tokens per chunk")
    p.add_argument("--chunks", type=int, default=-1, help="perplexity: chunks scored (-1: all)")
    p.add_argument("--pack-budget-fraction", type=float, default=0.0,
                   help="perplexity: also run a pack under this fraction of the GGUF's size as --mem-budget")
    p.add_argument("--pass-tokens", type=int, default=32, help="perplexity: tokens per pass for the pack run")
    p.add_argument("--pack-chunks", type=int, default=1, help="perplexity: chunks the pack run scores")
    p.add_argument("--no-rss-check", action="store_true",
                   help="perplexity: do not hold the pack run's peak RSS to the budget (sanitizer builds inflate it)")
    p.add_argument("--missing-hint", help="said beside the skip when the model is absent (how to get it)")
    a = p.parse_args()
    if not os.path.exists(a.model):
        print(f"SKIPPED: model {a.model} not found{'; ' + a.missing_hint if a.missing_hint else ''}", flush=True)
        return SKIP
    if a.prompt_file and not os.path.exists(a.prompt_file):
        print(f"FAILED: prompt file {a.prompt_file} not found", flush=True)
        return 1
    if a.mode == "perplexity" and not (a.text and os.path.exists(a.text[0])):
        print(f"SKIPPED: text {a.text[0] if a.text else '(none given)'} not found", flush=True)
        return SKIP
    if a.mode == "perplexity":
        a.text = a.text[0]
    mode = {"logits": mode_logits, "greedy": mode_greedy, "tokenize": mode_tokenize,
            "perplexity": mode_perplexity}[a.mode]
    return run_isolated(lambda: mode(a), a.model)


def run_isolated(body, model):
    """Runs body() in a forked child. llama.cpp runs inside that child's process (sluice always
    runs as its own subprocess), so a child killed by a signal means the reference crashed: said
    as such and failed, never confused with a sluice mismatch."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = body()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        except BaseException:
            import traceback
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code if isinstance(code, int) else 1)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        try:
            name = signal.Signals(sig).name
        except ValueError:
            name = "unknown"
        print(f"FAILED: llama.cpp crashed: signal {sig} ({name}) on {model} -- the reference died, this is not a "
              "sluice mismatch; rebuild it with tools/setup-venv.sh (it self-checks the build)", flush=True)
        return 1
    return os.WEXITSTATUS(status)


if __name__ == "__main__":
    sys.exit(main())
