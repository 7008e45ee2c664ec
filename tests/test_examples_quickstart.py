"""The README's first command: `tornado-run examples.quickstart:application --workers auto`
run from the repository root serves every route it documents."""

from __future__ import annotations

import hashlib

from examples_support import serve


def test_readme_quickstart_serves_plain_thread_and_process_routes() -> None:
    with serve("examples.quickstart:application", workers="auto") as app:
        hello = app.get("/")
        assert hello.status == 200
        assert hello.json()["hello"] == "world"

        hashed = app.get("/hash/secret")
        expected = hashlib.pbkdf2_hmac("sha256", b"secret", b"example-salt", 200_000).hex()
        assert hashed.status == 200
        assert hashed.json() == {"pbkdf2_sha256": expected}

        fib = app.get("/fib/20")
        assert fib.status == 200
        assert fib.json() == {"n": 20, "fib": 6765}

        assert app.get("/fib/99").status == 400
