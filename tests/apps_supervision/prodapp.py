"""Test app for the production master: /pid, /cpu?ms=, /hang?s=, /leak?mb=."""

import os
import time

import tornado.web

VERSION = "v1"
_leaked: list[bytes] = []


class Pid(tornado.web.RequestHandler):
    def get(self) -> None:
        self.write({"pid": os.getpid(), "version": VERSION, "uid": os.getuid()})


def burn_cpu(ms: float) -> None:
    end = time.monotonic() + ms / 1000
    while time.monotonic() < end:  # CPU-LOOP
        pass


class Cpu(tornado.web.RequestHandler):
    def get(self) -> None:
        burn_cpu(float(self.get_argument("ms", "300")))
        self.write({"pid": os.getpid()})


class Hang(tornado.web.RequestHandler):
    def get(self) -> None:
        time.sleep(float(self.get_argument("s", "60")))  # HANG-LINE
        self.write({"pid": os.getpid()})


class Leak(tornado.web.RequestHandler):
    def get(self) -> None:
        mb = int(self.get_argument("mb", "10"))
        _leaked.append(os.urandom(1) * (mb << 20))
        self.write({"pid": os.getpid(), "leaked_mb": len(_leaked) * mb})


application = tornado.web.Application(
    [(r"/", Pid), (r"/pid", Pid), (r"/cpu", Cpu), (r"/hang", Hang), (r"/leak", Leak)]
)
