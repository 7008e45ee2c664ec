"""With --preload the CPU tier's pool processes start after the app import, so a large
module-level object is shared copy-on-write instead of loaded again in each process."""

from __future__ import annotations

from collections.abc import Callable

import psutil
import pytest
from runner_support import Server
from tier_support import TIER_APPS, get_json, pool_processes

MiB = 1 << 20


@pytest.mark.timeout(120)
def test_with_preload_a_256_mib_module_object_costs_each_pool_process_under_64_mib(
    launch: Callable[..., Server],
) -> None:
    server = launch(
        "big_app:application", "--workers", "2", "--preload", app_dir=TIER_APPS, timeout=60
    )
    seen = set()
    for index in range(20):
        code, body = get_json(server, f"/lookup?i={index * 4096}")
        assert code == 200 and body["value"] == 1, body
        seen.add(body["pid"])
    processes = pool_processes(server)
    assert processes and seen <= {p.pid for p in processes}
    for proc in processes:
        unique = proc.memory_full_info().uss
        assert unique < 64 * MiB, f"pool process {proc.pid}: {unique / MiB:.1f} MiB unique"
    # the object is really there, in the master, shared by the tier through the fork
    assert psutil.Process(server.pid).memory_info().rss > 256 * MiB
