"""A real threaded HTTP server on loopback for download tests.

It serves registered byte strings with ETags and honours ``Range`` / ``If-Range``; faults can be
queued per path (each request consumes one): ``status`` (answer with that HTTP status),
``delay`` (sleep before answering), ``drop_after`` (send that many body bytes, then cut the
connection), ``stall_after`` (send that many body bytes, then go silent for that many seconds
given as ``stall``), ``corrupt`` (flip one byte of the body), ``ignore_range`` (answer 200 with
the whole body), ``redirect`` (302 to another URL), ``headers`` (extra response headers, e.g.
Retry-After). ``throttle`` (bytes per second) slows every body. ``tls`` (an ``ssl.SSLContext``)
serves https. Every request is recorded (with the time it arrived), so tests can count
downloads and look at the headers sent.
"""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Record:
    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0
    at: float = 0.0


@dataclass
class LoopbackServer:
    host: str = "127.0.0.1"
    files: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, list[dict]] = field(default_factory=dict)
    throttle: dict[str, float] = field(default_factory=dict)
    requests: list[Record] = field(default_factory=list)
    etags: dict[str, str] = field(default_factory=dict)
    tls: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_HEAD(self):
                self._serve(body=False)

            def do_GET(self):
                self._serve(body=True)

            def _serve(self, body: bool) -> None:
                record = Record(self.command, self.path, {k.lower(): v for k, v in self.headers.items()},
                                at=time.monotonic())
                with server._lock:
                    server.requests.append(record)
                    queue = server.faults.get(self.path)
                    fault = queue.pop(0) if queue else {}
                time.sleep(fault.get("delay", 0))
                if "redirect" in fault:
                    record.status = 302
                    self.send_response(302)
                    self.send_header("Location", fault["redirect"])
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                data = server.files.get(self.path)
                status = fault.get("status", 200 if data is not None else 404)
                if status >= 400:
                    record.status = status
                    self.send_response(status)
                    for key, value in fault.get("headers", {}).items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                etag = server.etags[self.path]
                if fault.get("corrupt"):
                    data = bytes([data[0] ^ 0xFF]) + data[1:]
                start = 0
                rng = self.headers.get("Range")
                if_range = self.headers.get("If-Range")
                if rng and not fault.get("ignore_range") and (if_range is None or if_range == etag):
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(data):
                        record.status = 416
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    record.status = 206
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    record.status = 200
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.send_header("ETag", etag)
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if not body:
                    return
                self._send_body(memoryview(data)[start:], fault, record)

            def _send_body(self, payload: memoryview, fault: dict, record: Record) -> None:
                limit = fault.get("drop_after")
                rate = server.throttle.get(self.path)
                if "stall_after" in fault:  # send some bytes, then go silent (a stalled connection)
                    head = fault["stall_after"]
                    try:
                        self.wfile.write(payload[:head])
                        self.wfile.flush()
                        record.sent = head
                        time.sleep(fault.get("stall", 10))
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    self.close_connection = True
                    return
                if limit is None and not rate:  # fast path: one C-level call, as a real server would
                    try:
                        self.wfile.write(payload)
                        record.sent = len(payload)
                    except (BrokenPipeError, ConnectionResetError):
                        pass
                    return
                chunk = max(64 * 1024, int(rate or 0) // 200)  # ~200 paced writes a second
                started = time.monotonic()
                try:
                    for offset in range(0, len(payload), chunk):
                        piece = payload[offset : offset + chunk]
                        if limit is not None and record.sent + len(piece) > limit:
                            piece = piece[: max(limit - record.sent, 0)]
                            self.wfile.write(piece)
                            record.sent += len(piece)
                            self.wfile.flush()
                            self.connection.shutdown(socket.SHUT_RDWR)
                            self.close_connection = True
                            return
                        self.wfile.write(piece)
                        record.sent += len(piece)
                        if rate:
                            ahead = record.sent / rate - (time.monotonic() - started)
                            if ahead > 0:
                                time.sleep(ahead)
                except (BrokenPipeError, ConnectionResetError):
                    return

        self.httpd = ThreadingHTTPServer((self.host, 0), Handler)
        self.httpd.daemon_threads = True
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}{path}"

    def add(self, path: str, data: bytes) -> str:
        self.files[path] = data
        self.etags[path] = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
        return self.url(path)

    def fault(self, path: str, **fault) -> None:
        with self._lock:
            self.faults.setdefault(path, []).append(fault)

    def gets(self, path: str) -> list[Record]:
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == "GET"]

    def full_downloads(self, path: str) -> int:
        """GETs that delivered the whole body from byte 0."""
        size = len(self.files[path])
        return sum(1 for r in self.gets(path) if r.status == 200 and r.sent == size)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def main() -> None:
    """``python tests/_http.py [--rate BYTES_PER_S]... PATH...``: serve files in a process of its own.

    Each file is served at /<basename>, and at /rate-<N>/<basename> paced to N bytes/s for each
    --rate. Benchmarks use this so that the server does not share a GIL with the client being
    measured. Prints the port, then serves until stdin closes.
    """
    import argparse
    import sys
    from pathlib import Path

    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, action="append", default=[])
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    server = LoopbackServer()
    for name in args.paths:
        data = Path(name).read_bytes()
        server.add(f"/{Path(name).name}", data)
        for rate in args.rate:
            path = f"/rate-{rate}/{Path(name).name}"
            server.add(path, data)
            server.throttle[path] = rate
    print(server.port, flush=True)
    sys.stdin.read()
    server.close()


if __name__ == "__main__":
    main()
