"""examples/forwarding.py relays requests and multipart uploads to a real upstream (its own
echo app, also run by tornado-run)."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from examples_support import InFlight, Served, assert_held_up, free_port, serve
from urllib3 import encode_multipart_formdata


@pytest.fixture(scope="module")
def proxy() -> Iterator[Served]:
    with serve("examples.forwarding:echo_application", ready_path="/ready") as upstream:
        env = {"FORWARD_UPSTREAM": f"http://127.0.0.1:{upstream.port}"}
        with serve("examples.forwarding:application", env=env, ready_path="/proxy/ready") as app:
            yield app


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_method_path_query_headers_and_body_are_forwarded(proxy: Served, method: str) -> None:
    body = None if method == "GET" else f"payload for {method}".encode()
    answer = proxy.request(
        method, "/proxy/echo/items/7?full=yes", body=body, headers={"X-Trace": "abc"}
    )
    assert answer.status == 200, answer.body
    assert answer.headers["x-upstream"] == "echo"
    seen = answer.json()
    assert seen["method"] == method
    assert seen["path"] == "/echo/items/7"
    assert seen["query"] == "full=yes"
    assert seen["headers"]["X-Trace"] == "abc"
    assert seen["headers"]["X-Forwarded-For"] == "127.0.0.1"
    assert seen["body"] == (body or b"").decode()


def test_upstream_status_is_relayed(proxy: Served) -> None:
    assert proxy.request("GET", "/proxy/x", headers={"X-Echo-Status": "404"}).status == 404
    assert proxy.request("POST", "/proxy/x", b"", {"X-Echo-Status": "201"}).status == 201


def test_multipart_upload_is_reencoded_for_the_upstream(proxy: Served) -> None:
    photo = bytes(range(256)) * 300
    body, content_type = encode_multipart_formdata(
        [("title", "cat"), ("photo", ("cat.bin", photo, "application/octet-stream"))]
    )
    answer = proxy.request("POST", "/upload", body=body, headers={"Content-Type": content_type})
    assert answer.status == 200, answer.body
    assert answer.json() == {
        "fields": {"title": ["cat"]},
        "files": {
            "photo": [
                {
                    "filename": "cat.bin",
                    "content_type": "application/octet-stream",
                    "size": len(photo),
                    "sha256": hashlib.sha256(photo).hexdigest(),
                }
            ]
        },
    }


def test_empty_upload_is_400(proxy: Served) -> None:
    assert proxy.request("POST", "/upload", body=b"").status == 400


def test_unreachable_upstream_is_502() -> None:
    env = {"FORWARD_UPSTREAM": f"http://127.0.0.1:{free_port()}"}
    with serve("examples.forwarding:application", env=env, ready_path="/upload") as app:
        assert app.get("/proxy/anything").status == 502


@pytest.mark.parametrize("route", ["/fetch-blocking", "/fetch-unblock"])
def test_blocking_client_routes_return_the_upstream_answer(proxy: Served, route: str) -> None:
    answer = proxy.get(f"{route}/echo/x?y=1")
    assert answer.status == 200, answer.body
    assert answer.json()["path"] == "/echo/x"
    assert answer.json()["query"] == "y=1"
    assert proxy.get(f"{route}/echo?delay_ms=oops").status == 400


def test_blocking_client_on_the_loop_holds_up_the_worker(proxy: Served) -> None:
    slow = InFlight(proxy, "/fetch-blocking/echo?delay_ms=1200")
    slow.start()
    time.sleep(0.3)
    sent = time.monotonic()
    fast = proxy.get("/proxy/echo")
    assert fast.status == 200
    assert_held_up(fast, sent, slow)
    assert slow.wait().status == 200


def test_blocking_client_under_unblock_leaves_the_loop_free(proxy: Served) -> None:
    slow = InFlight(proxy, "/fetch-unblock/echo?delay_ms=1500")
    slow.start()
    time.sleep(0.3)
    assert proxy.get("/proxy/echo").status == 200
    assert slow.finished_at is None, "the proxy should answer while the fetch waits"
    assert slow.wait().status == 200
