"""The `dask` pool kind without a LocalCluster: configuration errors, the optional install,
lazy import, and a scheduler that is unreachable or goes away (a real `dask scheduler`)."""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

pytest.importorskip("distributed")

import dask_support as ds
from tornado_run.decorators import pools
from tornado_run.decorators.pools import dask as dask_pool
from tornado_run.decorators.pools.api import PoolSpec
from tornado_run.decorators.pools.dask import ClusterUnavailable, DaskPool
from tornado_run.runner.lifecycle import ConfigurationError

pytestmark = pytest.mark.timeout(60)


def make_pool(address: str, **options: Any) -> DaskPool:
    spec = PoolSpec(name="cluster", kind="dask", options={"address": address, **options})
    return dask_pool.create_pool(spec)


def test_lost_scheduler_fails_waiting_calls_with_clear_error(tmp_path: Path) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with ds.scheduler_process(tmp_path) as (address, scheduler):

        async def scenario() -> list[ClusterUnavailable]:
            pool = make_pool(address, connect_timeout=2)
            errors = []
            try:
                # No worker exists, so the call waits on the scheduler until it goes away.
                # A stdlib function: this scheduler cannot import the tests folder.
                call = asyncio.ensure_future(pool.run(math.factorial, (3,), {}, timeout=None))
                await asyncio.sleep(0.5)
                assert not call.done()
                os.kill(scheduler.pid, signal.SIGKILL)
                for attempt in (call, pool.run(math.factorial, (3,), {}, timeout=None)):
                    try:
                        await asyncio.wait_for(attempt, 15)
                    except ClusterUnavailable as exc:
                        errors.append(exc)
                return errors
            finally:
                await pool.aclose(3)

        lost, after = ds.run_bounded(scenario())
    for error in (lost, after):
        assert address in str(error) and "\n" not in str(error)
        assert error.status_code == 503 and error.retry_after == 2
        assert isinstance(error, ConnectionError)
    assert "lost" in str(lost) and "unreachable" in str(after)
    assert ds.wait_no_stray_children(before) == []


def test_unreachable_scheduler_is_a_clear_error_within_connect_timeout() -> None:
    address = f"tcp://127.0.0.1:{ds.free_port()}"

    async def scenario() -> ClusterUnavailable:
        pool = make_pool(address, connect_timeout=1)
        try:
            await pool.run(ds.square, (3,), {}, timeout=None)
        except ClusterUnavailable as exc:
            return exc
        finally:
            await pool.aclose(1)
        raise AssertionError("call succeeded without a scheduler")

    started = time.monotonic()
    error = ds.run_bounded(scenario(), timeout=20)
    assert address in str(error) and "unreachable" in str(error)
    assert time.monotonic() - started < 15


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({}, "pools.cluster.address = None"),
        ({"address": "10.0.0.5:8786"}, "pools.cluster.address = '10.0.0.5:8786'"),
        ({"address": "tcp://h:1", "connect_timeout": 0}, "pools.cluster.connect_timeout = 0"),
        ({"address": "tcp://h:1", "adress": "x"}, "pools.cluster.adress = 'x': unknown setting"),
        (
            {"address": "tcp://h:1", "tls_ca_file": "/ca.pem"},
            "pools.cluster.tls_ca_file = '/ca.pem': TLS settings need a tls:// address",
        ),
        ({"address": "tls://h:1"}, "pools.cluster.tls_ca_file is missing"),
        (
            {"address": "tls://h:1", "tls_ca_file": "/no/ca.pem", "tls_client_cert": "/no/c"},
            "pools.cluster.tls_ca_file = '/no/ca.pem': expected the path of a readable PEM file",
        ),
    ],
)
def test_bad_options_are_one_line_configuration_errors(
    options: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        dask_pool.create_pool(PoolSpec(name="cluster", kind="dask", options=options))
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def test_missing_distributed_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)
    spec = PoolSpec(name="cluster", kind="dask", options={"address": "tcp://h:1"})
    with pytest.raises(ConfigurationError, match=r"pip install 'tornado-run\[dask\]'"):
        dask_pool.create_pool(spec)


def test_importing_the_decorators_does_not_import_distributed() -> None:
    code = "import sys, tornado_run.decorators; print('distributed' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert out.stdout.strip() == "False"


def test_bad_dask_declaration_fails_when_declared_not_on_first_call() -> None:
    with pytest.raises(ConfigurationError, match=r"pools\.late\.address = None"):
        pools.configure("late", kind="dask")
    assert "late" not in pools.names()


def test_bad_dask_table_in_config_file_stops_the_start_with_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "tornado-run.toml"
    config.write_text('[pools.cluster]\nkind = "dask"\nadress = "tcp://127.0.0.1:8786"\n')
    app = tmp_path / "dask_config_app.py"
    app.write_text(
        "import tornado.web\nfrom tornado_run.decorators import pools\n"
        "pools.names()\napplication = tornado.web.Application([])\n"
    )
    out = subprocess.run(
        [
            str(Path(sys.executable).parent / "tornado-run"),
            "dask_config_app:application",
            "--app-dir",
            str(tmp_path),
            "--config",
            str(config),
            "--check",
            "--bind",
            "127.0.0.1:0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2, out.stderr
    assert "pools.cluster.adress" in out.stderr and "Traceback" not in out.stderr


TLS_SCRIPT = """
import asyncio, json, math, sys
from tornado_run.decorators import pools

address, ca, cert, key = sys.argv[1:]
pools.configure(
    "secure", kind="dask", address=address, connect_timeout=10,
    tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key,
)

async def main():
    answer = await pools.get("secure").run(math.factorial, (5,), {}, timeout=30)
    await pools.aclose(5)
    return answer

print(json.dumps(asyncio.run(asyncio.wait_for(main(), 40))))
"""


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_a_tls_pool_runs_calls_on_a_scheduler_that_requires_tls(tmp_path: Path) -> None:
    tls = ds.make_tls_files(tmp_path)
    options = ("--tls-ca-file", str(tls["ca.pem"]), "--tls-cert", str(tls["node.pem"]))
    options += ("--tls-key", str(tls["node.key"]))
    dask = Path(sys.executable).with_name("dask")
    with ds.scheduler_process(tmp_path, options=("--protocol", "tls", *options)) as (address, _):
        assert address.startswith("tls://")
        worker = subprocess.Popen(
            [str(dask), "worker", address, "--host", "127.0.0.1", "--no-nanny", *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            files = [str(tls[name]) for name in ("ca.pem", "node.pem", "node.key")]
            out = subprocess.run(
                [sys.executable, "-c", TLS_SCRIPT, address, *files],
                capture_output=True,
                text=True,
                timeout=60,
            )
        finally:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(10)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == 120


CONF = Path(__file__).resolve().parent.parent / "conf"


def test_sample_dask_cluster_toml_declares_a_tls_pool_tornado_run_accepts(tmp_path: Path) -> None:
    import tomllib

    from tornado_run.decorators.pools import config, dask_options

    table = tomllib.loads((CONF / "dask-cluster.toml").read_text())["pools"]
    for key in dask_options.TLS_FILES:  # the sample's paths, made real here
        path = tmp_path / Path(table["cluster"][key]).name
        path.write_text("PEM")
        table["cluster"][key] = str(path)
    [spec] = config.specs_from_table(table, ["thread", "process", "dask"])
    options = dask_options.check_spec(spec)
    assert options.address.startswith("tls://") and options.connect_timeout == 3.0
    assert sorted(options.tls or {}) == sorted(dask_options.TLS_FILES)
    assert (spec.timeout, spec.max_pending) == (30.0, 256)


def test_sample_dask_yaml_is_valid_dask_configuration_dask_accepts() -> None:
    import dask.config
    from dask.utils import parse_timedelta

    settings = dask.config.collect(paths=[str(CONF / "dask-cluster.yaml")], env={})
    ttl = settings["distributed"]["scheduler"]["worker-ttl"]
    tcp = settings["distributed"]["comm"]["timeouts"]["tcp"]
    assert parse_timedelta(ttl) == 10 and parse_timedelta(tcp) >= 11  # dask's own minimum
