"""Which --reuse-port socket each worker gets: real sockets, the master's bookkeeping as data."""

from __future__ import annotations

import socket
from types import SimpleNamespace
from typing import cast

from tornado_run.runner.control.channel import EventReader
from tornado_run.runner.master.records import WorkerRecord
from tornado_run.runner.sockets import reuseport
from tornado_run.runner.sockets.listener_sets import ListenerSets


class Master(SimpleNamespace):
    """The fields of runner.master.Master that ListenerSets reads."""

    def add(self, worker_id: int, generation: int = 0) -> WorkerRecord:
        ctx = SimpleNamespace(worker_id=worker_id, sockets=list(self.sockets))
        ctx.sockets = self.sets.assign(self, worker_id, ctx.sockets)
        record = WorkerRecord(
            pid=1000 + worker_id,
            worker_id=worker_id,
            slot=0,
            generation=generation,
            born=float(worker_id),
            events=cast(EventReader, None),
        )
        self.workers[record.pid] = record
        self.contexts[worker_id] = ctx
        return record


def new_master(workers: int) -> Master:
    reserved = reuseport.reserve("127.0.0.1", 0)
    master = Master(sockets=reserved, workers={}, contexts={}, num_workers=workers)
    master.sets = ListenerSets(reserved, backlog=16)
    return master


def set_of(master: Master, record: WorkerRecord) -> int:
    return int(master.sets.assigned[record.worker_id])


def close(master: Master) -> None:
    master.sets.close()
    for sock in master.sockets:
        sock.close()


def test_each_worker_gets_its_own_listening_socket_on_the_reserved_port() -> None:
    master = new_master(2)
    try:
        a, b = master.add(0), master.add(1)
        assert set_of(master, a) != set_of(master, b)
        port = master.sockets[0].getsockname()[1]
        for record in (a, b):
            (sock,) = master.contexts[record.worker_id].sockets
            assert sock.getsockname() == ("127.0.0.1", port)
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
    finally:
        close(master)


def test_rolling_replacements_take_over_the_set_of_the_worker_retired_next() -> None:
    master = new_master(2)
    try:
        old0, old1 = master.add(0), master.add(1)
        new0 = master.add(2, generation=1)
        assert set_of(master, new0) == set_of(master, old0), "old0 is retired first"
        old0.retiring = True
        new1 = master.add(3, generation=1)
        assert set_of(master, new1) == set_of(master, old1)
    finally:
        close(master)


def test_a_recycled_worker_hands_its_set_to_its_replacement() -> None:
    master = new_master(2)
    try:
        _, younger = master.add(0), master.add(1)
        younger.replace_reason = "max-requests"  # a recycling verdict
        replacement = master.add(2)
        assert set_of(master, replacement) == set_of(master, younger)
    finally:
        close(master)


def test_a_crashed_workers_set_waits_for_its_replacement_with_the_queue_intact() -> None:
    master = new_master(2)
    try:
        a, _ = master.add(0), master.add(1)
        (listener,) = master.contexts[a.worker_id].sockets
        port = listener.getsockname()[1]
        del master.workers[1000 + a.worker_id]  # reaped
        master.sets.maintain(master)
        queued = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(16)]
        replacement = master.add(2)
        assert master.contexts[replacement.worker_id].sockets[0] is listener, "the same open socket"
        listener.setblocking(False)
        accepted = reuseport.accept_queued(listener, lambda conn, _: conn.close())
        assert accepted > 0, "connections queued while no worker served were kept"
        for conn in queued:
            conn.close()
    finally:
        close(master)


def test_ttou_closes_the_set_nobody_serves_any_more() -> None:
    master = new_master(3)
    try:
        records = [master.add(i) for i in range(3)]
        master.num_workers = 2
        gone = records[0]
        gone.retiring = True  # TTOU: the master retires it; its drain is still running
        master.sets.maintain(master)
        assert master.contexts[gone.worker_id].sockets[0].fileno() == -1
        assert sum(entry is not None for entry in master.sets.sets) == 2
    finally:
        close(master)
