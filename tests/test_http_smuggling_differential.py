"""Request smuggling through message framing, tried on both HTTP servers with raw bytes:
Content-Length and Transfer-Encoding conflicts, malformed lengths, transfer-coding variants,
obs-fold, bare CR, bare LF and NUL. Each case names the RFC 9110/9112 rule that judges it; a
request planted where only a misreading of the framing finds it (`/SMUGGLED`) must never be
served, and a normal request after the case must get exactly one answer."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from http_differential_support import (
    HIDDEN,
    KINDS,
    Case,
    EchoServer,
    answer,
    case,
    check,
    chunked,
    echo_server,
    msg,
    params,
    refuse,
)

pytestmark = pytest.mark.timeout(30)

BODY = chunked(b"hello") + HIDDEN
"""A chunked "hello" and then a request: hidden when the chunked coding frames the body."""
CLOSE_AFTER = "the server MUST close the connection after responding"


def _post(fields: bytes, body: bytes = BODY, version: bytes = b"HTTP/1.1") -> bytes:
    return msg(b"POST /a " + version + b"\r\nHost: t\r\n" + fields, body)


def _length_case(id: str, value: bytes, says: str = "an invalid Content-Length") -> Case:
    return case(
        id,
        "9112 6.3 (5), 9110 8.6",
        f"{says}: the server MUST answer 400 and close",
        _post(b"Content-Length: " + value, b"hello" + HIDDEN),
        expect=refuse(400),
    )


CL_TE_ALLOWED = [*refuse(400), answer(200, close=True, served=["POST /a 5"])]

CL_TE = [
    case(
        "cl-then-te",
        "9112 6.1, 6.3 (3)",
        f"Content-Length and Transfer-Encoding: 400, or the chunked body alone; {CLOSE_AFTER}",
        _post(b"Content-Length: {n}\r\nTransfer-Encoding: chunked"),
        expect=CL_TE_ALLOWED,
    ),
    case(
        "te-then-cl",
        "9112 6.1, 6.3 (3)",
        f"Transfer-Encoding before Content-Length: 400, or chunked alone; {CLOSE_AFTER}",
        _post(b"Transfer-Encoding: chunked\r\nContent-Length: {n}"),
        expect=CL_TE_ALLOWED,
    ),
    case(
        "cl-short-te",
        "9112 6.1, 6.3 (3)",
        f"a Content-Length shorter than the chunked body: TE overrides; {CLOSE_AFTER}",
        _post(b"Content-Length: 4\r\nTransfer-Encoding: chunked"),
        expect=CL_TE_ALLOWED,
    ),
    case(
        "cl-zero-te",
        "9112 6.1, 6.3 (3)",
        f"Content-Length: 0 with a chunked body: TE overrides; {CLOSE_AFTER}",
        _post(b"Content-Length: 0\r\nTransfer-Encoding: chunked"),
        expect=CL_TE_ALLOWED,
    ),
    case(
        "te-http10",
        "9112 6.1",
        "Transfer-Encoding in an HTTP/1.0 request: the framing is faulty, close after it",
        _post(b"Connection: keep-alive\r\nTransfer-Encoding: chunked", version=b"HTTP/1.0"),
        expect=CL_TE_ALLOWED,
        tornado="keeps the connection open, so the bytes after the body are served",
    ),
    case(
        "te-cl-http10",
        "9112 6.1",
        "Transfer-Encoding and Content-Length in HTTP/1.0: faulty framing, close after it",
        _post(
            b"Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: {n}",
            version=b"HTTP/1.0",
        ),
        expect=[*refuse(400), answer(200, close=True)],
    ),
    case(
        "two-different-lengths",
        "9110 8.6, 9112 6.3 (5)",
        "two Content-Length lines that differ: 400 and close",
        _post(b"Content-Length: 5\r\nContent-Length: {n}", b"hello" + HIDDEN),
        expect=refuse(400),
    ),
    case(
        "two-different-lengths-reversed",
        "9110 8.6, 9112 6.3 (5)",
        "two Content-Length lines that differ, the longer first: 400 and close",
        _post(b"Content-Length: {n}\r\nContent-Length: 5", b"hello" + HIDDEN),
        expect=refuse(400),
    ),
    case(
        "length-list-different",
        "9110 8.6, 9112 6.3 (5)",
        "a Content-Length list of different values: 400 and close",
        _post(b"Content-Length: 5, {n}", b"hello" + HIDDEN),
        expect=refuse(400),
    ),
    case(
        "two-equal-lengths",
        "9110 8.6",
        "two equal Content-Length lines: reject, or use the one value",
        _post(b"Content-Length: 5\r\nContent-Length: 5", b"hello"),
        expect=[*refuse(400), answer(200, served=["POST /a 5"])],
    ),
    case(
        "length-list-equal",
        "9110 8.6",
        "a Content-Length list of equal values: reject, or use the one value",
        _post(b"Content-Length: 5, 5", b"hello"),
        expect=[*refuse(400), answer(200, served=["POST /a 5"])],
    ),
    _length_case("length-plus-sign", b"+5", "Content-Length is 1*DIGIT, no sign"),
    _length_case("length-negative", b"-5", "a negative Content-Length"),
    _length_case("length-hex", b"0x5", "a hexadecimal Content-Length"),
    _length_case("length-decimal-point", b"5.0", "a fractional Content-Length"),
    _length_case("length-inner-space", b"5 5", "a Content-Length with inner whitespace"),
    _length_case("length-underscore", b"0_5", "a Content-Length with an underscore"),
    _length_case("length-empty", b"", "an empty Content-Length"),
    _length_case("length-unicode-digit", "\u0665".encode(), "a non-ASCII digit"),
    case(
        "length-overflow",
        "9112 6.3 (5), 9110 15.5.14",
        "a Content-Length past 64 bits: 400 (or 413), and close",
        _post(b"Content-Length: 184467440737095516165", b"hello" + HIDDEN),
        expect=refuse(400, 413),
    ),
    case(
        "length-leading-zeros",
        "9110 8.6",
        "Content-Length is 1*DIGIT: leading zeros are a valid length",
        _post(b"Content-Length: 005", b"hello"),
        expect=answer(200, served=["POST /a 5"]),
    ),
    case(
        "length-ows",
        "9110 5.5",
        "whitespace around a field value is not part of it",
        _post(b"Content-Length: \t 5 \t", b"hello"),
        expect=answer(200, served=["POST /a 5"]),
    ),
    case(
        "length-space-before-colon",
        "9112 5.1",
        "whitespace between a field name and the colon: the server MUST answer 400",
        _post(b"Content-Length : 5", b"hello" + HIDDEN),
        expect=refuse(400),
    ),
]

TE_REFUSED = refuse(400, 501)

TE = [
    case(
        "te-chunked-identity",
        "9112 6.3 (4)",
        "chunked not the final coding: the server MUST answer 400 and close",
        _post(b"Transfer-Encoding: chunked, identity"),
        expect=TE_REFUSED,
    ),
    case(
        "te-identity-chunked",
        "9112 6.1, 9110 10.1.4",
        "an unknown coding before chunked: 501 (SHOULD), or 400",
        _post(b"Transfer-Encoding: identity, chunked", chunked(HIDDEN)),
        expect=refuse(400, 501, close=None),
    ),
    case(
        "te-xchunked",
        "9112 6.3 (4)",
        "a coding named xchunked is not chunked: 400 (or 501) and close",
        _post(b"Transfer-Encoding: xchunked\r\nContent-Length: {n}"),
        expect=TE_REFUSED,
    ),
    case(
        "te-chunked-twice",
        "9112 7",
        "chunked MUST NOT be applied twice: the body is not framed as sent",
        _post(b"Transfer-Encoding: chunked, chunked"),
        expect=TE_REFUSED,
    ),
    case(
        "te-two-fields",
        "9112 7, 9110 5.3",
        "two Transfer-Encoding lines combine into chunked, chunked",
        _post(b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked"),
        expect=TE_REFUSED,
    ),
    case(
        "te-uppercase",
        "9112 7",
        "transfer-coding names are case-insensitive: CHUNKED is chunked",
        _post(b"Transfer-Encoding: CHUNKED", chunked(HIDDEN)),
        expect=answer(200, served=[f"POST /a {len(HIDDEN)}"]),
    ),
    case(
        "te-mixed-case",
        "9112 7",
        "transfer-coding names are case-insensitive: cHuNkEd is chunked",
        _post(b"Transfer-Encoding: cHuNkEd", chunked(HIDDEN)),
        expect=answer(200, served=[f"POST /a {len(HIDDEN)}"]),
    ),
    case(
        "te-tab-before",
        "9112 5.1, 9110 5.6.3",
        "OWS (a tab) before the value is not part of it",
        _post(b"Transfer-Encoding:\tchunked", chunked(HIDDEN)),
        expect=answer(200, served=[f"POST /a {len(HIDDEN)}"]),
    ),
    case(
        "te-tab-after",
        "9112 5.1, 9110 5.6.3",
        "OWS (a tab) after the value is not part of it: chunked",
        _post(b"Transfer-Encoding: chunked\t", chunked(HIDDEN)),
        expect=answer(200, served=[f"POST /a {len(HIDDEN)}"]),
    ),
    case(
        "te-empty-list-element",
        "9110 5.6.1",
        "a recipient MUST parse and ignore empty list elements: ', chunked' is chunked",
        _post(b"Transfer-Encoding: , chunked", chunked(HIDDEN)),
        expect=answer(200, served=[f"POST /a {len(HIDDEN)}"]),
        tornado="compares the whole value with 'chunked' (answers 400)",
    ),
    case(
        "te-space-before-colon",
        "9112 5.1",
        "whitespace between a field name and the colon: the server MUST answer 400",
        _post(b"Transfer-Encoding : chunked"),
        expect=refuse(400),
    ),
    case(
        "te-vertical-tab",
        "9110 5.5, 9112 6.3 (4)",
        "a vertical tab is not whitespace: the coding is not chunked, 400 and close",
        _post(b"Transfer-Encoding: \x0bchunked\r\nContent-Length: {n}"),
        expect=TE_REFUSED,
    ),
    case(
        "te-gzip-chunked",
        "9112 6.1, 9110 10.1.4",
        "a coding the server does not decode: 501 (SHOULD), or 400",
        _post(b"Transfer-Encoding: gzip, chunked", chunked(HIDDEN)),
        expect=refuse(400, 501, close=None),
    ),
]

FOLDS = [
    case(
        "fold-te-value",
        "9112 5.2, 6.3 (3)",
        "obs-fold: 400, or unfolded (then TE and CL: chunked alone, close after)",
        _post(b"Content-Length: {n}\r\nTransfer-Encoding:\r\n chunked"),
        expect=CL_TE_ALLOWED,
    ),
    case(
        "fold-length-value",
        "9112 5.2",
        "obs-fold in Content-Length: 400, or unfolded to 5",
        _post(b"Content-Length:\r\n 5", b"hello"),
        expect=[*refuse(400), answer(200, served=["POST /a 5"])],
    ),
    case(
        "fold-hides-te",
        "9112 5.2",
        "a folded line is part of the value above it: no Transfer-Encoding, CL frames",
        _post(b"Content-Length: {n}\r\nX-A: a\r\n Transfer-Encoding: chunked"),
        expect=[*refuse(400), answer(200, served=[f"POST /a {len(BODY)}"])],
    ),
    case(
        "fold-tab-hides-te",
        "9112 5.2",
        "obs-fold with a tab: part of the value above, not a field of its own",
        _post(b"Content-Length: {n}\r\nX-A: a\r\n\tTransfer-Encoding: chunked"),
        expect=[*refuse(400), answer(200, served=[f"POST /a {len(BODY)}"])],
    ),
    case(
        "fold-first-line",
        "9112 2.2, 5.2",
        "whitespace before the first field line: 400, or that line is ignored",
        _post(b" Transfer-Encoding: chunked\r\nContent-Length: {n}"),
        expect=[*refuse(400), answer(200, served=[f"POST /a {len(BODY)}"])],
    ),
]

CONTROLS = [
    case(
        "bare-cr-hides-te",
        "9112 2.2",
        "a bare CR is invalid or read as SP: never a line end",
        _post(b"Content-Length: {n}\r\nX-A: a\rTransfer-Encoding: chunked"),
        expect=[*refuse(400), answer(200, served=[f"POST /a {len(BODY)}"])],
    ),
    case(
        "bare-cr-ends-request-line",
        "9112 2.2, 3",
        "a bare CR is not a line end: the request line is invalid",
        b"GET /a HTTP/1.1\rHost: t\r\n\r\n" + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "bare-cr-ends-value",
        "9112 2.2",
        "a bare CR at the end of a value: 400, or read as SP",
        b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\r\r\n\r\n",
        expect=[*refuse(400), answer(200, served=["GET /a 0"])],
    ),
    case(
        "bare-lf-lines",
        "9112 2.2",
        "a recipient MAY take a bare LF as a line end (or refuse it)",
        b"GET /a HTTP/1.1\nHost: t\n\n",
        expect=[answer(200, served=["GET /a 0"]), *refuse(400)],
    ),
    case(
        "bare-lf-splits-value",
        "9112 2.2, 6.3 (3)",
        "a bare LF taken as a line end makes a Transfer-Encoding line: TE and CL rules",
        _post(b"Content-Length: {n}\r\nX-A: a\nTransfer-Encoding: chunked"),
        expect=CL_TE_ALLOWED,
    ),
    case(
        "bare-lf-empty-line",
        "9112 2.2",
        "CRLF then a bare LF ends the field section (or is refused)",
        b"GET /a HTTP/1.1\r\nHost: t\r\n\n",
        expect=[answer(200, served=["GET /a 0"]), *refuse(400)],
    ),
    case(
        "nul-in-value",
        "9110 5.5",
        "NUL in a field value: reject, or replace it with SP",
        b"GET /a HTTP/1.1\r\nHost: t\r\nX-A: a\x00b\r\n\r\n",
        expect=[*refuse(400), answer(200, served=["GET /a 0"])],
    ),
    case(
        "nul-in-name",
        "9110 5.1",
        "a field name is a token: NUL makes the message invalid",
        b"GET /a HTTP/1.1\r\nHost: t\r\nX-\x00A: b\r\n\r\n" + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "nul-in-target",
        "9112 3.2, 3",
        "NUL in the request target: an invalid request line, 400",
        b"GET /a\x00b HTTP/1.1\r\nHost: t\r\n\r\n" + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "nul-before-request",
        "9112 2.2, 3",
        "a NUL before the method: not a request line, 400",
        b"\x00GET /a HTTP/1.1\r\nHost: t\r\n\r\n" + HIDDEN,
        expect=refuse(400),
    ),
    case(
        "nul-in-length",
        "9112 6.3 (5)",
        "NUL inside Content-Length: invalid, 400 and close",
        _post(b"Content-Length: 5\x00", b"hello" + HIDDEN),
        expect=refuse(400),
    ),
    case(
        "nul-after-chunked",
        "9112 6.3 (4)",
        "Transfer-Encoding 'chunked' followed by NUL is not chunked: 400 and close",
        _post(b"Transfer-Encoding: chunked\x00\r\nContent-Length: {n}"),
        expect=TE_REFUSED,
    ),
]

CASES = CL_TE + TE + FOLDS + CONTROLS


@pytest.fixture(scope="module", params=KINDS)
def server(request: Any, tmp_path_factory: Any) -> Iterator[EchoServer]:
    yield from echo_server(request, tmp_path_factory)


@pytest.mark.parametrize("c", params(CASES))
def test_framing_tricks_are_refused_or_read_as_the_rfc_says_and_hide_no_request(
    server: EchoServer, c: Case
) -> None:
    check(server, c)
