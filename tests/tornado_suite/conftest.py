"""Tornado's test modules expect the logging its own runner sets up, and known deviations
run as strict xfails on the Tornado release they are listed for (a fix fails the run until
its entry is removed). A test with subtests is a lenient xfail: pytest would count each of
its passing subtests as a strict xpass."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from tornado_suite_support import deviation, uses_subtests

TORNADO_LOGGERS = ("tornado", "tornado.general", "tornado.application", "tornado.access")


@pytest.fixture(autouse=True, scope="module")
def tornado_test_logging() -> Iterator[None]:
    """Logging as tornado.test.runtests sets it up, whatever earlier tests in this process
    left behind (a root level above WARNING from an in-process `--log-level`, a worker's
    filter for TLS client errors): Tornado's tests expect their warnings to be emitted. The
    access log is off, as there: access lines would count as unexpected logs."""
    root = logging.getLogger()
    loggers = [logging.getLogger(name) for name in TORNADO_LOGGERS]
    saved = [(lg.level, list(lg.filters), lg.disabled, lg.propagate) for lg in [root, *loggers]]
    disabled_below = logging.root.manager.disable
    logging.disable(logging.NOTSET)
    root.setLevel(logging.INFO)
    for logger in loggers:
        logger.setLevel(logging.NOTSET)
        logger.filters.clear()
        logger.disabled = False
        logger.propagate = True
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)
    yield
    logging.disable(disabled_below)
    for logger, (level, filters, disabled, propagate) in zip([root, *loggers], saved, strict=True):
        logger.setLevel(level)
        logger.filters[:] = filters
        logger.disabled = disabled
        logger.propagate = propagate


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        found = deviation(item.nodeid.rpartition("/")[2].partition("::")[2])
        if found is not None and isinstance(item, pytest.Function) and item.cls is not None:
            reason, strict = found
            strict = strict and not uses_subtests(item.cls, item.name)
            item.add_marker(pytest.mark.xfail(reason=reason, strict=strict))
