"""Tornado's HTTP server, web, WebSocket and simple-client tests against the fast server on
uvloop, the worker's default loop where it is installed (`--http auto --loop auto`)."""

from tornado_suite_support import KINDS, suite_classes

globals().update(suite_classes(KINDS["fast_uvloop"]))
