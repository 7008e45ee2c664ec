"""Where a request ends in the bytes a client sent: httptools reports requests, not their
positions, so the bytes are parsed again (prefixes of a packet, by a parser that stops at the
request it counts to). For detach() (leftover.py) and for a request parsed again behind
complete ones in a packet (parsing.py)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

from tornado.httputil import HTTPHeaders, RequestStartLine

from .refusal import BadRequest


class Parser(Protocol):
    """What this module uses of a `RequestParser`."""

    in_message: bool

    @property
    def holding(self) -> bool: ...

    def feed(self, data: bytes) -> int | None: ...


NewParser = Callable[["_Counter"], Parser]


class _Enough(Exception):
    """Raised by `_Counter` to stop a parse at the request it counts to."""


class _Counter:
    """A `ParserSink` that counts header blocks (`with_body` false) or ends of requests,
    and stops the parse once it has counted `target`: bytes after that request are never
    parsed, so a request refused behind it is never parsed again from here."""

    def __init__(self, target: int, with_body: bool) -> None:
        self.target = target
        self.with_body = with_body
        self.count = 0

    def request_parsed(self, start_line: RequestStartLine, headers: HTTPHeaders) -> None:
        if not self.with_body:
            self._counted()

    def body_received(self, data: bytes) -> None:
        pass

    def request_complete(self) -> None:
        if self.with_body:
            self._counted()

    def request_withdrawn(self) -> None:
        self.count -= not self.with_body

    def chunk_announced(self, left: int) -> None:
        pass

    def _counted(self) -> None:
        self.count += 1
        if self.count >= self.target:
            raise _Enough


def request_end(
    packets: Sequence[bytes], number: int, with_body: bool, new_parser: NewParser
) -> int | None:
    """Where request `number` (counted from 1) of `packets` (a client's bytes as they
        arrived, from the first byte of a request on) ends: after its body, or with `with_body`
        false after its header block. None if it does not end in them.

        httptools does not say where in a packet a request ends, so the packets are parsed
        again as they arrived: once to find the packet it ends in, then prefixes of that packet
        (doubling, then halving: a request that ends early in a large packet costs a few short
        parses), each time from the last packet that began between requests. `new_parser`
    makes a `RequestParser` for a sink (parsing.py, which uses this module)."""
    counter = _Counter(number, with_body)
    parser = new_parser(counter)
    start = counted = offset = 0  # a packet that began between requests, count before it
    for index, packet in enumerate(packets):
        if not parser.in_message and not parser.holding:
            start, counted = index, counter.count
        stopped = _feed(parser, packet)
        if counter.count >= number:
            before = packets[start:index]
            replay = partial(_replay, before, packet, number - counted, with_body, new_parser)
            return offset + _shortest(replay, len(packet))
        if stopped:
            return None
        offset += len(packet)
    return None


def _feed(parser: Parser, data: bytes) -> bool:
    """Parse `data`; True if parsing stops there (an upgrade, bytes refused, or the
    request counted to)."""
    try:
        return parser.feed(data) is not None
    except (BadRequest, _Enough):
        return True


def _replay(
    before: Sequence[bytes],
    last: bytes,
    wanted: int,
    with_body: bool,
    new_parser: NewParser,
    size: int,
) -> bool:
    """Whether a fresh parser counts `wanted` requests in `before` then `last[:size]`."""
    counter = _Counter(wanted, with_body)
    parser = new_parser(counter)
    for packet in [*before, last[:size]]:
        if _feed(parser, packet):
            break
    return counter.count >= wanted


def _shortest(reaches: Callable[[int], bool], size: int) -> int:
    """The least `n` in 1..`size` with `reaches(n)`, for a `reaches` false at 0, true at
    `size`, and monotonic."""
    low, high = 0, 64
    while high < size and not reaches(high):
        low, high = high, high * 2
    high = min(high, size)
    while high - low > 1:
        middle = (low + high) // 2
        if reaches(middle):
            high = middle
        else:
            low = middle
    return high
