"""Send mail without blocking the event loop, two ways: the stdlib's blocking `smtplib` under
`@unblock` (a thread), and the asyncio-native `aiosmtplib` awaited on the loop.

Start a local SMTP server that prints what it receives, then the app (repository root):

    python -m aiosmtpd -n -l 127.0.0.1:8025
    MAIL_PORT=8025 tornado-run examples.mail:application
    curl -d '{"to": "ada@example.com", "subject": "hi", "text": "hello"}' localhost:8000/smtplib
    curl -d '{"to": "ada@example.com", "subject": "hi", "text": "hello"}' localhost:8000/aiosmtplib

`MAIL_HOST` (default 127.0.0.1) and `MAIL_PORT` (default 8025) name the SMTP server.
"""

from __future__ import annotations

import json
import os
import smtplib
from email.message import EmailMessage

import aiosmtplib
import tornado.web
from tornado_run.decorators import unblock

SENDER = "tornado-run-example@localhost"
SMTP_TIMEOUT = 10.0


def smtp_server() -> tuple[str, int]:
    """(host, port) of the SMTP server, from `MAIL_HOST` and `MAIL_PORT`."""
    return os.environ.get("MAIL_HOST", "127.0.0.1"), int(os.environ.get("MAIL_PORT", "8025"))


def build_message(body: bytes) -> EmailMessage:
    """Parse the request's JSON (`to`, `subject`, `text`) into a message, or answer 400."""
    try:
        data = json.loads(body)
        to, subject, text = data["to"], data["subject"], data["text"]
    except (ValueError, KeyError, TypeError) as err:
        raise tornado.web.HTTPError(
            400, reason='expected JSON {"to": ..., "subject": ..., "text": ...}'
        ) from err
    if not all(isinstance(v, str) for v in (to, subject, text)) or "@" not in to:
        raise tornado.web.HTTPError(
            400, reason="to, subject and text must be strings; to an address"
        )
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = SENDER, to, subject
    message.set_content(text)
    return message


class SendWithSmtplib(tornado.web.RequestHandler):
    """smtplib blocks for the whole SMTP dialogue, so it runs in the thread pool."""

    def prepare(self) -> None:
        self.message = build_message(self.request.body)

    @unblock(timeout=SMTP_TIMEOUT + 5)
    def post(self) -> dict[str, str]:
        host, port = smtp_server()
        with smtplib.SMTP(host, port, timeout=SMTP_TIMEOUT) as client:
            client.send_message(self.message)
        return {"sent": self.message["To"], "via": "smtplib"}


class SendWithAiosmtplib(tornado.web.RequestHandler):
    """aiosmtplib speaks SMTP on the event loop itself: no thread needed."""

    async def post(self) -> None:
        message = build_message(self.request.body)
        host, port = smtp_server()
        await aiosmtplib.send(message, hostname=host, port=port, timeout=SMTP_TIMEOUT)
        self.write({"sent": message["To"], "via": "aiosmtplib"})


application = tornado.web.Application(
    [(r"/smtplib", SendWithSmtplib), (r"/aiosmtplib", SendWithAiosmtplib)]
)
