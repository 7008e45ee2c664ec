"""examples/cpu.py: one loop, three ways to run it, and fib on the process pool."""

from __future__ import annotations

import time

from examples_support import InFlight, example_module, serve

cpu = example_module("cpu")


def test_every_variant_computes_the_same_checksum_and_fib_is_right() -> None:
    with serve("examples.cpu:application", workers="auto") as app:
        expected = cpu.burn(5)
        for variant in ("blocking", "thread", "process"):
            answer = app.get(f"/{variant}/5")
            assert answer.status == 200, answer.body
            assert answer.json() == {"variant": variant, "checksum": expected}
        fib = app.get("/fib/22")
        assert fib.json() == {"n": 22, "fib": 17711}


def test_process_variant_leaves_the_loop_free() -> None:
    with serve("examples.cpu:application") as app:
        app.get("/process/1")
        slow = InFlight(app, "/process/1500")
        slow.start()
        time.sleep(0.3)
        assert app.get("/").status == 200
        assert slow.finished_at is None, "/ should answer while the process task runs"
        assert slow.wait().status == 200


def test_out_of_range_inputs_answer_400() -> None:
    with serve("examples.cpu:application") as app:
        assert app.get("/blocking/20000").status == 400
        assert app.get("/fib/36").status == 400
