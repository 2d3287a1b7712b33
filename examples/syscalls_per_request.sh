#!/usr/bin/env bash
# System calls and context switches of mcp-fleet per request: counts, which the machine's noise
# does not change, unlike times. Used in BENCHMARKS.md ("Gateway: one metric message per
# request", "Gateway: beside the bare bridge at C=1").
#
#   examples/syscalls_per_request.sh [BIN] [REQUESTS] [call|ping] [VAR=VALUE ...]
#
# Runs BIN (default target/release/mcp-fleet) with server-everything (installed by
# .ci/install-bench-peers) on a free 127.0.0.1 port, opens one 2025-11-25 session from a Python
# http.client (keep-alive, examples/sequential_client.py), warms up with 200 requests,
# then sends REQUESTS (default 3000)
# sequential `tools/call everything__echo` (or `ping`, which the gateway answers itself) while
# `perf stat -p` counts. A BIN named `bare_bridge` (target/release/examples/bare_bridge) is run
# as the bare bridge in front of the same backend, and called with `tools/call echo` (its `ping`
# goes to the backend). The VAR=VALUE arguments go into BIN's environment
# (TOKIO_WORKER_THREADS=2, say). Needs perf, python3 and curl; stops everything it starts.
# `perf stat -p` counts only the threads present when it attaches: a run whose counts are a
# fraction of the others' missed a thread, and says nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/mcp-fleet}
n=${2:-3000}
method=${3:-call}
shift $(($# < 3 ? $# : 3))
# shellcheck source=examples/counting_common.sh
. examples/counting_common.sh
port=$(free_port)
if [ "$(basename "$bin")" = bare_bridge ]; then
    env "$@" "$bin" --listen "127.0.0.1:$port" -- "$BENCH_NODE" "$BENCH_EVERYTHING_JS" \
        > "$work/server.log" 2>&1 &
    ready=any tool=echo
else
    printf '{"mcpServers":{"everything":{"command":"%s","args":["%s"]}}}' \
        "$BENCH_NODE" "$BENCH_EVERYTHING_JS" > "$work/fleet.json"
    env "$@" "$bin" run --config "$work/fleet.json" --listen "127.0.0.1:$port" \
        > "$work/server.log" 2>&1 &
    ready=/readyz tool=everything__echo
fi
server=$!
for _ in $(seq 300); do
    answers "$port" "$ready" && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.1
done
answers "$port" "$ready" || { echo "$bin did not answer: $(cat "$work/server.log")" >&2; exit 1; }

python3 examples/sequential_client.py "$port" "$n" "$method" "$work" "$tool" &
client=$!
await_file "$work/go"
perf stat -p "$server" -o "$work/perf.txt" -e task-clock,context-switches,raw_syscalls:sys_enter \
    -e syscalls:sys_enter_futex,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_write \
    -e syscalls:sys_enter_writev,syscalls:sys_enter_recvfrom,syscalls:sys_enter_read &
perf=$!
# perf attaches in the background: give it a second before the counted requests start.
sleep 1
touch "$work/counting"
await_file "$work/done"
kill -INT "$perf"; wait "$perf" || true
wait "$client"
client=""
awk -v n="$n" '/^ *[0-9][0-9,.]* /{gsub(",","",$1); name = ($2 == "msec") ? "task-clock (µs)" : $2;
    v = ($2 == "msec") ? $1 * 1000 : $1; printf "%-32s %12.0f  %8.2f per request\n", name, v, v/n}' "$work/perf.txt"
