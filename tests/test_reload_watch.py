"""`--reload-dir`, `--reload-include` and `--reload-exclude` (uvicorn's meaning): what the
watcher sees, and a real `tornado-run --reload` that reloads on a change to an included file
under a reload dir, and not on an excluded one or on a file outside the reload dirs."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from runner_support import APPS, Server
from tornado_run.runner.master.reloader import SourceWatcher, patterns

pytestmark = pytest.mark.timeout(60)


def _touch(path: Path, text: str = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    later = time.time_ns() + 10**9  # a new mtime even on a coarse clock
    os.utime(path, ns=(later, later))


def test_includes_add_to_py_and_excludes_add_to_the_hidden_and_editor_files() -> None:
    include, exclude = patterns(["*.html"], ["draft*"])
    assert include == ["*.py", "*.html"]
    assert exclude == [".*", ".py[cod]", ".sw.*", "~*", "draft*"]
    include, exclude = patterns(["*.py", ".env"], ["*.py"])
    assert include == [".env"] and ".*" in exclude  # a pattern named on both sides
    include, exclude = patterns([".*"], [])
    assert ".*" in include and ".*" not in exclude


def test_the_watcher_sees_included_files_and_skips_excluded_files_and_folders(
    tmp_path: Path,
) -> None:
    for name in ("app.py", "page.html", "draft.html", "notes.txt", ".hidden.py", "~lock.py"):
        _touch(tmp_path / name)
    _touch(tmp_path / "drafts" / "inner.html")
    _touch(tmp_path / "sub" / "views.py")
    watcher = SourceWatcher([tmp_path], include=["*.html"], exclude=["draft*"], interval=0.1)
    assert watcher.watched == 3  # app.py, page.html, sub/views.py
    _touch(tmp_path / "draft.html", "changed")
    _touch(tmp_path / "drafts" / "inner.html", "changed")
    _touch(tmp_path / "notes.txt", "changed")
    assert watcher.poll(now=time.monotonic() + 1) == []
    _touch(tmp_path / "page.html", "changed")
    assert watcher.poll(now=time.monotonic() + 2) == [(tmp_path / "page.html").resolve()]


def test_several_reload_dirs_are_watched_once_each(tmp_path: Path) -> None:
    _touch(tmp_path / "a" / "one.py")
    _touch(tmp_path / "b" / "two.py")
    watcher = SourceWatcher([tmp_path / "a", tmp_path / "b", tmp_path / "a"])
    assert watcher.watched == 2


@pytest.mark.timeout(90)
def test_reload_follows_reload_dir_include_and_exclude(
    launch: Callable[..., Server], tmp_path: Path
) -> None:
    app_dir = tmp_path / "app"
    app_dir.mkdir()
    (app_dir / "reload_app.py").write_text((APPS / "hello.py").read_text())
    watched = tmp_path / "templates"
    _touch(watched / "page.html")
    server = launch(
        "reload_app:application",
        "--reload",
        "--reload-dir", str(watched),
        "--reload-include", "*.html",
        "--reload-exclude", "draft*",
        app_dir=app_dir,
    )  # fmt: skip
    log = server.wait_for_log(r"--reload: watching 1 files")
    assert "reload_app.py" not in log
    _touch(watched / "draft.html")  # excluded
    _touch(app_dir / "reload_app.py", (APPS / "hello.py").read_text())  # not under a dir
    _touch(watched / "notes.txt")  # not included
    time.sleep(2.5)  # more than two scans of the watcher (1 s apart)
    assert "--reload: changed" not in server.log()
    before = server.worker_pids()
    _touch(watched / "page.html", "<p>changed</p>")
    log = server.wait_for_log(r"--reload: changed \S*page\.html; reloading workers")
    server.wait_for_log(r"Reload complete", timeout=30)
    assert "draft.html" not in log and "notes.txt" not in log
    deadline = time.monotonic() + 10  # the last old worker may still be finishing its drain
    while server.worker_pids() & before and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not server.worker_pids() & before
    assert server.stop() == 0
