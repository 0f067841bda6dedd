"""Cut each source into square tiles (in metres) and give every tile its split.

Splits (data_assets/manifest.py):
- test_cross (cross-area): whole sources (`cross_area_sources`) and the far eastern strip of
  others (`cross_area_strip`); no train/val/test tile comes within one tile side of a strip, so
  it is ground that training never saw.
- test and val: held-out spatial blocks of the remaining ground. Evaluation tiles (test, val,
  test_cross) lie on a grid whose step is the tile side, so they never overlap each other and R@1
  measures matching, not overlap with a near-duplicate neighbour.
- train: strided tiles (overlap is fine, it is augmentation) of the remaining blocks; a train
  tile overlapping any evaluation tile is dropped, so no evaluation tile shares a pixel with a
  train tile. Overlapping train tiles are each other's semi-positives.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from shapely.geometry import box

from data_assets.embedded.geometry import Window, overlaps
from data_assets.embedded.sources import Source

EVAL_SPLITS = ("val", "test", "test_cross")  # grid tiles, never overlapping


@dataclass(frozen=True, eq=False)
class Tile:
    source: Source
    window: Window  # source pixels, x1/y1 exclusive
    block: tuple[int, int]  # spatial block holding the tile centre
    split: str = "train"

    @property
    def location_id(self) -> str:
        return f"{self.source.key}_x{self.window[0]:04d}_y{self.window[1]:04d}"

    @property
    def centre(self) -> tuple[float, float]:
        x0, y0, x1, y1 = self.window
        return (x0 + x1) / 2, (y0 + y1) / 2


@dataclass(frozen=True)
class SplitPlan:
    """How one source is split (metres; fractions of the source's evaluation-grid tiles)."""

    tile_m: float
    stride_m: float
    block_m: float
    test_fraction: float
    val_fraction: float
    cross: float  # 0: none; 1: the whole source is test_cross; else the eastern share held out


def tile_windows(src: Source, tile_m: float, stride_m: float, x_from: int = 0, x_to: int | None = None) -> list[Window]:
    """Strided windows inside columns [x_from, x_to) of the image; a source smaller than one tile
    gives one tile clipped to the image (its ground truth then reports the smaller extent)."""
    w, h = src.size
    x_to = w if x_to is None else x_to
    tw, th = min(w, round(tile_m / src.sx)), min(h, round(tile_m / src.sy))
    step_x, step_y = max(1, round(stride_m / src.sx)), max(1, round(stride_m / src.sy))
    xs = range(x_from, x_to - tw + 1, step_x)
    ys = range(0, h - th + 1, step_y)
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


def block_of(src: Source, window: Window, block_m: float) -> tuple[int, int]:
    cx, cy = (window[0] + window[2]) / 2, (window[1] + window[3]) / 2
    return math.floor(cx * src.sx / block_m), math.floor(cy * src.sy / block_m)


def plan_tiles(src: Source, plan: SplitPlan, rng: np.random.Generator, keep=lambda win: True) -> list[Tile]:
    """Every kept tile of one source with its split (see the module docstring). `keep(window)`
    filters candidates (e.g. a map tile must show something)."""
    def tiles(windows, split):
        return [Tile(src, win, block_of(src, win, plan.block_m), split) for win in windows if keep(win)]

    if plan.cross >= 1:
        return tiles(tile_windows(src, plan.tile_m, plan.tile_m), "test_cross")
    w = src.size[0]
    tile_px = min(w, round(plan.tile_m / src.sx))
    cross: list[Tile] = []
    x_end = w
    if plan.cross > 0:
        x_cut = round(w * (1 - plan.cross))
        cross = tiles(tile_windows(src, plan.tile_m, plan.tile_m, x_from=x_cut), "test_cross")
        x_end = max(0, x_cut - tile_px)  # a one-tile gap: nothing west of the strip comes near it
    grid = tiles(tile_windows(src, plan.tile_m, plan.tile_m, x_to=x_end), "test")
    test_blocks, val_blocks = _held_out_blocks(grid, plan, rng)
    held = [Tile(src, t.window, t.block, "test" if t.block in test_blocks else "val") for t in grid
            if t.block in test_blocks | val_blocks]
    evaluation = held + cross
    train = [t for t in tiles(tile_windows(src, plan.tile_m, plan.stride_m, x_to=x_end), "train")
             if t.block not in test_blocks | val_blocks and not any(overlaps(t.window, u.window) for u in evaluation)]
    return sorted(evaluation + train, key=lambda t: (t.window[1], t.window[0], t.split))


def _held_out_blocks(grid: list[Tile], plan: SplitPlan, rng: np.random.Generator):
    """Shuffled whole blocks to test, then to val, greedily up to their share of the grid tiles;
    at least one block always stays for training."""
    blocks = sorted({t.block for t in grid})
    if len(blocks) < 2:  # a one-block source goes wholly to training (cross_area_sources can hold it out)
        return set(), set()
    order = [blocks[i] for i in rng.permutation(len(blocks))][:-1]
    size = {b: sum(t.block == b for t in grid) for b in blocks}
    taken: list[set] = []
    for fraction in (plan.test_fraction, plan.val_fraction):
        target, n, chosen = fraction * len(grid), 0, set()
        for b in list(order):
            if n >= target:
                break
            if n and n + size[b] - target > target - n:
                continue  # this block would overshoot more than it helps; try a smaller one
            chosen.add(b)
            order.remove(b)
            n += size[b]
        taken.append(chosen)
    return taken[0], taken[1]


def overlap_fraction(a: Window, b: Window) -> float:
    """Intersection area over the smaller window's area (tiles of one source have one size, so
    this is "share of the tile" and symmetric)."""
    pa, pb = box(*a), box(*b)
    return pa.intersection(pb).area / min(pa.area, pb.area)


def semi_positives(tiles: list[Tile], min_overlap: float) -> dict[str, list[str]]:
    """VIGOR-style semi-positives: for each location, the other locations of the same split and
    the same source image whose tile overlaps it by >= min_overlap of the tile area. They are
    near-duplicates of the true tile, so training should not use them as negatives (evaluation
    tiles never overlap, so theirs are empty). min_overlap == 0 disables (every list empty)."""
    found: dict[str, list[str]] = {t.location_id: [] for t in tiles}
    if min_overlap <= 0:
        return found
    for i, a in enumerate(tiles):
        for b in tiles[i + 1:]:
            if (a.source is b.source and a.split == b.split and overlaps(a.window, b.window)
                    and overlap_fraction(a.window, b.window) >= min_overlap):
                found[a.location_id].append(b.location_id)
                found[b.location_id].append(a.location_id)
    return {loc: sorted(ids) for loc, ids in found.items()}
