"""Test app whose process pool has an initializer: it "loads a model" once per pool process
and logs that process's pid to the file named by $TIER_INIT_LOG."""

from __future__ import annotations

import os
import time
from typing import Any

import tornado.web
from tornado_run.decorators import pools, unblock

MODEL: dict[str, Any] = {}


def load_model(log_path: str, name: str) -> None:
    """The initializer: runs once in each pool process before its first call."""
    MODEL["name"] = name
    MODEL["pid"] = os.getpid()
    with open(log_path, "a") as log:
        log.write(f"{os.getpid()}\n")


pools.configure(
    "model",
    kind="process",
    size=2,
    initializer=load_model,
    initargs=(os.environ.get("TIER_INIT_LOG", os.devnull), "tiny"),
)


@unblock(pool="model")
def predict(seconds: float) -> dict[str, Any]:
    time.sleep(seconds)
    return {"pid": os.getpid(), "model": MODEL.get("name"), "loaded_in": MODEL.get("pid")}


class Predict(tornado.web.RequestHandler):
    async def get(self) -> None:
        self.write(await predict(float(self.get_query_argument("s", "0"))))


application = tornado.web.Application([(r"/predict", Predict)])
