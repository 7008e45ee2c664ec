"""Tornado's HTTP server, web, WebSocket and simple-client tests against the fast server
(`--http fast`)."""

from tornado_suite_support import KINDS, suite_classes

globals().update(suite_classes(KINDS["fast"]))
