# Sourced by the per-request counting scripts (syscalls_per_request.sh,
# instructions_per_request.sh) from the repository's root: the backend's paths, a work
# directory, the cleanup that stops whatever they started, and the checks they wait with.
# The caller sets `server` and `client` to the pids it starts (and back to "" once they
# stopped).
# shellcheck shell=bash disable=SC2034
# shellcheck disable=SC1091
. target/bench-peers/bench-peers.env
work=$(mktemp -d)
server=""
client=""
cleanup() {
    [ -n "$client" ] && kill "$client" 2>/dev/null
    [ -n "$server" ] && kill -TERM "$server" 2>/dev/null && wait "$server" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

# await_file FILE: waits until the client creates FILE; fails if the client stopped first.
await_file() {
    while [ ! -f "$1" ]; do
        kill -0 "$client" 2>/dev/null || { echo "the client stopped early" >&2; exit 1; }
        sleep 0.01
    done
}

# free_port: a port on 127.0.0.1 that nothing listens on now.
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# answers PORT PATH: whether the server answers PATH with 200 (PATH "any": any HTTP answer).
answers() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1${2/#any//}" || true)
    if [ "$2" = any ]; then [ "$code" != 000 ]; else [ "$code" = 200 ]; fi
}
