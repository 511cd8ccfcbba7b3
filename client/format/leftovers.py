"""What a seal or an open killed mid-way (kill -9, a power cut: no clean-up
runs) leaves beside its output: the temporary consignment file of a seal, the
staging directory of an open, each named ``.consign-partial-<host>.<pid>.<random>``
after the process that made it. The next seal or open in that directory
removes those whose process is gone, so a killed command run again leaves
nothing half-written behind.

This module must never remove anything else: a name it did not make, a name
of another host (its processes cannot be seen from here), or of a process
that still runs; and never follow a symbolic link.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import stat
from typing import Final

__all__ = ["PREFIX", "remove_dead", "temporary_prefix"]

PREFIX: Final = ".consign-partial-"


def _host() -> str:
    # Dots separate the fields of the name; anything odd in a host name goes.
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:64] or "host"


def temporary_prefix() -> str:
    """The start of a name for this process's temporary file or directory."""
    return f"{PREFIX}{_host()}.{os.getpid()}."


def _dead(name: str) -> bool:
    """Whether `name` is ours and its process, on this host, is gone."""
    host, _, rest = name[len(PREFIX) :].partition(".")
    pid, _, random = rest.partition(".")
    if host != _host() or not pid.isdigit() or not random or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # it runs (as someone else), or cannot be told: keep it
    return False


def remove_dead(directory_fd: int) -> int:
    """Remove what dead processes of this host left in the open directory;
    how many. Best effort: what cannot be removed stays."""
    removed = 0
    try:
        names = os.listdir(directory_fd)
    except OSError:
        return 0
    for name in names:
        if not name.startswith(PREFIX) or not _dead(name):
            continue
        with contextlib.suppress(OSError):
            kind = os.stat(name, dir_fd=directory_fd, follow_symlinks=False).st_mode
            if stat.S_ISDIR(kind):
                shutil.rmtree(name, dir_fd=directory_fd)  # never follows a link
            elif stat.S_ISREG(kind):
                os.unlink(name, dir_fd=directory_fd)
            else:
                continue
            removed += 1
    return removed
