"""Tornado's own HTTP test modules, run with a tornado-run server in place of `HTTPServer`.

Every `HTTPServer(...)` those tests build (through `AsyncHTTPTestCase.get_http_server`,
`Application.listen` or directly) goes through Tornado's `Configurable` factory, so
`HTTPServer.configure(kind)` for the length of each test substitutes the server everywhere.
Each test class of each module is re-declared once per server kind with a `setUp` that does
that, so pytest collects `<kind>.<module>.<Class>::<test>`.

A test that cannot pass on a kind is listed in `DEVIATIONS` with its reason; it runs as a
strict xfail, so a fix shows up as a failure to remove it from the list (and from
docs/fast-http-deviations.md, which a test keeps in step with the list).
"""

from __future__ import annotations

import importlib
import inspect
import unittest
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tornado.httpserver import HTTPServer
from tornado_run.runner.settings.options import Settings
from tornado_run.runner.worker.httpserver import DrainingHTTPServer, ProxyTrust

MODULES = (
    "tornado.test.httpserver_test",
    "tornado.test.web_test",
    "tornado.test.websocket_test",
    "tornado.test.simple_httpclient_test",
)


def forwarded_trust(xheaders: bool) -> ProxyTrust | None:
    """Tornado's `xheaders=True` as a user gets it: `--proxy-headers` with the default
    `--forwarded-allow-ips` (loopback, where every test client connects from)."""
    return ProxyTrust(Settings(app="app:application").forwarded_allow_ips) if xheaders else None


class TornadoKindServer(DrainingHTTPServer):
    """The worker's Tornado-based server, taking `HTTPServer`'s keyword arguments."""

    def initialize(self, *args: Any, xheaders: bool = False, **kwargs: Any) -> None:
        super().initialize(*args, proxy_trust=forwarded_trust(xheaders), **kwargs)


@dataclass(frozen=True)
class Kind:
    """A server kind: its name and the `HTTPServer` subclass the tests get."""

    name: str
    server: Callable[[], type[HTTPServer]]
    """Returns the class; raises ImportError (the kind is skipped) where unavailable."""


KINDS = {"tornado": Kind("tornado", lambda: TornadoKindServer)}

DEVIATIONS: dict[str, str] = {}
"""Test id (`<kind>.<module>.<Class>::<test>`, module without `tornado.test.`) -> why it
cannot pass on that kind."""


def test_classes(module_name: str) -> list[type[unittest.TestCase]]:
    """The module's own concrete TestCase classes (not ones it imports)."""
    module = importlib.import_module(module_name)
    found = []
    for _, obj in inspect.getmembers(module, inspect.isclass):
        if (
            issubclass(obj, unittest.TestCase)
            and obj.__module__ == module_name
            and unittest.defaultTestLoader.getTestCaseNames(obj)
        ):
            found.append(obj)
    return found


def substituted(case: type[unittest.TestCase], kind: Kind) -> type[unittest.TestCase]:
    """`case` with every HTTPServer it builds being `kind`'s server."""
    original_setup = case.setUp

    def setUp(self: unittest.TestCase) -> None:
        try:
            server = kind.server()
        except ImportError as exc:
            raise unittest.SkipTest(f"{kind.name} server unavailable: {exc}") from exc
        previous = HTTPServer.configured_class()
        HTTPServer.configure(server)
        self.addCleanup(HTTPServer.configure, previous)
        original_setup(self)

    short = case.__module__.removeprefix("tornado.test.")
    name = f"{kind.name}.{short}.{case.__name__}"
    namespace: dict[str, Any] = {"setUp": setUp, "__module__": case.__module__}
    if not hasattr(case, "runTest"):
        # pytest builds a placeholder instance as `case("runTest")`; Tornado < 6.4's
        # AsyncTestCase looks that method up in its constructor.
        namespace["runTest"] = _placeholder
    return type(name, (case,), namespace)


def _placeholder(self: unittest.TestCase) -> None:
    """Never run: every collected class has test methods."""


def suite_classes(kind: Kind) -> dict[str, type[unittest.TestCase]]:
    """Collected name -> substituted class, for every test class of every module."""
    classes = {}
    for module_name in MODULES:
        for case in test_classes(module_name):
            sub = substituted(case, kind)
            classes[sub.__name__] = sub
    return classes
