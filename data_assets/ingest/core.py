"""Ingestion: read every configured dataset through its adapter into ONE manifest.

    adapter.read(root, source) -> rows in the layout's own terms (see common.ROW_COLUMNS)
    _finish(...)               -> "<source>/" prefixes, pair ids, paths checked to stay in the root
    hash_files(...)            -> sha256 of every referenced file (cached between runs)
    write_manifest(...)        -> Parquet, atomically, with sources and counts in its metadata

A referenced file that does not exist is kept, with a null hash: the validation stage quarantines
it and says why, so nothing disappears silently here.
"""
from __future__ import annotations

import itertools
import logging
import os
import posixpath
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pandas as pd

from data_assets.errors import ConfigError, DataError
from data_assets.ingest import cvusa, manifest, university1652, vigor
from data_assets.ingest.config import IngestConfig, SourceConfig
from data_assets.ingest.hashing import HashCache, hash_files
from data_assets.io import resolve_inside, sha256_text
from data_assets.manifest import write_manifest

log = logging.getLogger(__name__)

# name -> module with looks_like(root, source), read(root, source) and EXPECTS (for error messages)
ADAPTERS: dict[str, ModuleType] = {
    "university1652": university1652,
    "vigor": vigor,
    "cvusa": cvusa,
    "manifest": manifest,
}
CACHE_FILE = "ingest/sha256-cache.json"  # under cache_dir
MISSING_EXAMPLES = 10  # missing files named in the summary


def detect_adapter(root: Path, manifest_file: str = "manifest.csv") -> str:
    """The one adapter whose layout `root` has; DataError listing what each looks for otherwise."""
    root = _existing_root(Path(root))
    probe = SourceConfig(adapter="auto", root=str(root), manifest_file=manifest_file)
    found = [name for name, adapter in ADAPTERS.items() if adapter.looks_like(root, probe)]
    if len(found) == 1:
        return found[0]
    if found:
        raise DataError(root, f"layout is ambiguous: it matches {' and '.join(found)}; set `adapter` on this source")
    looked_for = "; ".join(f"{name}: {adapter.EXPECTS}" for name, adapter in ADAPTERS.items())
    raise DataError(root, f"no adapter recognises this layout. Looked for - {looked_for}{_nested_hint(root, probe)}")


def _nested_hint(root: Path, probe: SourceConfig) -> str:
    """Archives often unpack into one more folder (University-Release/): point at it."""
    children = sorted(itertools.islice(root.iterdir(), 200))  # a folder of images is not worth a full scan
    for child in [c for c in children if c.is_dir()]:
        for name, adapter in ADAPTERS.items():
            if adapter.looks_like(child, probe):
                return f". Did you mean {child}? It looks like {name}"
    return ""


def _existing_root(root: Path) -> Path:
    if not root.exists():
        raise DataError(root, "dataset root does not exist")
    if not root.is_dir():
        raise DataError(root, "dataset root is not a folder")
    return root


def ingest(cfg: IngestConfig, out_path: Path, base_dir: Path, cache_dir: Path | None = None) -> dict:
    """Read every source, hash every file, write one Parquet manifest at `out_path`; returns a summary."""
    start = time.perf_counter()
    frames, sources = [], []
    for i, source in enumerate(cfg.sources):
        frame, info = read_source(source, Path(base_dir), key=f"ingest.sources[{i}]")
        if info["name"] in {s["name"] for s in sources}:
            raise ConfigError(f"ingest.sources[{i}].name: source name {info['name']!r} is used by an earlier "
                              f"source too; give each source its own `name`")
        frames.append(frame)
        sources.append(info)
    df, dropped = _drop_duplicates(pd.concat(frames, ignore_index=True))
    escaping = int((df["_query_abs"].isna() & df["query_path"].notna()).sum() + df["_satellite_abs"].isna().sum())
    _check_one_satellite_per_location(df)

    cache = HashCache.load(Path(cache_dir) / CACHE_FILE if cache_dir is not None else None)
    report = hash_files(sorted(set(df["_query_abs"].dropna()) | set(df["_satellite_abs"].dropna())),
                        cfg.workers, cache, compute=cfg.hash_images)
    df["query_sha256"] = df["_query_abs"].map(report.digests)
    df["satellite_sha256"] = df["_satellite_abs"].map(report.digests)

    counts = _counts(df)
    for info in sources:
        info["rows"] = int((df["source"] == info["name"]).sum())
    summary = {
        "rows": len(df),
        "pairs": int((df["kind"] == "pair").sum()),
        "gallery": int((df["kind"] == "gallery").sum()),
        "missing_files": len(report.missing),
        "counts": counts,
        "seconds": 0.0,
        "files": len(report.digests),
        "files_hashed": report.hashed,
        "hash_cache_hits": report.cache_hits,
        "duplicate_rows_dropped": dropped,
        "escaping_paths": escaping,
        "missing_examples": sorted(report.missing)[:MISSING_EXAMPLES],
    }
    if report.missing:
        log.warning("%d referenced files are missing or unreadable (kept with a null hash; validation "
                    "quarantines them), e.g. %s", len(report.missing), ", ".join(summary["missing_examples"][:3]))
    metadata = {"sources": sources, "hash_images": cfg.hash_images,
                **{k: summary[k] for k in ("rows", "pairs", "gallery", "missing_files", "counts")}}
    write_manifest(df.drop(columns=[c for c in df.columns if c.startswith("_")]), out_path, metadata)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    return summary


def read_source(source: SourceConfig, base_dir: Path, key: str = "source") -> tuple[pd.DataFrame, dict[str, Any]]:
    """One source's rows in manifest terms (no hashes yet) plus what it was: name, adapter, root."""
    root = Path(source.root) if Path(source.root).is_absolute() else base_dir / source.root
    if not root.is_dir():
        raise DataError(root, f"dataset root does not exist or is not a folder ({key}.root)")
    adapter = source.adapter
    if adapter == "auto":
        adapter = detect_adapter(root, source.manifest_file)
        if adapter == "manifest":  # auto also accepts manifest.parquet when manifest_file is absent
            source = source.model_copy(update={"manifest_file": manifest.manifest_file(root, source)})
    name = source.name or adapter
    rows = ADAPTERS[adapter].read(root, source)
    if rows.empty:
        raise DataError(root, f"the {adapter} layout has nothing to ingest for splits "
                              f"{source.splits or 'all'} ({key}); is this the right root?")
    info = {"name": name, "adapter": adapter, "root": source.root}
    if adapter == "vigor":
        info["vigor_mode"] = source.vigor_mode
        # same-area shares every satellite tile between train and test by design, not by leak
        info["satellites_shared_across_splits"] = source.vigor_mode == "same_area"
    return _finish(rows, name, source.root, root), info


def _finish(rows: pd.DataFrame, source: str, root_text: str, root: Path) -> pd.DataFrame:
    """Adapter rows -> manifest rows: prefixed ids, pair ids, normalised paths checked against root."""
    df = rows.copy()
    # plain lists: iterating pandas' Arrow-backed strings row by row is several times slower
    queries = [_posix(q) if isinstance(q, str) else None for q in df["query_path"].tolist()]
    satellites = [_posix(s) for s in df["satellite_path"].tolist()]
    absolute = _absolute_paths(root, queries, satellites, df["origin"].tolist())
    df["query_path"], df["satellite_path"] = queries, satellites
    df["_query_abs"] = [absolute[q] if q else None for q in queries]
    df["_satellite_abs"] = [absolute[s] for s in satellites]
    df["source"] = source
    df["dataset_root"] = root_text
    df["location_id"] = [_prefixed(source, x) for x in df["location_id"].tolist()]
    df["semi_positive_ids"] = [[_prefixed(source, x) for x in ids] for ids in df["semi_positive_ids"].tolist()]
    df["derived"] = df["derived"].fillna(False).astype(bool)
    df["pair_id"] = [_pair_id(source, q, s, split) for q, s, split in zip(queries, satellites, df["split"].tolist())]
    return df


def _pair_id(source: str, query_path: str | None, satellite_path: str, split: str) -> str:
    """Stable across runs and moves of the root. A gallery row stands for "this satellite is in this
    split's gallery", and one tile can be in two (VIGOR same-area), so its split is part of its id."""
    return sha256_text(f"{source}\n{query_path or ''}\n{satellite_path}\n{'' if query_path else split}")[:20]


def _posix(path: str) -> str:
    """One spelling per file ("./a//b" -> "a/b", "a\\b" -> "a/b"), so pair ids stay stable."""
    return posixpath.normpath(str(path).replace("\\", "/"))


def _absolute_paths(root: Path, queries: list, satellites: list, origins: list) -> dict[str, str | None]:
    """relative path -> absolute path, for every path given; None for one that leaves the root.

    A row naming such a path (../, absolute, a symlink out) is kept, unhashed (the file is never
    read): validation quarantines that row with the reason, and the rest of the source goes on.

    resolve_inside per file costs ~5 lstat calls; resolving each folder once and then only checking
    whether the file itself is a symlink gives the same answer at ~1 call per file.
    """
    out: dict[str, str] = {}
    folders: dict[str, str] = {}
    for column, paths in (("query_path", queries), ("satellite_path", satellites)):
        for rel, origin in zip(paths, origins):
            if rel is None or rel in out:
                continue
            try:
                folder, name = posixpath.split(rel)
                if folder not in folders:
                    folders[folder] = str(resolve_inside(root, folder or "."))
                candidate = os.path.join(folders[folder], name)
                if name in ("", ".", "..") or os.path.isabs(rel) or os.path.islink(candidate):
                    candidate = str(resolve_inside(root, rel))
                out[rel] = candidate
            except DataError:
                log.warning("%s: %s: %s %r escapes the dataset root (absolute paths and ../ are refused); "
                            "the row is kept unhashed and validation quarantines it", root, origin, column, rel)
                out[rel] = None
    return out


def _prefixed(source: str, location_id: str) -> str:
    return location_id if location_id.startswith(f"{source}/") else f"{source}/{location_id}"


def _drop_duplicates(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Identical rows listed twice are dropped; the same pair with different facts is an error."""
    dup = df["pair_id"].duplicated(keep=False)
    if not dup.any():
        return df.reset_index(drop=True), 0
    facts = ["pair_id", "kind", "split", "modality", "location_id", "lat", "lon", "derived", "query_meta", "ground_truth"]
    clash = df[dup].drop_duplicates(subset=facts)
    clash = clash[clash["pair_id"].duplicated(keep=False)]
    if not clash.empty:
        a, b = clash.iloc[0], clash[clash["pair_id"] == clash.iloc[0]["pair_id"]].iloc[1]
        raise DataError(None, f"{a['source']}: the pair ({a['query_path']}, {a['satellite_path']}) is listed twice "
                              f"with different values ({a['origin']}: split {a['split']}, {b['origin']}: split "
                              f"{b['split']}); keep one")
    kept = df.drop_duplicates(subset="pair_id").reset_index(drop=True)
    return kept, len(df) - len(kept)


def _check_one_satellite_per_location(df: pd.DataFrame) -> None:
    per_location = df.groupby("location_id")["satellite_path"].nunique()
    bad = per_location[per_location > 1]
    if not bad.empty:
        loc = bad.index[0]
        rows = df[df["location_id"] == loc].drop_duplicates("satellite_path").head(2)
        (_, a), (_, b) = rows.iterrows()
        raise DataError(None, f"location_id {loc!r} names two satellite images: {a['satellite_path']} "
                              f"({a['origin']}) and {b['satellite_path']} ({b['origin']}); a location id "
                              f"stands for exactly one satellite image")


def _counts(df: pd.DataFrame) -> dict[str, dict[str, dict[str, int]]]:
    """{source: {modality (or "gallery" for gallery rows): {split: rows}}}"""
    keyed = df.assign(_modality=df["modality"].fillna("gallery"))
    counts: dict[str, dict[str, dict[str, int]]] = {}
    for (source, modality, split), n in keyed.groupby(["source", "_modality", "split"]).size().items():
        counts.setdefault(source, {}).setdefault(modality, {})[split] = int(n)
    return counts
