"""The benchmark chart: drawn again from stored results without running anything, with
tornado-run's rows told apart from the peers' and each bar's value printed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from examples_support import REPO_ROOT

from examples.bench import report

PUBLISHED = REPO_ROOT / "examples" / "bench" / "published.json"


def test_published_results_hold_every_charted_section() -> None:
    sections = {s.key: s for s in report.read_sections(PUBLISHED)}
    assert set(report.CHART_PANELS) <= set(sections)
    for key, metric in report.CHART_METRICS.items():
        rows = sections[key].rows
        assert rows and all(row.values.get(metric) is not None for row in rows)


def test_every_panel_says_which_way_is_better_and_titles_its_axis() -> None:
    for panel in report.CHART_PANELS.values():
        assert panel.better in ("higher", "lower") and panel.axis and panel.title
    assert next(iter(report.CHART_PANELS)) == "http-hello"  # the default path comes first
    sections = {s.key: s for s in report.read_sections(PUBLISHED)}
    assert "--http" in sections["hello"].title  # the panel's subtitle says which server ran


@pytest.mark.parametrize(
    ("row", "ours"),
    [
        ("tornado-run --workers 2 --loop uvloop", True),
        ("@unblock thread", True),
        ("background() fire-and-forget", True),
        ("raw bind_sockets + fork_processes(2)", False),
        ("gunicorn -k tornado -w 2", False),
        ("stdlib ProcessPoolExecutor, 1 web process", False),
        ("AsyncHTTPClient", False),
    ],
)
def test_rows_of_tornado_run_are_told_apart_from_peers(row: str, ours: bool) -> None:
    assert report.is_ours(row) is ours


@pytest.mark.parametrize(
    ("value", "label"),
    [(7432, "7,432"), (59.2, "59.2"), (0.94, "0.94"), (0.298, "0.298"), (0, "0")],
)
def test_each_bar_prints_its_value(value: float, label: str) -> None:
    assert report.bar_label(value) == label


def test_chart_is_drawn_again_from_stored_results(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="matplotlib comes with the bench extra")
    chart = tmp_path / "chart.png"
    done = subprocess.run(
        [sys.executable, "-m", "examples.bench.report", str(PUBLISHED), str(chart)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
