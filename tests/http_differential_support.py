"""Raw-socket cases run against both HTTP servers (`--http fast` and `--http tornado`), each
a real `tornado-run` serving tests/apps/http_echo.py, which records every request the
application sees with the client's port.

A `Case` is bytes to send (with pauses, half-closes or a wait for `100 Continue` between
pieces) and the answers RFC 9110/9112 allow, as alternatives (`Reply`). After the case, a
normal request (`FOLLOW`, with `Connection: close`) goes on the same connection when the
server kept it open: it must get exactly one answer of its own. A request whose target holds
`SMUGGLED` must never be served, whatever else happens.

Answers are read with `http_responses.parse_responses`.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from http_responses import RawResponse, is_final, parse_responses
from runner_support import Server, http_get, start_server

KINDS = ("fast", "tornado")
READ_TIMEOUT = 2.0
MARKER = "SMUGGLED"
HOST = b"Host: t\r\n"
FOLLOW = b"GET /follow HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
HIDDEN = b"GET /SMUGGLED HTTP/1.1\r\nHost: t\r\n\r\n"
SHUT_WR = "shutdown"
"""A step: half-close the connection (no more bytes from the client)."""
AWAIT_INTERIM = "await-interim"
"""A step: wait (up to READ_TIMEOUT) for a 1xx answer before sending what follows."""

Step = bytes | float | str


# cases ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One allowed outcome: the statuses of the final answers, whether the server closes
    after them (None: either), and the requests the application sees as "METHOD target
    body-length" (None: not checked beyond the hidden-request rule)."""

    statuses: tuple[int, ...]
    close: bool | None = False
    served: tuple[str, ...] | None = None

    def __str__(self) -> str:
        close = {True: "close", False: "keep-alive", None: "close or not"}[self.close]
        served = "" if self.served is None else f" served={list(self.served)}"
        return f"{list(self.statuses)} {close}{served}"


def answer(
    *statuses: int, close: bool | None = False, served: Sequence[str] | None = None
) -> Reply:
    return Reply(statuses, close, None if served is None else tuple(served))


def refuse(*codes: int, close: bool | None = True) -> list[Reply]:
    """Refused before the application: one answer with one of `codes`."""
    return [Reply((code,), close, ()) for code in codes]


@dataclass(frozen=True)
class Case:
    """Bytes sent as `steps`, with the RFC section that judges them and what it says."""

    id: str
    rfc: str
    says: str
    steps: tuple[Step, ...]
    expect: tuple[Reply, ...]
    tornado: str | None = None
    """Tornado's own server breaks the RFC here: why (its case is a strict xfail)."""
    fast: str | None = None
    """The fast server still differs here (docs/fast-http-deviations.md): why (a strict
    xfail, as for `tornado`)."""
    interim: tuple[int, ...] | None = None
    """The 1xx answers that must come (None: not checked)."""
    announce_close: bool = False
    """When the server closes, its last answer must say `Connection: close`."""

    methods: tuple[str, ...] = ()
    """The methods of the requests answered, in order, where one is HEAD (no body)."""


def case(
    id: str, rfc: str, says: str, *steps: Step, expect: Reply | Sequence[Reply], **extra: Any
) -> Case:
    replies = (expect,) if isinstance(expect, Reply) else tuple(expect)
    return Case(id, rfc, says, steps, replies, **extra)


def params(cases: Sequence[Case]) -> list[Any]:
    """The cases as pytest params, with their ids (run against each kind of `server`)."""
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return [pytest.param(c, id=c.id) for c in cases]


# servers --------------------------------------------------------------------------------


class EchoServer:
    """A `tornado-run --http KIND` serving http_echo:application with one worker."""

    def __init__(self, kind: str, log_dir: Path) -> None:
        self.kind = kind
        self.server: Server = start_server(
            "http_echo:application", "--workers", "1", "--http", kind, log_dir=log_dir
        )
        assert self.server.port is not None
        self.port: int = self.server.port
        self.seen = 0
        self.pid = self.served_since()[0]

    def served_since(self) -> tuple[int, list[dict[str, Any]]]:
        """The worker's pid and the requests it served since the last call."""
        reply = http_get(self.port, f"/_served?since={self.seen}", timeout=5)
        data = reply.json()
        self.seen = data["count"]
        return data["pid"], data["entries"]

    def close(self) -> None:
        self.server.close()


def echo_server(request: Any, tmp_path_factory: Any) -> Iterator[EchoServer]:
    """Body of the module-scoped `server` fixture (its param: the kind)."""
    served = EchoServer(request.param, tmp_path_factory.mktemp(f"http-{request.param}"))
    try:
        yield served
    finally:
        served.close()


# running a case -------------------------------------------------------------------------


@dataclass
class Outcome:
    statuses: list[int] = field(default_factory=list)
    interim: list[int] = field(default_factory=list)
    closed: bool = False
    follow_up: str = "not sent"
    served: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    last_connection: str | None = None
    waited: int | None = None
    """Complete answers when the first read timed out (None: it did not)."""
    notes: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        text = (
            f"{self.statuses} {'closed' if self.closed else 'kept open'}, follow-up "
            f"{self.follow_up}, served={self.served}"
        )
        if self.interim:
            text += f", interim={self.interim}"
        if self.waited is not None:
            text += f", only {self.waited} answer(s) after {READ_TIMEOUT} s"
        if self.hidden:
            text += f", HIDDEN REQUEST SERVED: {self.hidden}"
        return text + "".join(f", {note}" for note in self.notes)


class _Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=READ_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.port = self.sock.getsockname()[1]
        self.data = b""
        self.eof = False

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def read_until(self, done: Any, timeout: float = READ_TIMEOUT) -> None:
        """Read until `done()` or the end of the stream or `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while not self.eof and not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return
            self.sock.settimeout(left)
            try:
                piece = self.sock.recv(65536)
            except TimeoutError:
                return
            except OSError:
                piece = b""  # a reset: the server is gone
            self.data += piece
            self.eof = not piece


def _finals(conn: _Conn, methods: Sequence[str]) -> list[RawResponse]:
    try:
        responses, _ = parse_responses(conn.data, methods, conn.eof)
    except ValueError:
        return []
    return responses


def _send_steps(conn: _Conn, steps: Sequence[Step], methods: Sequence[str]) -> None:
    for step in steps:
        if isinstance(step, bytes):
            conn.send(step)
        elif isinstance(step, float):
            time.sleep(step)
        elif step == SHUT_WR:
            conn.sock.shutdown(socket.SHUT_WR)
        elif step == AWAIT_INTERIM:
            conn.read_until(lambda: any(not is_final(r) for r in _finals(conn, methods)))


def run_case(server: EchoServer, c: Case) -> Outcome:
    """Send the case's bytes, read the answers, send the follow-up if the connection is
    still open, and collect what the application served on that connection."""
    methods = list(c.methods)
    wanted = max(len(reply.statuses) for reply in c.expect)
    conn = _Conn(server.port)
    outcome = Outcome()
    try:
        _send_steps(conn, c.steps, methods)

        def enough() -> bool:
            responses = _finals(conn, methods)
            finals = [r for r in responses if is_final(r)]
            return len(finals) >= wanted or any(r.status == 101 for r in responses)

        conn.read_until(enough)
        if not conn.eof and not enough():
            outcome.waited = len([r for r in _finals(conn, methods) if is_final(r)])
        upgraded = any(r.status == 101 for r in _finals(conn, methods))
        sent = False
        if upgraded or SHUT_WR in c.steps:
            conn.read_until(lambda: False)  # until the close
        elif not conn.eof:
            sent = conn.send(FOLLOW)
            conn.read_until(lambda: False)
        _read_outcome(conn, methods, upgraded, sent, outcome)
    finally:
        conn.sock.close()
    pid, entries = server.served_since()
    if pid != server.pid:
        outcome.notes.append(f"worker replaced ({server.pid} -> {pid}): it crashed")
        server.pid = pid
    mine = [e for e in entries if e["port"] == conn.port and e["target"] != "/follow"]
    outcome.served = [f"{e['method']} {e['target']} {e['length']}" for e in mine]
    outcome.hidden = [e["target"] for e in entries if MARKER in e["target"]]
    return outcome


def _read_outcome(
    conn: _Conn, methods: list[str], upgraded: bool, sent: bool, outcome: Outcome
) -> None:
    try:
        responses, rest = parse_responses(conn.data, methods + ["GET"] * 4, conn.eof)
    except ValueError as exc:
        responses, rest = [], b""
        outcome.notes.append(f"unparsed bytes: {exc}")
    if rest and not upgraded:
        outcome.notes.append(f"unparsed bytes {rest[:60]!r}")
    follow = [i for i, r in enumerate(responses) if (r.json() or {}).get("target") == "/follow"]
    outcome.closed = conn.eof
    if follow:
        outcome.follow_up = "answered" if follow == [len(responses) - 1] else "misplaced"
        outcome.closed = False
        del responses[follow[0]]
    elif sent:
        outcome.follow_up = "sent, no answer"
    outcome.statuses = [r.status for r in responses if is_final(r)]
    outcome.interim = [r.status for r in responses if not is_final(r)]
    if responses:
        outcome.last_connection = responses[-1].header("connection")


def problems(c: Case, outcome: Outcome) -> list[str]:
    """Why `outcome` is not one of the case's allowed replies (empty when it is)."""
    found = []
    if outcome.hidden:
        found.append(f"served a hidden request: {outcome.hidden}")
    found += [note for note in outcome.notes if "unparsed" in note or "crashed" in note]
    if not outcome.closed and outcome.follow_up not in ("answered", "not sent"):
        found.append(f"follow-up {outcome.follow_up}")
    fewest = min(len(reply.statuses) for reply in c.expect)
    if outcome.waited is not None and outcome.waited < fewest:
        found.append(f"no complete answer within {READ_TIMEOUT} s")
    if c.interim is not None and tuple(outcome.interim) != c.interim:
        found.append(f"interim answers {outcome.interim}, expected {list(c.interim)}")
    if outcome.closed and c.announce_close and "close" not in (outcome.last_connection or ""):
        found.append("closed without announcing Connection: close")
    if not any(_matches(reply, outcome) for reply in c.expect):
        found.append("expected " + " | ".join(map(str, c.expect)))
    return found


def _matches(reply: Reply, outcome: Outcome) -> bool:
    if tuple(outcome.statuses) != reply.statuses:
        return False
    if reply.close is not None and outcome.closed != reply.close:
        return False
    return reply.served is None or tuple(outcome.served) == reply.served


def check(server: EchoServer, c: Case) -> None:
    """Run the case and fail with its RFC section, rule and outcome if it is not allowed.
    Where a server is known to break the rule (`c.tornado`, `c.fast`), its failure is an
    expected one (xfail), and passing fails: the note must then go."""
    note = c.tornado if server.kind == "tornado" else c.fast
    if note:
        with pytest.raises(AssertionError):
            _check(server, c)
        pytest.xfail(f"{server.kind}: known deviation: {note}")
    _check(server, c)


def _check(server: EchoServer, c: Case) -> None:
    outcome = run_case(server, c)
    found = problems(c, outcome)
    assert not found, (
        f"[{server.kind}] RFC {c.rfc}: {c.says}\n  observed: {outcome}\n  " + "\n  ".join(found)
    )


# building requests ----------------------------------------------------------------------


def msg(head: bytes, body: bytes = b"", end: bytes = b"\r\n\r\n") -> bytes:
    """A request: `head` (request line and field lines, no empty line; `{n}` becomes the
    body's length), `end` (the last line end and the empty line), then `body`."""
    return head.replace(b"{n}", str(len(body)).encode()) + end + body


def chunked(*pieces: bytes, last: bytes = b"0\r\n\r\n") -> bytes:
    """`pieces` in the chunked coding, then `last` (the last chunk and the empty trailer)."""
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + last
