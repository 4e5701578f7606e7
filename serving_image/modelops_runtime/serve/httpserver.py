"""uvicorn, configured with the server's limits: one place builds its config (the command and the tests).

uvicorn's httptools protocol has no limit on the size of request headers (64 MB of headers were
accepted; httptools buffers a header line until it ends, so one endless line grows without bound)
and no timeout for a client that connects and sends a request slowly or never finishes it (its
``timeout_keep_alive`` only applies between requests). :class:`LimitedHttpToolsProtocol`
adds both, in the parser callbacks, before the app sees the request:

* request line plus headers larger than ``max_header_bytes`` → ``431 Request Header Fields Too
  Large`` and the connection is closed. Counted twice, and the larger count decides: the complete
  URL and header lines the parser reports, and the raw bytes of every chunk received wholly while
  the parser was still reading headers (so a header line that never ends is refused once it passes
  the limit, not when it ends; a chunk is at most about 256 KiB, asyncio's and uvloop's read size);
* a request not received completely within ``request_timeout_seconds`` of its first byte (or of
  the connection being opened) → ``408 Request Timeout`` and the connection is closed. An infer
  request whose body was cut off this way reaches the app as a client disconnect;
* a client that reads nothing of an answer for ``request_timeout_seconds`` while the server waits to
  write more (the transport paused writing) is disconnected: otherwise a client that never reads
  holds its connection, and the answer waiting for it, forever.

These answers never reach the app, so they are not infer requests in ``ml_prediction_errors_total``.

One fix of uvicorn's protocol (0.55): when a connection is lost it marks only the last *parsed*
request as disconnected, so with pipelined requests the one being answered, waiting for a client
that stopped reading, wrote to the closed transport once the wait ended ("Exception in ASGI
application", RuntimeError). :meth:`LimitedHttpToolsProtocol.connection_lost` marks the running and
the queued requests too.
With the h11 protocol (used when httptools is missing), uvicorn's own
``h11_max_incomplete_event_size`` bounds the headers and there is no request timeout.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httptools
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

from .limits import ServeLimits


class _Refused(Exception):
    """Raised in a parser callback after the request was refused, to stop parsing."""


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    """Cancel ``timer`` if set."""
    if timer is not None:
        timer.cancel()


def _plain_response(status: bytes, message: str) -> bytes:
    body = message.encode("ascii")
    return b"".join(
        [
            b"HTTP/1.1 " + status + b"\r\n",
            b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a header-size limit and a whole-request timeout.

    The limits come from ``config.modelops_limits`` (a :class:`~.limits.ServeLimits`, set by
    :func:`uvicorn_config`).
    """

    def __init__(self, config: uvicorn.Config, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        limits: ServeLimits = getattr(config, "modelops_limits", None) or ServeLimits()
        self._max_header_bytes = limits.max_header_bytes
        self._request_timeout = limits.request_timeout_seconds
        self._header_bytes = 0  # URL and complete header lines of the current request
        self._raw_header_bytes = 0  # bytes of chunks received wholly within its headers
        self._in_headers = False  # between on_message_begin and on_headers_complete
        self._phase_changes = 0  # on_message_begin/on_headers_complete calls, to tell whole chunks
        self._request_timer: asyncio.TimerHandle | None = None
        self._refused = False
        self._running: RequestResponseCycle | None = None
        self._write_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_request_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_request_timer()
        self._cancel_write_timer()
        for cycle in [self._running, *(queued for queued, _ in self.pipeline)]:
            if cycle is not None and not cycle.response_complete:
                cycle.disconnected = True  # its app task, waiting to write, ends quietly (see the module doc)
                cycle.message_event.set()
        super().connection_lost(exc)

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        self._running = cycle  # the request being answered (a connection answers one at a time)
        super()._start_asgi_task(cycle, app)

    def data_received(self, data: bytes) -> None:
        # uvicorn's, except that a callback refusing the request (it already answered) stops the parser quietly.
        if self._refused:
            return
        self._unset_keepalive_if_required()
        in_headers, changes = self._in_headers, self._phase_changes
        try:
            self.parser.feed_data(data)
            if in_headers and self._in_headers and changes == self._phase_changes:
                self._raw_header_bytes += len(data)  # the whole chunk is header bytes still unparsed
                if self._headers_too_large():
                    self._refuse_headers()
        except httptools.HttpParserError:
            if self._refused:
                return
            msg = "Invalid HTTP request received."
            self.logger.warning(msg)
            self.send_400_response(msg)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = self._raw_header_bytes = 0
        self._in_headers = True
        self._phase_changes += 1
        self._arm_request_timer()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._phase_changes += 1
        super().on_headers_complete()

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value) + 4)
        super().on_header(name, value)

    def on_message_complete(self) -> None:
        self._cancel_request_timer()
        super().on_message_complete()

    def pause_writing(self) -> None:
        super().pause_writing()
        self._cancel_write_timer()
        self._write_timer = self.loop.call_later(self._request_timeout, self._write_stalled)

    def resume_writing(self) -> None:
        self._cancel_write_timer()
        super().resume_writing()

    # ------------------------------------------------------------------------------ limits

    def _write_stalled(self) -> None:
        self._write_timer = None
        self.logger.warning(
            "disconnected %s: it read nothing for %g s (request_timeout_seconds)", self.client, self._request_timeout
        )
        self.transport.abort()  # close() would wait for the buffered answer to be read

    def _count_header_bytes(self, n: int) -> None:
        self._header_bytes += n
        if self._headers_too_large():
            self._refuse_headers()
            raise _Refused  # stops the parser (see data_received)

    def _headers_too_large(self) -> bool:
        return max(self._header_bytes, self._raw_header_bytes) > self._max_header_bytes

    def _refuse_headers(self) -> None:
        self._refuse(
            b"431 Request Header Fields Too Large",
            f"the request line and headers exceed {self._max_header_bytes} bytes (max_header_bytes)",
        )

    def _arm_request_timer(self) -> None:
        self._cancel_request_timer()
        self._request_timer = self.loop.call_later(self._request_timeout, self._request_timed_out)

    def _cancel_request_timer(self) -> None:
        _cancel(self._request_timer)
        self._request_timer = None

    def _cancel_write_timer(self) -> None:
        _cancel(self._write_timer)
        self._write_timer = None

    def _request_timed_out(self) -> None:
        self._request_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete and self.cycle.response_started:
            self.transport.close()  # the app is already answering: nothing else can be said
            return
        self._refuse(
            b"408 Request Timeout",
            f"the request was not received completely within {self._request_timeout:g} s (request_timeout_seconds)",
        )

    def _refuse(self, status: bytes, message: str) -> None:
        """Answer ``status`` and close the connection; the parser ignores the rest of the data."""
        self._refused = True
        self._cancel_request_timer()
        self.logger.warning("refused a request from %s: %s", self.client, message)
        if self.cycle is not None and not self.cycle.response_complete:
            # An app task waiting for the body sees a client disconnect; it must not answer too.
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        self.transport.write(_plain_response(status, message))
        self.transport.close()


def uvicorn_config(app: Any, limits: ServeLimits, **kwargs: Any) -> uvicorn.Config:
    """The uvicorn config of the model server: one worker, lifespan on, the protocol and settings of ``limits``.

    Args:
        app: the ASGI app.
        limits: the server's limits.
        kwargs: more :class:`uvicorn.Config` arguments (host, port, log settings, ...).
    """
    config = uvicorn.Config(
        app,
        http=LimitedHttpToolsProtocol,
        workers=1,
        lifespan="on",
        timeout_keep_alive=limits.keep_alive_seconds,
        h11_max_incomplete_event_size=limits.max_header_bytes,
        **kwargs,
    )
    config.modelops_limits = limits  # type: ignore[attr-defined]
    return config
