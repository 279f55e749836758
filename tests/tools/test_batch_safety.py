#!/usr/bin/env python3
"""`sluice batch` is safe for user data: each case is one thing users found broken, on stories260K.
  lock        two processes on one output: the second is refused naming the first's PID
  foreign     -o onto a text file, a model file, or the input: refused, files byte-identical
  changed     a changed request under the same custom_id, or another model: refused, naming it
  stdout      -o /dev/stdout into a pipe: written (no resume), no hang
  journal     a slow first request, SIGKILL after 20 short answers: they are not recomputed
  signals     SIGTERM / SIGINT mid-job: exit 143 / 130, rerun gives the uninterrupted bytes
  format      a garbage first line + 2,000 valid lines: 1 error line, 2,000 answers
  poison      a 10 MB prompt line under a 200 MiB memory cap: one 400 line, the job finishes
  special     special-token text in a message is text (--special parses it)
  values      bad option and request values refused, naming them
  devices     -i /dev/zero refused at once; -o /dev/full and a full tmpfs: an error, nothing lost
The kill and signal points are set with the hidden --test-stop-after N (the job SIGSTOPs itself
after N answers), so nothing here depends on timing.
Usage: test_batch_safety.py SLUICE MODELS_DIR MEMCAP_SH"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from checks import small_tmpfs  # noqa: E402

sluice, models, memcap = sys.argv[1], sys.argv[2], sys.argv[3]
# Sanitizer builds: ASan's shadow memory and quarantine put any run past a 200 MiB cap, so the
# poison line runs uncapped there (still one 400 line, no crash); Release builds cap it.
sanitized = "--sanitized" in sys.argv[4:]
stories = os.path.join(models, "stories260K.gguf")
if not os.path.exists(stories):
    print(f"SKIPPED: {stories} not found (../shared/models)")
    sys.exit(77)
work = tempfile.mkdtemp(prefix="sluice-batch-safety-")
failures = []
BASE = ["-c", "160", "--progress", "log", "--chat-template", "chatml"]


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def cmd(*args, model=stories):
    return [sluice, "batch", "-m", model, *BASE, *args]


def batch(*args, model=stories, timeout=300, **kw):
    return subprocess.run(cmd(*args, model=model), capture_output=True, text=True, timeout=timeout, **kw)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write_lines(path, lines):
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def path(name):
    return os.path.join(work, name)


def request(cid, prompt, max_tokens, chat=False, **body):
    body = {"max_tokens": max_tokens, "temperature": 0, **body}
    if chat:
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    return json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions" if chat else "/v1/completions",
                       "body": body})


def wait_stopped(p):
    """Waits until the process has SIGSTOPped itself (--test-stop-after) or ended; True if stopped."""
    deadline = time.time() + 120
    while time.time() < deadline:
        if p.poll() is not None:
            return False
        try:
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] in ("T", "t"):
                    return True
        except FileNotFoundError:
            return False
        time.sleep(0.01)
    return False


def lines_of(p):
    return read(p).decode().splitlines() if os.path.exists(p) else []


# The common input: 60 requests, completions and chats, greedy and seeded sampling.
words = "once upon a time there was a little girl named lily she loved to play in the park".split()
reqs = [request(f"req-{i}", " ".join(words[(i * 7 + k) % len(words)] for k in range(2 + i % 9)), 6 + i % 17, chat=i % 3 == 0,
                temperature=[0, 0.8][i % 2], seed=i) for i in range(60)]
inp = path("requests.jsonl")
write_lines(inp, reqs)
ref = path("ref.jsonl")
r = batch("-i", inp, "-o", ref, "--batch", "4")
if r.returncode != 0:
    print(r.stderr)
    raise SystemExit("FAIL: the reference run failed")
REF = read(ref)
check(len(REF.splitlines()) == 60 and not os.path.exists(ref + ".journal") and not os.path.exists(ref + ".lock"),
      "reference run: 60 lines, journal and lock removed at the end")

# --- lock: a second process on the same output is refused while the first runs.
out = path("lock.jsonl")
first = subprocess.Popen(cmd("-i", inp, "-o", out, "--batch", "4", "--test-stop-after", "5"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
if wait_stopped(first):
    r = batch("-i", inp, "-o", out, "--batch", "4", timeout=60)
    check(r.returncode != 0 and f"pid {first.pid}" in r.stderr, f"lock: second process rc {r.returncode}: {r.stderr[-400:]}")
    first.send_signal(signal.SIGCONT)
    first.wait(timeout=300)
    check(first.returncode == 0, f"lock: first process exited {first.returncode}")
    check(read(out) == REF, "lock: output differs from the uninterrupted run")
else:
    check(False, "lock: the first process did not stop itself at --test-stop-after 5")
print("lock ok")

# --- foreign files: a text file (its last line unterminated), a model file, the input itself.
notes = path("notes.txt")
with open(notes, "wb") as f:
    f.write(b"my notes\nthe last line, not ended")
model_copy = path("model-copy.gguf")
shutil.copy(stories, model_copy)
for victim in (notes, model_copy, inp):
    before = read(victim)
    r = batch("-i", inp, "-o", victim, timeout=60)
    check(r.returncode != 0 and read(victim) == before, f"foreign -o {os.path.basename(victim)}: rc {r.returncode}, changed "
          f"{read(victim) != before}")
    says = "is the input" if victim == inp else "not this job's output"
    check(says in r.stderr, f"foreign -o {os.path.basename(victim)}: message {r.stderr[-300:]!r}")
    check(not os.path.exists(victim + ".journal") and not os.path.exists(victim + ".lock"), "foreign: sidecars left behind")
# A file of one unterminated line is not cut either.
with open(notes, "wb") as f:
    f.write(b"only a line without a newline")
r = batch("-i", inp, "-o", notes, timeout=60)
check(r.returncode != 0 and read(notes) == b"only a line without a newline", "foreign: a torn-looking file was changed")
print("foreign ok")

# --- a changed request under the same custom_id; another model (one weight byte differs).
done = path("changed.jsonl")
shutil.copy(ref, done)
edited = path("edited.jsonl")
edited_lines = list(reqs)
edited_lines[10] = edited_lines[10].replace('"prompt": "', '"prompt": "edited ')
write_lines(edited, edited_lines)
r = batch("-i", edited, "-o", done, timeout=60)
check(r.returncode != 0 and "input line 11" in r.stderr and read(done) == REF, f"changed request: rc {r.returncode}, {r.stderr[-300:]}")
r = batch("-i", inp, "-o", done, "--max-tokens", "9", timeout=60)
check(r.returncode != 0 and read(done) == REF, f"changed --max-tokens: rc {r.returncode}")
other_model = path("other.gguf")
data = bytearray(read(stories))
data[-64] ^= 1
with open(other_model, "wb") as f:
    f.write(data)
r = batch("-i", inp, "-o", done, model=other_model, timeout=60)
check(r.returncode != 0 and "another model" in r.stderr and read(done) == REF, f"another model: rc {r.returncode}, {r.stderr[-300:]}")
# The same with a partial output and its journal.
part = path("partial.jsonl")
p = subprocess.Popen(cmd("-i", inp, "-o", part, "--batch", "4", "--test-stop-after", "12"), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
if wait_stopped(p):
    p.kill()
    p.wait()
    before, jbefore = read(part), read(part + ".journal")
    r = batch("-i", inp, "-o", part, model=other_model, timeout=60)
    check(r.returncode != 0 and "other.gguf" in r.stderr and read(part) == before and read(part + ".journal") == jbefore,
          f"another model on a journal: rc {r.returncode}, {r.stderr[-300:]}")
    r = batch("-i", edited, "-o", part, timeout=60)
    check(r.returncode != 0 and "input line 11" in r.stderr, f"changed request on a journal: rc {r.returncode}, {r.stderr[-300:]}")
    r = batch("-i", inp, "-o", part, "--batch", "4")
    check(r.returncode == 0 and read(part) == REF, "partial output resumed differs from the uninterrupted run")
else:
    check(False, "changed: the job did not stop itself")
print("changed ok")

# --- -o /dev/stdout into a pipe.
try:
    r = subprocess.run(cmd("-i", inp, "-o", "/dev/stdout", "--batch", "4"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    check(r.returncode == 0 and r.stdout == REF, f"-o /dev/stdout: rc {r.returncode}, {len(r.stdout.splitlines())} lines")
except subprocess.TimeoutExpired:
    check(False, "-o /dev/stdout into a pipe hangs")
print("stdout ok")

# --- a slow first request, the rest short: finished answers survive a SIGKILL in any order.
slow = [request("slow", "once upon a time", 150)] + [request(f"q{i}", words[i % len(words)], 2) for i in range(40)]
slow_in = path("slow.jsonl")
write_lines(slow_in, slow)
slow_ref = path("slow.ref")
check(batch("-i", slow_in, "-o", slow_ref, "--batch", "4").returncode == 0, "slow: reference run")
slow_out = path("slow.out")
p = subprocess.Popen(cmd("-i", slow_in, "-o", slow_out, "--batch", "4", "--test-stop-after", "20"), stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL)
if wait_stopped(p):
    p.kill()
    p.wait()
    journaled = len(lines_of(slow_out + ".journal")) - 1  # less the header
    check(len(lines_of(slow_out)) == 0 and journaled == 20,
          f"slow: at the kill the output has {len(lines_of(slow_out))} lines (the slow one is first) and the journal {journaled}")
    report = path("slow.report.json")
    r = batch("-i", slow_in, "-o", slow_out, "--batch", "4", "--report", report)
    rep = json.load(open(report)) if os.path.exists(report) else {}
    check(r.returncode == 0 and rep.get("resumed") == 20 and rep.get("ok") == 21,
          f"slow: resumed run rc {r.returncode}, report {rep}: the 20 journaled answers should not be recomputed")
    check("20 more in its journal" in r.stderr, f"slow: the resumed run does not say it reused the journal: {r.stderr[-400:]}")
    check(read(slow_out) == read(slow_ref), "slow: output after SIGKILL + resume differs from the uninterrupted run")
    check(not os.path.exists(slow_out + ".journal"), "slow: the journal is left after the job completed")
else:
    check(False, "slow: the job did not stop itself")
print("journal ok")

# --- SIGTERM and SIGINT mid-job.
for sig, code in ((signal.SIGTERM, 143), (signal.SIGINT, 130)):
    o = path(f"signal{code}.jsonl")
    p = subprocess.Popen(cmd("-i", inp, "-o", o, "--batch", "4", "--test-stop-after", "7"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True)
    if not wait_stopped(p):
        check(False, f"signal {code}: the job did not stop itself")
        continue
    p.send_signal(sig)
    p.send_signal(signal.SIGCONT)
    _, err = p.communicate(timeout=120)
    check(p.returncode == code and "rerun the same command to resume" in err, f"signal {code}: rc {p.returncode}, {err[-300:]}")
    check(0 < len(lines_of(o)) + len(lines_of(o + ".journal")) and len(lines_of(o)) < 60, f"signal {code}: nothing kept or all done")
    r = batch("-i", inp, "-o", o, "--batch", "4")
    check(r.returncode == 0 and read(o) == REF, f"signal {code}: rerun differs from the uninterrupted run")
print("signals ok")

# --- the format is voted by all lines: a garbage first line is one error line.
many = ["this first line is garbage, not a request"] + [request(f"m{i}", words[i % len(words)], 1) for i in range(2000)]
many_in = path("many.jsonl")
write_lines(many_in, many)
many_out = path("many.out")
r = batch("-i", many_in, "-o", many_out, "--batch", "16")
got = [json.loads(l) for l in lines_of(many_out)]
statuses = [g["response"]["status_code"] for g in got]
check(r.returncode == 0 and len(got) == 2001 and statuses[0] == 400 and statuses.count(200) == 2000,
      f"format: rc {r.returncode}, {len(got)} lines, {statuses.count(400)} errors")
check(got and got[0]["response"]["body"]["error"]["message"].startswith("line 1:"), "format: the error names line 1")
r = batch("-i", many_in, "-o", path("many-text.out"), "--input-format", "text", "--max-tokens", "1", "--batch", "16")
check(r.returncode == 0 and len(lines_of(path("many-text.out"))) == 2001 and "text format" in r.stderr,
      "--input-format text: every line a prompt")
print("format ok")

# --- a 10 MB prompt line under a 200 MiB cap: a 400 line, the job finishes.
probe = subprocess.run(["bash", memcap, "200M", "--", "true"], capture_output=True, text=True)
if probe.returncode != 0:
    print(f"poison: SKIPPED (memcap cannot run here: {probe.stderr.strip()[-200:]})")
else:
    poison_in = path("poison.jsonl")
    write_lines(poison_in, [request("p0", "once upon", 4), request("big", "lily " * 2_000_000, 4), request("p2", "the dog", 4)])
    poison_out = path("poison.out")
    capped = [] if sanitized else ["bash", memcap, "200M", "--"]
    if sanitized:
        print("poison: running without the 200 MiB cap (sanitizer build)")
    r = subprocess.run([*capped, *cmd("-i", poison_in, "-o", poison_out)], capture_output=True, text=True,
                       timeout=300)
    got = [json.loads(l) for l in lines_of(poison_out)]
    check(r.returncode == 0 and [g["response"]["status_code"] for g in got] == [200, 400, 200],
          f"poison: rc {r.returncode}, statuses {[g['response']['status_code'] for g in got]}, {r.stderr[-400:]}")
    check(len(got) == 3 and "line 2:" in got[1]["response"]["body"]["error"]["message"], "poison: the error names line 2")
    print("poison ok")

# --- special-token text in a message: text unless --special. "</s>" is a control token of stories260K.
sp_in = path("special.jsonl")
write_lines(sp_in, [request("s", "</s></s></s></s>", 1, chat=True)])
tokens = {}
for flag in ([], ["--special"]):
    o = path(f"special{len(flag)}.out")
    r = batch("-i", sp_in, "-o", o, *flag)
    tokens[len(flag)] = json.loads(lines_of(o)[0])["response"]["body"]["usage"]["prompt_tokens"] if r.returncode == 0 else -1
# As text each "</s>" is several tokens; parsed, it is one.
check(tokens[1] > 0 and tokens[0] >= tokens[1] + 4, f"special: prompt tokens as text {tokens[0]}, with --special {tokens[1]}")
print("special ok")

# --- values.
for args, says in ((["--max-tokens", "-5"], "--max-tokens"), (["--max-tokens", "0"], "--max-tokens"),
                   (["--fsync-interval", "-1"], "--fsync-interval"), (["--progress-interval", "0"], "--progress-interval"),
                   (["--max-errors", "-2"], "--max-errors")):
    o = path("values.out")
    r = batch("-i", inp, "-o", o, *args, timeout=60)
    check(r.returncode != 0 and says in r.stdout + r.stderr and not os.path.exists(o), f"{args}: rc {r.returncode}")
bad_values = [request("v1", "x", 0), request("v2", "x", 3, temperature=7), request("v3", "x", 3, top_p=-0.5),
              request("v4", "x", 3)]
bad_in = path("bad-values.jsonl")
write_lines(bad_in, bad_values)
r = batch("-i", bad_in, "-o", path("bad-values.out"))
got = [json.loads(l) for l in lines_of(path("bad-values.out"))]
check([g["response"]["status_code"] for g in got] == [400, 400, 400, 200], f"request values: {[g['response']['status_code'] for g in got]}")
for i, key in enumerate(["max_tokens", "temperature", "top_p"]):
    msg = got[i]["response"]["body"].get("error", {}).get("message", "") if i < len(got) else ""
    check(msg.startswith(f"line {i + 1}:") and key in msg, f"request value {key}: {msg!r}")
print("values ok")

# --- devices and full disks.
try:
    r = batch("-i", "/dev/zero", "-o", path("zero.out"), timeout=30)
    check(r.returncode != 0 and "not a regular file" in r.stderr, f"-i /dev/zero: rc {r.returncode}")
except subprocess.TimeoutExpired:
    check(False, "-i /dev/zero hangs")
r = batch("-i", inp, "-o", "/dev/full", timeout=60)
check(r.returncode == 1 and "No space left" in r.stderr, f"-o /dev/full: rc {r.returncode}, {r.stderr[-300:]}")
tiny = path("tiny")
with small_tmpfs(tiny, "64k", "full tmpfs") as mounted:
    if mounted:
        full_out = os.path.join(tiny, "out.jsonl")
        big = [request(f"f{i}", "once upon a time", 40) for i in range(150)]
        big_in = path("big.jsonl")
        write_lines(big_in, big)
        big_ref = path("big.ref")
        check(batch("-i", big_in, "-o", big_ref, "--batch", "4").returncode == 0, "full: reference run")
        r = batch("-i", big_in, "-o", full_out, "--batch", "4")
        check(r.returncode == 1 and "No space left" in r.stderr and "rerun" in r.stderr,
              f"full tmpfs: rc {r.returncode}, {r.stderr[-300:]}")
        kept = read(full_out)
        check(len(kept) > 0 and read(big_ref).startswith(kept), "full tmpfs: what was written is not a prefix of the answers")
        moved = path("moved.jsonl")
        shutil.copy(full_out, moved)
        shutil.copy(full_out + ".journal", moved + ".journal")
        r = batch("-i", big_in, "-o", moved, "--batch", "4")
        check(r.returncode == 0 and read(moved) == read(big_ref), "full tmpfs: resumed elsewhere differs from the uninterrupted run")
print("devices ok")

if failures:
    print(f"{len(failures)} failures; files in {work}")
    sys.exit(1)
shutil.rmtree(work)
print("batch safety ok")
