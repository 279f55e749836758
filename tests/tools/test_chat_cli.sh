#!/usr/bin/env bash
# `sluice chat` driven through a terminal (tmux send-keys), on a synthetic model (no ../shared):
#  - two turns; the second runs on top of the first's tokens in the KV cache (--stats: reused > 0);
#  - Ctrl-C stops an answer without ending the chat, and the next message is answered;
#  - Ctrl-D at the prompt ends it with status 0;
#  - `sluice run -m MODEL` without a prompt, in a terminal, starts the same conversation.
# Skips (77) without tmux.
set -u
sluice=$1
command -v tmux >/dev/null || { echo "SKIPPED: no tmux"; exit 77; }
work=$(mktemp -d)
sock=sluice-chat-test-$$
cleanup() { tmux -L "$sock" kill-server 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
fail() { echo "FAIL: $*"; echo "--- pane:"; tmux -L "$sock" capture-pane -p -t chat 2>/dev/null | tail -20; echo "--- stderr:"; cat "$work/err"; exit 1; }

# Slow enough (about 130 tok/s here) that an answer of 400 tokens lasts seconds: Ctrl-C lands in it.
"$sluice" synth --shape tiny --embd 512 --layers 8 --ff 1536 --vocab-size 2000 "$work/m.gguf" >/dev/null 2>&1 || fail "synth"
tmux -L "$sock" new-session -d -s chat -x 200 -y 50 \
  "'$sluice' chat -m '$work/m.gguf' --chat-template chatml -n 400 --temp 0 --stats 2>'$work/err'; echo \$? > '$work/exit'; sleep 30"

# wait_for FILE PATTERN COUNT: until PATTERN occurs COUNT times in FILE (at most 60 s).
wait_for() {
  for _ in $(seq 600); do
    [ "$(grep -c -- "$2" "$1" 2>/dev/null)" -ge "$3" ] && return 0
    sleep 0.1
  done
  fail "waited for $3 x '$2' in $1"
}
send() { tmux -L "$sock" send-keys -t chat "$@"; }

wait_for "$work/err" "sluice chat:" 1
send "Hello there" Enter
wait_for "$work/err" "generated at" 1
send "Tell me more" Enter
wait_for "$work/err" "generated at" 2
reused=$(grep "generated at" "$work/err" | sed -n 2p | sed -E 's/.*prompt tokens, ([0-9]+) of them reused.*/\1/')
[ "${reused:-0}" -gt 0 ] || fail "the second turn reused no tokens of the first: $(grep 'generated at' "$work/err" | sed -n 2p)"

# Ctrl-C as soon as the third answer is under way.
send "A long story please" Enter
for _ in $(seq 100); do
  [ "$(tmux -L "$sock" capture-pane -p -t chat | grep -c 'A long story please')" -ge 1 ] && break
  sleep 0.05
done
sleep 0.5
send C-c
wait_for "$work/err" "answer stopped" 1
wait_for "$work/err" "generated at" 3
third=$(grep "generated at" "$work/err" | sed -n 3p | sed -E 's/.*; ([0-9]+) generated at.*/\1/')
[ "${third:-400}" -lt 400 ] || fail "Ctrl-C did not stop the answer (generated $third)"
[ ! -e "$work/exit" ] || fail "Ctrl-C ended the chat"

send "Still there?" Enter
wait_for "$work/err" "generated at" 4
send C-d
for _ in $(seq 100); do [ -e "$work/exit" ] && break; sleep 0.1; done
[ "$(cat "$work/exit" 2>/dev/null)" = "0" ] || fail "Ctrl-D: exit status $(cat "$work/exit" 2>/dev/null)"

# `sluice run -m MODEL` with no prompt, in a terminal, is a conversation too (llama-cli's default).
tmux -L "$sock" new-session -d -s run -x 200 -y 50 \
  "'$sluice' run -m '$work/m.gguf' --chat-template chatml -n 8 --temp 0 --stats 2>'$work/run_err'; echo \$? > '$work/run_exit'; sleep 30"
wait_for "$work/run_err" "starting a conversation" 1
tmux -L "$sock" send-keys -t run "Hello there" Enter
wait_for "$work/run_err" "generated at" 1
tmux -L "$sock" send-keys -t run C-d
for _ in $(seq 100); do [ -e "$work/run_exit" ] && break; sleep 0.1; done
[ "$(cat "$work/run_exit" 2>/dev/null)" = "0" ] || fail "run without a prompt in a terminal: exit $(cat "$work/run_exit" 2>/dev/null); $(cat "$work/run_err")"

cat "$work/err" >&2
echo "chat: two turns (second reused $reused tokens), Ctrl-C stopped an answer at $third tokens, Ctrl-D left: OK"
