"""Content hashes of every referenced file, remembered between runs.

A re-ingest of 100k images should cost one stat per file, not one read: each file's sha256 is
cached under its (absolute path, size, mtime_ns), so an unchanged file is never read again and a
rewritten one always is. The cache is one JSON file, written atomically, also every
SAVE_EVERY_S seconds while hashing, so a run killed half-way resumes where it stopped.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from data_assets.io import clean_stale_temporaries, sha256_file, write_text

log = logging.getLogger(__name__)
CACHE_VERSION = 1
SAVE_EVERY_S = 30.0
STAT_CHUNK = 1024  # files stat-ed per thread task (one task per file costs more than the stat)


@dataclass
class HashCache:
    """{absolute path: [size, mtime_ns, sha256]}, loaded from and saved to `path` (None: memory only)."""

    path: Path | None
    entries: dict[str, list] = field(default_factory=dict)
    dirty: bool = False

    @classmethod
    def load(cls, path: Path | None) -> "HashCache":
        """The cache at `path`; a killed save's temporary beside it is dropped (the ingest stage holds
        its output lock, so no other writer of this project's cache is running)."""
        if path is not None:
            clean_stale_temporaries(path)
        if path is None or not path.is_file():
            return cls(path)
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            if doc.get("version") == CACHE_VERSION and isinstance(doc.get("files"), dict):
                return cls(path, doc["files"])
        except (OSError, ValueError, AttributeError) as e:
            log.warning("%s: unreadable hash cache, starting a new one (%s)", path, e)
        return cls(path)

    def get(self, abs_path: str, st: os.stat_result) -> str | None:
        hit = self.entries.get(abs_path)
        return hit[2] if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns else None

    def put(self, abs_path: str, st: os.stat_result, digest: str) -> None:
        self.entries[abs_path] = [st.st_size, st.st_mtime_ns, digest]
        self.dirty = True

    def save(self) -> None:
        if self.path is not None and self.dirty:
            write_text(self.path, json.dumps({"version": CACHE_VERSION, "files": self.entries}))
            self.dirty = False


@dataclass
class HashReport:
    digests: dict[str, str | None]  # absolute path -> sha256; None for missing/unreadable/not hashed
    missing: list[str]  # absolute paths that are not readable regular files
    hashed: int  # files read this run
    cache_hits: int  # files whose hash came from the cache


def _stat(path: str) -> os.stat_result | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st if stat.S_ISREG(st.st_mode) else None


def _stat_all(paths: list[str]) -> list[os.stat_result | None]:
    return [_stat(p) for p in paths]


def hash_files(paths: list[str], workers: int, cache: HashCache, compute: bool = True) -> HashReport:
    """sha256 of each path (absolute), reading only files the cache does not vouch for."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        chunks = [paths[i:i + STAT_CHUNK] for i in range(0, len(paths), STAT_CHUNK)]
        stats = dict(zip(paths, itertools.chain.from_iterable(pool.map(_stat_all, chunks))))
        missing = [p for p, st in stats.items() if st is None]
        digests: dict[str, str | None] = dict.fromkeys(paths)
        if not compute:
            return HashReport(digests, missing, 0, 0)
        todo = []
        for p, st in stats.items():
            if st is not None:
                digests[p] = cache.get(p, st)
                if digests[p] is None:
                    todo.append(p)
        hits = len(paths) - len(missing) - len(todo)
        try:
            hashed = _hash_into(pool, todo, stats, digests, missing, cache)
        finally:
            cache.save()
    return HashReport(digests, missing, hashed, hits)


def _hash_into(pool, todo, stats, digests, missing, cache) -> int:
    """Hash `todo` on the pool, filling `digests` and the cache; returns how many were read."""
    futures = {pool.submit(sha256_file, p): p for p in todo}
    read, last_save = 0, time.monotonic()
    try:
        with tqdm(total=len(todo), desc="sha256", unit="file", disable=None, leave=False) as bar:
            for fut in as_completed(futures):
                p = futures[fut]
                try:
                    digests[p] = fut.result()
                    cache.put(p, stats[p], digests[p])
                    read += 1
                except OSError as e:  # vanished or unreadable since the stat: validation quarantines it
                    log.warning("%s: cannot be read for hashing (%s)", p, e)
                    missing.append(p)
                bar.update()
                if time.monotonic() - last_save > SAVE_EVERY_S:
                    cache.save()
                    last_save = time.monotonic()
    finally:  # interrupted: do not wait for the queued files, keep what was hashed
        for fut in futures:
            fut.cancel()
    return read
