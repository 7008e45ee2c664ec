"""docs/getting-started.md runs as written on a fresh clone: its shell blocks, each marked with
its role (`<!-- run: setup|server|client|suite -->`), run in a temporary copy of the
repository's files.

Two substitutions keep it bounded and honest, and nothing else is changed:
- the setup block must be the README's own setup commands; instead of creating a virtualenv
  and installing into it, `.venv` in the copy is a link to the virtualenv running this test
  (which has the package installed the same way, editable), so every later command runs
  word for word;
- the server listens where the test tells it through `TORNADO_RUN_BIND` (an environment
  variable the docs describe), and the client's `localhost:8000` becomes that port, so a
  concurrent run cannot collide on port 8000.
The suite block is this test suite itself: it is checked against the README, not run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from runner_support import clean_env, free_port, http_get, wait_until

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "getting-started.md"
BLOCK = re.compile(r"^<!-- run: (\w+) -->\n```sh\n(.*?)^```$", re.MULTILINE | re.DOTALL)
VENV = Path(sys.executable).parent.parent


def blocks() -> dict[str, str]:
    text = PAGE.read_text()
    found = {role: code for role, code in BLOCK.findall(text)}
    assert text.count("```sh") == len(found), "every shell block has a <!-- run: ROLE --> mark"
    return found


def readme_commands() -> list[str]:
    """The README's first block as commands: continuations joined, split at `&&`."""
    block = (ROOT / "README.md").read_text().split("```sh\n", 1)[1].split("```", 1)[0]
    joined = re.sub(r"\s*\\\n\s*", " ", block)
    lines = [line for line in joined.splitlines() if line and not line.startswith("#")]
    return [part.strip() for line in lines for part in line.split("&&")]


def commands(code: str) -> list[str]:
    """A block's commands without comments."""
    return [line.split("  #", 1)[0].strip() for line in code.splitlines() if line.strip()]


def fresh_copy(target: Path) -> Path:
    """The repository's files as a clone would have them (tracked, plus new ones not ignored)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            (target / name).write_bytes(source.read_bytes())
    return target


def test_setup_and_suite_blocks_are_the_readmes_commands() -> None:
    found = blocks()
    readme = readme_commands()
    assert set(found) == {"setup", "server", "client", "suite"}
    for command in commands(found["setup"]) + commands(found["suite"]):
        assert command in readme, f"{command!r} is not in the README's commands"


def test_getting_started_runs_as_written_in_a_fresh_copy(tmp_path: Path) -> None:
    found = blocks()
    assert commands(found["setup"]) == ["python3 -m venv .venv", ".venv/bin/pip install -q -e ."]
    clone = fresh_copy(tmp_path / "clone")
    (clone / ".venv").symlink_to(VENV)
    port = free_port()
    env = clean_env({"TORNADO_RUN_BIND": f"127.0.0.1:{port}"})
    server = subprocess.Popen(
        ["bash", "-e", "-c", found["server"]],
        cwd=clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: _answers(port) or server.poll() is not None, 60, "the server")
        assert server.poll() is None, server.stdout.read().decode() if server.stdout else ""
        client = subprocess.run(
            ["bash", "-e", "-c", found["client"].replace("localhost:8000", f"localhost:{port}")],
            cwd=clone,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert client.returncode == 0, client.stderr
        hello, hashed, fib = _documents(client.stdout)
        assert hello["hello"] == "world"
        assert len(next(iter(hashed.values()))) == 64
        assert fib == {"n": 27, "fib": 196418}
        workers = psutil.Process(server.pid).children(recursive=True)
        os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in its terminal
        assert server.wait(30) == 0
        psutil.wait_procs(workers, timeout=10)
        assert not [p for p in workers if p.is_running() and p.status() != "zombie"]
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(10)


def _documents(text: str) -> list[dict[str, object]]:
    """The JSON objects curl printed one after the other (no newline between them)."""
    decoder, found, at = json.JSONDecoder(), [], 0
    while at < len(text.rstrip()):
        document, at = decoder.raw_decode(text, at)
        found.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return found


def _answers(port: int) -> bool:
    try:
        return http_get(port, "/", timeout=2).status == 200
    except OSError:
        return False
