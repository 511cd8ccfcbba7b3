"""Where opened files go: the target directory, a private staging directory
inside it, and the one step that moves every staged file into place, all or
nothing.

`Target.open` creates the target directory if it is missing (remembering each
directory it made) and a staging directory inside it, and keeps both open: the
rest works relative to those open directories, one component per system call,
so the target's own path may be of any length, and a directory renamed or
replaced by a link meanwhile cannot redirect a write. `Target.place` first
reserves every final name (creating missing directories and an empty
placeholder with O_EXCL, moving an existing file aside when overwriting is
allowed), then renames each staged file over its placeholder; any failure rolls
back everything it did. `Target.discard` removes the staging directory and the
directories `open` made. `Target.open` also removes the staging directories
of opens killed there before (`leftovers`).

This module must never follow a symbolic link below the target directory, never
replace one, and never leave a file of a consignment in place unless all of
them are.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from client.errors import ClientError, UnsafePathError
from client.format.leftovers import PREFIX, remove_dead, temporary_prefix

_DIR_FLAGS: Final = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_NEW_FILE: Final = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
#: What a file system says of a name it cannot hold (a reader refuses it as unsafe).
_NAME_ERRNOS: Final = frozenset({errno.ENAMETOOLONG, errno.EINVAL, errno.EILSEQ})
STAGING_PREFIX: Final = PREFIX


def _local(target: Path, exc: OSError) -> ClientError:
    return ClientError(
        f"cannot write into {str(target)!r}: {exc.strerror or exc}",
        hint="choose a directory you can write to, with room for the files",
    )


@dataclass
class _Done:
    """What `place` did so far, to undo in reverse."""

    dirs: list[tuple[int, str]] = field(default_factory=list)  # (parent fd, name) made
    reserved: list[tuple[int, str]] = field(default_factory=list)  # placeholders made
    backups: list[tuple[int, str, str]] = field(default_factory=list)  # (fd, name, backup)
    moved: list[tuple[int, str, str]] = field(default_factory=list)  # (fd, name, staged)


class Target:
    """A target directory opened for one consignment, with its staging directory."""

    def __init__(self, path: Path, fd: int, staging: str, staging_fd: int, made: list[Path]):
        self.path = path
        self._fd = fd
        self._staging = staging
        self.staging_fd = staging_fd
        self._made = made  # directories `open` created, outermost first
        self._dirs: dict[str, int] = {"": fd}

    @classmethod
    def open(cls, path: Path) -> Target:
        """Create `path` if missing (and its missing parents), then a staging
        directory inside it. `ClientError` if that cannot be done."""
        made: list[Path] = []
        try:
            missing = []
            probe = path
            while not probe.exists() and not probe.is_symlink() and probe != probe.parent:
                missing.append(probe)
                probe = probe.parent
            for directory in reversed(missing):
                try:
                    directory.mkdir()
                    made.append(directory)
                except FileExistsError:
                    pass  # made meanwhile by someone else: theirs, not ours to remove
            fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            _remove_dirs(made)
            raise _local(path, exc) from exc
        remove_dead(fd)  # what an open killed here before left behind
        try:
            staging = temporary_prefix() + secrets.token_hex(8)
            os.mkdir(staging, 0o700, dir_fd=fd)
            staging_fd = os.open(staging, _DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            os.close(fd)
            _remove_dirs(made)
            raise _local(path, exc) from exc
        return cls(path, fd, staging, staging_fd, made)

    # -- staging ------------------------------------------------------------------

    def create_staged(self, index: int) -> int:
        """A new, empty staged file for entry `index`, open for writing."""
        return os.open(str(index), _NEW_FILE, 0o600, dir_fd=self.staging_fd)

    def _finish_staged(self, index: int, mode: int) -> None:
        """Give staged file `index` its mode (creating it if nothing was written)."""
        try:
            fd = self.create_staged(index)
        except FileExistsError:
            fd = os.open(str(index), os.O_WRONLY | os.O_NOFOLLOW, dir_fd=self.staging_fd)
        try:
            os.fchmod(fd, mode)
        finally:
            os.close(fd)

    # -- checks and placing -------------------------------------------------------

    def check(self, names: list[str], *, overwrite: bool) -> None:
        """Refuse (`UnsafePathError`) what would fail to place now: a link or a
        file where a directory is needed, an existing target. Creates nothing."""
        for name in names:
            *parents, last = name.split("/")
            fd = self._fd
            opened = []
            try:
                for i, part in enumerate(parents):
                    try:
                        fd = os.open(part, _DIR_FLAGS, dir_fd=fd)
                    except FileNotFoundError:
                        break
                    except OSError as exc:
                        raise self._blocked(name, "/".join(parents[: i + 1]), exc) from exc
                    opened.append(fd)
                else:
                    self._check_final(fd, name, last, overwrite)
            finally:
                for each in opened:
                    os.close(each)

    def _blocked(self, name: str, where: str, exc: OSError) -> ClientError:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
            return UnsafePathError(
                f"refusing {name!r}: {where!r} in the target is a link or not a directory",
                hint="open into an empty directory",
            )
        return self._os_error(name, exc)

    def _os_error(self, name: str, exc: OSError) -> ClientError:
        if exc.errno in _NAME_ERRNOS:
            return UnsafePathError(
                f"refusing file name {name!r}: this file system cannot hold it ({exc.strerror})",
                hint="open into a directory on another file system",
            )
        return _local(self.path, exc)

    def _check_final(self, fd: int, name: str, last: str, overwrite: bool) -> bool:
        """True if a regular file is there (and may be replaced); refuses the rest."""
        try:
            st = os.stat(last, dir_fd=fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise self._os_error(name, exc) from exc
        if stat.S_ISLNK(st.st_mode):
            raise UnsafePathError(f"refusing {name!r}: the target is a symbolic link")
        if not stat.S_ISREG(st.st_mode) or not overwrite:
            raise UnsafePathError(
                f"refusing {name!r}: {str(self.path / name)!r} already exists",
                hint="open into an empty directory, or allow overwriting",
            )
        return True

    def _parent(self, name: str, done: _Done) -> int:
        """The open directory that will hold `name`, made if missing."""
        parts = name.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            key = "/".join(parts[:depth])
            if key in self._dirs:
                continue
            parent, part = self._dirs["/".join(parts[: depth - 1])], parts[depth - 1]
            try:
                try:
                    os.mkdir(part, 0o777, dir_fd=parent)
                    done.dirs.append((parent, part))
                except FileExistsError:
                    pass
                self._dirs[key] = os.open(part, _DIR_FLAGS, dir_fd=parent)
            except OSError as exc:
                raise self._blocked(name, key, exc) from exc
        return self._dirs["/".join(parts)]

    def place(self, names: list[str], modes: list[int], *, overwrite: bool) -> None:
        """Move staged file i to names[i], for every i, or none of them."""
        done = _Done()
        current = ""
        try:
            for index, name in enumerate(names):
                current = name
                fd = self._parent(name, done)
                last = name.rsplit("/", 1)[-1]
                if self._check_final(fd, name, last, overwrite):
                    backup = f"old-{index}"
                    os.rename(last, backup, src_dir_fd=fd, dst_dir_fd=self.staging_fd)
                    done.backups.append((fd, last, backup))
                try:
                    os.close(os.open(last, _NEW_FILE, 0o600, dir_fd=fd))
                except FileExistsError as exc:  # appeared since the check
                    raise UnsafePathError(
                        f"refusing {name!r}: {str(self.path / name)!r} already exists",
                        hint="open into an empty directory, or allow overwriting",
                    ) from exc
                done.reserved.append((fd, last))
            for index, (name, mode) in enumerate(zip(names, modes, strict=True)):
                current = name
                fd = self._parent(name, done)
                self._finish_staged(index, mode)
                last = name.rsplit("/", 1)[-1]
                os.rename(str(index), last, src_dir_fd=self.staging_fd, dst_dir_fd=fd)
                done.moved.append((fd, last, str(index)))
        except OSError as exc:
            self._undo(done)
            raise self._os_error(current, exc) from exc
        except BaseException:
            self._undo(done)
            raise
        for _, _, backup in done.backups:
            with contextlib.suppress(OSError):
                os.unlink(backup, dir_fd=self.staging_fd)

    def _undo(self, done: _Done) -> None:
        """Put back what `place` did, newest first; what cannot be undone stays."""
        for fd, last, staged in reversed(done.moved):
            with contextlib.suppress(OSError):
                os.rename(last, staged, src_dir_fd=fd, dst_dir_fd=self.staging_fd)
        moved = {(fd, last) for fd, last, _ in done.moved}
        for fd, last in reversed(done.reserved):
            if (fd, last) not in moved:
                with contextlib.suppress(OSError):
                    os.unlink(last, dir_fd=fd)
        for fd, last, backup in reversed(done.backups):
            with contextlib.suppress(OSError):
                os.rename(backup, last, src_dir_fd=self.staging_fd, dst_dir_fd=fd)
        for parent, part in reversed(done.dirs):
            with contextlib.suppress(OSError):
                os.rmdir(part, dir_fd=parent)

    # -- the end ------------------------------------------------------------------

    def close(self, *, keep_target: bool) -> None:
        """Remove the staging directory and close everything; unless
        `keep_target`, also remove the directories `open` made (if empty)."""
        with contextlib.suppress(OSError):
            for entry in os.listdir(self.staging_fd):
                with contextlib.suppress(OSError):
                    os.unlink(entry, dir_fd=self.staging_fd)
        with contextlib.suppress(OSError):
            os.rmdir(self._staging, dir_fd=self._fd)
        for fd in {self.staging_fd, *self._dirs.values()}:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dirs = {}
        if not keep_target:
            _remove_dirs(self._made)


def _remove_dirs(made: list[Path]) -> None:
    """Remove directories made for this open, innermost first, if still empty."""
    for directory in reversed(made):
        with contextlib.suppress(OSError):
            directory.rmdir()
