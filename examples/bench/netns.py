"""Test hosts on a private link: Linux network namespaces joined by veth pairs to a bridge.

    with private_network(["sched", "w1", "w2"]) as net:     # needs root and iproute2
        net.hosts["sched"].address                          # "10.213.S.2"
        net.popen("sched", ["dask", "scheduler", ...])      # a process on that host
        net.cut("w1"); net.restore("w1")                    # its link down / up again

The bridge lives in a namespace of its own (the hub); the root namespace joins it through one
more veth pair with address 10.213.S.1, so a test process (and the tornado-run it starts)
reaches every host, and traffic stays on these links. Names carry this process's id, so
concurrent test runs do not collide; `leftovers()` lists what a run left behind.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

IP = shutil.which("ip") or "/usr/sbin/ip"
PREFIX = "trn"  # every namespace and root link this module creates starts with it
NETWORK = ipaddress.ip_network("10.213.0.0/16")


@dataclass(frozen=True)
class Host:
    name: str
    namespace: str
    address: str
    hub_link: str  # the bridge-side end of this host's veth pair


@dataclass
class Network:
    tag: str
    hub: str
    root_link: str
    root_address: str
    hosts: dict[str, Host] = field(default_factory=dict)

    def command(self, host: str, argv: Sequence[str]) -> list[str]:
        """`argv` run on `host` (inside its namespace)."""
        return [IP, "netns", "exec", self.hosts[host].namespace, *argv]

    def popen(
        self,
        host: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        log: IO[bytes],
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start `argv` on `host`; `ip netns exec` execs it, so the pid is the program's."""
        return subprocess.Popen(
            self.command(host, argv),
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
        )

    def cut(self, host: str) -> None:
        """Take `host`'s link down at the bridge: its packets go nowhere, and nobody is told."""
        _ip("-n", self.hub, "link", "set", self.hosts[host].hub_link, "down")

    def restore(self, host: str) -> None:
        _ip("-n", self.hub, "link", "set", self.hosts[host].hub_link, "up")


def unavailable() -> str | None:
    """Why namespaces cannot be made here (one line), or None when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    if not Path(IP).exists():
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    probe = f"{PREFIX}probe{os.getpid()}"
    made = subprocess.run([IP, "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.strip() or made.returncode}"
    subprocess.run([IP, "netns", "delete", probe], capture_output=True)
    return None


def _ip(*args: str) -> None:
    done = subprocess.run([IP, *args], capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


def _free_subnet() -> int:
    """A third octet of 10.213.x.0/24 that no address of the root namespace uses."""
    shown = subprocess.run([IP, "-4", "-o", "addr"], capture_output=True, text=True).stdout
    used = {int(part.split(".")[2]) for part in shown.split() if part.startswith("10.213.")}
    own = os.getpid() % 254 + 1  # concurrent runs have different pids: rarely the same pick
    if own not in used:
        return own
    return random.choice([octet for octet in range(1, 255) if octet not in used])


@contextlib.contextmanager
def private_network(names: Sequence[str]) -> Iterator[Network]:
    """Make one namespace per name on a shared bridge, and remove everything on exit."""
    tag = f"{os.getpid() % 0xFFFFF:x}"
    subnet = _free_subnet()
    net = Network(
        tag=tag,
        hub=f"{PREFIX}-{tag}-hub",
        root_link=f"{PREFIX}{tag}r",
        root_address=f"10.213.{subnet}.1",
    )
    try:
        _ip("netns", "add", net.hub)
        _ip("-n", net.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", net.hub, "link", "set", "br0", "up")
        _ip("link", "add", net.root_link, "type", "veth", "peer", "name", f"{net.root_link}b")
        _attach(net.hub, f"{net.root_link}b")
        _ip("addr", "add", f"{net.root_address}/24", "dev", net.root_link)
        _ip("link", "set", net.root_link, "up")
        for number, name in enumerate(names, start=2):
            net.hosts[name] = _add_host(net, name, f"10.213.{subnet}.{number}", number)
        yield net
    finally:
        remove(net)


def _attach(hub: str, link: str) -> None:
    _ip("link", "set", link, "netns", hub)
    _ip("-n", hub, "link", "set", link, "master", "br0")
    _ip("-n", hub, "link", "set", link, "up")


def _add_host(net: Network, name: str, address: str, number: int) -> Host:
    namespace = f"{PREFIX}-{net.tag}-{name}"
    hub_link = f"{PREFIX}{net.tag}h{number}"
    _ip("netns", "add", namespace)
    _ip("link", "add", hub_link, "type", "veth", "peer", "name", f"{hub_link}p")
    _ip("link", "set", f"{hub_link}p", "netns", namespace)
    _ip("-n", namespace, "link", "set", f"{hub_link}p", "name", "eth0")
    _ip("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
    _ip("-n", namespace, "link", "set", "eth0", "up")
    _ip("-n", namespace, "link", "set", "lo", "up")
    _attach(net.hub, hub_link)
    return Host(name, namespace, address, hub_link)


def remove(net: Network) -> None:
    """Delete the namespaces (their veth ends go with them) and the root link."""
    for host in net.hosts.values():
        subprocess.run([IP, "netns", "delete", host.namespace], capture_output=True)
    subprocess.run([IP, "netns", "delete", net.hub], capture_output=True)
    subprocess.run([IP, "link", "delete", net.root_link], capture_output=True)


def leftovers(net: Network) -> list[str]:
    """Namespaces and root links of `net` that still exist."""
    mine = f"{PREFIX}-{net.tag}-"
    spaces = subprocess.run([IP, "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run([IP, "-o", "link"], capture_output=True, text=True).stdout
    found = [line.split()[0] for line in spaces.splitlines() if line.startswith(mine)]
    found += [
        line.split(":")[1].strip().split("@")[0]
        for line in links.splitlines()
        if f" {PREFIX}{net.tag}" in line
    ]
    return found


def environment(extra: Mapping[str, Any]) -> dict[str, str]:
    """This process's environment plus `extra`, without TORNADO_RUN_* settings."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("TORNADO_RUN_")}
    env.update({key: str(value) for key, value in extra.items()})
    return env
