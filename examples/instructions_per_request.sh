#!/usr/bin/env bash
# Instructions mcp-fleet executes per forwarded request, beside the bare bridge (the least an
# HTTP-to-stdio bridge does, on mcp-fleet's own stack): counts from valgrind's callgrind, which,
# unlike times, the machine's noise does not move. Used in BENCHMARKS.md ("Gateway: instructions
# per request").
#
#   examples/instructions_per_request.sh [REQUESTS] [MCP_FLEET_BIN]
#
# Runs MCP_FLEET_BIN (default target/release/mcp-fleet), then target/release/examples/bare_bridge,
# each under callgrind with server-everything (installed by .ci/install-bench-peers) on a free
# 127.0.0.1 port, and drives each with examples/sequential_client.py: one 2025-11-25
# session, 200 requests to warm up, then REQUESTS (default 1000) sequential `tools/call echo`.
# Counting is on (callgrind_control) only while those run; it includes what the server's own
# timers do in those seconds (for mcp-fleet: health checks, metrics upkeep). Prints the instructions per request
# of each by crate; the profiles stay in target/instructions/ for callgrind_annotate. The backend
# runs natively (callgrind does not follow children). Needs valgrind, python3 and curl; stops
# everything it starts.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-1000}
fleet_bin=${2:-target/release/mcp-fleet}
bridge_bin=target/release/examples/bare_bridge
out=target/instructions
mkdir -p "$out"
# shellcheck source=examples/counting_common.sh
. examples/counting_common.sh

# measure NAME TOOL READY_PATH COMMAND...: one server under callgrind, REQUESTS counted.
measure() {
    local name=$1 tool=$2 ready=$3
    shift 3
    local port
    port=$(free_port)
    rm -f "$out/$name".callgrind* "$work/go" "$work/counting" "$work/done"
    valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$work/$name.callgrind" \
        "$@" --listen "127.0.0.1:$port" "${LATE_ARGS[@]}" > "$work/$name.log" 2>&1 &
    server=$!
    # Slow under valgrind: up to 2 minutes to answer.
    for _ in $(seq 1200); do
        answers "$port" "$ready" && break
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    answers "$port" "$ready" || { echo "$name did not answer: $(cat "$work/$name.log")" >&2; exit 1; }
    python3 examples/sequential_client.py "$port" "$n" call "$work" "$tool" &
    client=$!
    await_file "$work/go"
    callgrind_control -i on "$server" > /dev/null
    touch "$work/counting"
    await_file "$work/done"
    callgrind_control -i off "$server" > /dev/null
    wait "$client"
    client=""
    # The counts so far, as $work/$name.callgrind.1.
    callgrind_control -d "$server" > /dev/null
    mv "$work/$name.callgrind.1" "$out/$name.callgrind"
    kill -TERM "$server"
    wait "$server" 2>/dev/null || true
    server=""
}

printf '{"mcpServers":{"everything":{"command":"%s","args":["%s"]}}}' \
    "$BENCH_NODE" "$BENCH_EVERYTHING_JS" > "$work/fleet.json"
LATE_ARGS=()
measure mcp-fleet everything__echo /readyz "$fleet_bin" run --config "$work/fleet.json"
LATE_ARGS=(-- "$BENCH_NODE" "$BENCH_EVERYTHING_JS")
measure bare-bridge echo any "$bridge_bin"
python3 examples/callgrind_by_crate.py "$n" \
    "mcp-fleet=$out/mcp-fleet.callgrind" "bare-bridge=$out/bare-bridge.callgrind"
