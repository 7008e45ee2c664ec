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

import asyncio
import fnmatch
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
from tornado.ioloop import IOLoop
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
        listening = list(sockets)
        on_loop(lambda: self.inner.add_sockets(listening))

    def add_socket(self, socket: socket.socket) -> None:
        self.add_sockets([socket])

    def listen(self, port: int, address: str | None = None, **kwargs: Any) -> None:
        self.add_sockets(bind_sockets(port, address=address, **kwargs))

    def stop(self) -> None:
        on_loop(self.inner.stop)

    async def close_all_connections(self) -> None:
        await self.inner.close_all_connections()


def on_loop(call: Callable[[], None]) -> None:
    """Run `call` on the running loop, or briefly run the current loop for it: Tornado's
    tests set up and tear down servers outside the loop, and FastHTTPServer's `add_sockets`
    and `stop` need a running one."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        IOLoop.current().run_sync(call)  # type: ignore[arg-type]
    else:
        call()


def fast_server() -> type[HTTPServer]:
    """FastKindServer, or ImportError where httptools is missing."""
    import httptools  # noqa: F401

    return FastKindServer


@dataclass(frozen=True)
class Kind:
    """A server kind: its name and the `HTTPServer` subclass the tests get."""

    name: str
    server: Callable[[], type[HTTPServer]]
    """Returns the class; raises ImportError (the kind is skipped) where unavailable."""


KINDS = {
    "tornado": Kind("tornado", lambda: TornadoKindServer),
    "fast": Kind("fast", fast_server),
}


def _each(kind: str, cls: str, tests: str, reason: str) -> dict[str, str]:
    return {f"{kind}.{cls}::{test}": reason for test in tests.split()}


_LOG_TEXT = (
    "the 400 answer is Tornado's; the gen_log line names the error in llhttp's words where "
    "the test matches Tornado's: "
)
DEVIATIONS: dict[str, str] = {
    **_each(
        "fast",
        "httpserver_test.HTTPServerRawTest",
        "test_malformed_first_line_log test_malformed_first_line_response test_invalid_methods",
        _LOG_TEXT + "'invalid method' for 'Malformed HTTP request line'",
    ),
    **_each(
        "fast",
        "httpserver_test.HTTPServerRawTest",
        "test_malformed_headers",
        _LOG_TEXT + "'Invalid header token' for 'no colon in header line'",
    ),
    **_each(
        "fast",
        "httpserver_test.HTTPServerRawTest",
        "test_chunked_request_body_invalid_size",
        _LOG_TEXT + "'Invalid character in chunk size' for 'invalid chunk size'",
    ),
    **_each(
        "fast",
        "httpserver_test.HTTPServerRawTest",
        "test_chunked_request_body_duplicate_header",
        _LOG_TEXT
        + "'Invalid `Transfer-Encoding` header value' for "
        + "'Unsupported Transfer-Encoding chunked,chunked'",
    ),
    **_each(
        "fast",
        "httpserver_test.HTTPServerRawTest",
        "test_chunked_request_body_unsupported_transfer_encoding",
        _LOG_TEXT
        + "\"unsupported Transfer-Encoding 'gzip, chunked'\" for "
        + "'Unsupported Transfer-Encoding gzip, chunked'",
    ),
    **_each(
        "fast",
        "httpserver_test.HTTPServerRawTest",
        "test_chunked_request_body_transfer_encoding_and_content_length",
        _LOG_TEXT
        + '"Content-Length can\'t be present with Transfer-Encoding" for '
        + "'Message with both Transfer-Encoding and Content-Length'",
    ),
    **_each(
        "fast",
        "httpserver_test.HTTPServerRawTest",
        "test_invalid_content_length",
        _LOG_TEXT
        + "'Invalid character in Content-Length' for 'Only integer Content-Length is allowed'",
    ),
    **_each(
        "fast",
        "httpserver_test.HTTPServerRawTest",
        "test_content_length_list_whitespace",
        _LOG_TEXT + "'Invalid character in Content-Length' for 'Multiple unequal Content-Lengths'",
    ),
    **_each(
        "fast",
        "httpserver_test.BodyLimitsTest",
        "test_large_body_buffered_chunked test_large_body_streaming_chunked",
        _LOG_TEXT + "'body too large' for 'chunked body too large'",
    ),
    **_each(
        "fast",
        "httpserver_test.MaxHeaderSizeTest",
        "test_large_headers",
        "the 431 answer is right; the server logs 'Malformed HTTP message ... request headers "
        "too large', a line the test does not expect (Tornado logs 'Unsatisfiable read')",
    ),
    **_each(
        "fast",
        "httpserver_test.*",  # SSLTest; before Tornado 6.6 also one class per TLS version
        "test_error_logging test_non_ssl_request",
        "a failed TLS handshake is logged at debug level as 'connection setup failed'; "
        "Tornado logs a warning 'SSL Error on ...' that the test expects",
    ),
    **_each(
        "fast",
        "httpserver_test.StreamingChunkSizeTest",
        "test_regular_body test_compressed_body test_chunked_body test_chunked_compressed",
        "HTTPServer's chunk_size (the largest piece handed to data_received) is not an "
        "argument of the fast server",
    ),
    **_each(
        "fast",
        "web_test.NativeStreamingRequestFlowControlTest",
        "test_flow_control_fixed_body test_flow_control_chunked_body "
        "test_flow_control_compressed_body",
        "HTTPServer's chunk_size is not an argument of the fast server",
    ),
    **_each(
        "fast",
        "web_test.DecoratedStreamingRequestFlowControlTest",
        "test_flow_control_fixed_body test_flow_control_chunked_body "
        "test_flow_control_compressed_body",
        "HTTPServer's chunk_size is not an argument of the fast server",
    ),
    **_each(
        "fast",
        "httpserver_test.XHeaderTest",
        "test_ip_headers test_scheme_headers test_trusted_downstream",
        "HTTPServer's trusted_downstream (proxies to skip in X-Forwarded-For) is not an "
        "argument of the fast server",
    ),
    **_each(
        "fast",
        "httpserver_test.ManualProtocolTest",
        "test_manual_protocol",
        "HTTPServer's protocol (the scheme to report, e.g. behind a TLS proxy) is not an "
        "argument of the fast server",
    ),
    **_each(
        "fast",
        "web_test.ClientCloseTest",
        "test_client_close",
        "the handler reaches for request.connection.stream (HTTP1Connection's IOStream); "
        "the fast server's request connection has none",
    ),
    **_each(
        "fast",
        "simple_httpclient_test.HTTP100ContinueTestCase",
        "test_100_continue",
        "the callback writes its own 1xx and response on request.connection.stream "
        "(HTTP1Connection's IOStream); the fast server's request connection has none",
    ),
}
"""Test id (`<kind>.<module>.<Class>::<test>`, module without `tornado.test.`; `*` matches
any part) -> why it cannot pass on that kind, with the Tornado release the list is made for."""

LISTED_FOR = (6, 6)
"""The Tornado release DEVIATIONS is checked against. Other releases' test modules differ (some
tests are looser, some classes differ), so there the entries are lenient and these are added."""

OLDER_TORNADO_DEVIATIONS: dict[str, str] = {
    **_each(
        "fast",
        "httpserver_test.GzipTest",
        "test_gzip test_gzip_case_insensitive test_uncompressed",
        "the fast server builds Tornado's private _GzipMessageDelegate with Tornado 6.6's "
        "arguments; before 6.6 it takes one fewer (TypeError per request)",
    ),
}


def deviation(test_id: str) -> tuple[str, bool] | None:
    """Why `test_id` cannot pass on the installed Tornado, and whether a pass should fail the
    run (only on the release the list is made for), or None."""
    current = tornado.version_info[:2] == LISTED_FOR
    listed = DEVIATIONS if current else {**DEVIATIONS, **OLDER_TORNADO_DEVIATIONS}
    for pattern, reason in listed.items():
        if fnmatch.fnmatchcase(test_id, pattern):
            return reason, current
    return None


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
