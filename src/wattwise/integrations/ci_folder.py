"""The CI state folder kept private (`wattwise ci`): another local user must not be able to plant a socket, a
link or a forged run document in it, least of all in the predictable `/tmp/wattwise-ci-<uid>`.

The folder is created with mode 0700; an existing one must be a folder of this user that neither the group nor
others can write. Files in it are opened without following symbolic links, and written whole (a new file moved
over the name).
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from wattwise.errors import WattwiseError

__all__ = ["check_state_dir", "open_private", "read_private", "write_private"]


def check_state_dir(folder: Path, *, create: bool = False) -> bool:
    """Make sure the state folder is private to this user (creating it with mode 0700 when `create`).

    Returns False when it does not exist (and `create` is not set). Raises WattwiseError when it is not a folder,
    belongs to another user or is group- or world-writable."""
    uid = os.getuid()
    fix = "remove it, or choose another folder with --dir or $WATTWISE_CI_DIR"
    if create:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(folder, 0o700)
            os.chmod(folder, 0o700)  # whatever the umask
        except FileExistsError:
            pass
    try:
        link = os.lstat(folder)
    except FileNotFoundError:
        return False
    if stat.S_ISLNK(link.st_mode) and link.st_uid != uid:
        raise WattwiseError(f"the CI state folder {folder} is a symbolic link owned by uid {link.st_uid}, not by "
                            f"you (uid {uid}): {fix}")
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        raise WattwiseError(f"the CI state folder {folder} is a dangling symbolic link: {fix}") from None
    if not stat.S_ISDIR(info.st_mode):
        raise WattwiseError(f"the CI state folder {folder} is not a folder: {fix}")
    if info.st_uid != uid:
        raise WattwiseError(f"the CI state folder {folder} belongs to uid {info.st_uid}, not to you (uid {uid}): "
                            f"another user could read or forge what the CI agent leaves there; {fix}")
    if info.st_mode & 0o022:
        who = " and ".join(w for w, bit in (("group", 0o020), ("world", 0o002)) if info.st_mode & bit)
        raise WattwiseError(f"the CI state folder {folder} is {who}-writable (mode {stat.S_IMODE(info.st_mode):04o}):"
                            f" other users could plant files in it; `chmod go-w {folder}` or {fix}")
    return True


def open_private(path: Path, flags: int, mode: int = 0o600) -> int:
    """os.open without following a symbolic link (a clear error for one)."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK):
            raise WattwiseError(f"{path} is a symbolic link: wattwise does not follow links in its CI state folder "
                                "(remove it)") from None
        raise


def read_private(path: Path) -> bytes:
    fd = open_private(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise WattwiseError(f"{path} is not a regular file (remove it)")
        return handle.read()


def write_private(path: Path, data: bytes) -> None:
    """Write a file whole: a temporary file (no link followed) moved over the name (which replaces a link)."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.unlink(missing_ok=True)
    with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL), "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)
