"""The settings of a `dask` pool, from `pools.configure(kind="dask", ...)` or a `[pools.NAME]`
table, validated without importing `distributed`:

    address          the scheduler, "tcp://10.0.0.5:8786" or "tls://..." (required)
    connect_timeout  seconds to reach the scheduler, and to notice it is gone (default 10)
    tls_ca_file      with a tls:// address: the CA that signed the scheduler's certificate
    tls_client_cert  with a tls:// address: this client's certificate (PEM; may hold the key)
    tls_client_key   with a tls:// address: its private key, if not in tls_client_cert

The TLS names are those of `distributed.security.Security`; dask's TLS is mutual, so the
scheduler checks the client certificate against its own CA.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tornado_run.runner.lifecycle import ConfigurationError

from .api import PoolSpec
from .config import reject_unknown

INSTALL_HINT = "pip install 'tornado-run[dask]'"
DEFAULT_CONNECT_TIMEOUT = 10.0
TLS_FILES = ("tls_ca_file", "tls_client_cert", "tls_client_key")
OPTION_NAMES = ("address", "connect_timeout", *TLS_FILES)
_ADDRESS_SCHEMES = ("tcp://", "tls://", "ucx://", "inproc://", "ws://", "wss://")


@dataclass(frozen=True)
class DaskOptions:
    """A dask pool's validated settings."""

    address: str
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    tls: Mapping[str, str] | None = None  # Security() keyword arguments, for tls:// only

    def security(self) -> Any:
        """The `distributed.security.Security` for this pool's client, or None (plain TCP)."""
        if self.tls is None:
            return None
        from distributed.security import Security

        return Security(require_encryption=True, **self.tls)  # type: ignore[no-untyped-call]


def check_spec(spec: PoolSpec) -> DaskOptions:
    """Validate a dask pool declaration without importing `distributed`, so a bad one stops
    the start: return its options, or raise `ConfigurationError` (one line) for a missing or
    malformed option, or when `distributed` is not installed."""
    if importlib.util.find_spec("distributed") is None:
        raise ConfigurationError(
            f"pools.{spec.name}: kind 'dask' needs the distributed package: {INSTALL_HINT}"
        )
    return parse(spec.name, spec.options)


def parse(name: str, options: Mapping[str, Any]) -> DaskOptions:
    """Check every dask option of pool `name` and return them as `DaskOptions`."""
    reject_unknown(name, "dask", options, OPTION_NAMES)
    address = options.get("address")
    if not isinstance(address, str) or not address.startswith(_ADDRESS_SCHEMES):
        raise ConfigurationError(
            f"pools.{name}.address = {address!r}: kind 'dask' needs the scheduler address,"
            " e.g. 'tcp://10.0.0.5:8786'"
        )
    timeout = options.get("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise ConfigurationError(
            f"pools.{name}.connect_timeout = {timeout!r}: expected seconds > 0"
        )
    return DaskOptions(address, float(timeout), _tls(name, address, options))


def _tls(name: str, address: str, options: Mapping[str, Any]) -> dict[str, str] | None:
    given = {key: options[key] for key in TLS_FILES if key in options}
    if not address.startswith("tls://"):
        if given:
            key = next(iter(given))
            raise ConfigurationError(
                f"pools.{name}.{key} = {given[key]!r}: TLS settings need a tls:// address"
                f" (address is {address!r})"
            )
        return None
    for key in ("tls_ca_file", "tls_client_cert"):
        if key not in given:
            raise ConfigurationError(
                f"pools.{name}.{key} is missing: a tls:// address needs tls_ca_file and"
                " tls_client_cert (dask's TLS is mutual)"
            )
    for key, value in given.items():
        if not isinstance(value, str) or not Path(value).is_file():
            raise ConfigurationError(
                f"pools.{name}.{key} = {value!r}: expected the path of a readable PEM file"
            )
    return given
