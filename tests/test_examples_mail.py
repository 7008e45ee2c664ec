"""examples/mail.py sends through a real SMTP server (aiosmtpd on loopback), both ways."""

from __future__ import annotations

import email
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from examples_support import free_port, serve


class Inbox:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[email.message.Message] = []
        self.recipients: list[list[str]] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(email.message_from_bytes(envelope.content))
        self.recipients.append(list(envelope.rcpt_tos))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


def _send(app: Any, route: str, subject: str) -> Any:
    body = json.dumps(
        {"to": "ada@example.com", "subject": subject, "text": "hello from tornado-run"}
    )
    return app.request("POST", route, body=body.encode())


@pytest.mark.parametrize("route", ["/smtplib", "/aiosmtplib"])
def test_mail_reaches_the_smtp_server(smtp: tuple[Inbox, int], route: str) -> None:
    inbox, port = smtp
    with serve(
        "examples.mail:application", env={"MAIL_PORT": str(port)}, ready_path="/nowhere"
    ) as app:
        answer = _send(app, route, f"sent via {route}")
        assert answer.status == 200, answer.body
        assert answer.json() == {"sent": "ada@example.com", "via": route.strip("/")}
    deadline = time.monotonic() + 5
    while not inbox.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(inbox.messages) == 1
    message = inbox.messages[0]
    assert message["Subject"] == f"sent via {route}"
    assert inbox.recipients == [["ada@example.com"]]
    assert "hello from tornado-run" in message.get_payload()


def test_bad_request_is_400_and_nothing_is_sent(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    with serve(
        "examples.mail:application", env={"MAIL_PORT": str(port)}, ready_path="/nowhere"
    ) as app:
        for route in ("/smtplib", "/aiosmtplib"):
            assert app.request("POST", route, body=b"not json").status == 400
            assert app.request("POST", route, body=b'{"to": "x"}').status == 400
    assert inbox.messages == []
