"""Test app whose pool processes die as they start (the initializer exits the process)."""

from __future__ import annotations

import os

import tornado.web
from tornado_run.decorators import pools


def exit_at_once() -> None:
    os._exit(7)


pools.configure("model", kind="process", size=1, initializer=exit_at_once)

application = tornado.web.Application([])
