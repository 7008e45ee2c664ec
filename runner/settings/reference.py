"""The option table as a Markdown reference page (docs/reference/options.md), written from
`OPTIONS` so the documentation cannot drift from the code:

    python -m tornado_run.runner.settings.reference docs/reference/options.md
    python -m tornado_run.runner.settings.reference --check docs/reference/options.md
"""

from __future__ import annotations

import html
import re
import sys
from pathlib import Path

from . import parsers as p
from .options import OPTIONS, Option

COMMAND = "python -m tornado_run.runner.settings.reference docs/reference/options.md"

HEADER = f"""\
# Option reference

<!-- Generated from tornado_run.runner.settings.options.OPTIONS by
     `{COMMAND}`; do not edit: tests/test_docs.py fails when this file differs. -->

Every option of `tornado-run MODULE:ATTR` is declared once in the option table, and this page
is written from it. Each one can be given three ways, highest precedence first:

1. on the command line, as the **flag**;
2. as the **environment variable** (`TORNADO_RUN_GRACEFUL_TIMEOUT=30`);
3. in the config file's `[server]` table under the **key** (`graceful_timeout = 30`; hyphens
   are accepted too), the file named by `--config FILE` or `$TORNADO_RUN_CONFIG`.

Below them all are the defaults in the table; `$WEB_CONCURRENCY`, where set, replaces the
default of `workers`. Lists (`bind`, `forwarded_allow_ips`) are TOML arrays or comma-separated
strings; booleans accept `true/false`, `1/0`, `yes/no`, `on/off`; a boolean flag `--name` has
its `--no-name`. A bad value stops the start with one line naming where it came from, the value
and what is allowed, and exit code 2.

Not in the table, because they are not settings: `--config FILE`, `--check` (load the app,
bind, validate, then exit with the code a real start would give), `--version` and `--help`,
and the subcommands `tornado-run status` and `tornado-run supervisord-conf`.

| flag | key | environment variable | default | meaning |
|---|---|---|---|---|
"""


def _flag(option: Option) -> str:
    if option.is_flag and not option.name.startswith("no_"):
        return f"`{option.flag}` / `--no-{option.flag[2:]}`"
    if option.is_flag:
        return f"`{option.flag}`"
    short = f"`{option.short}`, " if option.short else ""
    return f"{short}`{option.flag} {option.metavar}`"


def _size(value: int) -> str:
    for unit, factor in (("G", 1 << 30), ("M", 1 << 20), ("K", 1 << 10)):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return str(value)


def default_text(option: Option) -> str:
    """The default as a user would write it: `10M`, `127.0.0.1:8000`, `off`, `none`."""
    value = option.default
    if option.is_flag:
        return "on" if value else "off"
    if value is None or value == ():
        return "none"
    if option.parse is p.parse_size:
        return _size(int(value))
    if isinstance(value, tuple):
        return ", ".join(getattr(item, "text", str(item)) for item in value)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value)
    if text == "0" and "0: off" in option.help:
        return "0 (off)"
    return text


def _cell(text: str) -> str:
    """A table cell: a code span with `|` in it becomes <code> with `&#124;` (a table cell's
    `\\|` shows literally inside backticks on some renderers); any other `|` is escaped."""
    text = re.sub(
        r"`([^`]*\|[^`]*)`",
        lambda m: "<code>" + html.escape(m.group(1)).replace("|", "&#124;") + "</code>",
        text,
    )
    return text.replace("|", "\\|")


def render() -> str:
    """The whole reference page."""
    rows = [
        "| "
        + " | ".join(
            _cell(cell)
            for cell in (
                _flag(option),
                f"`{option.name}`",
                f"`{option.env}`",
                f"`{default_text(option)}`",
                option.help,
            )
        )
        + " |"
        for option in OPTIONS
    ]
    return HEADER + "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write the page to the path given, or with `--check` exit 1 if that file differs."""
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    paths = [arg for arg in args if arg != "--check"]
    if len(paths) != 1:
        print(f"usage: {COMMAND} [--check]", file=sys.stderr)
        return 2
    path = Path(paths[0])
    if check:
        current = path.read_text() if path.exists() else ""
        if current != render():
            print(f"{path} is out of date with the option table; run: {COMMAND}", file=sys.stderr)
            return 1
        return 0
    path.write_text(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
