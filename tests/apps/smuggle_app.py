"""Test app for raw-socket framing tests: every response body names the request it answers
(`STATUS METHOD target body-length`), errors included, so a client sees exactly which
requests the server read."""

from typing import Any

import tornado.web


class Echo(tornado.web.RequestHandler):
    def prepare(self) -> None:
        self.set_header("Content-Type", "text/plain")
        self.finish(self._summary(200))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish(self._summary(status_code))

    def _summary(self, status: int) -> str:
        request = self.request
        return f"{status} {request.method} {request.uri} {len(request.body)}"


application = tornado.web.Application([(r"/.*", Echo)])
