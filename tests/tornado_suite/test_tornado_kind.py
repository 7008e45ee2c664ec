"""Tornado's HTTP server, web, WebSocket and simple-client tests against the worker's
Tornado-based server (`--http tornado`)."""

from tornado_suite_support import KINDS, suite_classes

globals().update(suite_classes(KINDS["tornado"]))
