"""Localize camera frames against a satellite gallery: encode, search, report positions and errors.

    gallery = open_gallery(Path("gallery/"))
    results = localize([Path("frame.jpg")], gallery, model, modality="uav", k=5)
    write_track(results, Path("track.csv"))

`localization_metrics` measures the error in metres (pyproj.Geod, WGS84 ellipsoid) of the rank-1
tile centre against each frame's true position, per modality.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pyproj import Geod

from data_assets.errors import DataError
from data_assets.io import atomic_path, load_image, read_json, write_json
from export.gallery import FORMAT, ModelHandle, content_hash, resize_for
from gleam_models.metrics_file import relative_path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}
GEOD = Geod(ellps="WGS84")


@dataclass
class Gallery:
    path: Path
    meta: dict
    tiles: pd.DataFrame
    index: object  # faiss index

    @property
    def content_sha256(self) -> str:
        return self.meta.get("content_sha256") or content_hash(self.path)


@dataclass
class Match:
    tile_id: str
    raster: str
    lat: float
    lon: float
    similarity: float


@dataclass
class FrameResult:
    frame: Path
    matches: list[Match]

    @property
    def best(self) -> Match:
        return self.matches[0]


def open_gallery(gallery_dir: Path) -> Gallery:
    import faiss

    gallery_dir = Path(gallery_dir)
    meta_path = gallery_dir / "gallery.json"
    if not meta_path.is_file():
        raise DataError(gallery_dir, "not a gallery (no gallery.json); build one with `gleam gallery build`")
    try:
        meta = read_json(meta_path)
        tiles = pd.read_csv(gallery_dir / "tiles.csv")
        index = faiss.read_index(str(gallery_dir / meta["index"]))
    except Exception as e:  # noqa: BLE001 - json, pandas and faiss raise many types for torn files
        raise DataError(gallery_dir, f"gallery cannot be read ({e}); rebuild it") from None
    if meta.get("format") != FORMAT:
        raise DataError(meta_path, f"gallery format {meta.get('format')!r} is not {FORMAT!r}")
    if index.ntotal != len(tiles) or len(tiles) != meta["count"]:
        raise DataError(gallery_dir, f"gallery is inconsistent: index {index.ntotal}, tiles.csv {len(tiles)}, "
                                     f"gallery.json {meta['count']}; rebuild it")
    return Gallery(gallery_dir, meta, tiles, index)


def check_model(gallery: Gallery, model: ModelHandle) -> None:
    if gallery.meta["model_fingerprint"] != model.fingerprint:
        raise DataError(gallery.path, f"gallery was built with model {gallery.meta['model_fingerprint']}, but the "
                                      f"encoder is {model.fingerprint}: embeddings of two models cannot be compared; "
                                      "rebuild the gallery with this model or pass the gallery's checkpoint")


def expand_frames(paths: list[Path]) -> list[Path]:
    """Files as given, directories expanded to their image files in name order."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(q for q in p.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES and q.is_file())
            if not found:
                raise DataError(p, "folder holds no image files")
            out += found
        elif p.is_file():
            out.append(p)
        else:
            raise DataError(p, "frame not found")
    return out


def load_frame(path: Path, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W,3] at the encoder's input size; DataError naming the file if it is unreadable."""
    return resize_for(load_image(path), size)


def search(gallery: Gallery, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = min(k, len(gallery.tiles))
    sims, ids = gallery.index.search(np.ascontiguousarray(embeddings, dtype=np.float32), k)
    return sims, ids


def localize(frames: list[Path], gallery: Gallery, model: ModelHandle, modality: str = "uav",
             k: int = 5, batch_size: int = 32) -> list[FrameResult]:
    """Top-k gallery tiles (centre lat/lon, cosine similarity) for every frame, in order."""
    check_model(gallery, model)
    if modality not in model.input_size:
        raise DataError(None, f"modality {modality!r} unknown; valid: {sorted(model.input_size)}")
    frames = expand_frames(frames)
    size = tuple(model.input_size[modality])
    results = []
    tiles = gallery.tiles
    for start in range(0, len(frames), batch_size):
        batch = frames[start:start + batch_size]
        sims, ids = search(gallery, model.embed([load_frame(p, size) for p in batch]), k)
        for frame, srow, irow in zip(batch, sims, ids):
            matches = [Match(str(tiles.tile_id.iat[i]), str(tiles.raster.iat[i]), float(tiles.center_lat.iat[i]),
                             float(tiles.center_lon.iat[i]), float(s)) for s, i in zip(srow, irow) if i >= 0]
            results.append(FrameResult(frame, matches))
    return results


def write_track(results: list[FrameResult], path: Path) -> Path:
    """One row per frame, in order: the rank-1 position, its similarity and the margin to rank 2
    (a small margin = an ambiguous fix), plus the step from the previous frame in metres."""
    rows, prev = [], None
    for seq, r in enumerate(results):
        b = r.best
        margin = b.similarity - r.matches[1].similarity if len(r.matches) > 1 else None
        step = None if prev is None else GEOD.inv(prev.lon, prev.lat, b.lon, b.lat)[2]
        rows.append({"seq": seq, "frame": str(r.frame), "tile_id": b.tile_id, "raster": b.raster,
                     "lat": round(b.lat, 8), "lon": round(b.lon, 8), "similarity": round(b.similarity, 6),
                     "margin_to_rank2": None if margin is None else round(margin, 6),
                     "step_m": None if step is None else round(step, 2)})
        prev = b
    with atomic_path(path) as tmp:
        pd.DataFrame(rows).to_csv(tmp, index=False)
    return Path(path)


# ----------------------------------------------------------------------------- errors in metres

def error_metres(pred_lat, pred_lon, true_lat, true_lon) -> np.ndarray:
    """Geodesic distance on the WGS84 ellipsoid, metres."""
    _, _, dist = GEOD.inv(np.asarray(pred_lon, float), np.asarray(pred_lat, float),
                          np.asarray(true_lon, float), np.asarray(true_lat, float))
    return np.atleast_1d(np.asarray(dist, dtype=float))


def error_summary(errors: np.ndarray) -> dict:
    e = np.asarray(errors, dtype=float)
    if e.size == 0:
        return {"count": 0}
    return {"count": int(e.size), "median_m": round(float(np.median(e)), 3), "mean_m": round(float(e.mean()), 3),
            "p90_m": round(float(np.percentile(e, 90)), 3), "within_10m": round(float((e <= 10).mean()), 4),
            "within_25m": round(float((e <= 25).mean()), 4)}


def footprint_hits(gallery: Gallery, results: list[FrameResult], lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Whether each frame's true position lies inside its rank-1 tile's footprint."""
    from shapely import wkt
    from shapely.geometry import Point

    polygons = gallery.tiles.set_index("tile_id").footprint_wkt
    return np.array([wkt.loads(polygons[r.best.tile_id]).contains(Point(x, y)) for r, y, x in zip(results, lat, lon)])


def localization_metrics(frames: pd.DataFrame, gallery: Gallery, model: ModelHandle, out_path: Path,
                         extra: dict | None = None, k: int = 5, frames_path: Path | None = None,
                         root: Path | None = None) -> dict:
    """Localize every row of `frames` (columns: path, modality, lat, lon [, truth]) and write
    per-modality errors (median, share within 10 m / 25 m, share whose true position lies in the
    rank-1 tile's footprint) to `out_path` as one JSON file; the per-frame rows go to `frames_path`
    (a CSV) when given, else into the JSON (a metrics file `dvc metrics show` reads stays small).
    Paths are written relative to `root` (the project root) when given, and nothing time-dependent
    is written, so the same frames, gallery and model give the same bytes in every clone."""
    shown = (lambda p: relative_path(p, root)) if root is not None else (lambda p: Path(p).as_posix())
    per_modality, rows = {}, []
    for modality, group in frames.groupby("modality", sort=False):
        results = localize([Path(p) for p in group.path], gallery, model, modality, k)
        pred = np.array([[r.best.lat, r.best.lon] for r in results])
        err = error_metres(pred[:, 0], pred[:, 1], group.lat.to_numpy(), group.lon.to_numpy())
        inside = footprint_hits(gallery, results, group.lat.to_numpy(), group.lon.to_numpy())
        per_modality[modality] = {**error_summary(err), "rank1_footprint_hit": round(float(inside.mean()), 4)}
        if "truth" in group:  # frames whose true position is known in different ways, scored apart too
            per_modality[modality]["by_truth"] = {t: error_summary(err[(group.truth == t).to_numpy()])
                                                  for t in group.truth.unique()}
        rows += [{"frame": shown(p), "modality": modality, "error_m": round(float(e), 3), "tile_id": r.best.tile_id,
                  "similarity": round(r.best.similarity, 6), "footprint_hit": bool(h)}
                 for p, e, r, h in zip(group.path, err, results, inside)]
    all_err = np.array([r["error_m"] for r in rows])
    report = {"model_fingerprint": model.fingerprint,
              "gallery": {"path": shown(gallery.path), "content_sha256": gallery.content_sha256,
                          "count": gallery.meta["count"], "index_kind": gallery.meta["index_kind"],
                          "model_fingerprint": gallery.meta["model_fingerprint"]},
              "error": "geodesic distance (WGS84) from the rank-1 tile centre to the true position",
              "per_modality": per_modality, "overall": error_summary(all_err), **(extra or {})}
    if frames_path is None:
        report["frames"] = rows
    else:
        with atomic_path(frames_path) as tmp:
            pd.DataFrame(rows).to_csv(tmp, index=False)
        report["frames_csv"] = shown(frames_path)
    write_json(out_path, report)
    return report
