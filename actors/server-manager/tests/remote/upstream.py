"""A remote MCP server (Streamable HTTP, 2025-11-25 sessions) that misbehaves on request, for
the server manager's remote-link tests. Prints its port, then serves 127.0.0.1 until killed.

tools/call by name: `echo`; `slow` (answers after 2 s); `redirect` (307 to /elsewhere);
`hijack` (an SSE stream carrying an answer to the `slow` call under way, then its own);
`huge` (an SSE event that never ends); `stall` (answers nothing, and notes when its connection
closes); `poll` (SEP-1699: a priming event with an id and `retry: 300`, then the stream
closes; a GET with `Last-Event-ID` gets one more such event and close, and the next the
answer); `vanish` (a priming event and close, and the GET resuming it is refused, 404).
With `--listen`, a GET opens the session's stream of what the server sends unasked: a priming
event and close; the GET resuming it gets `notifications/tools/list_changed` (event `L2`) and
close, and one resuming after `L2` is refused. A `notifications/cancelled` takes 3 s to be
accepted. GET /expire ends the session:
a request of it gets 404 until a new `initialize`. GET /seen: what happened, as JSON."""
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

seen = []
slow_ids = []
polls = {}  # event id -> (request id, what comes next, when the stream closed)
LISTEN = "--listen" in sys.argv[1:]
sessions = {"current": None, "made": 0}
lock = threading.Lock()


def note(what):
    with lock:
        seen.append(what)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def answer(self, id, result, headers=()):
        body = json.dumps({"jsonrpc": "2.0", "id": id, "result": result}).encode()
        self.reply(200, body, [("Content-Type", "application/json"), *headers])

    def text(self, id, text):
        self.answer(id, {"content": [{"type": "text", "text": text}]})

    def sse_start(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True

    def sse(self, message):
        self.wfile.write(b"data: " + json.dumps(message).encode() + b"\n\n")
        self.wfile.flush()

    def do_GET(self):
        if self.path == "/seen":
            with lock:
                body = json.dumps(seen).encode()
            self.reply(200, body, [("Content-Type", "application/json")])
        elif self.path == "/elsewhere":
            note("followed the redirect")
            self.reply(200, b"{}", [("Content-Type", "application/json")])
        elif self.headers.get("Last-Event-ID"):
            self.resume(self.headers["Last-Event-ID"])
        elif LISTEN and self.path == "/mcp":
            with lock:
                current = sessions["current"]
            if self.headers.get("Mcp-Session-Id") != current:
                self.reply(404)
                return
            note("listen")
            self.sse_start()
            self.prime(None, "L1", "changed", retry=False)
        elif self.path == "/expire":
            with lock:
                sessions["current"] = None
            self.reply(200, b"{}", [("Content-Type", "application/json")])
        else:
            self.reply(405)

    def resume(self, last):
        with lock:
            current = sessions["current"]
            poll = polls.pop(last, None)
        if self.headers.get("Mcp-Session-Id") != current or poll is None:
            note("resume refused")
            self.reply(404)
            return
        id, then, closed = poll
        note(f"resumed {last} after {int((time.monotonic() - closed) * 1000)} ms")
        if then == "gone":
            self.reply(404)
            return
        self.sse_start()
        if then == "changed":
            self.wfile.write(b"id: L2\n")
            self.sse({"jsonrpc": "2.0", "method": "notifications/tools/list_changed"})
        elif then == "answer":
            self.wfile.write(b"id: " + last.encode() + b"-a\n")
            self.sse({"jsonrpc": "2.0", "id": id,
                      "result": {"content": [{"type": "text", "text": "polled"}]}})
        else:
            self.prime(id, last + "-b", "answer", retry=False)

    def prime(self, id, event_id, then, retry=True):
        """A priming event (an id, empty data), then the stream closes."""
        with lock:
            polls[event_id] = (id, then, None)
        self.wfile.write(b"id: " + event_id.encode() + b"\n"
                         + (b"retry: 300\n" if retry else b"") + b"data: \n\n")
        self.wfile.flush()
        with lock:
            polls[event_id] = (id, then, time.monotonic())

    def do_DELETE(self):
        self.reply(200)

    def do_POST(self):
        if self.path == "/elsewhere":
            note("followed the redirect")
            self.reply(500)
            return
        m = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        method, id = m.get("method"), m.get("id")
        with lock:
            current = sessions["current"]
        if method != "initialize" and method != "server/discover" \
                and self.headers.get("Mcp-Session-Id") != current:
            note("404")
            self.reply(404)
            return
        if id is None:
            if method == "notifications/cancelled":
                note("cancelled")
                time.sleep(3)  # slow to take it: the link must not wait for it
            self.reply(202)
            return
        if method == "initialize":
            with lock:
                sessions["made"] += 1
                sessions["current"] = f"s{sessions['made']}"
                session = sessions["current"]
            note("initialize")
            self.answer(id, {"protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                             "serverInfo": {"name": "upstream", "version": "1"}},
                        [("Mcp-Session-Id", session)])
        elif method == "tools/list":
            note("tools/list")
            self.answer(id, {"tools": [{"name": n, "inputSchema": {"type": "object"}} for n in
                                       ["echo", "slow", "redirect", "hijack", "huge", "stall",
                                        "poll", "vanish"]]})
        elif method == "tools/call":
            self.call(id, m["params"]["name"])
        elif method == "ping":
            self.answer(id, {})
        else:
            body = json.dumps({"jsonrpc": "2.0", "id": id,
                               "error": {"code": -32601, "message": "no " + method}}).encode()
            self.reply(200, body, [("Content-Type", "application/json")])

    def call(self, id, name):
        if name == "slow":
            with lock:
                slow_ids.append(id)
            time.sleep(2)
            self.text(id, "slow")
        elif name == "redirect":
            port = self.server.server_address[1]
            self.reply(307, b"", [("Location", f"http://127.0.0.1:{port}/elsewhere")])
        elif name == "hijack":
            with lock:
                other = slow_ids[-1] if slow_ids else None
            self.sse_start()
            self.sse({"jsonrpc": "2.0", "id": other,
                      "result": {"content": [{"type": "text", "text": "HIJACK"}]}})
            self.sse({"jsonrpc": "2.0", "id": id,
                      "result": {"content": [{"type": "text", "text": "hijack"}]}})
        elif name == "huge":
            self.sse_start()
            try:
                self.wfile.write(b'data: {"jsonrpc": "2.0", "id": ' + json.dumps(id).encode()
                                 + b', "result": {"x": "')
                for _ in range(4096):  # 256 MiB at most, in 64 KiB pieces, with no line end
                    self.wfile.write(b"x" * 65536)
                note("huge sent whole")
            except OSError:
                note("huge cut off")
        elif name == "stall":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            self.wfile.flush()
            self.close_connection = True
            for _ in range(600):  # 60 s at most
                try:
                    if self.connection.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b"":
                        note("stall closed")
                        return
                except BlockingIOError:
                    pass
                time.sleep(0.1)
        elif name == "poll":
            self.sse_start()
            self.prime(id, f"p{id}", "again")
        elif name == "vanish":
            self.sse_start()
            self.prime(id, f"v{id}", "gone")
        else:
            self.text(id, name)


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
print(server.server_address[1], flush=True)
server.serve_forever()
