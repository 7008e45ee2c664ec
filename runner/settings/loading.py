"""Merge the launcher's settings from defaults, `--config` TOML, `TORNADO_RUN_*` environment
variables and the command line (in that order of precedence), validating every value."""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import BadValue, UsageError
from .checks import validate
from .options import OPTIONS, OPTIONS_BY_NAME, Option, Settings

CONFIG_ENV = "TORNADO_RUN_CONFIG"
TABLES = ("server", "pools", "logging")


def load_settings(
    app: str,
    cli: Mapping[str, object],
    config_path: str | None = None,
    check: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Build `Settings`; raise `UsageError` (one line naming key, value, allowed) on bad input.

    `cli` maps option names to raw command-line values (absent or None: not given).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {option.name: option.default for option in OPTIONS}
    given: set[str] = set()
    if env.get("WEB_CONCURRENCY"):
        raw = env["WEB_CONCURRENCY"]
        values["workers"] = _parse(OPTIONS_BY_NAME["workers"], raw, f"WEB_CONCURRENCY={raw!r}")
    path = config_path or env.get(CONFIG_ENV) or None
    tables: dict[str, Any] = {}
    if path:
        tables = read_config_file(Path(path))
        for key, raw in tables.get("server", {}).items():
            option = OPTIONS_BY_NAME[key]
            values[key] = _parse(option, raw, f"{key} = {raw!r} ([server] in {path})")
            given.add(key)
    for option in OPTIONS:
        if option.env in env:
            raw_env = env[option.env]
            values[option.name] = _parse(option, raw_env, f"{option.env}={raw_env!r}")
            given.add(option.name)
    for name, raw_cli in cli.items():
        if raw_cli is None:
            continue
        option = OPTIONS_BY_NAME[name]
        if option.repeatable and isinstance(raw_cli, list):
            parsed = [_parse(option, item, f"{option.flag} {item!r}") for item in raw_cli]
            values[name] = tuple(spec for group in parsed for spec in group)
        else:
            values[name] = _parse(option, raw_cli, f"{option.flag} {raw_cli!r}")
        given.add(name)
    settings = Settings(
        app=app,
        bind_given="bind" in given,
        check=check,
        config_file=Path(path) if path else None,
        pools=dict(tables.get("pools", {})),
        logging=tables.get("logging"),
        **values,
    )
    validate(settings)
    return settings


def _parse(option: Option, raw: object, where: str) -> Any:
    try:
        return option.parse(raw)
    except BadValue as exc:
        raise UsageError(f"{where}: {exc}") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """Read and check the TOML file's tables and `[server]` keys (values are parsed later)."""
    where = f"--config {path}"
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{where}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: cannot read the file ({exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{where}: invalid TOML: {exc}") from None
    for name, value in data.items():
        if name not in TABLES:
            raise UsageError(
                f"{where}: unknown table or key '{name}' at the top level; "
                f"allowed tables: {', '.join(f'[{table}]' for table in TABLES)}"
            )
        if not isinstance(value, dict):
            raise UsageError(f"{where}: '{name}' must be a table ([{name}]), not a single value")
    server = {key.replace("-", "_"): value for key, value in data.get("server", {}).items()}
    for key in server:
        if key not in OPTIONS_BY_NAME:
            close = difflib.get_close_matches(key, list(OPTIONS_BY_NAME), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise UsageError(
                f"{where}: unknown key '{key}' in [server]{hint} "
                f"(known keys: {', '.join(OPTIONS_BY_NAME)})"
            )
    data["server"] = server
    logging_table = data.get("logging")
    if logging_table is not None and logging_table.get("version") != 1:
        raise UsageError(
            f"{where}: [logging] must be a logging.config.dictConfig table with version = 1"
        )
    return data


__all__ = ["CONFIG_ENV", "Settings", "load_settings", "read_config_file"]
