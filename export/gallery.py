"""A georeferenced satellite gallery: tiles of real maps, their GLEAM-C embeddings and a FAISS index.

    handle = load_model(model_cfg, Path("models/gleamc_phase2/model.safetensors"))
    summary = build_gallery([Path("map.tif")], handle, GalleryConfig(), Path("gallery/"))

The gallery is one directory (written as a whole, data_assets.io.atomic_directory):
    gallery.json     format, model fingerprint, backbone, embed_dim, input size, tile/stride metres,
                     rasters (path, sha256, crs, size), count, index file and kind; paths relative
                     to `root` when given (the file is a DVC output: the same bytes in every clone)
    embeddings.npy   float32 [N, D], L2-normalised (no pickle)
    tiles.csv        tile_id, raster, window (in the raster's metric view), centre lat/lon,
                     footprint polygon (WGS84 lon/lat WKT), ground side in metres
    index.faiss      inner-product index over the embeddings (exact by default)
Jetson runners read it with numpy alone (embeddings.npy + tiles.csv), so field names never change.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd
from PIL import Image
from pydantic import Field

from data_assets.errors import ConfigError, DataError
from data_assets.io import atomic_directory, read_json, sha256_file, sha256_text
from data_assets.settings import Section

FORMAT = "gleam-gallery/1"
TILE_COLUMNS = ["tile_id", "raster", "row_off", "col_off", "width_px", "height_px",
                "center_lat", "center_lon", "footprint_wkt", "ground_m"]
# tile image (PIL RGB, its ground sample distance in metres) -> the image the encoder should see
TileHook = Callable[[Image.Image, float], Image.Image]


class GalleryConfig(Section):
    tile_m: float = Field(default=64.0, gt=0)  # ground side of a tile, metres: match the satellite tiles the encoder learnt
    stride_m: float = Field(default=16.0, gt=0)  # step between tiles, metres: smaller = finer positions, more tiles
    min_valid_fraction: float = Field(default=0.5, ge=0, le=1)  # skip tiles mostly outside the raster / nodata
    resampling: Literal["nearest", "bilinear", "cubic"] = "bilinear"  # warping a non-metric CRS to local UTM
    batch_size: int = Field(default=64, ge=1)  # tiles embedded per forward pass
    # flat = exact inner product (IndexFlatIP); hnsw / ivf = approximate, for galleries of 100k+ tiles
    index_kind: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = Field(default=32, ge=4)  # HNSW graph degree
    hnsw_ef_construction: int = Field(default=200, ge=8)  # HNSW build beam width
    hnsw_ef_search: int = Field(default=128, ge=1)  # HNSW search beam width (saved in the index)
    ivf_nlist: int | None = Field(default=None, ge=1)  # IVF lists; None = 4 x sqrt(N)
    ivf_nprobe: int = Field(default=32, ge=1)  # IVF lists searched per query (saved in the index)
    # embedded default gallery: tiles as big as the embedded satellite tiles of each source
    # (embedded.spacenet_tile_m / neon_tile_m), stride = this share of the tile side
    embedded_stride_fraction: float = Field(default=0.25, gt=0, le=1)
    k: int = Field(default=5, ge=1)  # tiles reported per frame by localize
    # modalities of the embedded test frames scored by the localization stage (metrics/localize.json)
    localize_modalities: list[str] = ["uav", "street_map", "panorama", "ground"]


# ----------------------------------------------------------------------------- the encoder

@dataclass
class ModelHandle:
    """An encoder plus the identity a gallery records; `embed` takes uint8 [H,W,3] arrays."""
    fingerprint: str
    input_size: dict[str, tuple[int, int]]
    embed: Callable[[list[np.ndarray]], np.ndarray]
    backbone: str
    embed_dim: int
    checkpoint: str | None = None


def load_model(model_cfg, checkpoint: Path | None, batch_size: int = 64) -> ModelHandle:
    """The GLEAM-C encoder from `checkpoint` (None = the configured ImageNet init, fingerprint
    "imagenet:<backbone>"); its fingerprint is gleam_models.checkpoint.weights_fingerprint."""
    from gleam_models.checkpoint import weights_fingerprint
    from gleam_models.embed import embed_arrays
    from gleam_models.encoder import load_encoder

    if checkpoint is None and model_cfg.weights.strip() in ("none", ""):
        raise ConfigError("model.weights=none: a randomly initialised encoder has no stable identity for a "
                          "gallery; pass a trained checkpoint")
    fingerprint = weights_fingerprint(Path(checkpoint)) if checkpoint else f"imagenet:{model_cfg.backbone}"
    encoder = load_encoder(model_cfg, Path(checkpoint) if checkpoint else None)
    return ModelHandle(fingerprint, dict(encoder.input_size),
                       lambda arrays: embed_arrays(encoder, arrays, batch_size),
                       model_cfg.backbone, encoder.embed_dim, None if checkpoint is None else str(Path(checkpoint).resolve()))


def resize_for(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    """The training loader's resize (gleam_models.data.decode_resized): bicubic, reducing gap 3."""
    img = img.convert("RGB").resize((size[1], size[0]), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(img, dtype=np.uint8).copy()


# ----------------------------------------------------------------------------- index

def build_index(embeddings: np.ndarray, cfg: GalleryConfig):
    """A FAISS inner-product index (on unit vectors = cosine similarity)."""
    import faiss

    x = np.ascontiguousarray(embeddings, dtype=np.float32)
    d = x.shape[1]
    if cfg.index_kind == "flat" or len(x) < 2:
        index = faiss.IndexFlatIP(d)
    elif cfg.index_kind == "hnsw":
        index = faiss.IndexHNSWFlat(d, cfg.hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = cfg.hnsw_ef_construction
        index.hnsw.efSearch = cfg.hnsw_ef_search
    else:
        nlist = cfg.ivf_nlist or max(1, int(4 * np.sqrt(len(x))))
        nlist = min(nlist, len(x))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = min(cfg.ivf_nprobe, nlist)
    index.add(x)
    return index


# ----------------------------------------------------------------------------- build

def _raster_tiles(path: Path, index: int, model: ModelHandle, cfg: GalleryConfig, hook: TileHook | None,
                  tile_m: float, stride_m: float) -> tuple[dict, list[dict], np.ndarray]:
    from export.georaster import open_metric, read_rgb, tile_geometry, tile_windows, valid_fraction

    size = tuple(model.input_size["satellite"])
    rows, arrays, chunks = [], [], []
    with open_metric(path, cfg.resampling) as view:
        src = getattr(view.ds, "src_dataset", view.ds)  # a WarpedVRT's own raster
        entry = {"path": str(path), "sha256": sha256_file(path), "crs": view.source_crs, "width": src.width,
                 "height": src.height, "view_crs": view.crs, "metres_per_px": list(view.metres_per_px)}
        gsd = float(np.mean(view.metres_per_px))
        for win in tile_windows(view, tile_m, stride_m):
            if valid_fraction(view, win) < cfg.min_valid_fraction:
                continue
            img = Image.fromarray(read_rgb(view, win))
            arrays.append(resize_for(hook(img, gsd) if hook else img, size))
            lat, lon, wkt, ground_m = tile_geometry(view, win)
            rows.append({"tile_id": f"r{index}_y{win.row_off:05d}_x{win.col_off:05d}", "raster": path.name,
                         "row_off": win.row_off, "col_off": win.col_off, "width_px": win.width,
                         "height_px": win.height, "center_lat": round(lat, 8), "center_lon": round(lon, 8),
                         "footprint_wkt": wkt, "ground_m": round(ground_m, 3)})
            if len(arrays) >= cfg.batch_size * 4:  # bounded memory on big maps
                chunks.append(model.embed(arrays))
                arrays = []
    if arrays:
        chunks.append(model.embed(arrays))
    emb = np.concatenate(chunks) if chunks else np.zeros((0, model.embed_dim), np.float32)
    return entry, rows, emb


def build_key(rasters: list[Path], model: ModelHandle, cfg: GalleryConfig, sizes: list[tuple[float, float]]) -> str:
    payload = {"format": FORMAT, "model": model.fingerprint, "input": model.input_size["satellite"],
               "rasters": [sha256_file(p) for p in rasters], "sizes": sizes, "cfg": cfg.model_dump(mode="json")}
    return sha256_text(json.dumps(payload, sort_keys=True, default=list))[:16]


def build_gallery(rasters: list[Path], model: ModelHandle, cfg: GalleryConfig, out_dir: Path,
                  hooks: list[TileHook | None] | None = None,
                  sizes_m: list[tuple[float, float]] | None = None, root: Path | None = None) -> dict:
    """Tile, embed and index `rasters` into one gallery at `out_dir`; returns a summary.

    hooks[i] / sizes_m[i] (tile_m, stride_m) override the tile look and size for raster i (the
    embedded gallery uses them); by default every raster is cut at cfg.tile_m / cfg.stride_m.
    A gallery with the same build key (model, rasters, sizes, config) already at out_dir is kept.
    gallery.json names rasters and checkpoint relative to `root` (the project root) when given.
    """
    import faiss

    from data_assets.io import relative_path

    start = time.perf_counter()
    rasters = [Path(p) for p in rasters]
    if not rasters:
        raise DataError(None, "gallery: no raster given")
    hooks = hooks or [None] * len(rasters)
    sizes_m = sizes_m or [(cfg.tile_m, cfg.stride_m)] * len(rasters)
    for p in rasters:
        if not p.is_file():
            raise DataError(p, "raster file does not exist")
    key = build_key(rasters, model, cfg, sizes_m)
    meta_path = Path(out_dir) / "gallery.json"
    if meta_path.is_file() and (Path(out_dir) / "embeddings.npy").is_file():
        try:
            old = read_json(meta_path)
        except ValueError:
            old = {}
        if old.get("build_key") == key:
            return {**summarize(old), "cached": True, "seconds": round(time.perf_counter() - start, 3)}
    entries, rows, embs = [], [], []
    for i, (path, hook, (tile_m, stride_m)) in enumerate(zip(rasters, hooks, sizes_m)):
        entry, tile_rows, emb = _raster_tiles(path, i, model, cfg, hook, tile_m, stride_m)
        entry.update({"tile_m": tile_m, "stride_m": stride_m, "tiles": len(tile_rows)})
        if root is not None:
            entry["path"] = relative_path(entry["path"], root)
        entries.append(entry)
        rows += tile_rows
        embs.append(emb)
    if not rows:
        raise DataError(rasters[0], "gallery: no tile with enough valid pixels (raster smaller than a tile or "
                                    "mostly nodata?); lower gallery.tile_m or gallery.min_valid_fraction")
    embeddings = np.concatenate(embs).astype(np.float32)
    index = build_index(embeddings, cfg)
    tiles = pd.DataFrame(rows, columns=TILE_COLUMNS)
    meta = {"format": FORMAT, "model_fingerprint": model.fingerprint, "backbone": model.backbone,
            "embed_dim": int(embeddings.shape[1]), "input_size": list(model.input_size["satellite"]),
            # one size for all rasters, else the largest tile / finest stride (each raster entry has its own)
            "tile_m": max(t for t, _ in sizes_m), "stride_m": min(s for _, s in sizes_m),
            "sizes_vary": len(set(sizes_m)) > 1,
            "rasters": entries, "count": len(tiles), "index": "index.faiss", "index_kind": type(index).__name__,
            "search": {"ef_search": cfg.hnsw_ef_search, "nprobe": getattr(index, "nprobe", None)},
            "build_key": key, "checkpoint": relative_path(model.checkpoint, root)
            if model.checkpoint and root is not None else model.checkpoint}
    with atomic_directory(out_dir) as tmp:
        np.save(tmp / "embeddings.npy", embeddings, allow_pickle=False)
        tiles.to_csv(tmp / "tiles.csv", index=False)
        faiss.write_index(index, str(tmp / "index.faiss"))
        meta["content_sha256"] = content_hash(tmp)
        (tmp / "gallery.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return {**summarize(meta), "cached": False, "seconds": round(time.perf_counter() - start, 3)}


def content_hash(gallery_dir: Path) -> str:
    """Hash of what a search depends on (embeddings + tile table), not of timestamps."""
    return sha256_text(sha256_file(Path(gallery_dir) / "embeddings.npy") + sha256_file(Path(gallery_dir) / "tiles.csv"))


def summarize(meta: dict) -> dict:
    return {"count": meta["count"], "rasters": len(meta["rasters"]), "model_fingerprint": meta["model_fingerprint"],
            "index_kind": meta["index_kind"], "content_sha256": meta.get("content_sha256"),
            "tiles_per_raster": {Path(r["path"]).name: r.get("tiles") for r in meta["rasters"]}}
