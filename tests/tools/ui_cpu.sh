#!/bin/sh
# ui_cpu.sh KBCHAT [QUESTIONS] [EARLIER]: the CPU time of the full-screen
# chat's UI thread while answers stream (docs/ui.md). With the tiny llama of
# $KBCHAT_TESTDATA (default ../shared/testdata), `kbchat chat` first stores
# a conversation of EARLIER turns (default 40), which the full-screen chat
# then resumes (so the pane holds a conversation of some length); in a
# private tmux server (100x30) it asks QUESTIONS (default 5) more questions
# of up to 100 tokens each, streamed at one piece per $DELAY ms (default 10:
# 100 tokens/s, the KBCHAT_TUI_PIECE_DELAY_MS hook), quits, and prints what
# the KBCHAT_TEST_UI_CPU hook wrote: "ui_cpu_ms MS pieces N".
set -eu
bin=$(realpath "$1")
n=${2:-5}
earlier=${3:-40}
model=$(realpath "${KBCHAT_TESTDATA:-../shared/testdata}/models/tiny-llama-Q4_0.gguf")
dir=$(mktemp -d)
sock=kbcpu-$$
# on failure the screen goes to stderr, to see why
trap 'rc=$?; [ $rc -eq 0 ] || tmux -L $sock capture-pane -p -t k >&2 2>/dev/null; tmux -L $sock kill-server 2>/dev/null || true; rm -rf "$dir"' EXIT
cat > "$dir/c.yaml" <<EOF
model:
  template: raw
  threads: 1
sampling:
  temperature: 0
  max_tokens: 100
conversation:
  answer_reserve: 110
data_dir: data
EOF
seq 1 "$earlier" | sed 's/^/Once upon a time there was /' |
    (cd "$dir" && env HOME="$dir" KBCHAT_CONFIG= XDG_CONFIG_HOME= "$bin" --config c.yaml chat --model "$model" >/dev/null 2>&1)
tmux -L "$sock" -f /dev/null new-session -d -x 100 -y 30 -s k \
    "cd '$dir' && env HOME='$dir' KBCHAT_CONFIG= XDG_CONFIG_HOME= KBCHAT_TEST_UI_CPU='$dir/cpu' \
     KBCHAT_TUI_PIECE_DELAY_MS=${DELAY:-10} LANG=C.UTF-8 LC_ALL=C.UTF-8 '$bin' --config c.yaml --model '$model'; sleep 30"
# wait_for TEXT: polls the screen for TEXT, up to 60 s.
wait_for() {
    i=0
    until tmux -L "$sock" capture-pane -p -t k | grep -qF "$1"; do
        i=$((i + 1)); [ $i -lt 600 ] || { echo "ui_cpu.sh: \"$1\" did not appear" >&2; exit 1; }
        sleep 0.1
    done
}
wait_for "Ctrl-C×2: quit" # the start has ended
for q in $(seq 1 "$n"); do
    tmux -L "$sock" send-keys -t k -l "Once upon a time $q"
    tmux -L "$sock" send-keys -t k Enter
    wait_for "Esc: stop"
    wait_for "Ctrl-C×2: quit"
done
tmux -L "$sock" send-keys -t k C-c
wait_for "Press Ctrl-C again"
tmux -L "$sock" send-keys -t k C-c
i=0
until [ -s "$dir/cpu" ]; do i=$((i + 1)); [ $i -lt 100 ] || exit 1; sleep 0.1; done
cat "$dir/cpu"
