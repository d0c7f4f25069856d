"""`--sink http:PORT`: a local preview page of the live output, with stats, on 127.0.0.1 only.

Routes: `/` the page (polls `/frame.jpg`, refreshes `/stats.json` once a second), `/frame.jpg`
the latest frame, `/stream.mjpg` an MJPEG stream of it (for OBS or VLC), `/stats.json` the stats.
Frames are JPEG-encoded lazily, once per new frame, only when someone asks, so an unwatched
preview costs nothing. Binds loopback only: the output is a person's face. Loopback alone is not
enough: a web page can rebind its own name to 127.0.0.1 and read the preview from the browser
(DNS rebinding), so a request must name the bound address (or `localhost`) in its `Host` header,
else 421. At most `max_clients` requests are served at once (an MJPEG stream holds one while it
plays), others get 503; a client that stalls a read or write for `timeout_s` is dropped.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import cv2
import numpy as np

from facewire.receiver.sinks import SinkError
from facewire.receiver.stats import json_safe
from facewire.shared.types import Image

log = logging.getLogger(__name__)

_BOUNDARY = "facewireframe"
_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>facewire preview</title>
<style>
body {{ margin: 0; background: #16181d; color: #d8dde6; font: 14px system-ui, sans-serif; }}
main {{ display: flex; flex-direction: column; align-items: center; gap: 8px; padding: 12px; }}
img {{ max-width: 100%; background: #000; }}
#stats {{ font-family: ui-monospace, monospace; white-space: pre; }}
a {{ color: #8ab4f8; }}
</style></head>
<body><main>
<img id="live" src="/frame.jpg?n=0" alt="facewire output" width="{width}" height="{height}">
<div id="stats">waiting for stats</div>
<div><a href="/stream.mjpg">MJPEG stream</a> for OBS or VLC</div>
</main>
<script>
const img = document.getElementById("live");
let n = 0;
img.onload = img.onerror = () => setTimeout(() => {{ img.src = "/frame.jpg?n=" + (++n); }}, 30);
async function stats() {{
  try {{
    const s = await (await fetch("/stats.json", {{cache: "no-store"}})).json();
    document.getElementById("stats").textContent =
      Object.entries(s).map(([k, v]) => k + " " + (typeof v === "number" ? v.toFixed(1) : v)).join("   ");
  }} catch (e) {{}}
}}
setInterval(stats, 1000); stats();
</script></body></html>
"""


class _State:
    """The latest frame and stats, shared between the writer and the server threads."""

    def __init__(self, quality: int) -> None:
        self.quality = quality
        self.cond = threading.Condition()
        self.image: Image | None = None
        self.seq = 0
        self.jpeg: bytes | None = None
        self.jpeg_seq = -1
        self.stats: dict[str, Any] = {}
        self.closed = False

    def latest_jpeg(self) -> tuple[bytes, int]:
        with self.cond:
            image, seq = self.image, self.seq
            if self.jpeg is not None and self.jpeg_seq == seq:
                return self.jpeg, seq
        if image is None:
            image = np.zeros((240, 320, 3), np.uint8)
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise RuntimeError("JPEG encoding failed")
        data = buf.tobytes()
        with self.cond:
            if seq == self.seq:
                self.jpeg, self.jpeg_seq = data, seq
        return data, seq


def allowed_hosts(host: str, port: int) -> frozenset[str]:
    """The `Host` header values that name this server: its address or `localhost`, with or without the port."""
    names = {host, "localhost"} | ({"127.0.0.1"} if host == "localhost" else set())
    names |= {f"[{name}]" for name in names if ":" in name}  # an IPv6 literal is bracketed in Host
    return frozenset(names | {f"{name}:{port}" for name in names if not (":" in name and not name.startswith("["))})


def _handler(state: _State, timeout_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "facewire"
        timeout = timeout_s  # the socket's: a client that stalls a read or a write is dropped

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the stdlib's name
            log.debug("http sink: " + format, *args)

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            path = self.path.split("?", 1)[0]
            if self.headers.get("Host", "").strip().lower() not in cast(_BoundedServer, self.server).allowed_hosts:
                self._send(HTTPStatus.MISDIRECTED_REQUEST, b"this preview answers only to its own address\n", "text/plain")
            elif path == "/":
                with state.cond:
                    shape = state.image.shape if state.image is not None else (480, 640)
                page = _PAGE.format(width=shape[1], height=shape[0]).encode()
                self._send(HTTPStatus.OK, page, "text/html; charset=utf-8")
            elif path == "/frame.jpg":
                self._send(HTTPStatus.OK, state.latest_jpeg()[0], "image/jpeg")
            elif path == "/stats.json":
                with state.cond:
                    body = json.dumps(state.stats).encode()
                self._send(HTTPStatus.OK, body, "application/json")
            elif path == "/stream.mjpg":
                self._stream()
            else:
                self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain")

        def _stream(self) -> None:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={_BOUNDARY}")
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            last = -1
            try:
                while True:
                    with state.cond:
                        seen = last
                        state.cond.wait_for(lambda: state.closed or state.seq != seen, timeout=1.0)  # noqa: B023
                        if state.closed:
                            return
                    data, last = state.latest_jpeg()
                    head = f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n\r\n"
                    self.wfile.write(head.encode() + data + b"\r\n")
                    self.wfile.flush()
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                return

    return Handler


class _BoundedServer(ThreadingHTTPServer):
    """A thread per request, at most `max_clients` at once; the rest are answered 503 at once."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], max_clients: int) -> None:
        super().__init__(address, handler)
        self._slots = threading.BoundedSemaphore(max_clients)
        self.allowed_hosts = allowed_hosts(address[0], int(self.server_address[1]))

    def process_request(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        if not self._slots.acquire(blocking=False):
            with contextlib.suppress(OSError):
                request.sendall(b"HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: object) -> None:  # type: ignore[override]
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()


class HttpSink:
    """facewire.receiver.sinks.Sink serving the live output on http://127.0.0.1:PORT/ (PORT 0: any free port)."""

    def __init__(self, port: int, host: str = "127.0.0.1", quality: int = 85, max_clients: int = 8,
                 timeout_s: float = 10.0) -> None:
        if not 0 <= port <= 65535:
            raise SinkError(f"--sink http:PORT needs a port 0-65535, got {port}")
        self._state = _State(quality)
        try:
            self._server = _BoundedServer((host, port), _handler(self._state, timeout_s), max_clients)
        except OSError as exc:
            raise SinkError(f"--sink http:{port}: cannot listen on {host}:{port} ({exc.strerror or exc})") from exc
        self.port = int(self._server.server_address[1])
        self.url = f"http://{host}:{self.port}/"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-sink", daemon=True)
        self._thread.start()
        log.info("preview at %s", self.url)

    def write(self, image: Image, ts_us: int) -> None:
        with self._state.cond:
            self._state.image = image.copy()
            self._state.seq += 1
            self._state.cond.notify_all()

    def update_stats(self, stats: dict[str, Any]) -> None:
        with self._state.cond:
            self._state.stats = json_safe(stats)

    def close(self) -> None:
        with self._state.cond:
            self._state.closed = True
            self._state.cond.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=2.0)
