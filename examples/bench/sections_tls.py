"""TLS section: tornado-run --certfile against a hand-rolled pre-fork Tornado HTTPServer with
`ssl_options`, 2 workers each, the same hello world and the same certificate. Two loads:
keep-alive requests over HTTPS (wrk: one handshake per connection, then requests), and new
connections (`ab` without -k: a full handshake per request, no session resumption), each as
requests per second and per server CPU-second."""

from __future__ import annotations

import contextlib
import http.client
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .harness import (
    REPO_ROOT,
    Server,
    Skip,
    executable,
    free_port,
    help_text,
    running,
    tornado_run_command,
)
from .loadgen import LoadResult, closed_loop, new_connection_loop
from .plan import Column, Log, Section, Settings, Values, interleaved, variant
from .sections_web import HELLO

CONNECTIONS = 64
HANDSHAKE_CONNECTIONS = 8  # concurrent new connections: the handshake rate saturates early
HELLO_BODY = b"Hello, world"  # what examples/bench/hello.py answers on /


@contextlib.contextmanager
def certificate() -> Iterator[tuple[Path, Path]]:
    """A self-signed ECDSA P-256 certificate for 127.0.0.1 in a temporary folder."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise Skip("needs the openssl command (apt-get install openssl)")
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        subprocess.run(
            [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=bench",
             "-addext", "subjectAltName=IP:127.0.0.1"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        yield cert, key


def _insecure_client() -> ssl.SSLContext:
    """The readiness client trusts the throwaway certificate without checking it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def tornado_run_tls(cert: Path, key: Path) -> Callable[[int], Server]:
    def make(port: int) -> Server:
        command = [*tornado_run_command(), HELLO, "--workers", "2", "--bind", f"127.0.0.1:{port}"]
        command += ["--certfile", str(cert), "--keyfile", str(key)]
        return Server("tornado-run --certfile", command, port, ssl_context=_insecure_client())

    return make


def raw_tornado_tls(cert: Path, key: Path) -> Callable[[int], Server]:
    def make(port: int) -> Server:
        script = REPO_ROOT / "examples" / "bench" / "peer_raw_fork.py"
        command = [sys.executable, str(script)]
        command += ["--port", str(port), "--workers", "2", "--certfile", str(cert)]
        command += ["--keyfile", str(key)]
        return Server(
            "raw HTTPServer(ssl_options)",
            command,
            port,
            term_whole_tree=True,
            ssl_context=_insecure_client(),
        )

    return make


def new_connections(url: str, seconds: float) -> LoadResult:
    """A full TLS handshake per request for `seconds`: `ab` without keep-alive, else a Python
    client loop (slower, so fewer handshakes, but the same cost per handshake)."""
    if executable("ab"):
        return new_connection_loop(url, HANDSHAKE_CONNECTIONS, seconds, HELLO_BODY)
    return _python_handshakes(url, max(1, round(seconds)))


def _python_handshakes(url: str, seconds: float) -> LoadResult:
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    context = _insecure_client()
    counts = {"ok": 0, "errors": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def loop() -> None:
        while time.monotonic() < deadline:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
            try:
                conn.request("GET", "/", headers={"Connection": "close"})
                ok = conn.getresponse().read() == HELLO_BODY
            except (OSError, http.client.HTTPException):
                ok = False
            finally:
                conn.close()
            with lock:
                counts["ok" if ok else "errors"] += 1

    threads = [threading.Thread(target=loop, daemon=True) for _ in range(HANDSHAKE_CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 15)
    result = LoadResult("python", counts["ok"] + counts["errors"], seconds)
    result.errors = counts["errors"]
    return result


def _measure(make: Callable[[int], Server], settings: Settings) -> Values:
    port = free_port()
    url = f"https://127.0.0.1:{port}/"
    with running(make(port)) as server:
        cpu = server.cpu_seconds()
        kept = closed_loop(url, CONNECTIONS, settings.seconds, tool="wrk")
        kept_cpu = server.cpu_seconds() - cpu
        cpu = server.cpu_seconds()
        fresh = new_connections(url, settings.seconds)
        fresh_cpu = server.cpu_seconds() - cpu
    return {
        "kept_req_s": kept.ok_per_second,
        "kept_per_cpu_s": kept.requests / kept_cpu if kept_cpu > 0 else None,
        "kept_p99_ms": kept.p99_ms,
        "hs_s": fresh.ok_per_second,
        "hs_per_cpu_s": fresh.requests / fresh_cpu if fresh_cpu > 0 else None,
        "errors": float(kept.errors + kept.non_2xx + fresh.errors + fresh.non_2xx),
    }


def tls_section(settings: Settings, log: Log) -> Section:
    """HTTPS: keep-alive requests and new handshakes, tornado-run vs raw Tornado."""
    if not executable("wrk"):
        raise Skip("needs wrk for HTTPS keep-alive load (apt-get install wrk)")
    if "--certfile" not in help_text(tornado_run_command()):
        raise Skip("this tornado-run has no --certfile")
    with certificate() as (cert, key):
        makers = [
            ("raw HTTPServer(ssl_options) + fork_processes(2)", raw_tornado_tls(cert, key)),
            ("tornado-run --workers 2 --certfile", tornado_run_tls(cert, key)),
        ]
        variants = [variant(name, _measure, make, settings) for name, make in makers]
        rows = interleaved(settings.rounds, variants, log)
    handshakes = "ab -c8 without -k" if executable("ab") else "a Python client loop (no ab)"
    return Section(
        "tls",
        f"HTTPS hello world, 2 workers each: wrk -c{CONNECTIONS} keep-alive; new connections "
        f"by {handshakes}",
        [
            Column("kept_req_s", "keep-alive req/s"),
            Column("kept_per_cpu_s", "keep-alive req per server CPU-s"),
            Column("kept_p99_ms", "keep-alive p99 ms", 2),
            Column("hs_s", "handshakes/s"),
            Column("hs_per_cpu_s", "handshakes per server CPU-s"),
            Column("errors", "errors"),
        ],
        rows,
        ratio_key="kept_per_cpu_s",
        baseline=makers[0][0],
        notes=[
            "ECDSA P-256 certificate; TLS 1.3 as negotiated by OpenSSL on both sides",
            "each new connection is a full handshake (no session resumption); the handshake "
            "client runs on the same cores, so compare per server CPU-second",
        ],
    )
