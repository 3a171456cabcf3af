"""No network in tests: every URL but file:// and 127.0.0.1 fails the test."""

from __future__ import annotations

import contextlib
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """No proxies, no env mirror; ``urllib.request.urlopen`` refuses any other address."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("BABELIR_DATA_MIRROR", raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    real = urllib.request.urlopen

    def guarded(request: Any, *args: Any, **kwargs: Any) -> Any:
        url = request.full_url if isinstance(request, urllib.request.Request) else request
        parts = urllib.parse.urlsplit(url)
        assert parts.scheme == "file" or parts.hostname == "127.0.0.1", url
        return real(request, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", guarded)


@contextlib.contextmanager
def local_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Run ``handler`` on a random port of 127.0.0.1 (quietly); yield its base URL."""

    class Quiet(handler):  # type: ignore[misc, valid-type]
        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    httpd.daemon_threads = True  # a dripping response must not hold up shutdown
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def send_range(handler: BaseHTTPRequestHandler, data: bytes) -> bytes:
    """Answer ``handler``'s GET for ``data`` honouring ``Range: bytes=N-`` (206 with its
    Content-Range, else 200); returns the body to write (416 sent: empty)."""
    rng = handler.headers.get("Range")
    start = int(rng.removeprefix("bytes=").rstrip("-")) if rng else 0
    if rng and start >= len(data):
        handler.send_error(416)
        return b""
    handler.send_response(206 if rng else 200)
    if rng:
        handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
    handler.send_header("Content-Length", str(len(data) - start))
    handler.end_headers()
    return data[start:]
