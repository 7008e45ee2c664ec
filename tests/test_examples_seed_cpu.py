"""The seed app: a CPU loop on the event loop stalls `/`; in the process pool it does not."""

from __future__ import annotations

import time

from examples_support import InFlight, assert_held_up, example_module, serve

spin = example_module("seed_cpu").spin

SLOW = "/sleep/1500"


def test_blocking_variant_makes_the_index_wait_for_the_cpu_loop() -> None:
    with serve("examples.seed_cpu:blocking_application") as app:
        slow = InFlight(app, SLOW)
        slow.start()
        time.sleep(0.3)  # let the loop start the CPU loop first
        sent = time.monotonic()
        fast = app.get("/")
        assert fast.status == 200
        assert_held_up(fast, sent, slow)


def test_process_variant_answers_the_index_while_the_cpu_loop_runs() -> None:
    with serve("examples.seed_cpu:application") as app:
        app.get("/sleep/1")  # start the pool's processes
        slow = InFlight(app, SLOW)
        slow.start()
        time.sleep(0.3)
        fast = app.get("/")
        assert fast.status == 200
        assert fast.body == b"Hello, world\n"
        assert slow.finished_at is None, "the index should answer before the CPU loop ends"
        result = slow.wait()
        assert result.status == 200
        assert result.json() == {"slept_ms": 1500, "checksum": spin(1500)}


def test_thread_variant_returns_the_same_result_as_the_loop() -> None:
    with serve("examples.seed_cpu:thread_application") as app:
        answer = app.get("/sleep/20")
        assert answer.status == 200
        assert answer.json() == {"slept_ms": 20, "checksum": spin(20)}
