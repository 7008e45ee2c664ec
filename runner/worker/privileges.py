"""`--user`, `--group` and `--umask`: resolve them up front, apply them in each worker.

The master resolves names while it still can report a usage error (exit 2), keeps its own
privileges (it binds sockets and signals workers) and each worker drops to the target identity
after the fork, once its sockets are bound.
"""

from __future__ import annotations

import grp
import importlib
import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Identity:
    """Who a worker runs as: uid, primary gid, supplementary groups, and the user's name."""

    uid: int
    gid: int
    groups: tuple[int, ...]
    name: str
    home: str


def resolve(user: str | None, group: str | None) -> Identity | None:
    """Resolve `--user`/`--group` (names or numeric ids); None when neither is given.

    Raises ValueError with a one-line message naming the bad value, or saying that changing
    identity needs root.
    """
    if user is None and group is None:
        return None
    entry = _user_entry(user) if user is not None else pwd.getpwuid(os.getuid())
    gid = _group_id(group) if group is not None else entry.pw_gid
    target_is_self = entry.pw_uid == os.geteuid() and gid == os.getegid()
    if os.geteuid() != 0 and not target_is_self:
        raise ValueError(
            f"--user {user!r} / --group {group!r}: changing identity needs the master to start "
            "as root"
        )
    groups = {gid}
    if group is None:
        groups.update(g.gr_gid for g in grp.getgrall() if entry.pw_name in g.gr_mem)
    return Identity(entry.pw_uid, gid, tuple(sorted(groups)), entry.pw_name, entry.pw_dir)


def _user_entry(user: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise ValueError(f"--user {user!r}: no such user on this system") from None


def _group_id(group: str) -> int:
    try:
        return grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"--group {group!r}: no such group on this system") from None


def drop(identity: Identity) -> None:
    """Become `identity` for good (groups, then gid, then uid), in this process only.

    Raises PermissionError if the change did not take or could be undone.
    """
    if os.geteuid() == identity.uid and os.getegid() == identity.gid:
        return
    # Imported lazily later (3.13's invalidate_caches(), tornado's IOLoop): load while readable.
    for name in ("importlib.metadata", "tornado.platform.asyncio"):
        importlib.import_module(name)
    os.setgroups(list(identity.groups))
    os.setgid(identity.gid)
    os.setuid(identity.uid)
    if identity.uid != 0:
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise PermissionError("privileges could be regained after dropping them")
    os.environ["USER"] = os.environ["LOGNAME"] = identity.name
    os.environ["HOME"] = identity.home


def first_closed_folder(identity: Identity, path: Path) -> Path | None:
    """The first folder on the way to `path` that `identity` cannot enter (judged by mode
    bits, owner and group), or None when every folder is open to it."""
    if identity.uid == 0:
        return None
    for folder in [*reversed(path.parents), path]:
        try:
            info = folder.stat()
        except OSError:
            return None
        if info.st_uid == identity.uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in identity.groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            return folder
    return None


def can_read(identity: Identity, path: Path) -> bool:
    """True if `identity` may read the file `path` (its folders and the file's own mode bits,
    owner and group); True when the file cannot be examined (the caller reports that)."""
    if identity.uid == 0:
        return True
    path = path.resolve()
    if first_closed_folder(identity, path.parent) is not None:
        return False
    try:
        info = path.stat()
    except OSError:
        return True
    if info.st_uid == identity.uid:
        return bool(info.st_mode & stat.S_IRUSR)
    if info.st_gid in identity.groups:
        return bool(info.st_mode & stat.S_IRGRP)
    return bool(info.st_mode & stat.S_IROTH)


def unreachable_paths(identity: Identity, paths: list[Path]) -> list[str]:
    """One line per path (Python's library, the app folder...) the identity cannot reach."""
    problems = []
    for path in paths:
        closed = first_closed_folder(identity, path.resolve())
        if closed is not None:
            problems.append(f"{path} (blocked at {closed})")
    return problems


def parse_umask(value: str | int) -> int:
    """Parse `--umask` as octal text (`022`, `0o027`) or an int; raises ValueError."""
    if isinstance(value, int):
        mask = value
    else:
        text = value.strip().lower().removeprefix("0o")
        try:
            mask = int(text, 8)
        except ValueError:
            raise ValueError(
                f"--umask {value!r}: expected an octal mask such as 022 or 0o027"
            ) from None
    if not 0 <= mask <= 0o777:
        raise ValueError(f"--umask {value!r}: must be between 000 and 777 (octal)")
    return mask
