"""Every benchmark figure the README and docs/benchmarks.md show comes from the one published
results file, examples/bench/published.json: the generated parts of both pages are what the
file gives, each headline figure is the file's own value, and the page has no figure-bearing
region left out."""

from __future__ import annotations

import re

import pytest
from examples_support import REPO_ROOT

from examples.bench import publish, report


def test_readme_and_benchmarks_page_show_the_published_figures() -> None:
    generated = publish.regions(publish.load())
    assert publish.stale(generated) == [], f"run: {publish.COMMAND}"


def test_every_region_is_on_its_page() -> None:
    readme = publish.README.read_text()
    page = publish.PAGE.read_text()
    assert "<!-- bench:headline:start -->" in readme
    for name in ("run", "summary", "tables"):
        assert f"<!-- bench:{name}:start -->" in page


def test_headline_figures_are_computed_from_the_file() -> None:
    """A figure the README prints changes when the file's value changes: the generation
    reads the file, nothing is typed in."""
    results = publish.load()
    ratio = results.value("http-hello", publish.FAST, "req_per_cpu_s") / results.value(
        "http-hello", publish.RAW, "req_per_cpu_s"
    )
    assert f"**{ratio:.2f}x**" in publish.regions(results)["headline"]
    row = next(r for r in results.sections["http-hello"].rows if r.name == publish.FAST)
    row.values["req_per_cpu_s"] = 2 * float(row.values["req_per_cpu_s"] or 0)
    assert f"**{2 * ratio:.2f}x**" in publish.regions(results)["headline"]


def test_tables_are_the_published_sections() -> None:
    sections, _ = report.read_results(publish.PUBLISHED)
    page = publish.PAGE.read_text()
    for section in sections:
        assert report.markdown(section) in page


def test_no_figure_outside_the_generated_regions_of_the_results() -> None:
    page = publish.PAGE.read_text()
    results = page[page.index("## Results") :]
    outside = re.sub(r"<!-- bench:(\w+):start -->.*?<!-- bench:\1:end -->", "", results, flags=re.S)
    assert not re.search(r"\d\.\d\dx|\d+ ms\b|\d+%", outside), outside


def test_a_missing_figure_names_itself() -> None:
    results = publish.load()
    results.sections["tls"].rows.clear()
    with pytest.raises(KeyError, match="tls"):
        publish.regions(results)


def test_check_command_passes_on_the_repository() -> None:
    assert publish.main(["--check"]) == 0
    assert (REPO_ROOT / "docs" / "assets" / "chart.png").resolve() == publish.CHART.resolve()
