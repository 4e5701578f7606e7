"""The model server's request limits, and reading a request body within them.

:class:`ServeLimits` is read from ``MODELOPS_SERVE_*`` environment variables (the ``serve``
command's flags override them); see docs/serving.md, "Limits". Where they are enforced:

* ``max_header_bytes`` and ``request_timeout_seconds``: by the HTTP protocol
  (:mod:`.httpserver`), before the app sees the request (431 and 408);
* ``keep_alive_seconds``: uvicorn's ``timeout_keep_alive`` (idle connections are closed);
* ``max_body_bytes``: by :func:`read_body` on the raw body (the Content-Length header is checked
  before anything is read) and again on the decompressed body (413);
* ``max_rows``: after parsing, before predicting (413);
* ``max_request_id_chars``: the request id (V2 ``id`` or ``X-Request-ID``), before predicting (400).
"""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .errors import MalformedBody, TooLarge, UnsupportedMediaType

MIB = 1024 * 1024
#: Requests with more rows than this are predicted in a worker thread (:mod:`.app` says why).
INLINE_MAX_ROWS = 32
#: Request bodies larger than this (bytes) are parsed and checked in a worker thread: 32 MiB of
#: small JSON elements took the event loop ~2.7 s, during which health probes waited (:mod:`.app`).
INLINE_PARSE_MAX_BYTES = MIB
#: Content-Encoding values accepted on request bodies (``identity`` = none).
CONTENT_ENCODINGS = ("gzip", "deflate", "identity")


class ServeLimits(BaseSettings):
    """Limits of one model server (environment: ``MODELOPS_SERVE_<FIELD>``, e.g. ``MODELOPS_SERVE_MAX_ROWS``)."""

    model_config = SettingsConfigDict(env_prefix="MODELOPS_SERVE_", frozen=True)

    max_body_bytes: int = Field(
        default=32 * MIB, gt=0, description="Largest request body in bytes, compressed and decompressed (413)."
    )
    max_rows: int = Field(default=100_000, gt=0, description="Most rows in one infer request (413).")
    max_header_bytes: int = Field(
        default=64 * 1024, gt=0, description="Largest request line plus headers in bytes (431)."
    )
    request_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        description=(
            "Time a client has to send a whole request, from its first byte or from connecting (408), and"
            " to read what the server waits to write (then it is disconnected)."
        ),
    )
    keep_alive_seconds: int = Field(default=5, gt=0, description="Idle keep-alive connections are closed after this.")
    max_request_id_chars: int = Field(default=256, gt=0, description="Longest request id (400).")


async def read_body(
    stream: AsyncIterator[bytes], content_length: str | None, content_encoding: str | None, limit: int
) -> bytes:
    """Read a request body of at most ``limit`` bytes, then undo its Content-Encoding (gzip/deflate).

    Args:
        stream: the body's chunks (Starlette's ``request.stream()``).
        content_length, content_encoding: the request's headers (None when absent).
        limit: ``max_body_bytes``; applies to the raw and to the decompressed body.

    Raises:
        TooLarge: Content-Length, the bytes received, or the decompressed size exceed ``limit``.
        UnsupportedMediaType: a Content-Encoding other than gzip, deflate or identity.
        MalformedBody: the compressed body is corrupt.
    """
    encoding = (content_encoding or "identity").strip().lower()
    if encoding not in CONTENT_ENCODINGS:
        raise UnsupportedMediaType(
            f"unsupported Content-Encoding {content_encoding!r}; use one of {', '.join(CONTENT_ENCODINGS)}"
        )
    length = (content_length or "").strip()
    if length.isascii() and length.isdigit() and int(length) > limit:
        raise TooLarge(f"the request body has {int(length)} bytes; the limit is {limit} (max_body_bytes)")
    chunks: list[bytes] = []
    size = 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request body exceeds the limit of {limit} bytes (max_body_bytes)")
        chunks.append(chunk)
    body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
    return body if encoding == "identity" else decompress(body, encoding, limit)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """Decode a gzip or deflate body, at most ``limit`` bytes out.

    gzip: every member, as RFC 1952 allows several one after the other (``gzip.decompress`` reads
    them too; reading only the first silently dropped the rest of the rows). deflate: one zlib stream
    as HTTP specifies, or a raw one. Bytes after the last member or stream are an error.

    Raises:
        TooLarge: the decompressed body exceeds ``limit`` (a decompression bomb stops there).
        MalformedBody: the data is not valid for the encoding, is truncated, or has trailing bytes.
    """
    if encoding == "gzip":
        out, rest = bytearray(), body
        while rest:
            member, rest = _inflate(rest, zlib.MAX_WBITS | 16, encoding, limit, limit - len(out))
            out += member
        return bytes(out)
    try:
        data, rest = _inflate(body, zlib.MAX_WBITS, encoding, limit, limit)
    except MalformedBody:
        data, rest = _inflate(body, -zlib.MAX_WBITS, encoding, limit, limit)
    if rest:
        raise MalformedBody(f"the deflate request body has {len(rest)} bytes after the end of its stream")
    return data


def _inflate(data: bytes, wbits: int, encoding: str, limit: int, budget: int) -> tuple[bytes, bytes]:
    """One gzip member or deflate stream from the start of ``data``, of at most ``budget`` bytes (what
    ``limit`` leaves after earlier members): ``(its bytes, what follows it)``."""
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(data, budget + 1)  # budget >= 0: a positive max_length (0 = unbounded)
    except zlib.error as exc:
        raise MalformedBody(f"the request body is not valid {encoding} data: {exc}") from None
    if len(out) > budget or decoder.unconsumed_tail:
        raise TooLarge(f"the decompressed request body exceeds the limit of {limit} bytes (max_body_bytes)")
    if not decoder.eof:
        raise MalformedBody(f"the {encoding} request body is truncated")
    return out, decoder.unused_data
