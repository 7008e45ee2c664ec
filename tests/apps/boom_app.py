"""Test app whose import fails with an exception (not a syntax error)."""


def connect() -> None:
    raise RuntimeError("settings.DATABASE_URL is not set")


connect()
