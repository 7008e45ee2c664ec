"""A seeded, bounded byte-mutation fuzzer over valid requests, run on both HTTP servers side
by side: each mutated input goes to each server on a fresh connection, and the requests the
application saw on it (method, target, body length and hash) are compared. The fast server
may refuse where Tornado's serves (reported), but it must never serve a request that
Tornado's did not: never the request planted inside a body of the corpus (`/f/inner`), never
a request with another body, never a request where Tornado's refuses the whole input (except
where Tornado's own server is known to refuse what the RFC allows). Going on with a pipeline
where Tornado's stricter parser stopped (more empty lines before a request line) is reported,
not failed."""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from http_differential_support import KINDS, EchoServer, chunked, msg

pytestmark = pytest.mark.timeout(90)

SEED = 20261204
MUTATIONS = 400
BATCH = 50
READ_SECONDS = 0.5
INNER = b"GET /f/inner HTTP/1.1\r\nHost: t\r\n\r\n"
CORPUS = [
    b"GET /f/get?q=1 HTTP/1.1\r\nHost: t\r\nAccept: */*\r\n\r\n",
    msg(
        b"POST /f/post HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {n}",
        INNER,
    ),
    msg(
        b"POST /f/chunked HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked",
        chunked(b"hello", INNER),
    ),
    b"GET /f/one HTTP/1.1\r\nHost: t\r\n\r\n"
    + msg(b"POST /f/two HTTP/1.1\r\nHost: t\r\nContent-Length: {n}", b"hello"),
    msg(
        b"GET /f/up HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Content-Length: {n}",
        INNER,
    )
    + b"GET /f/after HTTP/1.1\r\nHost: t\r\n\r\n",
    b"GET /f/old HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /f/new HTTP/1.1\r\nHost: t\r\n\r\n",
    b"\r\nget /f/lower HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello",
]
BYTES = b"\r\n\t \x00,;:=0159aAfFxX-+\x0b\x7f\x80\xff"
PIECES = [
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"0",
    b", chunked",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: 99\r\n",
    b"\r\n\r\n",
    b";x=y",
    b"HTTP/1.1",
]
TORNADO_DEVIATIONS = [
    re.compile(rb"\r\n[0-9a-fA-F]+[ \t]*;"),  # chunk extensions (RFC 9112 7.1.1)
    re.compile(rb"\r\n0\r\n[!-9;-~]+:"),  # trailer fields (RFC 9112 7.1.2)
]
"""Inputs where Tornado's server refuses what the RFC allows: fast may serve them."""
LENIENCIES = [
    re.compile(rb"\A(\r?\n){2,}"),  # more than one empty line first (RFC 9112 2.2: MAY)
    re.compile(rb"\A[^\r\n]*[ \t]{2}"),  # runs of whitespace in the request line (9112 3)
]
"""Leniencies the RFC allows (and Tornado's server does not take)."""


def mutate(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    """One to three byte-level edits of `data`, and what they were."""
    edits = []
    for _ in range(rng.choice((1, 1, 2, 3))):
        at = rng.randrange(len(data) + 1)
        kind = rng.choice(("replace", "insert", "piece", "delete", "line", "case"))
        if kind == "replace" and at < len(data):
            data = data[:at] + bytes([rng.choice(BYTES)]) + data[at + 1 :]
        elif kind == "insert":
            data = data[:at] + bytes([rng.choice(BYTES)]) + data[at:]
        elif kind == "piece":
            data = data[:at] + rng.choice(PIECES) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + rng.randint(1, 4) :]
        elif kind == "line":
            lines = data.split(b"\r\n")
            index = rng.randrange(len(lines))
            lines.insert(index, lines[index])
            data = b"\r\n".join(lines)
        elif at < len(data):
            data = data[:at] + data[at : at + 1].swapcase() + data[at + 1 :]
        edits.append(f"{kind}@{at}")
    return data, " ".join(edits)


async def _probe(port: int, data: bytes, cut: int | None) -> int:
    """Send `data` (in two packets when `cut` is set) on a new connection, read what comes
    back for a bounded time, and return the client's port."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    local = int(writer.get_extra_info("sockname")[1])
    try:
        if cut is None:
            writer.write(data)
        else:
            writer.write(data[:cut])
            await writer.drain()
            await asyncio.sleep(0.01)
            writer.write(data[cut:])
        await writer.drain()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_SECONDS
        while (left := deadline - loop.time()) > 0:
            if not await asyncio.wait_for(reader.read(65536), left):
                break
    except (OSError, TimeoutError):
        pass  # a reset or a server still waiting: what it served is in its log
    finally:
        writer.close()
    return local


Seen = list[tuple[str, str, int, str]]


async def _run_batch(
    servers: dict[str, EchoServer], inputs: list[tuple[bytes, int | None]]
) -> list[dict[str, Seen]]:
    ports = {
        kind: await asyncio.gather(*(_probe(s.port, data, cut) for data, cut in inputs))
        for kind, s in servers.items()
    }
    await asyncio.sleep(0.05)  # handlers of the last requests are done
    seen: list[dict[str, Seen]] = [{kind: [] for kind in servers} for _ in inputs]
    for kind, s in servers.items():
        pid, entries = s.served_since()
        assert pid == s.pid, f"{kind} worker crashed during the fuzz batch"
        index = {port: i for i, port in enumerate(ports[kind])}
        for e in entries:
            if e["port"] in index:
                seen[index[e["port"]]][kind].append(
                    (e["method"], e["target"], e["length"], e["sha"])
                )
    return seen


HARD = ("hidden request", "other body", "fast serves what tornado refuses", "fast serves more")


def classify(data: bytes, fast: Seen, tornado: Seen) -> str:
    """How fast's requests compare with Tornado's; the verdicts in HARD fail the test."""
    if fast == tornado:
        return "same"
    extra = [entry for entry in fast if entry not in tornado]
    if not extra:
        return "fast refuses more"
    if any(b"/f/inner" in entry[1].encode("latin1") for entry in extra):
        return "hidden request"  # the request inside a body of the corpus
    if any(entry[:2] == other[:2] for entry in extra for other in tornado):
        return "other body"
    excused = TORNADO_DEVIATIONS + LENIENCIES
    if not tornado:
        if any(p.search(data) for p in excused):
            return "allowed: tornado refuses what the RFC allows"
        return "fast serves what tornado refuses"
    if fast[: len(tornado)] == tornado:
        return "fast goes on where tornado stopped"
    return "fast serves more"


@pytest.fixture(scope="module")
def servers(tmp_path_factory: Any) -> Iterator[dict[str, EchoServer]]:
    started: dict[str, EchoServer] = {}
    try:
        for kind in KINDS:
            started[kind] = EchoServer(kind, tmp_path_factory.mktemp(f"fuzz-{kind}"))
        yield started
    finally:
        for s in started.values():
            s.close()


def test_the_unmutated_corpus_is_served_alike_by_both_servers(
    servers: dict[str, EchoServer],
) -> None:
    seen = asyncio.run(_run_batch(servers, [(data, None) for data in CORPUS]))
    for data, result in zip(CORPUS, seen, strict=True):
        assert result["fast"] == result["tornado"], data
        assert result["tornado"], f"nothing served for {data!r}"
    assert not [e for r in seen for e in r["fast"] + r["tornado"] if e[1] == "/f/inner"]


def test_mutated_requests_make_fast_serve_nothing_tornado_did_not(
    servers: dict[str, EchoServer],
) -> None:
    rng = random.Random(SEED)
    cases = []
    for _ in range(MUTATIONS):
        data, edits = mutate(rng, rng.choice(CORPUS))
        cut = rng.randrange(1, len(data)) if rng.random() < 0.25 and len(data) > 1 else None
        cases.append((data, cut, edits))
    verdicts: Counter[str] = Counter()
    examples: dict[str, list[str]] = {}
    for start in range(0, len(cases), BATCH):
        batch = cases[start : start + BATCH]
        seen = asyncio.run(_run_batch(servers, [(data, cut) for data, cut, _ in batch]))
        for (data, cut, edits), result in zip(batch, seen, strict=True):
            verdict = classify(data, result["fast"], result["tornado"])
            verdicts[verdict] += 1
            examples.setdefault(verdict, []).append(
                f"{edits} cut={cut} {data!r}\n      fast={result['fast']}\n"
                f"      tornado={result['tornado']}"
            )
    print(f"\nfuzz (seed {SEED}, {MUTATIONS} mutations): {dict(verdicts)}")
    for verdict, shown in examples.items():
        if verdict != "same":
            print(f"  {verdict}: {len(shown)}, e.g.\n    " + "\n    ".join(shown[:5]))
    failed = [line for verdict in HARD for line in examples.get(verdict, [])]
    assert not failed, f"{len(failed)} inputs made fast serve what tornado did not:\n" + "\n".join(
        failed[:10]
    )
