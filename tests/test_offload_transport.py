"""The process pools' transport: large arguments and results cross in shared memory (memfds,
reused at most twice over, closed a second after the last large call and released with the
pool), an idle pool process sleeps, every bytes-like type comes back as
the same type, remote errors keep their traceback, and a frame's fds never outlive it."""

from __future__ import annotations

import asyncio
import os
import pickle
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from decorators_support import run
from tornado_run.decorators import pools, unblock
from tornado_run.decorators.pools.offload import wire

MiB = 1 << 20

pools.configure("transport", kind="process", size=2, max_pending=64)
pools.configure("transport-one", kind="process", size=1)


@unblock(pool="transport")
def echo(value: Any) -> Any:
    return value


@unblock(pool="transport")
def describe(value: Any) -> tuple[str, int, list[str]]:
    """The type and size the pool process received, and its memfd fds while it runs."""
    size = value.nbytes if isinstance(value, memoryview) else len(value)
    return type(value).__name__, size, open_memfds()


@unblock(pool="transport")
def flip_first_byte(value: bytearray) -> bytearray:
    value[0] ^= 0xFF
    return value


@unblock(pool="transport")
def fail_deep(depth: int) -> None:
    if depth:
        fail_deep.__wrapped__(depth - 1)  # type: ignore[attr-defined]
    raise LookupError("the key was not there")


@unblock(pool="transport-one")
def size_in_one(value: bytes) -> int:
    return len(value)


@unblock(pool="transport-one")
def echo_in_one(value: bytes) -> bytes:
    return value


@unblock(pool="transport-one")
def memfds_and_pid_in_one() -> tuple[list[str], int]:
    return open_memfds(), os.getpid()


def open_memfds() -> list[str]:
    """This process's fds that refer to a memfd."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("/memfd:"):
            found.append(target)
    return found


def memfd_mappings() -> int:
    return sum(
        "memfd:tornado-run" in line for line in Path("/proc/self/maps").read_text().splitlines()
    )


@pytest.fixture(scope="module", autouse=True)
def shared_pool() -> Iterator[None]:
    yield
    pools.shutdown(wait=True)


@pytest.mark.parametrize("kind", ["bytes", "bytearray", "memoryview"])
@pytest.mark.parametrize("size", [10, 1 * MiB, 16 * MiB + 3])
def test_bytes_like_values_come_back_equal_and_of_the_same_type(kind: str, size: int) -> None:
    data = os.urandom(size)
    value: Any = {"bytes": data, "bytearray": bytearray(data), "memoryview": memoryview(data)}[kind]
    back = run(lambda: echo(value))
    assert type(back) is type(value)
    assert bytes(back) == data
    received, length, _ = run(lambda: describe(value))
    assert (received, length) == (kind, size)


def test_a_large_argument_travels_in_a_memfd_reused_at_most_twice_over_and_freed_at_close() -> None:
    for _ in range(5):
        received, length, in_child = run(lambda: describe(os.urandom(4 * MiB)))
        assert (received, length) == ("bytes", 4 * MiB)
        assert len(in_child) <= 2  # read out into the argument, kept as a spare at most
        assert len(open_memfds()) <= 2 and memfd_mappings() == 0
    pools.shutdown(wait=True)  # the next call starts the pool afresh
    assert open_memfds() == [] and wire.spares.count() == 0


def test_spare_memfds_are_closed_a_second_after_the_last_large_call_on_both_sides() -> None:
    async def main() -> tuple[int, list[str], list[str], list[str]]:
        await size_in_one(os.urandom(4 * MiB))  # the pool process keeps the argument's memfd
        await echo_in_one(os.urandom(4 * MiB))  # one comes back with the result: kept here
        in_child_after_call, _ = await memfds_and_pid_in_one()
        held_after_call = wire.spares.count()
        await asyncio.sleep(wire.spares.IDLE + 0.5)
        in_child_later, _ = await memfds_and_pid_in_one()
        return held_after_call, in_child_after_call, in_child_later, open_memfds()

    held_after_call, in_child_after_call, in_child_later, here_later = run(main)
    assert held_after_call == 1 and len(in_child_after_call) == 1  # kept for the next frame
    assert in_child_later == [] and here_later == [] and wire.spares.count() == 0


def test_an_idle_pool_process_sleeps_once_calls_stop() -> None:
    async def main() -> int:
        for _ in range(200):  # back to back: the pool process polls between calls
            await memfds_and_pid_in_one()
        _, pid = await memfds_and_pid_in_one()
        return pid

    process = psutil.Process(run(main))
    time.sleep(0.1)
    used = sum(process.cpu_times()[:2])
    time.sleep(0.5)
    assert process.status() == psutil.STATUS_SLEEPING
    assert sum(process.cpu_times()[:2]) - used < 0.05  # it polls 0.2 ms at most, then sleeps


def test_large_values_nested_in_containers_cross_intact() -> None:
    blob = os.urandom(2 * MiB)
    value = {"image": blob, "frames": [bytearray(blob), memoryview(blob)], "name": "x"}
    back = run(lambda: echo(value))
    assert back["image"] == blob and type(back["frames"][0]) is bytearray
    assert bytes(back["frames"][1]) == blob and back["name"] == "x"


def test_a_writable_buffer_stays_writable_in_the_pool_process() -> None:
    data = bytearray(os.urandom(MiB))
    back = run(lambda: flip_first_byte(data))
    assert back[0] == data[0] ^ 0xFF and back[1:] == data[1:]


def test_numpy_arrays_cross_out_of_band_and_keep_dtype_shape_and_order() -> None:
    numpy = pytest.importorskip("numpy")
    arrays = [
        numpy.arange(3 * MiB // 8, dtype=numpy.float64).reshape(3, -1),
        numpy.asfortranarray(numpy.arange(600_000, dtype=numpy.int32).reshape(600, 1000)),
        numpy.arange(10, dtype=numpy.uint8),
    ]
    for array in arrays:
        back = run(lambda array=array: echo(array))
        assert back.dtype == array.dtype and back.shape == array.shape
        assert back.flags.f_contiguous == array.flags.f_contiguous
        assert (back == array).all() and back.flags.writeable
        del back
    assert memfd_mappings() == 0  # read out, not mapped: no array holds shared memory


def test_a_remote_error_is_raised_as_itself_with_the_pool_process_traceback() -> None:
    with pytest.raises(LookupError, match="the key was not there") as caught:
        run(lambda: fail_deep(2))
    cause = caught.value.__cause__
    assert isinstance(cause, wire.RemoteTraceback)
    assert str(cause).count("fail_deep") >= 3 and "LookupError" in str(cause)


def test_an_exception_that_cannot_be_pickled_arrives_as_a_runtime_error_naming_it() -> None:
    class Local(Exception):
        pass

    encoded = wire.encode_error(Local("not importable"))
    with pytest.raises(RuntimeError, match="Local: not importable") as caught:
        wire.decode_reply(encoded.frame(wire.ERROR))
    assert "Local" in str(caught.value.__cause__)


def test_frames_split_at_any_byte_reassemble_with_their_fds() -> None:
    frames = [
        wire.encode_result(os.urandom(200_000)).frame(wire.RESULT, 7, pool="p"),
        wire.encode_call(len, ("small",), {}).frame(wire.CALL, 8, timeout=1.5),
    ]
    left, right = socket.socketpair()
    with left, right:
        for frame in frames:
            wire.send_frame(left, frame)
        left.shutdown(socket.SHUT_WR)
        reader = wire.FrameReader()
        got: list[wire.Frame] = []
        while wire.receive(right, reader):
            got += reader.frames()
    assert [(f.kind, f.call_id, f.pool, f.timeout) for f in got] == [
        (wire.RESULT, 7, "p", 0.0),
        (wire.CALL, 8, "", 1.5),
    ]
    assert len(wire.decode_reply(got[0])) == 200_000
    assert wire.decode_call(got[1])[1] == ("small",)
    assert len(open_memfds()) == wire.spares.count() == 1  # the read-out memfd, kept
    wire.spares.drop()
    assert open_memfds() == []


def test_garbage_on_the_socket_is_a_wire_error_not_a_hang() -> None:
    reader = wire.FrameReader()
    header = wire.HEADER.pack(wire.CALL, 0, 1, 0.0, wire.MAX_BODY + 1, 0, 0)
    reader.feed(header)
    with pytest.raises(wire.WireError, match="refused"):
        reader.frames()
    reader = wire.FrameReader()
    reader.feed(wire.HEADER.pack(wire.CALL, 0, 1, 0.0, 0, 2, 0))  # announces fds never sent
    with pytest.raises(wire.WireError, match="announces 2 fds"):
        reader.frames()


def test_pickling_a_memoryview_deep_inside_works_where_the_stdlib_refuses() -> None:
    value = {"a": [[memoryview(b"abc")]]}
    with pytest.raises(TypeError):
        pickle.dumps(value)
    back = run(lambda: echo(value))
    assert bytes(back["a"][0][0]) == b"abc"


def test_pool_errors_cross_the_wire_with_their_status_and_fields() -> None:
    from tornado_run.decorators import Overloaded, TaskTimeout, WorkerCrashed

    sent = [
        Overloaded("full", retry_after=3.2),
        TaskTimeout("slow", timeout=2.0),
        WorkerCrashed("died", exitcode=-9),
    ]
    got = []
    for error in sent:
        with pytest.raises(type(error)) as caught:
            wire.decode_reply(wire.encode_error(error).frame(wire.ERROR))
        got.append(caught.value)
    assert [e.status_code for e in got] == [503, 504, 500]
    assert (got[0].retry_after, got[1].timeout, got[2].exitcode) == (4, 2.0, -9)
