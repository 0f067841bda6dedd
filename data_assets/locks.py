"""Writer locks: one process at a time writes a stage's outputs.

    with output_lock(project.validated_dir):   # fails fast if another gleam process writes there
        ...

The lock is an OS file lock (filelock, fcntl.flock on Unix) on a hidden sibling `.<name>.lock`, so
the kernel drops it when its process dies: a killed run never leaves a lock behind. Who holds it
(pid, start time, command) sits in `.<name>.lock.holder`, read only to name the holder in the
error (filelock truncates the lock file itself when a waiter opens it).

`repo_lock(root)` takes DVC's own repository lock (.dvc/tmp/lock, the one `dvc repro` holds for its
whole run), so `dvc repro` refuses to start while `gleam pipeline` runs, instead of deleting the
outputs the pipeline is writing (DVC removes a stage's outs before running its command).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from filelock import FileLock, Timeout
from pydantic import Field

from data_assets.errors import GleamError
from data_assets.settings import Section


class LockConfig(Section):
    # seconds a stage waits for another gleam process writing the same outputs; 0 = fail at once
    wait_s: float = Field(default=0.0, ge=0.0)


class OutputLocked(GleamError):
    """Another process is writing these outputs."""


def lock_file(path: str | Path) -> Path:
    path = Path(path).absolute()
    return path.parent / f".{path.name}.lock"


def _holder_text(holder: Path) -> str:
    try:
        info = json.loads(holder.read_text(encoding="utf-8"))
        return f"pid {info['pid']}, started {info['started']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "pid unknown"


@contextlib.contextmanager
def output_lock(path: str | Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold the writer lock of `path` (a file or folder an output is written to) for the block."""
    target = lock_file(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    holder = target.with_name(target.name + ".holder")
    lock = FileLock(str(target))
    try:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            if wait_s <= 0:
                raise
            print(f"gleam: {path} is being written by another gleam process ({_holder_text(holder)}); "
                  f"waiting up to {wait_s:.0f} s", file=sys.stderr)
            lock.acquire(timeout=wait_s)
    except Timeout:
        waited = f" (waited {wait_s:.0f} s)" if wait_s else ""
        raise OutputLocked(f"another gleam process ({_holder_text(holder)}) is writing {path}{waited}; "
                           f"wait for it to finish, or set locks.wait_s to queue behind it") from None
    try:
        started = datetime.now(timezone.utc).isoformat(timespec="seconds")
        holder.write_text(json.dumps({"pid": os.getpid(), "started": started,
                                      "command": " ".join(sys.argv)[:300]}), encoding="utf-8")
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


@contextlib.contextmanager
def repo_lock(root: str | Path, wait_s: float = 0.0) -> Iterator[None]:
    """Hold DVC's repository lock of the project at `root` (nothing to do without a .dvc folder)."""
    dvc_dir = Path(root) / ".dvc"
    if not dvc_dir.is_dir():
        yield
        return
    (dvc_dir / "tmp").mkdir(exist_ok=True)
    path = dvc_dir / "tmp" / "lock"
    with open(path, "a+") as f:  # zc.lockfile (DVC) uses flock on this file, without truncating it
        deadline = time.monotonic() + wait_s
        while True:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise OutputLocked(f"{path} is held by another process (a `dvc repro` or another `gleam "
                                       f"pipeline` in this project); wait for it to finish") from None
                time.sleep(0.5)
        try:
            f.seek(0)
            f.truncate()
            f.write(f" {os.getpid()}\n")  # what zc.lockfile writes: DVC's message can name us
            f.flush()
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
