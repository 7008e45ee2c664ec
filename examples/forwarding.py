"""Forward requests to an upstream with Tornado's non-blocking `AsyncHTTPClient`: a proxy for
GET/POST/PUT/DELETE (headers and body both ways), and a multipart upload re-encoded with
urllib3's encoder and sent on. A blocking client (`requests`) here would stall the worker for
the whole upstream round trip.

The module also holds `echo_application`, an upstream that describes what it received, so the
example runs on its own (two terminals, from the repository root):

    .venv/bin/tornado-run examples.forwarding:echo_application --bind 127.0.0.1:8001
    FORWARD_UPSTREAM=http://127.0.0.1:8001 .venv/bin/tornado-run examples.forwarding:application
    curl -X PUT -H 'X-Trace: 7' -d 'hello' 'localhost:8000/proxy/echo/items/1?full=yes'
    curl -F title=cat -F photo=@README.md localhost:8000/upload

For comparison, `/fetch-blocking/PATH` makes the same GET with a blocking client (stdlib
`urllib`, as `requests` would) right on the event loop, and `/fetch-unblock/PATH` makes it under
`@unblock`; `?delay_ms=N` makes the echo upstream wait N ms before answering (`ab` is
ApacheBench, from Debian's and Ubuntu's apache2-utils package):

    ab -n 100 -c 20 'http://127.0.0.1:8000/fetch-blocking/echo?delay_ms=100'  # one at a time
    ab -n 100 -c 20 'http://127.0.0.1:8000/fetch-unblock/echo?delay_ms=100'   # a thread each
    ab -n 100 -c 20 'http://127.0.0.1:8000/proxy/echo?delay_ms=100'           # all at once
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import urllib.error
import urllib.request

import tornado.web
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httputil import HTTPHeaders
from tornado_run.decorators import unblock
from urllib3 import encode_multipart_formdata

UPSTREAM_ENV = "FORWARD_UPSTREAM"
DEFAULT_UPSTREAM = "http://127.0.0.1:8001"
UPSTREAM_TIMEOUT = 30.0
MAX_DELAY_MS = 10_000

# Tornado's client runs 10 fetches at once per worker by default and queues the rest; a proxy
# wants more. configure() only records settings, so it is safe before the fork.
AsyncHTTPClient.configure(None, max_clients=200)

# Headers that describe one connection, not the message: never forwarded (RFC 9110 7.6.1).
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def upstream() -> str:
    """The upstream base URL, from `FORWARD_UPSTREAM`."""
    return os.environ.get(UPSTREAM_ENV, DEFAULT_UPSTREAM).rstrip("/")


def _end_to_end(headers: HTTPHeaders) -> HTTPHeaders:
    kept = HTTPHeaders()
    for name, value in headers.get_all():
        if name.lower() not in HOP_BY_HOP:
            kept.add(name, value)
    return kept


class ForwardingHandler(tornado.web.RequestHandler):
    """Relays the upstream's status, headers and body; 502 when the upstream is unreachable."""

    async def relay(self, request: HTTPRequest) -> None:
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except OSError as err:  # refused or reset before any HTTP answer
            raise tornado.web.HTTPError(502, reason="upstream unreachable") from err
        if response.code == 599:  # no HTTP answer at all, e.g. timed out
            raise tornado.web.HTTPError(502, reason="upstream did not answer")
        self.set_status(response.code, response.reason)
        for name in ("Content-Type", "Server", "Date"):
            self.clear_header(name)
        for name, value in _end_to_end(response.headers).get_all():
            self.add_header(name, value)
        if response.body:
            self.write(response.body)

    def outgoing_headers(self) -> HTTPHeaders:
        headers = _end_to_end(self.request.headers)
        headers.add("X-Forwarded-For", self.request.remote_ip or "unknown")
        return headers


class Proxy(ForwardingHandler):
    """`/proxy/PATH?QUERY` -> `UPSTREAM/PATH?QUERY`, same method, headers and body."""

    async def forward(self, path: str) -> None:
        url = f"{upstream()}/{path}"
        if self.request.query:
            url += f"?{self.request.query}"
        method = self.request.method or "GET"
        has_body = method in ("POST", "PUT") or bool(self.request.body)
        request = HTTPRequest(
            url,
            method=method,
            headers=self.outgoing_headers(),
            body=self.request.body if has_body else None,
            follow_redirects=False,
            allow_nonstandard_methods=True,  # lets DELETE carry a body
            request_timeout=UPSTREAM_TIMEOUT,
        )
        await self.relay(request)

    get = post = put = delete = forward


class Upload(ForwardingHandler):
    """`/upload`: a multipart form (fields and files) parsed here and re-encoded upstream."""

    async def post(self) -> None:
        fields: list[tuple[str, str | tuple[str, bytes, str]]] = []
        for name, values in self.request.body_arguments.items():
            fields.extend((name, value.decode("utf-8", "replace")) for value in values)
        for name, files in self.request.files.items():
            fields.extend((name, (f.filename, f.body, f.content_type)) for f in files)
        if not fields:
            raise tornado.web.HTTPError(400, reason="expected a multipart/form-data body")
        body, content_type = encode_multipart_formdata(fields)
        headers = self.outgoing_headers()
        headers["Content-Type"] = content_type
        request = HTTPRequest(
            f"{upstream()}/upload",
            method="POST",
            headers=headers,
            body=body,
            request_timeout=UPSTREAM_TIMEOUT,
        )
        await self.relay(request)


def fetch_blocking(url: str) -> tuple[int, bytes]:
    """GET `url` with a blocking client; returns (status, body), 502 when unreachable."""
    try:
        with urllib.request.urlopen(url, timeout=UPSTREAM_TIMEOUT) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as err:
        return err.code, err.read()
    except OSError as err:  # URLError and socket errors: no HTTP answer at all
        raise tornado.web.HTTPError(502, reason="upstream unreachable") from err


def _target(handler: tornado.web.RequestHandler, path: str) -> str:
    query = f"?{handler.request.query}" if handler.request.query else ""
    return f"{upstream()}/{path}{query}"


class BlockingFetch(tornado.web.RequestHandler):
    """The anti-pattern, for comparison: the worker serves nothing else during the fetch."""

    def get(self, path: str) -> None:
        status, body = fetch_blocking(_target(self, path))
        self.set_status(status)
        self.write(body)


class UnblockedFetch(tornado.web.RequestHandler):
    """The same blocking client under `@unblock`: each fetch waits in a pool thread."""

    @unblock
    def get(self, path: str) -> bytes:
        status, body = fetch_blocking(_target(self, path))
        if status != 200:
            raise tornado.web.HTTPError(status)
        return body


application = tornado.web.Application(
    [
        (r"/proxy/(.*)", Proxy),
        (r"/upload", Upload),
        (r"/fetch-blocking/(.*)", BlockingFetch),
        (r"/fetch-unblock/(.*)", UnblockedFetch),
    ]
)


class Echo(tornado.web.RequestHandler):
    """Upstream: answers with what it received; `X-Echo-Status` picks the status code and
    `?delay_ms=N` waits N ms (without blocking) first."""

    async def echo(self, path: str) -> None:
        delay = self.get_query_argument("delay_ms", "0")
        if not delay.isdigit() or int(delay) > MAX_DELAY_MS:
            raise tornado.web.HTTPError(400, reason=f"delay_ms must be 0..{MAX_DELAY_MS}")
        await asyncio.sleep(int(delay) / 1000)
        self.set_status(int(self.request.headers.get("X-Echo-Status", "200")))
        self.set_header("X-Upstream", "echo")
        described = {
            "method": self.request.method,
            "path": "/" + path,
            "query": self.request.query,
            "headers": dict(self.request.headers.get_all()),
            "body": self.request.body.decode("utf-8", "replace"),
        }
        self.write(json.dumps(described))
        self.set_header("Content-Type", "application/json")

    get = post = put = delete = echo


class EchoUpload(tornado.web.RequestHandler):
    """Upstream: lists the multipart fields and files (name, size, sha256) it received."""

    def post(self) -> None:
        self.write(
            {
                "fields": {
                    k: [v.decode() for v in vs] for k, vs in self.request.body_arguments.items()
                },
                "files": {
                    name: [
                        {
                            "filename": f.filename,
                            "content_type": f.content_type,
                            "size": len(f.body),
                            "sha256": hashlib.sha256(f.body).hexdigest(),
                        }
                        for f in files
                    ]
                    for name, files in self.request.files.items()
                },
            }
        )


echo_application = tornado.web.Application([(r"/upload", EchoUpload), (r"/(.*)", Echo)])
