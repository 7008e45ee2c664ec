"""Split a byte stream into HTTP/1.1 responses, for tests that read raw bytes from a socket:

    responses, rest = parse_responses(data, methods=["HEAD", "GET"], eof=True)
    assert [r.status for r in responses] == [200, 200] and responses[1].body == b"hello"

A body is framed by chunked, Content-Length, or the close (`eof`); HEAD answers, 1xx, 204 and
304 have none; parsing stops after a 101 (the rest is another protocol's)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class RawResponse:
    status: int
    reason: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        """The field's value (several lines joined by ", "), or None."""
        values = [value for key, value in self.headers if key.lower() == name.lower()]
        return ", ".join(values) if values else None

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


def is_final(response: RawResponse) -> bool:
    """A final answer to a request: 2xx-5xx, or 101 (the last HTTP answer on it)."""
    return response.status >= 200 or response.status == 101


def _line(data: bytes, start: int) -> tuple[bytes, int] | None:
    end = data.find(b"\n", start)
    if end < 0:
        return None
    return data[start:end].removesuffix(b"\r"), end + 1


def _head(data: bytes) -> tuple[RawResponse, int] | None:
    first = _line(data, 0)
    if first is None:
        return None
    status_line, pos = first
    version, _, rest = status_line.partition(b" ")
    code, _, reason = rest.partition(b" ")
    if not version.startswith(b"HTTP/") or not code.isdigit():
        raise ValueError(f"not an HTTP response: {data[:60]!r}")
    headers = []
    while True:
        item = _line(data, pos)
        if item is None:
            return None
        line, pos = item
        if not line:
            break
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin1"), value.strip().decode("latin1")))
    return RawResponse(int(code), reason.decode("latin1"), headers, b""), pos


def _chunked(data: bytes, pos: int) -> tuple[bytes, int] | None:
    body = b""
    while True:
        item = _line(data, pos)
        if item is None:
            return None
        size_line, pos = item
        size = int(size_line.partition(b";")[0].strip(), 16)
        if size == 0:
            while True:  # trailer section
                item = _line(data, pos)
                if item is None:
                    return None
                line, pos = item
                if not line:
                    return body, pos
        if len(data) < pos + size + 2:
            return None
        body += data[pos : pos + size]
        pos += size + 2


def parse_responses(
    data: bytes, methods: Sequence[str] = (), eof: bool = False
) -> tuple[list[RawResponse], bytes]:
    """The complete responses at the start of `data` and the bytes left after them. The n-th
    final response answers `methods[n]` (HEAD: no body; default GET). A response without a
    length ends at the close (`eof`). Parsing stops after a 101: the rest is another
    protocol's. Raises ValueError on bytes that are not a response."""
    responses: list[RawResponse] = []
    while data:
        parsed = _head(data)
        if parsed is None:
            break
        response, pos = parsed
        finals = sum(1 for r in responses if is_final(r))
        method = methods[finals] if finals < len(methods) else "GET"
        encoding = (response.header("transfer-encoding") or "").lower()
        length = response.header("content-length")
        if response.status < 200 or response.status in (204, 304) or method == "HEAD":
            pass
        elif encoding.endswith("chunked"):
            body = _chunked(data, pos)
            if body is None:
                break
            response.body, pos = body
        elif length is not None:
            size = int(length.partition(",")[0])
            if len(data) < pos + size:
                break
            response.body, pos = data[pos : pos + size], pos + size
        elif eof:
            response.body, pos = data[pos:], len(data)
        else:
            break
        responses.append(response)
        data = data[pos:]
        if response.status == 101:
            break
    return responses, data
