"""The documentation stays true: the option reference is the option table, the README's links
lead to files that exist, every Python sample in the pages runs, every TOML sample passes
tornado-run's own config loader, the README's test command is the one CI runs, and the
samples written inline from examples/ and conf/ (`<!-- sample: PATH -->`) match those files."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from urllib.parse import unquote

import docs_samples
import pytest
from tornado_run.decorators.pools.config import specs_from_table
from tornado_run.runner.settings import reference
from tornado_run.runner.settings.loading import load_settings

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
MAX_SHELL_LINE = 88
"""Longest shell line, so commands fit the site's code blocks and GitHub's without scrolling."""


def samples(language: str) -> list[tuple[str, str]]:
    """(where, code) for each fenced block in `language` in the README and the pages, except
    the copies of files in examples/ and conf/ (run by their own tests)."""
    found = []
    for path in [README, *PAGES]:
        text = path.read_text()
        for match in FENCE.finditer(text):
            copied = (
                text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].startswith("<!-- sample:")
            )
            if match.group(1) == language and not copied:
                line = text.count("\n", 0, match.start()) + 1
                found.append((f"{path.relative_to(ROOT)}:{line}", match.group(2)))
    return found


def test_option_reference_is_generated_from_the_option_table() -> None:
    page = ROOT / "docs" / "reference" / "options.md"
    assert page.read_text() == reference.render(), f"out of date; run: {reference.COMMAND}"


def test_option_reference_names_every_option_with_its_flag_and_variable() -> None:
    from tornado_run.runner.settings.options import OPTIONS

    text = reference.render()
    for option in OPTIONS:
        assert f"`{option.env}`" in text and f"`{option.name}`" in text
        assert option.flag in text


def test_readme_links_lead_to_files_that_exist() -> None:
    links = LINK.findall(README.read_text())
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    assert "examples/bench/chart.png" in local  # the chart is shown inline
    assert any(link.startswith("docs/") for link in local)
    for link in local:
        target = ROOT / unquote(link.split("#", 1)[0])
        assert target.is_file(), f"README links to {link}, which does not exist"


def test_readme_test_command_is_the_one_ci_runs_last() -> None:
    ci_last = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    commands = FENCE.search(README.read_text())
    assert commands is not None
    joined = re.sub(r" *\\\n *", " ", commands.group(2))  # backslash continuations
    assert " ".join(ci_last.split()) in joined.splitlines()


def test_inline_samples_match_the_files_they_copy() -> None:
    found = docs_samples.samples()
    assert len(found) >= 15
    for sample in found:
        assert sample.code == docs_samples.expected(sample), (
            f"{sample.where} differs from {sample.source}; run: python tests/docs_samples.py "
            "--write"
        )


def test_pages_include_no_files_and_read_whole_on_github() -> None:
    for page in [README, *PAGES]:
        for number, line in enumerate(page.read_text().splitlines(), 1):
            assert not line.startswith("--8<--"), f"{page.name}:{number}: an include; inline it"


def test_code_blocks_have_no_runs_of_blank_lines_and_no_long_shell_lines() -> None:
    for path in [README, *PAGES]:
        text = path.read_text()
        for match in FENCE.finditer(text):
            where = f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, match.start()) + 1}"
            code = match.group(2)
            assert "\n\n\n\n" not in code and not code.startswith("\n"), where
            if match.group(1) in ("sh", "bash", "console"):
                for line in code.splitlines():
                    assert len(line) <= MAX_SHELL_LINE, f"{where}: wrap {line[:40]}... with \\"


@pytest.mark.parametrize(("where", "code"), [pytest.param(*s, id=s[0]) for s in samples("python")])
def test_python_sample_runs(where: str, code: str, tmp_path: Path) -> None:
    """Each sample runs as a script of its own (imports, declarations, classes)."""
    script = tmp_path / "sample.py"
    script.write_text(code)
    result = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, f"{where}:\n{result.stderr}"


@pytest.mark.parametrize(("where", "code"), [pytest.param(*s, id=s[0]) for s in samples("toml")])
def test_toml_sample_passes_the_config_loader(where: str, code: str, tmp_path: Path) -> None:
    tables = tomllib.loads(code)
    code = _with_real_tls_files(code, tables.get("server", {}), tmp_path)
    config = tmp_path / "sample.toml"
    config.write_text(code)
    settings = load_settings("myapp:application", {}, str(config), environ={})
    assert specs_from_table(tables.get("pools", {}), ("thread", "process", "dask")) is not None
    assert settings.pools == tables.get("pools", {}), where


def _with_real_tls_files(code: str, server: dict[str, object], folder: Path) -> str:
    """The sample with its certificate paths (which exist only on the reader's host) pointing
    at a real certificate and key made here, so the loader checks everything else."""
    if "certfile" not in server:
        return code
    from tls_support import Pki

    pki = Pki(folder / "pki")
    issued = pki.server("server", serial=1)
    real = {"certfile": issued.cert, "keyfile": issued.key, "ca_certs": pki.ca}
    for key, path in real.items():
        if isinstance(server.get(key), str):
            code = code.replace(f'"{server[key]}"', f'"{path}"')
    return code


def test_there_are_samples_to_check() -> None:
    assert len(samples("python")) >= 4 and len(samples("toml")) >= 3


@pytest.mark.timeout(120)
def test_built_site_has_no_runs_of_blank_lines_in_code(tmp_path: Path) -> None:
    """The built pages, as a reader sees them: no code block with a run of blank lines."""
    pytest.importorskip("mkdocs", reason="mkdocs comes with the docs extra")
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert built.returncode == 0, built.stderr
    pages = list(site.rglob("*.html"))
    assert len(pages) >= len(PAGES)
    blocks = 0
    for page in pages:
        for block in re.findall(r"<pre[^>]*>(.*?)</pre>", page.read_text(), re.DOTALL):
            code = html.unescape(re.sub(r"<[^>]+>", "", block))
            assert "\n\n\n\n" not in code, f"{page.relative_to(site)}: a run of blank lines"
            blocks += 1
    assert blocks >= 50
