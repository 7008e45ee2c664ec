"""HTTP/1.1 message framing (chunked coding, versions, request targets, half-closes, the
upgrade re-parse path, pipelining), raw bytes against both servers side by side: the fast
server (`--http fast`) and Tornado's (`--http tornado`, the worker's
`DrainingHTTPServer`). Each test states its RFC 9110/9112 expectation; where Tornado's
server breaks it, the test says so and expects what each server does, so a change on either
side shows up here (and in docs/fast-http-deviations.md). After each trick that leaves the
connection open, a normal request on the same connection must get exactly one answer."""

from __future__ import annotations

import asyncio

import pytest
import tornado
from framing_support import (
    CHUNKED_HELLO,
    GET,
    KINDS,
    Told,
    answered_again,
    run,
    serving_kind,
)

pytestmark = pytest.mark.timeout(20)


@KINDS
@pytest.mark.parametrize("ows", [b"\t", b" \t", b"\t "])
def test_whitespace_after_chunked_is_optional_whitespace(kind: str, ows: bytes) -> None:
    """RFC 9110 section 5.6.3: OWS is spaces and tabs; a field value excludes it (section
    5.5), so `Transfer-Encoding: chunked<TAB>` is chunked. llhttp refuses a tab there; the
    fast server parses it as Tornado does."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked"
                + ows
                + b"\r\n\r\n"
                + CHUNKED_HELLO
                + GET
            )
            assert (await raw.response())[2] == b"got:hello"
            assert (await raw.response())[2] == b"hello"
            await answered_again(raw)

    run(main)


@KINDS
@pytest.mark.parametrize("extension", [b";x", b";name=value", b';q="a b"'])
def test_chunk_extensions_are_ignored(kind: str, extension: bytes) -> None:
    """RFC 9112 section 7.1.1: a recipient MUST ignore chunk extensions it does not
    recognize. Tornado answers 400."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5"
                + extension
                + b"\r\nhello\r\n0\r\n\r\n"
            )
            if kind == "fast":
                assert (await raw.response())[2] == b"got:hello"
                await answered_again(raw)
            else:
                assert await raw.read_all() == b"HTTP/1.1 400 Bad Request\r\n\r\n"

    run(main)


@KINDS
@pytest.mark.parametrize("lines", [1, 2, 3])
def test_empty_lines_before_a_request_line_are_ignored(kind: str, lines: int) -> None:
    """RFC 9112 section 2.2: a server SHOULD ignore at least one empty line before a
    request line. The fast server ignores any number; Tornado ignores one and answers 400
    to more."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(GET + b"\r\n" * lines + GET)
            assert (await raw.response())[2] == b"hello"
            if kind == "fast" or lines == 1:
                assert (await raw.response())[2] == b"hello"
                await answered_again(raw)
            else:
                assert await raw.read_all() == b"HTTP/1.1 400 Bad Request\r\n\r\n"

    run(main)


@KINDS
def test_a_repeated_identical_content_length(kind: str) -> None:
    """RFC 9110 section 8.6: `Content-Length: 5, 5` may be refused or taken as 5. llhttp
    refuses it (400 and close); Tornado takes it."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5, 5\r\n\r\nhello")
            if kind == "fast":
                assert await raw.read_all() == b"HTTP/1.1 400 Bad Request\r\n\r\n"
            else:
                assert (await raw.response())[2] == b"got:hello"
                await answered_again(raw)

    run(main)


@KINDS
def test_a_later_http_1_minor_version_is_served_as_http_11(kind: str) -> None:
    """RFC 9110 section 2.5: a recipient SHOULD process a message of a higher minor version
    as the highest it conforms to; RFC 9112 section 9.3: a request of HTTP/1.1 "or later"
    persists. Tornado passes `HTTP/1.2` on to the application and closes as for HTTP/1.0."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(b"GET /echo HTTP/1.2\r\nHost: t\r\n\r\n")
            _, _, body = await raw.response()
            if kind == "fast":
                assert body == b"/echo|/echo|t|HTTP/1.1"
                await answered_again(raw)
            else:
                assert body == b"/echo|/echo|t|HTTP/1.2"
                assert await raw.closed()

    run(main)


@KINDS
@pytest.mark.parametrize("version", [b"HTTP/2.0", b"HTTP/0.9", b"HTTP/3.1"])
def test_another_major_version_gets_400(kind: str, version: bytes) -> None:
    """RFC 9112 section 2.3: this is an HTTP/1 server; a request line of another major
    version is refused (both answer 400 and close, as Tornado always has)."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            reply = await served.exchange(b"GET / " + version + b"\r\nHost: t\r\n\r\n" + GET)
            assert reply == b"HTTP/1.1 400 Bad Request\r\n\r\n"

    run(main)


@KINDS
@pytest.mark.parametrize("pieces", [1, 8], ids=["one-packet", "trickled"])
def test_a_request_target_over_the_header_limit_gets_414(kind: str, pieces: int) -> None:
    """RFC 9110 section 15.5.15: 414 URI Too Long for a target longer than the server will
    interpret. The fast server's limit is --max-header-size (the target alone may not
    exceed it; target and header fields together may not either: 431). Tornado's server
    reads the request line as part of the header block and answers 431."""

    async def main() -> None:
        async with serving_kind(kind, max_header_size=4096) as served:
            raw = await served.connect()
            data = b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: t\r\n\r\n"
            size = len(data) // pieces + 1
            for start in range(0, len(data), size):
                raw.send(data[start : start + size])
                await asyncio.sleep(0.01)
            reply = await raw.read_all()
            status = b"414 URI Too Long" if kind == "fast" else b"431 "
            assert reply.startswith(b"HTTP/1.1 " + status)
            assert b"\r\nConnection: close\r\n" in reply

    run(main)


@KINDS
def test_a_target_just_under_the_header_limit_is_served(kind: str) -> None:
    """The other side of the 414 limit: a target of --max-header-size minus the Host field
    is served, on both servers."""

    async def main() -> None:
        async with serving_kind(kind, max_header_size=4096) as served:
            raw = await served.connect()
            path = b"/echo" + b"a" * 3900
            raw.send(b"GET " + path + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            assert (await raw.response())[2].startswith(path + b"|")
            await answered_again(raw)

    run(main)


@KINDS
@pytest.mark.parametrize(
    ("target", "path"),
    [
        (b"http://example.com/echo/x?q=1", b"/echo/x?q=1|/echo/x|example.com"),
        (b"HTTPS://Example.com:8443/echo", b"/echo|/echo|Example.com:8443"),
    ],
)
def test_an_absolute_form_target_is_routed_by_its_path(
    kind: str, target: bytes, path: bytes
) -> None:
    """RFC 9112 section 3.2.2: a server MUST accept the absolute-form; its authority is the
    request's host (the Host field is then ignored). The fast server gives the application
    the origin-form and Host; Tornado routes the whole URI, and answers 404."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(b"GET " + target + b" HTTP/1.1\r\nHost: other\r\n\r\n")
            status, _, body = await raw.response()
            if kind == "fast":
                assert body == path + b"|HTTP/1.1"
            else:
                assert status == b"HTTP/1.1 404 Not Found"
            await answered_again(raw)

    run(main)


@pytest.mark.parametrize("target", [b"http://user@example.com/", b"http:///echo"])
def test_an_absolute_form_target_with_userinfo_or_no_host_gets_400(target: bytes) -> None:
    """RFC 9110 section 4.2.4: userinfo in an http URI is an error; section 4.2.1: one with
    an empty host MUST be rejected. (Tornado answers 404: it does not read the form.)"""

    async def main() -> None:
        async with serving_kind("fast") as served:
            reply = await served.exchange(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            assert reply == b"HTTP/1.1 400 Bad Request\r\n\r\n"

    run(main)


@pytest.mark.parametrize("kind", ["fast", "fast_uvloop", "tornado"])
def test_a_client_that_half_closes_still_gets_its_answer(kind: str) -> None:
    """A client may shut down its sending side once its request is sent (RFC 9112 section
    9.6 leaves the close to the client after the final response). TCP cannot tell that from
    a close before the server writes, so both servers tell the application
    (`on_connection_close`, which @unblock's cancel-on-disconnect needs); the fast server
    then still sends the answer of a handler that goes on, says `Connection: close` and
    closes. `request.connection.stream.closed()` is then true, as on Tornado (code that
    checks it before starting work, like @unblock's, stops). Tornado closes at once: the
    answer is lost."""

    async def main() -> None:
        Told.told.clear()
        async with serving_kind(kind.partition("_")[0]) as served:
            raw = await served.connect()
            raw.send(b"GET /told?s=0.2 HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.05)  # the handler is waiting
            raw.writer.write_eof()
            reply = await raw.read_all()
            assert Told.told == ["/told?s=0.2"]
            if kind == "tornado":
                assert reply == b""
            else:
                assert reply.startswith(b"HTTP/1.1 200 OK\r\n")
                assert b"\r\nConnection: close\r\n" in reply
                assert reply.endswith(b"\r\n\r\nanswered, stream closed")

    run(main, "uvloop" if kind == "fast_uvloop" else "asyncio")


def test_a_half_closed_connection_waits_for_its_answer_at_most_the_idle_timeout() -> None:
    """A client that is really gone holds no socket for long: past --idle-timeout with no
    answer, the half-closed connection closes (the handler was told of the close)."""

    async def main() -> None:
        Told.told.clear()
        async with serving_kind("fast", idle_connection_timeout=0.2) as served:
            raw = await served.connect()
            raw.send(b"GET /told?s=3 HTTP/1.1\r\nHost: t\r\n\r\n")
            await asyncio.sleep(0.05)
            raw.writer.write_eof()
            assert await raw.read_all() == b""
            assert Told.told == ["/told?s=3"]

    run(main)


def test_a_half_closing_client_gets_its_pipelined_answers_and_none_for_a_cut_one() -> None:
    """The requests sent in full before the half-close are answered in order; a request
    cut short by it is never answered (its application, if it started, hears of the close)."""

    async def main() -> None:
        async with serving_kind("fast") as served:
            raw = await served.connect()
            raw.send(
                b"GET /sleep?s=0.1&name=one HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /sleep?s=0&name=two HTTP/1.1\r\nHost: t\r\n\r\n"
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\ncut"
            )
            await asyncio.sleep(0.05)
            raw.writer.write_eof()
            assert (await raw.response())[2] == b"one"
            assert (await raw.response())[2] == b"two"
            assert await raw.closed()  # and nothing for the request cut short

    run(main)


@KINDS
@pytest.mark.parametrize(
    "target", [b"/echo/\xc3\xa9t\xc3\xa9", b"/echo?q=\xff", b"http://example.com/echo/\xe9"]
)
def test_bytes_over_0x7f_in_the_target_are_served_as_sent(kind: str, target: bytes) -> None:
    """RFC 9112 section 3.2 limits the target to URI characters; Tornado serves obs-text
    (0x80-0xFF) there too, passing it on decoded as latin-1, and so does the fast server
    (llhttp alone refuses it)."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(b"GET " + target + b" HTTP/1.1\r\nHost: t\r\n\r\n")
            status, _, body = await raw.response()
            if kind == "tornado" and target.startswith(b"http:"):
                assert status == b"HTTP/1.1 404 Not Found"  # absolute-form: see above
            else:
                uri = target.removeprefix(b"http://example.com").decode("latin1")
                assert body.decode("utf8").startswith(uri + "|")
            await answered_again(raw)

    run(main)


@KINDS
@pytest.mark.parametrize("byte", [b"\x00", b"\x01", b"\x7f", b"\t"])
def test_control_bytes_in_the_target_get_400(kind: str, byte: bytes) -> None:
    """RFC 9112 section 3.2: controls are no URI characters; both servers refuse them."""
    if kind == "tornado" and tornado.version_info < (6, 5):
        pytest.skip("Tornado's own server refuses controls in the target from 6.5 on")

    async def main() -> None:
        async with serving_kind(kind) as served:
            reply = await served.exchange(b"GET /a" + byte + b"b HTTP/1.1\r\nHost: t\r\n\r\n" + GET)
            assert reply == b"HTTP/1.1 400 Bad Request\r\n\r\n"

    run(main)


@KINDS
def test_an_upgrade_request_with_a_chunked_body_is_served_as_a_plain_request(kind: str) -> None:
    """RFC 9110 section 7.8: a server MAY ignore Upgrade; the request is then an ordinary
    one, body included (RFC 9112 section 6.3). Served on both, and the connection goes on."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n5\r\nhel"
            )
            await asyncio.sleep(0.05)
            raw.send(b"lo\r\n0\r\n\r\n" + GET)
            assert (await raw.response())[2] == b"got:hello"
            assert (await raw.response())[2] == b"hello"
            await answered_again(raw)

    run(main)


@KINDS
def test_a_request_parsed_again_right_after_an_upgrade_requests_chunked_body(kind: str) -> None:
    """The same in one packet, followed by a bare-LF request (RFC 9112 section 2.2): served
    on both, and the connection goes on."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + CHUNKED_HELLO
                + b"GET /echo/\xe9 HTTP/1.1\nHost: t\n\n"
            )
            assert (await raw.response())[2] == b"got:hello"
            assert (await raw.response())[2].startswith("/echo/\xe9|".encode())
            await answered_again(raw)

    run(main)


@KINDS
def test_an_upgrade_request_with_a_chunked_body_over_the_limit_is_refused(kind: str) -> None:
    """The body limit holds for the chunked body of an Upgrade request served as a plain
    one (both answer 400 and close)."""

    async def main() -> None:
        async with serving_kind(kind, max_body_size=4) as served:
            reply = await served.exchange(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n" + CHUNKED_HELLO + GET
            )
            assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert b"hello" not in reply

    run(main)


EVIL = b"GET /echo/evil HTTP/1.1\nHost: t\n\n"


@KINDS
@pytest.mark.parametrize(
    "second",
    [
        b"GET /echo/b HTTP/1.1\nHost: t\n\n",
        b"GET /echo/\xc3\xa9 HTTP/1.1\r\nHost: t\r\n\r\n",
        b"FOO /echo/b HTTP/1.1\r\nHost: t\r\n\r\n",
        b"POST /echo/b HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\t\r\n\r\n" + CHUNKED_HELLO,
    ],
    ids=["bare-lf", "obs-text-target", "unknown-method", "tab-after-chunked"],
)
def test_a_pipelined_request_is_served_as_the_same_request_alone(kind: str, second: bytes) -> None:
    """What the fast server parses again where llhttp refuses it (RFC 9112 section 2.2: a
    recipient MAY accept a bare LF; obs-text in the target and unknown methods as Tornado
    takes them; OWS after chunked, RFC 9110 section 5.6.3) is served the same behind another
    request in the same packet (pipelining, RFC 9112 section 9.3.2): the request is found
    again from the first byte after the requests before it."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(GET + second + GET)
            assert (await raw.response())[2] == b"hello"
            status, _, body = await raw.response()
            if second.startswith(b"FOO"):
                assert status == b"HTTP/1.1 405 Method Not Allowed"
            elif second.startswith(b"POST"):
                assert body == b"got:hello"
            else:
                target = second.split(b" ")[1].decode("latin1")
                assert body.decode("utf8").startswith(target + "|")
            assert (await raw.response())[2] == b"hello"
            await answered_again(raw)

    run(main)


@KINDS
def test_a_body_that_looks_like_a_request_is_never_served_as_one(kind: str) -> None:
    """RFC 9112 section 6.3: a body is exactly Content-Length bytes. A body that holds a
    bare-LF request, followed by a bare-LF request the fast server must parse again, gives
    two answers: the body's request is never served (the fast server finds where the next
    request starts by parsing again, never by searching for a request line)."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            body = EVIL + EVIL
            raw.send(
                b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: "
                + str(len(body)).encode()
                + b"\r\n\r\n"
                + body
                + b"GET /echo/b HTTP/1.1\nHost: t\n\n"
            )
            assert (await raw.response())[2] == b"got:" + body
            assert (await raw.response())[2].startswith(b"/echo/b|")
            await answered_again(raw)

    run(main)


@KINDS
def test_many_pipelined_bare_lf_requests_in_one_packet(kind: str) -> None:
    """Thirty bare-LF requests behind one another in one packet are all served; the fast
    server parses at most 32 again per packet (each nests a call), then answers 400."""

    async def main() -> None:
        async with serving_kind(kind) as served:
            raw = await served.connect()
            raw.send(GET + b"GET / HTTP/1.1\nHost: t\n\n" * 30)
            for _ in range(31):
                assert (await raw.response())[2] == b"hello"
            await answered_again(raw)

    run(main)
