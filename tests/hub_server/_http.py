"""The HTTP layer: parse a request, hand it to a dispatch function, write the response.

HTTP/1.1 keep-alive, bodies by Content-Length or chunked, file bodies by sendfile, and
errors rendered the Hub's way (see _errors.py). Knows nothing about repos.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import parse_qs, urlsplit

from ._errors import HubError, unauthorized
from ._faults import Faults

_CHUNK = 1 << 20


class Request:
    """One request; the body is read lazily so uploads can stream to disk."""

    def __init__(self, method: str, target: str, headers: Message, rfile: BinaryIO) -> None:
        url = urlsplit(target)
        self.method = method
        self.path = url.path  # still percent-encoded: routes split on "/" before unquoting
        self.query = parse_qs(url.query, keep_blank_values=True)
        self.headers = headers
        self._rfile = rfile
        chunked = "chunked" in headers.get("Transfer-Encoding", "").lower()
        self._left = None if chunked else int(headers.get("Content-Length") or 0)
        self.consumed = self._left == 0

    def arg(self, name: str, default: str = "") -> str:
        """First value of a query parameter."""
        return self.query.get(name, [default])[0]

    def flag(self, name: str) -> bool:
        """Boolean query parameter as httpx writes it ("true"/"false") or "1"."""
        return self.arg(name).lower() in ("true", "1")

    def require_token(self) -> None:
        """Refuse write calls without `Authorization: Bearer <token>`, like the Hub (any token passes)."""
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized()

    def chunks(self) -> Iterator[bytes]:
        """The body, piece by piece; raises ConnectionError if the client goes away midway."""
        if self._left is None:
            yield from self._chunked()
        while self._left:
            data = self._rfile.read(min(self._left, _CHUNK))
            if not data:
                raise ConnectionError("client closed the connection before sending the whole body")
            self._left -= len(data)
            yield data
        self.consumed = True

    def _chunked(self) -> Iterator[bytes]:
        while True:
            line = self._rfile.readline()
            if not line:
                raise ConnectionError("client closed the connection before the last chunk")
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self._rfile.readline().strip():  # trailers end with an empty line
                    pass
                self._left = 0
                return
            data = self._rfile.read(size)
            if len(data) != size:
                raise ConnectionError("client closed the connection inside a chunk")
            self._rfile.readline()
            yield data

    def body(self) -> bytes:
        """The whole body."""
        return b"".join(self.chunks())

    def json(self) -> Any:
        """The body as JSON, or a 400 that says so."""
        try:
            return json.loads(self.body() or b"null")
        except ValueError as error:
            raise HubError(400, f"Request body is not valid JSON: {error}") from error


@dataclass
class Response:
    """A response: an in-memory body, or `length` bytes of `file` from `offset`."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    file: Path | None = None
    offset: int = 0
    length: int = 0


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the right Content-Type."""
    return Response(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(data).encode())


def error_response(error: HubError) -> Response:
    """The Hub's error shape: X-Error-Code / X-Error-Message headers and {"error": message}."""
    header_safe = error.message.encode("ascii", "replace").decode().replace("\n", " ")
    headers = {"X-Error-Message": header_safe, **error.headers}
    if error.code:
        headers["X-Error-Code"] = error.code
    return json_response({"error": error.message, **error.extra}, status=error.status, headers=headers)


Dispatch = Callable[[Request], Response]


class Server(ThreadingHTTPServer):
    """Threaded server that remembers open connections so that stopping it closes them.

    `dispatch` is set after binding, once the port (part of the server's URLs) is known.
    """

    daemon_threads = True
    dispatch: Dispatch

    def __init__(self, address: tuple[str, int], log: Callable[[str], None]) -> None:
        super().__init__(address, _Handler)
        self.log = log
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self.faults = Faults()

    def track(self, connection: socket.socket, *, add: bool) -> None:
        """Register or forget a client connection."""
        with self._connections_lock:
            (self._connections.add if add else self._connections.discard)(connection)

    def close_connections(self) -> None:
        """Wake keep-alive handler threads so none outlives the server."""
        with self._connections_lock:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without TCP_NODELAY, Nagle plus the
        # client's delayed ACK stalls every response by ~40 ms.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Requests are logged by _handle, with the status it chose."""

    def _handle(self) -> None:
        request = Request(self.command, self.path, self.headers, self.rfile)
        fault = self.server.faults.take(self.command, request.path)
        if fault is not None:
            self.server.log(f"{self.command} {self.path} -> injected fault {fault.kind}")
            if fault.kind == "reset":
                self._reset()
                return
            if fault.kind == "slow":
                time.sleep(fault.delay_s)
            elif fault.kind != "truncate":
                self.close_connection = True  # the body may be unread
                self._send(error_response(HubError(int(fault.kind), f"injected fault {fault.kind}")))
                return
        try:
            response = self.server.dispatch(request)
        except ConnectionError as error:  # the client went away (killed mid-upload): nobody to answer
            self.server.log(f"{self.command} {self.path} -> dropped: {error}")
            self.close_connection = True
            return
        except HubError as error:
            response = error_response(error)
        except Exception as error:  # a server bug: say so loudly, in the response and the log
            self.server.log(traceback.format_exc())
            response = error_response(HubError(500, f"test server bug: {error!r}"))
        self.server.log(f"{self.command} {self.path} -> {response.status}")
        if not request.consumed:  # unread body bytes would be parsed as the next request
            self.close_connection = True
        try:
            self._send(response, truncate=fault is not None and fault.kind == "truncate")
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0), as a crashed proxy would."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _send(self, response: Response, *, truncate: bool = False) -> None:
        """Write the response; `truncate` sends half the promised body, then closes the connection."""
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        length = response.length if response.file is not None else len(response.body)
        self.send_header("Content-Length", str(length))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command == "HEAD":
            return
        if truncate:
            length //= 2
            self.close_connection = True
        if response.file is None:
            self.wfile.write(response.body[:length])
        elif length:
            with open(response.file, "rb") as f:
                self.connection.sendfile(f, response.offset, length)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = _handle
