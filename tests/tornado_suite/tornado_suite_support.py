"""Tornado's own HTTP test modules, run with a tornado-run server in place of `HTTPServer`.

Every `HTTPServer(...)` those tests build (through `AsyncHTTPTestCase.get_http_server`,
`Application.listen` or directly) goes through Tornado's `Configurable` factory, so
`HTTPServer.configure(kind)` for the length of each test substitutes the server everywhere.
Each test class of each module is re-declared once per server kind with a `setUp` that does
that, so pytest collects `<kind>.<module>.<Class>::<test>`.

A test that cannot pass on a kind is listed in `DEVIATIONS` with its reason; on the Tornado
release the list is made for it runs as a strict xfail, so a fix shows up as a failure to
remove it from the list (and from docs/fast-http-deviations.md, which a test keeps in step
with the list).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import socket
import ssl
import unittest
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import tornado
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets, ssl_options_to_context
from tornado.tcpserver import TCPServer
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


class FastKindServer(HTTPServer):
    """The fast server behind `HTTPServer`'s interface: its keyword arguments (`xheaders`
    and `ssl_options` translated, the rest passed on) and the methods the tests call."""

    def initialize(  # type: ignore[override]
        self,
        request_callback: Any,
        xheaders: bool = False,
        ssl_options: dict[str, Any] | ssl.SSLContext | None = None,
        **kwargs: Any,
    ) -> None:
        from tornado_run.runner.worker.fast.server import FastHTTPServer

        TCPServer.__init__(self, ssl_options=ssl_options)  # Tornado's checks of the options
        context = None
        if self.ssl_options is not None:
            context = ssl_options_to_context(self.ssl_options, server_side=True)
        self.inner = FastHTTPServer(
            request_callback, proxy_trust=forwarded_trust(xheaders), ssl_context=context, **kwargs
        )

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        self.inner.add_sockets(list(sockets))

    def add_socket(self, socket: socket.socket) -> None:
        self.inner.add_socket(socket)

    def listen(self, port: int, address: str | None = None, **kwargs: Any) -> None:
        self.add_sockets(bind_sockets(port, address=address, **kwargs))

    def stop(self) -> None:
        self.inner.stop()

    async def close_all_connections(self) -> None:
        await self.inner.close_all_connections()


def fast_server() -> type[HTTPServer]:
    """FastKindServer, or ImportError where httptools is missing."""
    import httptools  # noqa: F401

    return FastKindServer


@dataclass(frozen=True)
class Kind:
    """A server kind: its name, the `HTTPServer` subclass the tests get and the event loop
    they run on."""

    name: str
    server: Callable[[], type[HTTPServer]]
    """Returns the class; raises ImportError (the kind is skipped) where unavailable."""
    loop_policy: Callable[[], asyncio.AbstractEventLoopPolicy] | None = None
    """The event loop policy for the test (None: asyncio's own loop)."""


def uvloop_policy() -> asyncio.AbstractEventLoopPolicy:
    """uvloop's, the worker's loop where installed (`--loop auto`)."""
    import uvloop

    return uvloop.EventLoopPolicy()


KINDS = {
    "tornado": Kind("tornado", lambda: TornadoKindServer),
    "fast": Kind("fast", fast_server),
    "fast_uvloop": Kind("fast_uvloop", fast_server, uvloop_policy),
}


def _each(kinds: str, cls: str, tests: str, reason: str) -> dict[str, str]:
    return {f"{kind}.{cls}::{test}": reason for kind in kinds.split() for test in tests.split()}


DEVIATIONS: dict[str, str] = {
    **_each(
        "fast fast_uvloop",
        "httpserver_test.BodyLimitsTest",
        "test_body_size_override_reset",
        "the test expects Tornado's bytes for a Content-Length over the limit, "
        "'HTTP/1.1 400 Bad Request\\r\\n\\r\\n'; the fast server's 400 also says "
        "'Connection: close' (RFC 9112 section 9.6: a server that closes should say so; the "
        "client may still be sending the body)",
    ),
    **_each(
        "fast fast_uvloop",
        "httpserver_test.KeepAliveTest",
        "test_keepalive_chunked",
        "the test expects an HTTP/1.0 request with Transfer-Encoding to keep the connection "
        "alive; the fast server closes after the response, as RFC 9112 section 6.1 requires "
        "(an HTTP/1.0 message with Transfer-Encoding has faulty framing)",
    ),
}
"""Test id (`<kind>.<module>.<Class>::<test>`, module without `tornado.test.`) -> why it
cannot pass on that kind with the Tornado release the list is made for."""

LISTED_FOR = (6, 6)
"""The Tornado release DEVIATIONS is checked against. Other releases' test modules differ (some
tests are looser, some classes differ), so there the entries are lenient and these are added."""

_GZIP_DELEGATE = (
    "decompress_request=True: the fast server builds Tornado's private _GzipMessageDelegate "
    "with Tornado 6.6's three arguments; before 6.6 it takes two (TypeError per request)"
)
OLDER_TORNADO_DEVIATIONS: dict[str, str] = {
    test_id: (
        "before 6.6 the test expects one data_received per 4-byte HTTP chunk; the fast server "
        "joins small pieces up to chunk_size, as Tornado 6.6's version of the test allows "
        "('small chunks may be coalesced when they arrive together')"
    )
    for style in ("Native", "Decorated")
    for test_id in _each(
        "fast fast_uvloop",
        f"web_test.{style}StreamingRequestFlowControlTest",
        "test_flow_control_chunked_body",
        "",
    )
}


def deviation(test_id: str) -> tuple[str, bool] | None:
    """Why `test_id` cannot pass on the installed Tornado, and whether a pass should fail the
    run (only on the release the list is made for), or None."""
    current = tornado.version_info[:2] == LISTED_FOR
    listed = DEVIATIONS if current else {**DEVIATIONS, **OLDER_TORNADO_DEVIATIONS}
    reason = listed.get(test_id)
    return None if reason is None else (reason, current)


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
            policy = kind.loop_policy() if kind.loop_policy is not None else None
        except ImportError as exc:
            raise unittest.SkipTest(f"{kind.name} unavailable: {exc}") from exc
        if policy is not None:
            self.addCleanup(asyncio.set_event_loop_policy, asyncio.get_event_loop_policy())
            asyncio.set_event_loop_policy(policy)
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


def uses_subtests(case: type[unittest.TestCase], test: str) -> bool:
    """True if the test method reports subtests (pytest judges each one on its own)."""
    return "self.subTest(" in inspect.getsource(getattr(case, test))


def suite_classes(kind: Kind) -> dict[str, type[unittest.TestCase]]:
    """Collected name -> substituted class, for every test class of every module."""
    classes = {}
    for module_name in MODULES:
        for case in test_classes(module_name):
            sub = substituted(case, kind)
            classes[sub.__name__] = sub
    return classes
