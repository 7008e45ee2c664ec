"""The harness itself: Tornado's tests really get the substituted server, every test class
of the four modules is collected, and every listed deviation names a real test and is
documented."""

from __future__ import annotations

import asyncio
import importlib
import unittest
from collections.abc import Iterator
from pathlib import Path

import pytest
import tornado
import tornado.testing
import tornado.web
import uvloop
from tornado.httpserver import HTTPServer
from tornado_suite_support import (
    DEVIATIONS,
    KINDS,
    LISTED_FOR,
    MODULES,
    OLDER_TORNADO_DEVIATIONS,
    substituted,
    suite_classes,
)

pytestmark = pytest.mark.timeout(30)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "fast-http-deviations.md"


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hello")


class ServerSeen(tornado.testing.AsyncHTTPTestCase):
    """Records which server classes a Tornado test gets."""

    seen: list[type] = []  # noqa: RUF012 (written by the unittest run below)

    def get_app(self) -> tornado.web.Application:
        return tornado.web.Application([("/", Hello)])

    def test_record(self) -> None:
        self.seen.append(type(self.io_loop.asyncio_loop))  # type: ignore[attr-defined]
        self.seen.append(type(self.http_server))
        listened = tornado.web.Application([]).listen(0, address="127.0.0.1")
        self.seen.append(type(listened))
        listened.stop()
        self.assertEqual(self.fetch("/").body, b"hello")


ServerSeen.__test__ = False  # type: ignore[attr-defined]  # run only through the harness


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_server_a_tornado_test_builds_is_the_kinds_server(kind: str) -> None:
    try:
        server = KINDS[kind].server()
    except ImportError as exc:
        pytest.skip(f"{kind} server unavailable: {exc}")
    ServerSeen.seen.clear()
    case = substituted(ServerSeen, KINDS[kind])
    result = unittest.TestResult()
    unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    loop, *servers = ServerSeen.seen
    assert servers == [server, server]
    assert loop.__module__.startswith("uvloop" if "uvloop" in kind else "asyncio")
    assert not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    assert HTTPServer.configured_class() is HTTPServer  # restored after the test


def flattened(suite: unittest.TestSuite) -> Iterator[unittest.TestCase]:
    for item in suite:
        if isinstance(item, unittest.TestSuite):
            yield from flattened(item)
        else:
            yield item


@pytest.mark.parametrize("module", MODULES)
def test_every_test_tornados_own_loader_runs_is_collected(module: str) -> None:
    loader = unittest.defaultTestLoader
    runs = {
        test.id()
        for test in flattened(loader.loadTestsFromModule(importlib.import_module(module)))
        if type(test).__module__ == module  # not the skipped abstract bases
    }
    collected = {
        f"{module}.{case.__bases__[0].__name__}.{name}"
        for case in suite_classes(KINDS["tornado"]).values()
        if case.__module__ == module
        for name in loader.getTestCaseNames(case)
    }
    assert len(runs) > 20
    assert collected == runs


def test_each_deviation_names_a_collected_test_and_is_documented() -> None:
    """Documented: the page names the test's class, and the test unless every test of that
    class is listed."""
    tests: dict[str, set[str]] = {}
    for kind in KINDS.values():
        for name, case in suite_classes(kind).items():
            tests[name] = set(unittest.defaultTestLoader.getTestCaseNames(case))
    listed = {**DEVIATIONS, **OLDER_TORNADO_DEVIATIONS}
    current = tornado.version_info[:2] == LISTED_FOR
    text = DOCS.read_text()
    for entry in listed:
        name, _, test = entry.partition("::")
        if (entry in DEVIATIONS) == current:  # the list made for the installed release
            assert test in tests.get(name, set()), f"{entry} is not a collected test"
        whole_class = all(f"{name}::{other}" in listed for other in tests.get(name, ()))
        assert name.partition(".")[2] in text, f"{name} is not named in {DOCS.name}"
        assert whole_class or test in text, f"{entry} is not listed in {DOCS.name}"
