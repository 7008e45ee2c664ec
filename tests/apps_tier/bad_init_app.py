"""Test app whose process pool's initializer raises (a model file that is missing)."""

from __future__ import annotations

import tornado.web
from tornado_run.decorators import pools


def load_missing_model() -> None:
    raise FileNotFoundError("model.bin: no such model file")


pools.configure("model", kind="process", size=1, initializer=load_missing_model)

application = tornado.web.Application([])
