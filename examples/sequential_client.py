"""Sequential MCP calls over one keep-alive HTTP connection, for the per-request counting scripts.

    python3 examples/sequential_client.py PORT N call|ping WORKDIR [TOOL]

Opens one 2025-11-25 session at http://127.0.0.1:PORT/mcp (Python's http.client), sends 200
requests to warm up, creates WORKDIR/go, waits for the caller to create WORKDIR/counting (60 s
at most), sends N sequential `tools/call TOOL` with {"message": "hi"} (default TOOL
`everything__echo`) or `ping`, creates WORKDIR/done, and prints the rate. Any answer that is not
HTTP 200 without an error stops it with an assertion.
"""
import http.client, json, os, sys, time

port, n, method, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
tool = sys.argv[5] if len(sys.argv) > 5 else "everything__echo"
c = http.client.HTTPConnection("127.0.0.1", port)
H = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}


def post(body, extra={}):
    c.request("POST", "/mcp", json.dumps(body), {**H, **extra})
    r = c.getresponse()
    d = r.read()
    return r, d


r, _ = post({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}})
S = {"Mcp-Session-Id": r.getheader("Mcp-Session-Id"), "MCP-Protocol-Version": "2025-11-25"}
post({"jsonrpc": "2.0", "method": "notifications/initialized"}, S)


def one(i):
    if method == "ping":
        body = {"jsonrpc": "2.0", "id": i, "method": "ping"}
    else:
        body = {"jsonrpc": "2.0", "id": i, "method": "tools/call",
                "params": {"name": tool, "arguments": {"message": "hi"}}}
    r, d = post(body, S)
    assert r.status == 200 and b'"error"' not in d, (r.status, d)


for i in range(200):
    one(i)
open(f"{work}/go", "w").close()
deadline = time.time() + 60
while not os.path.exists(f"{work}/counting"):
    assert time.time() < deadline, "WORKDIR/counting did not appear within 60 s"
    time.sleep(0.01)
t = time.time()
for i in range(n):
    one(1000 + i)
dt = time.time() - t
open(f"{work}/done", "w").close()
print(f"{n} sequential {method} requests in {dt:.3f} s ({n / dt:.0f}/s)")
