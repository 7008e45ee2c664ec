"""Certificates for TLS tests, made with the `openssl` command in a folder: a test CA, server
certificates for 127.0.0.1/localhost signed by it (each with its own serial number), client
certificates, and an encrypted copy of a key.

    pki = Pki(tmp_path)
    server = pki.server("server", serial=1001)   # Issued(cert, key, serial)
    client = pki.client("client", serial=2001)
    context = pki.client_context(client)         # verifies against the test CA
"""

from __future__ import annotations

import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")
needs_openssl = pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")

_COMMON_EXT = (
    "basicConstraints=CA:FALSE\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid,issuer\n"
)
_SERVER_EXT = (
    _COMMON_EXT + "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n"
)
_CLIENT_EXT = _COMMON_EXT + "extendedKeyUsage=clientAuth\n"


@dataclass(frozen=True)
class Issued:
    """A certificate signed by the test CA and its unencrypted key."""

    cert: Path
    key: Path
    serial: int


def openssl(*args: str | Path) -> None:
    """Run `openssl ARGS...`; AssertionError with its output if it fails."""
    assert OPENSSL is not None
    result = subprocess.run(
        [OPENSSL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"openssl {' '.join(map(str, args))}: {result.stderr}"


class Pki:
    """A test CA in `folder` (ca.pem, ca.key) that issues certificates into the same folder."""

    def __init__(self, folder: Path, name: str = "ca") -> None:
        self.folder = folder
        self.ca = folder / f"{name}.pem"
        self.ca_key = folder / f"{name}.key"
        folder.mkdir(parents=True, exist_ok=True)
        openssl(
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", self.ca_key, "-out", self.ca, "-days", "2",
            "-subj", f"/CN=tornado-run test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        )  # fmt: skip

    def server(self, name: str, serial: int) -> Issued:
        """A server certificate for localhost and 127.0.0.1, CN=`name`."""
        return self._issue(name, serial, _SERVER_EXT)

    def client(self, name: str, serial: int) -> Issued:
        """A client certificate, CN=`name`."""
        return self._issue(name, serial, _CLIENT_EXT)

    def _issue(self, name: str, serial: int, extensions: str) -> Issued:
        key, csr = self.folder / f"{name}.key", self.folder / f"{name}.csr"
        cert, ext = self.folder / f"{name}.pem", self.folder / f"{name}.ext"
        ext.write_text(extensions)
        openssl(
            "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", key, "-out", csr, "-subj", f"/CN={name}",
        )  # fmt: skip
        openssl(
            "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", self.ca_key,
            "-set_serial", str(serial), "-days", "2", "-extfile", ext, "-out", cert,
        )  # fmt: skip
        return Issued(cert, key, serial)

    def encrypted_key(self, issued: Issued) -> Path:
        """A password-protected copy of `issued`'s key."""
        path = self.folder / f"{issued.key.stem}-encrypted.key"
        openssl("pkey", "-in", issued.key, "-aes256", "-passout", "pass:secret", "-out", path)
        return path

    def client_context(self, client: Issued | None = None) -> ssl.SSLContext:
        """A client context that trusts only the test CA (hostname checked), presenting
        `client`'s certificate when given."""
        context = ssl.create_default_context(cafile=str(self.ca))
        if client is not None:
            context.load_cert_chain(client.cert, client.key)
        return context


def peer_serial(sock: ssl.SSLSocket) -> int:
    """The serial number of the certificate the server presented on `sock`."""
    cert = sock.getpeercert()
    assert cert, "no verified peer certificate"
    return int(str(cert["serialNumber"]), 16)
