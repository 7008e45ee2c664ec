"""Exit codes (a contract: supervisors act on them) and the errors that lead to them."""

from __future__ import annotations

EXIT_OK = 0
"""Clean stop: TERM, INT or QUIT was obeyed."""
EXIT_FAILURE = 1
"""Runtime failure inside the runner."""
EXIT_USAGE = 2
"""Usage or configuration error: fix the command line, config file or environment."""
EXIT_APP_LOAD = 3
"""The application failed to load or a worker failed to boot: restarting cannot help."""


class RunnerError(Exception):
    """An error the runner reports as its message (no traceback) before exiting with `code`."""

    code = EXIT_FAILURE


class UsageError(RunnerError):
    """A bad option, config value or bind address; the message names key, value and what is
    allowed."""

    code = EXIT_USAGE


class AppLoadError(RunnerError):
    """The application could not be imported, found or built; the message is one line
    (what failed, and where in the app's code)."""

    code = EXIT_APP_LOAD


class BadValue(ValueError):
    """A raw option value is not allowed; the message says what is (the caller adds which
    option and value it was)."""


def format_error(message: str) -> str:
    """The text printed for an error: `tornado-run: error: ` before the first line, further
    lines (where it happened) indented as they are."""
    first, _, rest = message.partition("\n")
    return f"tornado-run: error: {first}\n" + (rest + "\n" if rest else "")
