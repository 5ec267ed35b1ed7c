"""Piece bytes from parents: a lean HTTP/1.1 client for one kind of request.

A parent answers `GET /download/...` with `Range` by sendfile; the child reads the
body with `recv_into` straight into its 1 MiB buffer. urllib3's `readinto` reads into
a new bytes object and copies it over, which cost a third of the child's speed here
(see docs/design-notes.md). Connections are kept alive per thread and per parent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from damselfly.errors import SourceError
from damselfly.source.http import Stopped

Sink = Callable[[memoryview], None]
_MAX_HEADER = 16 * 1024


class PieceClient:
    def __init__(self, *, connect_timeout: float = 3.0, read_timeout: float = 15.0) -> None:
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.stopping = threading.Event()
        self._local = threading.local()
        self._lock = threading.Lock()
        self._all: set[socket.socket] = set()

    def stop(self) -> None:
        """Abort every read in flight (from any thread); later calls raise Stopped."""
        self.stopping.set()
        with self._lock:
            sockets = list(self._all)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def reset(self) -> None:
        self.stopping.clear()

    def close(self) -> None:
        with self._lock:
            sockets, self._all = list(self._all), set()
        for sock in sockets:
            sock.close()

    def _connection(self, host: str, port: int, url: str) -> socket.socket:
        conns: dict[tuple[str, int], socket.socket] = self._local.__dict__.setdefault("conns", {})
        sock = conns.get((host, port))
        if sock is None:
            try:
                sock = socket.create_connection((host, port), timeout=self.connect_timeout)
            except OSError as exc:
                raise SourceError(
                    f"cannot connect to parent for {url}: {exc}", url=url, unreachable=True
                ) from exc
            sock.settimeout(self.read_timeout)
            conns[(host, port)] = sock
            with self._lock:
                self._all.add(sock)
        return sock

    def _drop(self, host: str, port: int) -> None:
        conns = self._local.__dict__.get("conns", {})
        sock = conns.pop((host, port), None)
        if sock is not None:
            with self._lock:
                self._all.discard(sock)
            sock.close()

    def read_range(
        self,
        url: str,
        headers: Mapping[str, str],
        offset: int,
        length: int,
        sink: Sink,
        buffer: bytearray,
    ) -> None:
        if self.stopping.is_set():
            raise Stopped(url)
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        request = (
            f"GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Range: bytes={offset}-{offset + length - 1}\r\n{extra}\r\n"
        ).encode()
        sock = self._connection(host, port, url)
        keep = False
        try:
            sock.sendall(request)
            status, fields, body = self._read_head(sock, url)
            if status != 206:
                raise SourceError(
                    f"parent answered {status} for {url}",
                    url=url,
                    status=status,
                    retryable=status >= 500,
                )
            expected = int(fields.get("content-length", "-1"))
            if expected != length or not fields.get("content-range", "").startswith(
                f"bytes {offset}-"
            ):
                raise SourceError(f"parent sent the wrong range for {url}", url=url)
            if len(body) > length:
                raise SourceError(f"parent sent more than the range for {url}", url=url)
            view = memoryview(buffer)
            got = len(body)
            if body:
                view[:got] = body
                sink(view[:got])
            while got < length:
                n = sock.recv_into(view[: min(len(view), length - got)])
                if not n:
                    raise SourceError(
                        f"parent closed the connection after {got} of {length} bytes of {url}",
                        url=url,
                        retryable=True,
                    )
                sink(view[:n])
                got += n
            keep = fields.get("connection", "").lower() != "close"
        except OSError as exc:
            if self.stopping.is_set():
                raise Stopped(url) from exc
            if isinstance(exc, ConnectionError | TimeoutError | socket.timeout):
                raise SourceError(
                    f"connection to parent broke for {url}: {exc}", url=url, retryable=True
                ) from exc
            raise  # a local write error from the sink (disk full)
        finally:
            if not keep:
                self._drop(host, port)
        if self.stopping.is_set():
            raise Stopped(url)

    @staticmethod
    def _read_head(sock: socket.socket, url: str) -> tuple[int, dict[str, str], bytes]:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(8192)
            if not chunk:
                raise ConnectionResetError("closed before the response head")
            data += chunk
            if len(data) > _MAX_HEADER:
                raise SourceError(f"parent sent an oversized response head for {url}", url=url)
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        try:
            status = int(lines[0].split(" ", 2)[1])
        except (IndexError, ValueError):
            raise SourceError(f"parent sent a malformed response for {url}", url=url) from None
        fields = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            fields[name.strip().lower()] = value.strip()
        return status, fields, body
