"""No request is made of another request's bytes, on either HTTP server: raw bytes on a
socket against real `tornado-run` processes (`--http fast` and `--http tornado`), each trick
followed by a normal request on the same connection. The app names every request it answers
(`STATUS METHOD target body-length`), so a hidden request the server serves, or a normal
one it loses, shows in the list of answers."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from runner_support import Server, start_server

pytestmark = pytest.mark.timeout(60)

AFTER = b"GET /after HTTP/1.1\r\nHost: t\r\n\r\n"
"""The normal request sent after every trick."""
SERVED_AFTER = "200 GET /after 0"
HIDDEN = b"GET /hidden HTTP/1.1\r\nHost: t\r\n\r\n"
"""A request an attacker hides in a body or a header value: never to be served."""
TORNADO_405 = (
    "<html><title>405: Method Not Allowed</title><body>405: Method Not Allowed</body></html>"
)
UPGRADE = b"Connection: Upgrade\r\nUpgrade: h2c\r\n"
METHOD = b"F" * (len(HIDDEN) + 3)
"""A method token llhttp does not know, long enough that the method swapped for a
three-letter stand-in during a second parse shifts offsets by the hidden request's length."""
BLANK_LINES = b"\r\n" * (len(HIDDEN) // 2 + 1)
"""Leading empty lines (dropped before a second parse) as long as the hidden request."""


def _with_body(head: bytes, body: bytes) -> bytes:
    return head + b"Content-Length: %d\r\n\r\n" % len(body) + body


# (id, packets sent one after the other, answers expected in order, Tornado's if different)
CASES: list[tuple[str, list[bytes], list[str], list[str] | None]] = [
    (
        "unknown-method-upgrade-body-hides-a-request",
        [_with_body(METHOD + b" / HTTP/1.1\r\nHost: t\r\n" + UPGRADE, b"A" * 40 + HIDDEN)],
        [f"405 {METHOD.decode()} / {40 + len(HIDDEN)}", SERVED_AFTER],
        None,
    ),
    (
        "unknown-method-upgrade-header-value-hides-a-request",
        [METHOD + b" / HTTP/1.1\r\n" + UPGRADE + b"X: " + HIDDEN],
        [f"405 {METHOD.decode()} / 0", SERVED_AFTER],
        None,
    ),
    (
        "blank-lines-lowercase-method-upgrade-body-hides-a-request",
        [BLANK_LINES + _with_body(b"get / HTTP/1.1\r\nHost: t\r\n" + UPGRADE, b"A" * 9 + HIDDEN)],
        [f"405 get / {9 + len(HIDDEN)}", SERVED_AFTER],
        ["400"],  # Tornado reads the first two CRLFs as an empty request
    ),
    (
        "bare-lf-request-line-upgrade-body-then-a-request",
        [b"GET / HTTP/1.1\nHost: t\n" + UPGRADE.replace(b"\r", b"") + b"Content-Length: 2\n\nxy"],
        ["200 GET / 2", SERVED_AFTER],
        None,
    ),
    (
        "bare-lf-in-a-second-packet-upgrade-body-hides-a-request",
        [
            b"GET / HTTP/1.1",
            b"\nHost: t\n" + UPGRADE + b"Content-Length: 3\r\n\r\nabcZ" + HIDDEN,
        ],
        ["200 GET / 3", "405 ZGET /hidden 0", SERVED_AFTER],
        None,
    ),
    (
        "unknown-method-split-over-packets-upgrade-body-hides-a-request",
        [
            METHOD[:20],
            METHOD[20:] + b" / HTTP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: 3\r\n\r\nabc",
            b"Z" * 20 + HIDDEN,
        ],
        [f"405 {METHOD.decode()} / 3", f"405 {'Z' * 20}GET /hidden 0", SERVED_AFTER],
        None,
    ),
    (
        "lowercase-method-split-over-packets-upgrade-body",
        [b"get / HT", b"TP/1.1\r\nHost: t\r\n" + UPGRADE + b"Content-Length: 3\r\n\r\nabc"],
        ["405 get / 3", SERVED_AFTER],
        None,
    ),
    (
        "upgrade-body-split-over-packets-hides-a-request",
        [
            _with_body(METHOD + b" / HTTP/1.1\r\nHost: t\r\n" + UPGRADE, b"A" * 40 + HIDDEN)[:-30],
            _with_body(METHOD + b" / HTTP/1.1\r\nHost: t\r\n" + UPGRADE, b"A" * 40 + HIDDEN)[-30:],
        ],
        [f"405 {METHOD.decode()} / {40 + len(HIDDEN)}", SERVED_AFTER],
        None,
    ),
    (
        "unknown-method-body-hides-a-request",
        [_with_body(METHOD + b" / HTTP/1.1\r\nHost: t\r\n", b"A" * 40 + HIDDEN)],
        [f"405 {METHOD.decode()} / {40 + len(HIDDEN)}", SERVED_AFTER],
        None,
    ),
    (
        "bare-lf-request-line-body-hides-a-request",
        [_with_body(b"POST / HTTP/1.1\nHost: t\n", HIDDEN)],
        [f"200 POST / {len(HIDDEN)}", SERVED_AFTER],
        None,
    ),
    (
        "connect-with-a-body-hides-a-request",
        [_with_body(b"CONNECT t:443 HTTP/1.1\r\nHost: t\r\n", HIDDEN)],
        [TORNADO_405, SERVED_AFTER],  # the target matches no route: Tornado's own page
        None,
    ),
    (
        "upgrade-answered-normally-then-pipelined-requests",
        [
            b"GET /up HTTP/1.1\r\nHost: t\r\n"
            + UPGRADE
            + b"\r\n"
            + b"GET /second HTTP/1.1\r\nHost: t\r\n\r\n"
        ],
        ["200 GET /up 0", "200 GET /second 0", SERVED_AFTER],
        None,
    ),
]


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Server]]:
    logs = Path(tmp_path_factory.mktemp("smuggling"))
    started: dict[str, Server] = {}
    try:
        for kind in ("fast", "tornado"):
            started[kind] = start_server(
                "smuggle_app:application", "--http", kind, "--workers", "1", log_dir=logs
            )
        yield started
    finally:
        for server in started.values():
            server.close()


def answers(port: int, packets: list[bytes]) -> list[str]:
    """Send `packets` (a pause between them, so each is read alone), then `AFTER`; return
    the answers' bodies in order (a bare status code for one without a length, which
    ends the connection), until the answer to `AFTER`, a close or 3 s of silence."""
    with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for packet in packets:
            sock.sendall(packet)
            time.sleep(0.1)
        sock.sendall(AFTER)
        reader = sock.makefile("rb")
        seen: list[str] = []
        try:
            while len(seen) < 10:
                status = reader.readline()
                if not status:
                    break
                length = None
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin1").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length is None:
                    seen.append(status.split()[1].decode())
                    break
                seen.append(reader.read(length).decode("latin1"))
                if seen[-1] == SERVED_AFTER:
                    break
        except TimeoutError:
            seen.append("silence")
        return seen


@pytest.mark.parametrize("kind", ["fast", "tornado"])
@pytest.mark.parametrize(
    ("packets", "expected", "tornado_expected"),
    [pytest.param(packets, exp, tor, id=name) for name, packets, exp, tor in CASES],
)
def test_no_request_is_made_of_another_requests_body_or_headers(
    servers: dict[str, Server],
    kind: str,
    packets: list[bytes],
    expected: list[str],
    tornado_expected: list[str] | None,
) -> None:
    port = servers[kind].port
    assert port is not None
    seen = answers(port, packets)
    assert not any(answer.startswith("200 GET /hidden") for answer in seen), seen
    if kind == "tornado" and tornado_expected is not None:
        expected = tornado_expected
    assert seen == expected
