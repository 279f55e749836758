#!/usr/bin/env python3
"""`sluice batch` end to end on stories260K (../shared/models), the properties issue 5 asks for:
  resume   a few hundred requests, killed with SIGKILL at seeded random moments several times and
           resumed each time (plus a torn last line), end byte-identical to an uninterrupted run;
  shards   the same input as 4 shards in separate processes, merged, equals the single run;
  batch    the same input at another batch size gives the same bytes (requests are deterministic);
  errors   every kind of bad line gets one 400 line naming its input line; valid lines are answered;
  formats  plain JSONL and plain text inputs; --max-errors stops a garbage job with exit 3.
Usage: test_batch_job.py SLUICE MODELS_DIR"""
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

sluice, models = sys.argv[1], sys.argv[2]
stories = os.path.join(models, "stories260K.gguf")
if not os.path.exists(stories):
    print(f"SKIPPED: {stories} not found (../shared/models)")
    sys.exit(77)
work = tempfile.mkdtemp(prefix="sluice-batch-")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)


def batch(*args, env=None, check_rc=True):
    cmd = [sluice, "batch", "-m", stories, "-c", "160", "--progress", "log", "--chat-template", "chatml", *args]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if check_rc and r.returncode != 0:
        print(r.stderr[-3000:])
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {r.returncode}")
    return r


def read(path):
    with open(path, "rb") as f:
        return f.read()


# --- a few hundred OpenAI-format requests: completions and chats, greedy and seeded sampling.
rng = random.Random(2026)
words = "once upon a time there was a little girl named lily she loved to play in the park with her dog".split()
lines = []
for i in range(300):
    prompt = " ".join(rng.choice(words) for _ in range(rng.randint(2, 12)))
    body = {"max_tokens": rng.randint(8, 48), "temperature": rng.choice([0, 0.7, 1.0]), "seed": rng.randint(0, 1 << 30)}
    if i % 3 == 0:
        body["messages"] = [{"role": "user", "content": prompt}]
        url = "/v1/chat/completions"
    else:
        body["prompt"] = prompt
        url = "/v1/completions"
    if i % 7 == 0:
        body["stop"] = ["."]
    lines.append(json.dumps({"custom_id": f"req-{i}", "method": "POST", "url": url, "body": body}))
requests = os.path.join(work, "requests.jsonl")
with open(requests, "w") as f:
    f.write("\n".join(lines) + "\n")

ref = os.path.join(work, "ref.jsonl")
started = time.time()
batch("-i", requests, "-o", ref, "--batch", "8", "--report", os.path.join(work, "report.json"))
ref_seconds = time.time() - started
ref_lines = read(ref).decode().splitlines()
check(len(ref_lines) == 300, f"uninterrupted run answered {len(ref_lines)} of 300")
check([json.loads(l)["custom_id"] for l in ref_lines] == [f"req-{i}" for i in range(300)], "output not in input order")
check(all(json.loads(l)["response"]["status_code"] == 200 for l in ref_lines), "a valid request was not answered 200")
report = json.load(open(os.path.join(work, "report.json")))
check(report["ok"] == 300 and report["generated_tokens"] > 0, f"report: {report}")
first = json.loads(ref_lines[0])["response"]["body"]
check(first["object"] == "chat.completion" and first["choices"][0]["message"]["role"] == "assistant", "chat body shape")
second = json.loads(ref_lines[1])["response"]["body"]
check(second["object"] == "text_completion" and "text" in second["choices"][0], "completion body shape")
check(second["usage"]["total_tokens"] == second["usage"]["prompt_tokens"] + second["usage"]["completion_tokens"], "usage sums")
print(f"reference: 300 requests in {ref_seconds:.1f} s")

# --- another batch size: the same bytes.
other = os.path.join(work, "batch3.jsonl")
batch("-i", requests, "-o", other, "--batch", "3")
check(read(other) == read(ref), "batch 3 output differs from batch 8")

# --- SIGKILL at seeded random moments, resume each time.
out = os.path.join(work, "killed.jsonl")
kill_rng = random.Random(7)
kills = 0
for attempt in range(60):
    p = subprocess.Popen([sluice, "batch", "-m", stories, "-c", "160", "--progress", "log", "--chat-template", "chatml",
                          "-i", requests, "-o", out, "--batch", "8", "--fsync-interval", "0.05"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(kill_rng.uniform(0.05, max(0.1, ref_seconds * 0.4)))
    if p.poll() is None:
        p.send_signal(signal.SIGKILL)
        p.wait()
        kills += 1
        if kills == 2 and os.path.exists(out):  # a torn last line, as a crash mid-write leaves
            with open(out, "ab") as f:
                f.write(b'{"id": "batch_req_torn", "custom_id": "req-')
        continue
    check(p.returncode == 0, f"resumed run exited {p.returncode}")
    break
check(kills >= 3, f"only {kills} kills landed before the job finished")
check(read(out) == read(ref), f"output after {kills} kills differs from the uninterrupted run")
print(f"resume: {kills} SIGKILLs, final output identical: {read(out) == read(ref)}")

# --- 4 shards in separate processes, merged.
procs, shard_outputs = [], []
for i in range(4):
    o = os.path.join(work, f"shard{i}.jsonl")
    shard_outputs.append(o)
    env = dict(os.environ)
    args = ["-i", requests, "-o", o, "--batch", "4"]
    if i == 3:  # shard 3 takes its index from a SLURM array's environment
        env.update(SLURM_ARRAY_TASK_ID="3", SLURM_ARRAY_TASK_COUNT="4")
    else:
        args += ["--shard", f"{i}/4"]
    procs.append(subprocess.Popen([sluice, "batch", "-m", stories, "-c", "160", "--progress", "log", "--chat-template", "chatml",
                                   *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
for p in procs:
    p.wait()
    check(p.returncode == 0, f"a shard exited {p.returncode}")
sizes = [len(read(o).splitlines()) for o in shard_outputs]
check(sum(sizes) == 300 and min(sizes) > 30, f"shard sizes {sizes}")
merged = os.path.join(work, "merged.jsonl")
r = subprocess.run([sluice, "batch", "merge", "-i", requests, "-o", merged, *shard_outputs], capture_output=True, text=True)
check(r.returncode == 0, f"merge exited {r.returncode}: {r.stderr}")
check(read(merged) == read(ref), "merged shards differ from the single run")
# A missing shard line is reported.
with open(shard_outputs[1], "r+b") as f:
    data = f.read().splitlines(keepends=True)
    f.seek(0)
    f.truncate()
    f.writelines(data[:-1])
r = subprocess.run([sluice, "batch", "merge", "-i", requests, "-o", merged, *shard_outputs], capture_output=True, text=True)
check(r.returncode == 1 and "missing: input line" in r.stderr, f"merge with a short shard: rc {r.returncode}, {r.stderr[-300:]}")
print(f"shards: sizes {sizes}, merged identical")

# --- bad lines.
long_prompt = " ".join(["lily"] * 400)
good = lambda cid, **b: json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/completions",
                                     "body": {"prompt": "once upon", "max_tokens": 4, **b}})
bad_input = [
    good("ok-1"),                                                                  # 1
    "{not json",                                                                   # 2 invalid JSON
    json.dumps({"method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}}),  # 3 no custom_id
    json.dumps({"custom_id": "nobody", "method": "POST", "url": "/v1/completions"}),     # 4 no body
    json.dumps({"custom_id": "get", "method": "GET", "url": "/v1/completions", "body": {"prompt": "x"}}),  # 5
    json.dumps({"custom_id": "emb", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}),  # 6 unknown url
    json.dumps({"custom_id": "nomsg", "method": "POST", "url": "/v1/chat/completions", "body": {"prompt": "x"}}),  # 7
    good("badtok", max_tokens=-3),                                                 # 8
    good("ok-1"),                                                                  # 9 duplicate custom_id
    "",                                                                            # 10 blank: skipped
    good("long", prompt=long_prompt),                                              # 11 longer than the context
    good("ok-2"),                                                                  # 12
    "[1, 2, 3]",                                                                   # 13 not an object
    json.dumps({"custom_id": "temp", "method": "POST", "url": "/v1/completions",
                "body": {"prompt": "x", "temperature": "hot"}}),                  # 14
]
bad_path = os.path.join(work, "bad.jsonl")
with open(bad_path, "w") as f:
    f.write("\n".join(bad_input) + "\n")
bad_out = os.path.join(work, "bad.out.jsonl")
batch("-i", bad_path, "-o", bad_out)
got = [json.loads(l) for l in read(bad_out).decode().splitlines()]
expect_error_lines = [2, 3, 4, 5, 6, 7, 8, 9, 11, 13, 14]
check(len(got) == 13, f"expected 13 answers (14 lines, 1 blank), got {len(got)}")
input_lines = [i + 1 for i, l in enumerate(bad_input) if l.strip()]
for line_no, res in zip(input_lines, got):
    status = res["response"]["status_code"]
    if line_no in expect_error_lines:
        msg = res["response"]["body"]["error"]["message"]
        check(status == 400 and msg.startswith(f"line {line_no}:"), f"line {line_no}: status {status}, message {msg!r}")
    else:
        check(status == 200, f"valid line {line_no} got {status}")
dup = got[input_lines.index(9)]["response"]["body"]["error"]["message"]
check("duplicate" in dup and "line 1" in dup, f"duplicate message: {dup}")

# --- plain JSONL and plain text inputs; messages with no chat template.
plain = os.path.join(work, "plain.jsonl")
with open(plain, "w") as f:
    f.write(json.dumps({"id": "a", "prompt": "once upon a time", "max_tokens": 6, "temperature": 0}) + "\n")
    f.write(json.dumps({"id": 7, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 6}) + "\n")
    f.write(json.dumps({"prompt": "the dog", "max_tokens": 6}) + "\n")
r = subprocess.run([sluice, "batch", "-m", stories, "-i", plain, "-o", os.path.join(work, "plain.out"), "--progress", "log"],
                   capture_output=True, text=True)
got = [json.loads(l) for l in read(os.path.join(work, "plain.out")).decode().splitlines()]
check([g["custom_id"] for g in got] == ["a", "7", "line-3"], f"plain JSONL ids {[g['custom_id'] for g in got]}")
check("the longest request needs at most" in r.stderr, f"no -c: the context should be sized from the requests:\n{r.stderr}")
check(r.stderr.count("1 of the 3 requests still to answer use messages") == 1,
      f"a missing chat template should be said once, before the job:\n{r.stderr}")
check(r.returncode == 0, f"one failed request of three: exit 0 by default, got {r.returncode}")
r2 = subprocess.run([sluice, "batch", "-m", stories, "-i", plain, "-o", os.path.join(work, "plain-any.out"), "--progress", "log",
                     "--fail-on-errors", "any"], capture_output=True, text=True)
check(r2.returncode == 5 and "--fail-on-errors any" in r2.stderr, f"--fail-on-errors any: rc {r2.returncode}\n{r2.stderr}")
check("generated tok/s" in r.stderr and "through the model (prompt + generated)" in r.stderr, "the summary names each rate")
check(got[0]["response"]["body"]["model"] != "", "an answer's model should be the model's name")
check(got[1]["response"]["status_code"] == 400 and "--chat-template" in got[1]["response"]["body"]["error"]["message"],
      "messages without a chat template should name the flag")
text_in = os.path.join(work, "prompts.txt")
with open(text_in, "w") as f:
    f.write("once upon a time\n\nthe little dog\n")
batch("-i", text_in, "-o", os.path.join(work, "text.out"), "--max-tokens", "5")
got = [json.loads(l) for l in read(os.path.join(work, "text.out")).decode().splitlines()]
check([g["custom_id"] for g in got] == ["line-1", "line-3"], "plain text ids")
check(all(g["response"]["body"]["usage"]["completion_tokens"] == 5 for g in got), "--max-tokens default")

garbage = os.path.join(work, "garbage.jsonl")
with open(garbage, "w") as f:
    f.write(good("fine") + "\n" + "\n".join("{broken" for _ in range(20)) + "\n")
r = batch("-i", garbage, "-o", os.path.join(work, "garbage.out"), "--max-errors", "2", check_rc=False)
check(r.returncode == 3 and "max-errors" in r.stderr, f"--max-errors: rc {r.returncode}")
check(len(read(os.path.join(work, "garbage.out")).splitlines()) <= 5, "--max-errors kept going")

# --- every request failed: exit 5 (unless --fail-on-errors never); every request a chat without a
# template: refused before anything runs.
broken = os.path.join(work, "broken.jsonl")
with open(broken, "w") as f:
    f.write("{broken\n{also broken\n")
r = batch("-i", broken, "-o", os.path.join(work, "broken.out"), check_rc=False)
check(r.returncode == 5 and "2 of the 2 requests answered by this run failed" in r.stderr, f"all failed: rc {r.returncode}\n{r.stderr}")
r = batch("-i", broken, "-o", os.path.join(work, "broken-never.out"), "--fail-on-errors", "never", check_rc=False)
check(r.returncode == 0, f"--fail-on-errors never: rc {r.returncode}")
chats = os.path.join(work, "chats.jsonl")
with open(chats, "w") as f:
    for i in range(3):
        f.write(json.dumps({"id": f"c{i}", "messages": [{"role": "user", "content": "hi"}]}) + "\n")
r = subprocess.run([sluice, "batch", "-m", stories, "-i", chats, "-o", os.path.join(work, "chats.out"), "--progress", "log"],
                   capture_output=True, text=True)
check(r.returncode != 0 and "3 of the 3 requests still to answer use messages" in r.stderr and "nothing was run" in r.stderr,
      f"all chats without a template should be refused at once: rc {r.returncode}\n{r.stderr}")
check(not os.path.exists(os.path.join(work, "chats.out")) or os.path.getsize(os.path.join(work, "chats.out")) == 0,
      "a refused job should answer nothing")

if failures:
    print(f"{len(failures)} failures")
    sys.exit(1)
subprocess.run(["rm", "-rf", work])
print("batch job ok")
