"""The worker<->master channel: scoreboard slots shared across fork, event pipes."""

from __future__ import annotations

import os
import time

from tornado_run.runner.control.channel import (
    DRAINING,
    FREE,
    READY,
    STOP_REPLACED,
    STOP_SERVER,
    STOP_UNKNOWN,
    EventReader,
    EventWriter,
    Scoreboard,
    WorkerSlot,
)


def test_a_forked_worker_publishes_into_the_masters_scoreboard() -> None:
    board = Scoreboard(4)
    slot = board.claim()
    assert slot is not None
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the "worker"
        os.close(read_fd)
        mine = WorkerSlot(board, slot)
        mine.publish(
            state=READY, requests=41, in_flight=2, connections=3, stats={"pools": {"a": 1}}
        )
        mine.publish(cap_hits=5, accept_refused=6)
        mine.publish(requests=42)
        EventWriter(write_fd).send("ready", pid=os.getpid())
        os._exit(0)
    os.close(write_fd)
    reader = EventReader(read_fd)
    events: list[dict[str, object]] = []
    deadline = time.monotonic() + 10
    while not reader.eof and time.monotonic() < deadline:
        events += reader.read_events()
        time.sleep(0.01)
    os.waitpid(pid, 0)
    reader.close()
    assert events == [{"event": "ready", "pid": pid}]
    view = board.read(slot)
    assert (view.cap_hits, view.accept_refused) == (5, 6)
    assert (view.pid, view.state_name, view.requests, view.in_flight, view.connections) == (
        pid,
        "ready",
        42,
        2,
        3,
    )
    assert view.stats == {"pools": {"a": 1}}
    assert 0 < view.heartbeat <= time.monotonic()
    assert view.started <= time.time()


def test_slots_are_claimed_released_and_cleared() -> None:
    board = Scoreboard(2)
    first, second = board.claim(), board.claim()
    assert {first, second} == {0, 1}
    assert board.claim() is None
    assert second is not None
    WorkerSlot(board, second).publish(state=DRAINING, requests=5)
    board.release(second)
    assert board.read(second).state == FREE and board.read(second).requests == 0
    assert board.claim() == second


def test_the_masters_stop_reason_survives_the_workers_publishing() -> None:
    board = Scoreboard(2)
    slot = board.claim()
    assert slot is not None
    mine = WorkerSlot(board, slot)
    assert board.stop_reason(slot) == STOP_UNKNOWN
    board.set_stop_reason(slot, STOP_REPLACED)
    mine.publish(state=DRAINING, websockets=12, stats={"big": "x" * 10_000})
    assert board.stop_reason(slot) == STOP_REPLACED
    assert board.read(slot).websockets == 12
    assert board.stop_reason(1 - slot) == STOP_UNKNOWN  # the neighbour's slot is untouched
    board.set_stop_reason(slot, STOP_SERVER)
    assert board.stop_reason(slot) == STOP_SERVER


def test_a_reused_slot_starts_without_a_stop_reason() -> None:
    board = Scoreboard(1)
    slot = board.claim()
    assert slot is not None
    board.set_stop_reason(slot, STOP_REPLACED)
    board.release(slot)
    assert board.stop_reason(slot) == STOP_UNKNOWN
    again = board.claim()
    assert again == slot
    board.set_stop_reason(slot, STOP_SERVER)
    assert board.claim() is None
    board.release(slot)
    assert board.claim() == slot and board.stop_reason(slot) == STOP_UNKNOWN


def test_an_oversized_stats_blob_is_replaced_not_torn() -> None:
    board = Scoreboard(1)
    WorkerSlot(board, 0).publish(stats={"big": "x" * 10_000})
    assert board.read(0).stats == {"truncated": True}


def test_partial_event_lines_wait_for_their_end() -> None:
    read_fd, write_fd = os.pipe()
    reader = EventReader(read_fd)
    os.write(write_fd, b'{"event": "rea')
    assert reader.read_events() == []
    os.write(write_fd, b'dy"}\nnot json\n')
    assert reader.read_events() == [{"event": "ready"}]
    os.close(write_fd)
    assert reader.read_events() == [] and reader.eof
    reader.close()
