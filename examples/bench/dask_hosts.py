"""A dask cluster across test hosts: a `dask scheduler` and N `dask worker`s, each in its own
network namespace on a private bridge (examples/bench/netns.py), reachable from this process.

    with host_cluster(2, pythonpath=[APPS]) as cluster:    # root and iproute2 needed
        cluster.address                                      # "tcp://10.213.S.2:8786"
        cluster.net.cut("w1"); cluster.net.restore("w1")
        cluster.workers["w2"].pid                            # the worker process itself

Workers run without a nanny, so each worker is one process (SIGSTOP stops it, a cut host
does not come back by itself). `FAST_FAILURE` is the scheduler and worker configuration that
makes a dead host noticed in seconds; every process logs into `log_dir`.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from examples.bench.netns import Network, environment, private_network

SCHEDULER_PORT = 8786
# Dask removes a worker that missed 10 heartbeats (5 s in a cluster of up to 10 workers)
# whatever worker-ttl says; worker-ttl also sets how often it checks, hence below 5 s.
# TCP timeouts under 11 s are refused by dask.
FAST_FAILURE = {
    "DASK_DISTRIBUTED__SCHEDULER__WORKER_TTL": "1s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT": "3s",
    "DASK_DISTRIBUTED__COMM__TIMEOUTS__TCP": "11s",
}
_REGISTERED = re.compile(r"Register worker addr: (\S+)")
_REMOVED = re.compile(r"Remove worker addr: (\S+)")


@dataclass
class HostCluster:
    net: Network
    address: str
    log_dir: Path
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def scheduler_log(self) -> str:
        return (self.log_dir / "sched.log").read_text(errors="replace")

    def live_workers(self) -> set[str]:
        """Addresses of the workers the scheduler counts now, from its log."""
        live: set[str] = set()
        for line in self.scheduler_log().splitlines():
            if found := _REGISTERED.search(line):
                live.add(found.group(1))
            elif found := _REMOVED.search(line):
                live.discard(found.group(1))
        return live

    def wait_for_workers(self, count: int, timeout: float) -> set[str]:
        deadline = time.monotonic() + timeout
        while len(live := self.live_workers()) < count:
            if self.scheduler.poll() is not None:
                raise RuntimeError(f"dask scheduler exited:\n{self.scheduler_log()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(live)} of {count} dask workers joined in {timeout} s")
            time.sleep(0.05)
        return live

    def host_of(self, address: str) -> str:
        """The name of the host with this dask address ("tcp://IP:PORT")."""
        ip = address.rpartition("//")[2].rpartition(":")[0]
        return next(host.name for host in self.net.hosts.values() if host.address == ip)

    def processes(self) -> list[subprocess.Popen[bytes]]:
        return [self.scheduler, *self.workers.values()]


@contextlib.contextmanager
def host_cluster(
    workers: int,
    *,
    pythonpath: Sequence[Path] = (),
    settings: Mapping[str, str] = FAST_FAILURE,
    log_dir: Path | None = None,
    timeout: float = 30,
) -> Iterator[HostCluster]:
    """Start the hosts and the cluster, yield it once every worker joined, then stop every
    process (SIGCONT first, in case one was stopped) and remove the hosts."""
    names = [f"w{n}" for n in range(1, workers + 1)]
    dask = str(Path(sys.executable).with_name("dask"))
    env = environment({**settings, "PYTHONPATH": os.pathsep.join(map(str, pythonpath))})
    folder = log_dir or Path(tempfile.mkdtemp(prefix="dask-hosts-"))
    with private_network(["sched", *names]) as net:
        sched = net.hosts["sched"].address
        address = f"tcp://{sched}:{SCHEDULER_PORT}"
        procs: list[subprocess.Popen[bytes]] = []
        try:
            with (folder / "sched.log").open("wb") as log:
                command = [dask, "scheduler", "--host", sched, "--port", str(SCHEDULER_PORT)]
                procs.append(net.popen("sched", [*command, "--no-dashboard"], env=env, log=log))
            cluster = HostCluster(net, address, folder, procs[0])
            for name in names:
                host = net.hosts[name].address
                command = [dask, "worker", address, "--host", host, "--name", name]
                options = ["--nthreads", "1", "--no-nanny", "--no-dashboard"]
                with (folder / f"{name}.log").open("wb") as log:
                    cluster.workers[name] = net.popen(name, [*command, *options], env=env, log=log)
                procs.append(cluster.workers[name])
            cluster.wait_for_workers(workers, timeout)
            yield cluster
        finally:
            stop(procs)


def stop(procs: Sequence[subprocess.Popen[bytes]]) -> None:
    """SIGCONT then SIGKILL each process, and reap it."""
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
                os.kill(proc.pid, signal.SIGKILL)
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
