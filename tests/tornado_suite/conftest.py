"""Tornado's test modules expect the logging its own runner sets up, and known deviations
run as strict xfails on the Tornado release they are listed for (a fix fails the run until
its entry is removed). A test with subtests is a lenient xfail: pytest would count each of
its passing subtests as a strict xpass."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from tornado_suite_support import deviation, uses_subtests


@pytest.fixture(autouse=True, scope="module")
def quiet_access_log() -> Iterator[None]:
    """As tornado.test.runtests: access lines would count as unexpected logs."""
    logger = logging.getLogger("tornado.access")
    previous = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(previous)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        found = deviation(item.nodeid.rpartition("/")[2].partition("::")[2])
        if found is not None and isinstance(item, pytest.Function) and item.cls is not None:
            reason, strict = found
            strict = strict and not uses_subtests(item.cls, item.name)
            item.add_marker(pytest.mark.xfail(reason=reason, strict=strict))
