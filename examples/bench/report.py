"""Turn measured sections into markdown tables, a JSON file and a PNG chart."""

from __future__ import annotations

import json
import os
import platform
import sys
import textwrap
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil

from .plan import Column, Row, Section


def machine() -> dict[str, Any]:
    """The machine the figures came from (they mean little without it)."""
    cpu_model = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu_model or "unknown",
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _cell(value: float | None, digits: int) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def _ratio(section: Section, row: Row) -> str:
    if not section.ratio_key or not section.baseline:
        return ""
    base = next((r for r in section.rows if r.name == section.baseline), None)
    mine, theirs = (
        row.values.get(section.ratio_key),
        base.values.get(section.ratio_key) if base else None,
    )
    if mine is None or not theirs:
        return "-"
    return f"{mine / theirs:.2f}x"


def markdown(section: Section) -> str:
    """The section as a markdown table, then its skip lines and notes."""
    headers = ["", *(c.header for c in section.columns)]
    if section.ratio_key:
        headers.append("ratio")
    lines = [f"### {section.title}", ""]
    if section.columns:
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row in section.rows:
        if row.note and not any(v is not None for v in row.values.values()):
            continue
        cells = [row.name, *(_cell(row.values.get(c.key), c.digits) for c in section.columns)]
        if section.ratio_key:
            cells.append(_ratio(section, row))
        lines.append("| " + " | ".join(cells) + " |")
    if section.columns:
        lines.append("")
    lines += [f"- skipped {row.name}: {row.note}" for row in section.rows if row.note]
    if section.ratio_key:
        lines.append(f"- ratio: {section.ratio_key} against the row '{section.baseline}'")
    lines += [f"- {note}" for note in section.notes]
    if section.text:  # a sub-benchmark's own markdown, passed through
        lines += ["", section.text.strip()] if lines[-1] else [section.text.strip()]
    return "\n".join(lines).rstrip() + "\n"


def write_json(path: Path, sections: list[Section], settings: dict[str, Any]) -> None:
    payload = {
        "machine": machine(),
        "settings": settings,
        "sections": [asdict(s) for s in sections],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


@dataclass(frozen=True)
class Panel:
    """How a section is charted: the figure drawn, the panel's title, the x axis's title,
    and which way is better."""

    key: str
    title: str
    axis: str
    better: str  # "higher" or "lower"


CHART_PANELS = {  # section key -> panel, in the chart's order
    "http-hello": Panel(
        "req_per_cpu_s", "HTTP layer, hello world", "requests per server CPU-second", "higher"
    ),
    "hello": Panel("req_per_cpu_s", "Hello world", "requests per server CPU-second", "higher"),
    "tls": Panel("kept_per_cpu_s", "HTTPS keep-alive", "requests per server CPU-second", "higher"),
    "async": Panel("req_s", "Async tasks", "answered requests per second (log scale)", "higher"),
    "forward": Panel("req_s", "Forwarding", "2xx requests per second", "higher"),
    "cpu": Panel("fraction", "CPU-bound /slow", "fraction of the physical limit", "higher"),
    "overload": Panel("shed_pct", "Overload at 4x", "% shed at once with 503", "higher"),
    "reload": Panel("failed_pct", "Reload", "% failed requests across 10 HUPs", "lower"),
    "spread": Panel("busiest_pct", "Spread", "% of 64 connections on the busiest worker", "lower"),
}
CHART_METRICS = {key: panel.key for key, panel in CHART_PANELS.items()}
"""The figure charted for each section (what the tests and `_bars` read)."""


OURS, PEERS = "#d9541e", "#8a96a3"  # tornado-run's rows stand out; peers and baselines in grey


def is_ours(row_name: str) -> bool:
    """A row that measures tornado-run (the launcher, @unblock, background()), not a peer or
    a baseline such as raw fork_processes, gunicorn, the stdlib pool or a blocking handler."""
    return row_name.startswith("tornado-run") or "@unblock" in row_name or "background(" in row_name


def bar_label(value: float) -> str:
    """A bar's value as printed beside it: 7,432 / 59.2 / 0.94 / 0.298 / 0."""
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def write_chart(path: Path, sections: list[Section]) -> str | None:
    """Draw one bar chart per charted section into `path`, one panel per row, sized to be
    read at the docs page's width: a title saying which way is better and the section's own
    title (which says what ran, e.g. which `--http`), an axis title, tornado-run's bars in
    colour and the peers' in grey, each bar's value printed at its end. Returns a note when
    matplotlib is missing (install the `bench` extra) instead of failing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.patches import Patch
    except ImportError:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]')"
    by_key = {s.key: s for s in sections}
    charted = [by_key[key] for key in CHART_PANELS if key in by_key and _bars(by_key[key])]
    if not charted:
        return None
    heights = [
        1.2 + 0.25 * textwrap.fill(section.title, 62).count("\n") + 0.5 * len(_bars(section))
        for section in charted
    ]
    fig, axes = plt.subplots(
        len(charted),
        1,
        figsize=(10, sum(heights) + 0.6),
        squeeze=False,
        gridspec_kw={"height_ratios": heights},
    )
    for axis, section in zip(axes[:, 0], charted, strict=True):
        panel = CHART_PANELS[section.key]
        names, values = zip(*_bars(section), strict=True)
        colours = [OURS if is_ours(name) else PEERS for name in names]
        labels = [textwrap.fill(name, 30) for name in names]
        bars = axis.barh(labels, values, color=colours)
        axis.bar_label(bars, labels=[bar_label(v) for v in values], padding=4, fontsize=12)
        subtitle = textwrap.fill(section.title, 62)
        axis.set_title(
            f"{panel.title}: {panel.better} is better\n{subtitle}", fontsize=12.5, loc="left"
        )
        axis.set_xlabel(f"{panel.axis} ({panel.better} is better)", fontsize=12)
        axis.set_ylabel("server / variant", fontsize=11)
        axis.invert_yaxis()
        axis.tick_params(labelsize=12)
        axis.margins(x=0.18)  # room for the value labels
        if section.key == "async":
            axis.set_xscale("log")
        if section.key == "cpu":
            axis.axvline(1.0, color="#888", linestyle="--", linewidth=1)  # the physical limit
    legend = [Patch(color=OURS, label="tornado-run"), Patch(color=PEERS, label="peers, baselines")]
    fig.legend(handles=legend, loc="upper right", fontsize=12, frameon=False, ncols=2)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / (sum(heights) + 0.6)))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return None


def _bars(section: Section) -> list[tuple[str, float]]:
    key = CHART_METRICS[section.key]
    bars = [(r.name, v) for r in section.rows if (v := r.values.get(key)) is not None]
    return [(n, v) for n, v in bars if v > 0] if section.key == "async" else bars  # log axis


def read_results(path: Path) -> tuple[list[Section], dict[str, Any]]:
    """The sections (columns, rows, ratio, notes, text) and the machine of a results file
    written by `write_json`."""
    payload = json.loads(path.read_text())
    sections = [
        Section(
            key=raw["key"],
            title=raw["title"],
            columns=[Column(**column) for column in raw.get("columns", [])],
            rows=[
                Row(r["name"], dict(r.get("values", {})), r.get("note", "")) for r in raw["rows"]
            ],
            ratio_key=raw.get("ratio_key"),
            baseline=raw.get("baseline"),
            notes=list(raw.get("notes", [])),
            text=raw.get("text", ""),
        )
        for raw in payload["sections"]
    ]
    return sections, dict(payload.get("machine", {}))


def read_sections(path: Path) -> list[Section]:
    """The sections of a results file, for drawing the chart again."""
    return read_results(path)[0]


def main(argv: list[str] | None = None) -> int:
    """`python -m examples.bench.report RESULTS.json CHART.png`: draw the chart again from
    stored results, without running the benchmark."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m examples.bench.report RESULTS.json CHART.png", file=sys.stderr)
        return 2
    note = write_chart(Path(args[1]), read_sections(Path(args[0])))
    if note:
        print(note, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
