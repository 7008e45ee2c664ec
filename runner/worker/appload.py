"""Find the application named by MODULE:ATTR: import it from --app-dir, call a factory inside
the running loop, and turn every failure into a short, clear error (no raw traceback)."""

from __future__ import annotations

import importlib
import inspect
import sys
import sysconfig
import traceback
from pathlib import Path
from types import ModuleType, TracebackType

from tornado.httputil import HTTPServerConnectionDelegate

from ..errors import AppLoadError, UsageError
from ..lifecycle import ConfigurationError


def add_app_dir(app_dir: Path) -> None:
    """Put `app_dir` first on sys.path so the app module imports as it does next to the user."""
    path = str(app_dir.resolve())
    if path in sys.path:
        sys.path.remove(path)
    sys.path.insert(0, path)
    importlib.invalidate_caches()


async def load_application(spec: str, app_dir: Path, factory: bool) -> HTTPServerConnectionDelegate:
    """Import and return the app; raise `AppLoadError` (exit 3) or `UsageError` (exit 2, for a
    `ConfigurationError` raised by the app)."""
    add_app_dir(app_dir)
    module_name, _, attr_path = spec.partition(":")
    module = import_module(module_name, app_dir)
    target = _resolve(module, module_name, attr_path)
    if factory:
        target = await _call_factory(target, spec)
    if not isinstance(target, HTTPServerConnectionDelegate):
        hint = ""
        if callable(target) and not factory:
            hint = "; it is callable: pass --factory if it builds the application"
        raise AppLoadError(
            f"'{spec}' is {_a(type(target).__name__)}, not a tornado.web.Application{hint}"
        )
    return target


def _a(name: str) -> str:
    return ("an " if name[:1].lower() in "aeiou" else "a ") + name


def import_module(module_name: str, app_dir: Path) -> ModuleType:
    """Import the app's module; raises AppLoadError naming what is missing or what failed."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing == module_name or module_name.startswith(missing + "."):
            raise AppLoadError(
                f"cannot import module '{module_name}': not found in --app-dir {app_dir} "
                "or on sys.path; check MODULE:ATTR and --app-dir"
            ) from None
        raise AppLoadError(_failure(f"importing module '{module_name}' failed", exc)) from None
    except SyntaxError as exc:
        raise AppLoadError(
            f"cannot import module '{module_name}': syntax error in {exc.filename}, "
            f"line {exc.lineno}: {exc.msg}"
        ) from None
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:
        raise AppLoadError(_failure(f"importing module '{module_name}' failed", exc)) from None


def _resolve(module: ModuleType, module_name: str, attr_path: str) -> object:
    target: object = module
    walked = module_name
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppLoadError(
                f"'{walked}' has no attribute '{part}' (looked for {module_name}:{attr_path})"
            ) from None
        walked += ("." if walked != module_name else ":") + part
    return target


async def _call_factory(target: object, spec: str) -> object:
    if not callable(target):
        raise AppLoadError(f"--factory: '{spec}' is {_a(type(target).__name__)}, not callable")
    try:
        result = target()
        if inspect.isawaitable(result):
            result = await result
    except ConfigurationError as exc:
        raise UsageError(str(exc)) from None
    except Exception as exc:
        raise AppLoadError(_failure(f"the factory '{spec}' raised", exc)) from None
    return result


def _failure(headline: str, exc: BaseException) -> str:
    """`headline: Type: message (at file:line in function)`, one line, naming the innermost
    frame of the app's own code (else the innermost frame outside tornado-run)."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    text = f"{headline}: {type(exc).__name__}" + (f": {message}" if message else "")
    where = _app_frame(exc.__traceback__)
    return f"{text} (at {where})" if where else text


def _app_frame(tb: TracebackType | None) -> str:
    here = str(Path(__file__).parent)
    libraries = tuple({sys.prefix, sys.base_prefix, sysconfig.get_paths()["stdlib"]})
    frames = [
        frame
        for frame in traceback.extract_tb(tb)
        if not frame.filename.startswith(here)
        and "importlib" not in Path(frame.filename).parts
        and "importlib._bootstrap" not in frame.filename
    ]
    own = [frame for frame in frames if not frame.filename.startswith(libraries)]
    chosen = (own or frames)[-1:]
    return "".join(f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in chosen)
