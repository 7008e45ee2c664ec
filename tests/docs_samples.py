"""Code samples in the docs are written inline (so a page reads whole on GitHub as on the
site) and kept in step with the files in examples/ and conf/ that the tests run. A sample is
a fenced block right after a marker naming its source, a whole file or a section of one
between `--8<-- [start:NAME]` and `--8<-- [end:NAME]` comments:

    <!-- sample: examples/quickstart.py:hash -->
    ```python
    ...
    ```

    python tests/docs_samples.py --write    # rewrite every sample from its file
    python tests/docs_samples.py            # exit 1 naming each sample that differs
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted((ROOT / "docs").rglob("*.md"))
SAMPLE = re.compile(
    r"^<!-- sample: (?P<path>[^\s:]+)(?::(?P<section>[\w-]+))? -->\n"
    r"(?P<fence>```[^\n]*)\n(?P<code>.*?)^```$",
    re.MULTILINE | re.DOTALL,
)
_MARKER = re.compile(r"--8<-- \[(start|end):([\w-]+)\]")


@dataclass(frozen=True)
class Sample:
    page: Path
    line: int
    source: str  # path[:section]
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def source_text(path: str, section: str | None) -> str:
    """The file's text, or its section's, without marker lines, and with no leading,
    trailing or more than two consecutive blank lines."""
    lines = (ROOT / path).read_text().splitlines()
    if section is not None:
        starts = [i for i, line in enumerate(lines) if f"--8<-- [start:{section}]" in line]
        ends = [i for i, line in enumerate(lines) if f"--8<-- [end:{section}]" in line]
        if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
            raise ValueError(f"{path}: no single section '{section}'")
        lines = lines[starts[0] + 1 : ends[0]]
    kept: list[str] = []
    for line in lines:
        if _MARKER.search(line):
            continue
        if not line.strip() and len(kept) >= 2 and not kept[-1].strip() and not kept[-2].strip():
            continue
        kept.append(line.rstrip())
    return "\n".join(kept).strip("\n") + "\n"


def samples(pages: list[Path] = PAGES) -> list[Sample]:
    found = []
    for page in pages:
        text = page.read_text()
        for match in SAMPLE.finditer(text):
            source = match.group("path") + (
                f":{match.group('section')}" if match.group("section") else ""
            )
            line = text.count("\n", 0, match.start()) + 1
            found.append(Sample(page, line, source, match.group("code")))
    return found


def expected(sample: Sample) -> str:
    path, _, section = sample.source.partition(":")
    return source_text(path, section or None)


def rewrite(page: Path) -> bool:
    """Rewrite the page's samples from their files; True if it changed."""
    text = page.read_text()

    def fill(match: re.Match[str]) -> str:
        path, section = match.group("path"), match.group("section")
        marker = match.group(0).split("\n", 1)[0]
        return f"{marker}\n{match.group('fence')}\n{source_text(path, section)}```"

    new = SAMPLE.sub(fill, text)
    if new != text:
        page.write_text(new)
    return new != text


def main(argv: list[str]) -> int:
    if "--write" in argv:
        for page in PAGES:
            if rewrite(page):
                print(f"rewrote {page.relative_to(ROOT)}")
        return 0
    stale = [s for s in samples() if s.code != expected(s)]
    for sample in stale:
        print(f"{sample.where}: differs from {sample.source}", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
