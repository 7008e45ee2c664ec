"""examples/forwarding.py relays requests and multipart uploads to a real upstream (its own
echo app, also run by tornado-run)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
from examples_support import Served, free_port, serve
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
