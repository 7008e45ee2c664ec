"""TLS in the workers: HTTPS on every --bind verified against a test CA, client certificates,
certificate rotation by HUP with no failed request, broken new files that leave the old
certificate serving, bad TLS input refused up front (exit 2, one line), and plain-HTTP clients
that cost only their own connection.

Every serving test runs for each HTTP implementation (`--http`) this build has."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from runner_support import APPS, Load, Server, free_port, run_cli, wait_until
from tls_support import Issued, Pki, needs_openssl, peer_serial
from tornado_run.runner.settings.options import OPTIONS_BY_NAME

pytestmark = [needs_openssl, pytest.mark.timeout(90)]

HTTP_KINDS = ["tornado", "fast"] if "http" in OPTIONS_BY_NAME else ["tornado"]


def http_args(kind: str) -> list[str]:
    """The --http option for `kind`, where this build has the option."""
    return ["--http", kind] if "http" in OPTIONS_BY_NAME else []


@dataclass(frozen=True)
class Certificates:
    pki: Pki
    server: Issued
    rotated: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    folder = tmp_path_factory.mktemp("pki")
    pki = Pki(folder)
    other = Pki(folder / "other", name="other-ca")
    return Certificates(
        pki,
        server=pki.server("server", serial=1001),
        rotated=pki.server("rotated", serial=1002),
        client=pki.client("client", serial=2001),
        stranger=other.client("stranger", serial=3001),
    )


def tls_args(cert: Path, key: Path, *extra: str | Path) -> list[str]:
    return ["--certfile", str(cert), "--keyfile", str(key), *map(str, extra)]


def https_get(
    port: int, path: str, context: ssl.SSLContext, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, object], int]:
    """One GET on a new TLS connection: (status, JSON body, the server certificate's serial)."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
    try:
        conn.connect()
        assert isinstance(conn.sock, ssl.SSLSocket)
        serial = peer_serial(conn.sock)  # now: a `Connection: close` answer drops conn.sock
        conn.request("GET", path, headers=headers or {})
        reply = conn.getresponse()
        return reply.status, json.loads(reply.read()), serial
    finally:
        conn.close()


def live_files(folder: Path, issued: Issued) -> tuple[Path, Path]:
    """Copy `issued` to folder/live.pem and live.key (the paths the server is started with)."""
    folder.mkdir(exist_ok=True)
    return install(issued.cert, folder / "live.pem"), install(issued.key, folder / "live.key")


def install(source: Path, target: Path) -> Path:
    """Replace `target` with a copy of `source` in one rename, as deploy tools do."""
    staging = target.with_suffix(".new")
    shutil.copyfile(source, staging)
    staging.replace(target)
    return target


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_https_get_verified_against_the_ca_sees_request_protocol_https(
    launch: Callable[..., Server], certs: Certificates, kind: str
) -> None:
    server = launch(
        "hello:application", "--workers", "2", *http_args(kind),
        *tls_args(certs.server.cert, certs.server.key),
    )  # fmt: skip
    assert server.port is not None
    assert f"Listening at https://127.0.0.1:{server.port}" in server.log()
    context = certs.pki.client_context()
    context.set_alpn_protocols(["h2", "http/1.1"])
    status, body, serial = https_get(server.port, "/ip", context)
    assert (status, body["protocol"], serial) == (200, "https", certs.server.serial)
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    with context.wrap_socket(raw, server_hostname="localhost") as tls:
        assert tls.selected_alpn_protocol() == "http/1.1"
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    # Without the CA the client refuses the certificate.
    with pytest.raises(ssl.SSLCertVerificationError):
        https_get(server.port, "/ip", ssl.create_default_context())
    assert server.stop() == 0


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_every_bind_serves_tls_including_unix_sockets(
    launch: Callable[..., Server], certs: Certificates, kind: str, tmp_path: Path
) -> None:
    path = tmp_path / "tls.sock"
    server = launch(
        "hello:application", "--bind", f"unix:{path}", *http_args(kind),
        *tls_args(certs.server.cert, certs.server.key),
    )  # fmt: skip
    assert f"Listening at unix:{path} (TLS)" in server.log()
    assert server.port is not None
    assert https_get(server.port, "/ip", certs.pki.client_context())[0] == 200
    raw = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    raw.settimeout(10)
    raw.connect(str(path))
    with certs.pki.client_context().wrap_socket(raw, server_hostname="localhost") as tls:
        assert peer_serial(tls) == certs.server.serial
        tls.sendall(b"GET /ip HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        reply = b""
        while chunk := tls.recv(65536):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200 ")
    assert json.loads(reply.partition(b"\r\n\r\n")[2])["protocol"] == "https"
    assert server.stop() == 0


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_forwarded_proto_is_trusted_only_as_without_tls(
    launch: Callable[..., Server], certs: Certificates, kind: str
) -> None:
    http_header = {"X-Forwarded-Proto": "http"}
    context = certs.pki.client_context()
    files = tls_args(certs.server.cert, certs.server.key)
    plain = launch("hello:application", *http_args(kind), *files)
    assert plain.port is not None
    assert https_get(plain.port, "/ip", context, http_header)[1]["protocol"] == "https"
    trusted = launch("hello:application", "--proxy-headers", *http_args(kind), *files)
    assert trusted.port is not None
    assert https_get(trusted.port, "/ip", context, http_header)[1]["protocol"] == "http"
    assert plain.stop() == 0 and trusted.stop() == 0


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_required_client_certificate_refuses_clients_without_one(
    launch: Callable[..., Server], certs: Certificates, kind: str
) -> None:
    server = launch(
        "hello:application", *http_args(kind),
        *tls_args(certs.server.cert, certs.server.key, "--ca-certs", certs.pki.ca,
                  "--cert-reqs", "required"),
    )  # fmt: skip
    assert server.port is not None
    with_cert = certs.pki.client_context(certs.client)
    assert https_get(server.port, "/ip", with_cert)[0] == 200
    for refused in (certs.pki.client_context(), certs.pki.client_context(certs.stranger)):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            https_get(server.port, "/ip", refused)
    assert https_get(server.port, "/ip", with_cert)[0] == 200
    assert "Traceback" not in server.log()
    assert server.stop() == 0


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_optional_client_certificate_is_verified_and_shown_to_the_app(
    launch: Callable[..., Server], certs: Certificates, kind: str
) -> None:
    server = launch(
        "tls_app:application", *http_args(kind),
        *tls_args(certs.server.cert, certs.server.key, "--ca-certs", certs.pki.ca,
                  "--cert-reqs", "optional"),
    )  # fmt: skip
    assert server.port is not None
    anonymous = https_get(server.port, "/whoami", certs.pki.client_context())
    assert (anonymous[0], anonymous[1]["client"]) == (200, None)
    known = https_get(server.port, "/whoami", certs.pki.client_context(certs.client))
    assert (known[0], known[1]["client"]) == (200, "client")
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(server.port, "/whoami", certs.pki.client_context(certs.stranger))
    assert server.stop() == 0


def test_no_master_serves_tls_on_its_socket(
    launch: Callable[..., Server], certs: Certificates
) -> None:
    server = launch(
        "tls_app:application", "--no-master", *tls_args(certs.server.cert, certs.server.key)
    )
    assert server.port is not None
    assert https_get(server.port, "/whoami", certs.pki.client_context())[1]["protocol"] == "https"
    assert server.stop() == 0


@pytest.mark.parametrize("socket_mode", ["--reuse-port", "--no-reuse-port"])
@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_hup_after_replacing_the_files_serves_the_new_certificate_without_failed_requests(
    launch: Callable[..., Server], certs: Certificates, kind: str, tmp_path: Path, socket_mode: str
) -> None:
    cert, key = live_files(tmp_path / "live", certs.server)
    server = launch(
        "hello:application", "--workers", "2", socket_mode, *http_args(kind), *tls_args(cert, key)
    )
    assert server.port is not None
    context = certs.pki.client_context()

    def served(serial: int) -> int:
        return sum(n for text, n in load.serials.items() if int(text, 16) == serial)

    with Load(server.port, fresh=2, kept=2, seconds=60, ssl_context=context) as load:
        load.wait_for(20)
        before = server.worker_pids()
        install(certs.rotated.cert, cert)
        install(certs.rotated.key, key)
        server.send_signal(signal.SIGHUP)
        server.wait_for_log(r"Reload complete", timeout=30)
        wait_until(lambda: not (server.worker_pids() & before), 30, "old workers to exit")
        seen = served(certs.rotated.serial)
        wait_until(lambda: served(certs.rotated.serial) > seen + 20, 20, "the new certificate")
    assert load.failures == []
    assert served(certs.server.serial) > 0
    assert https_get(server.port, "/pid", context)[2] == certs.rotated.serial
    assert server.stop() == 0


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_broken_new_files_abandon_the_reload_and_the_old_certificate_keeps_serving(
    launch: Callable[..., Server], certs: Certificates, kind: str, tmp_path: Path
) -> None:
    cert, key = live_files(tmp_path / "live", certs.server)
    server = launch("hello:application", "--workers", "2", *http_args(kind), *tls_args(cert, key))
    assert server.port is not None
    context = certs.pki.client_context()
    before = server.worker_pids()
    install(certs.rotated.cert, cert)  # the new certificate, but the key not yet replaced
    server.send_signal(signal.SIGHUP)
    log = server.wait_for_log(r"reload abandoned")
    abandoned = [line for line in log.splitlines() if "reload abandoned" in line]
    assert len(abandoned) == 1
    assert f"--keyfile {key}: the private key does not match the certificate" in abandoned[0]
    assert "Traceback" not in log
    assert server.worker_pids() == before
    for _ in range(5):
        assert https_get(server.port, "/pid", context)[2] == certs.server.serial
    install(certs.rotated.key, key)  # the deploy completes: the next HUP rotates
    server.send_signal(signal.SIGHUP)
    server.wait_for_log(r"Reload complete", timeout=30)
    wait_until(lambda: not (server.worker_pids() & before), 30, "old workers to exit")
    assert https_get(server.port, "/pid", context)[2] == certs.rotated.serial
    assert server.stop() == 0


@pytest.mark.parametrize("kind", HTTP_KINDS)
def test_plain_http_and_broken_handshakes_cost_only_their_own_connection(
    launch: Callable[..., Server], certs: Certificates, kind: str
) -> None:
    server = launch(
        "hello:application", *http_args(kind), *tls_args(certs.server.cert, certs.server.key)
    )
    assert server.port is not None
    context = certs.pki.client_context()
    pid = https_get(server.port, "/pid", context)[1]["pid"]
    lines_before = len(server.log().splitlines())
    for attempt in range(20):
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            if attempt % 3 == 2:
                continue  # connect and close at once, as port scanners do
            if attempt % 3 == 0:
                sock.sendall(b"GET /pid HTTP/1.1\r\nHost: localhost\r\n\r\n")
            else:
                sock.sendall(b"\x16\x03\x01\x00\x05hello")  # a broken ClientHello
            with contextlib.suppress(ConnectionError):
                sock.recv(100)
        # A client that does not trust the certificate aborts its own handshake.
        with pytest.raises(ssl.SSLCertVerificationError):
            https_get(server.port, "/pid", ssl.create_default_context())
    status, body, _ = https_get(server.port, "/pid", context)
    assert (status, body["pid"]) == (200, pid)  # the same worker, still serving
    new_lines = server.log().splitlines()[lines_before:]
    assert len(new_lines) <= 2, new_lines
    assert server.stop() == 0


@pytest.fixture
def bad_inputs(certs: Certificates, tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    """Name -> (TLS arguments, what the one error line must contain)."""
    s, r = certs.server, certs.rotated
    missing = tmp_path / "missing.pem"
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    encrypted = certs.pki.encrypted_key(s)
    return {
        "missing certfile": (tls_args(missing, s.key), f"--certfile {missing}: no such file"),
        "missing keyfile": (tls_args(s.cert, missing), f"--keyfile {missing}: no such file"),
        "not a certificate": (tls_args(not_pem, s.key), f"--certfile {not_pem}: no PEM cert"),
        "mismatched key": (
            tls_args(s.cert, r.key),
            f"--keyfile {r.key}: the private key does not match the certificate in {s.cert}",
        ),
        "keyfile alone": (["--keyfile", str(s.key)], "--keyfile"),
        "key missing from certfile": (["--certfile", str(s.cert)], "give the key with --keyfile"),
        "encrypted key": (tls_args(s.cert, encrypted), f"--keyfile {encrypted}: the private key"),
        "required without ca": (
            tls_args(s.cert, s.key, "--cert-reqs", "required"),
            "--cert-reqs required: needs --ca-certs",
        ),
        "missing ca": (
            tls_args(s.cert, s.key, "--ca-certs", missing, "--cert-reqs", "required"),
            f"--ca-certs {missing}: no such file",
        ),
        "bad ciphers": (tls_args(s.cert, s.key, "--ciphers", "NONSENSE"), "--ciphers 'NONSENSE'"),
        "bad version": (tls_args(s.cert, s.key, "--tls-min-version", "1.1"), "1.2, 1.3"),
    }


BAD_INPUTS = [
    "missing certfile", "missing keyfile", "not a certificate", "mismatched key",
    "keyfile alone", "key missing from certfile", "encrypted key", "required without ca",
    "missing ca", "bad ciphers", "bad version",
]  # fmt: skip


@pytest.mark.parametrize("check", [False, True], ids=["start", "check"])
@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_tls_input_exits_2_with_one_line_naming_the_file_and_the_problem(
    bad_inputs: dict[str, tuple[list[str], str]], name: str, check: bool
) -> None:
    args, expected = bad_inputs[name]
    command = ["hello:application", "--app-dir", str(APPS), "--bind", "127.0.0.1:0", *args]
    result = run_cli(*command, *(["--check"] if check else []), timeout=30)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tornado-run: error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("source", ["command line", "environment", "config file"])
def test_check_accepts_good_tls_settings_from_every_source_and_names_the_https_address(
    certs: Certificates, tmp_path: Path, source: str
) -> None:
    values = {
        "certfile": str(certs.server.cert),
        "keyfile": str(certs.server.key),
        "ca_certs": str(certs.pki.ca),
        "cert_reqs": "optional",
        "tls_min_version": "1.3",
    }
    args: list[str] = []
    env: dict[str, str] = {}
    if source == "command line":
        for name, value in values.items():
            args += ["--" + name.replace("_", "-"), value]
    elif source == "environment":
        env = {"TORNADO_RUN_" + name.upper(): value for name, value in values.items()}
    else:
        config = tmp_path / "tornado-run.toml"
        lines = [f'{name} = "{value}"' for name, value in values.items()]
        config.write_text("[server]\n" + "\n".join(lines) + "\n")
        args = ["--config", str(config)]
    result = run_cli(
        "hello:application", "--app-dir", str(APPS), "--bind", "127.0.0.1:0", "--check", *args,
        env=env, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "would listen on https://127.0.0.1:" in result.stdout
    # The same settings with a key that does not match: refused from this source too.
    if source == "command line":
        args[args.index("--keyfile") + 1] = str(certs.rotated.key)
    elif source == "environment":
        env["TORNADO_RUN_KEYFILE"] = str(certs.rotated.key)
    else:
        config.write_text(config.read_text().replace(str(certs.server.key), str(certs.rotated.key)))
    refused = run_cli(
        "hello:application", "--app-dir", str(APPS), "--bind", "127.0.0.1:0", "--check", *args,
        env=env, timeout=30,
    )  # fmt: skip
    assert refused.returncode == 2 and "does not match" in refused.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="--user needs the master to start as root")
def test_a_key_the_workers_user_cannot_read_is_refused_before_starting(
    certs: Certificates, tmp_path: Path
) -> None:
    key = tmp_path / "root-only.key"
    shutil.copyfile(certs.server.key, key)
    key.chmod(0o600)
    result = run_cli(
        "hello:application", "--app-dir", str(APPS), "--bind", "127.0.0.1:0",
        "--user", "nobody", *tls_args(certs.server.cert, key),
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "not readable by --user nobody" in line


def test_under_supervisord_hup_rotates_the_certificate(certs: Certificates, tmp_path: Path) -> None:
    from supervisor_support import program_section, running_supervisord, tornado_run_command

    cert, key = live_files(tmp_path / "live", certs.server)
    port = free_port()
    command = tornado_run_command(
        "sup_app:application", "--workers 2", f"--bind 127.0.0.1:{port}",
        f"--certfile {cert} --keyfile {key}",
    )  # fmt: skip
    context = certs.pki.client_context()

    def serial() -> int | None:
        with contextlib.suppress(OSError):
            return https_get(port, "/", context)[2]
        return None

    section = program_section("web", command, tmp_path, startsecs=1, stopwaitsecs=15)
    with running_supervisord(tmp_path, section) as sup:
        master = sup.wait_state("web", "RUNNING", 30)["pid"]
        sup.remember_tree(int(master))
        assert wait_until(serial, 20, "HTTPS answers") == certs.server.serial
        install(certs.rotated.cert, cert)
        install(certs.rotated.key, key)
        assert sup.ctl("signal", "HUP", "web").returncode == 0
        wait_until(lambda: serial() == certs.rotated.serial, 30, "the rotated certificate")
        assert sup.info("web")["pid"] == master
