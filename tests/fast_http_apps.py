"""Handlers used by the fast-server tests."""

from __future__ import annotations

import asyncio

import tornado.web


class Hello(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write("hello")

    def head(self) -> None:
        self.set_header("Content-Length", "5")

    def post(self) -> None:
        self.write(b"got:" + self.request.body)


class Sleep(tornado.web.RequestHandler):
    async def get(self) -> None:
        await asyncio.sleep(float(self.get_argument("s")))
        self.write(self.get_argument("name"))


class Chunks(tornado.web.RequestHandler):
    async def get(self) -> None:
        for piece in ("one,", "two,", "three"):
            self.write(piece)
            await self.flush()


class Ip(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write(f"{self.request.remote_ip} {self.request.protocol}")


@tornado.web.stream_request_body
class Upload(tornado.web.RequestHandler):
    def initialize(self, limit: int | None = None) -> None:
        self.limit = limit
        self.pieces: list[bytes] = []

    def prepare(self) -> None:
        if self.limit is not None:
            self.request.connection.set_max_body_size(self.limit)  # type: ignore[union-attr]

    async def data_received(self, chunk: bytes) -> None:
        await asyncio.sleep(0)  # an awaiting data_received: the server must wait for it
        self.pieces.append(chunk)

    def put(self) -> None:
        self.write(f"{len(self.pieces)} pieces, {sum(map(len, self.pieces))} bytes")

    post = put


def application(**settings: object) -> tornado.web.Application:
    return tornado.web.Application(
        [
            ("/", Hello),
            ("/sleep", Sleep),
            ("/chunks", Chunks),
            ("/ip", Ip),
            ("/upload", Upload),
            ("/small-upload", Upload, {"limit": 10}),
        ],
        **settings,
    )
