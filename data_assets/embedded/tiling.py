"""Cut each source into strided square tiles (in metres) and split them by spatial block.

Why blocks: overlapping strided tiles share pixels, so a random per-tile split would leak test
imagery into training. Each tile belongs to the block holding its centre; whole blocks go to
test until the source's test share is reached; then every train tile that still overlaps a test
tile is dropped. No test tile shares a single pixel with a train tile.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from data_assets.embedded.geometry import Window, overlaps
from data_assets.embedded.sources import Source


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


def tile_windows(src: Source, tile_m: float, stride_m: float) -> list[Window]:
    """Strided windows covering the image; a source smaller than one tile gives one centred tile
    clipped to the image (its ground truth then reports the smaller extent)."""
    w, h = src.size
    tw, th = min(w, round(tile_m / src.sx)), min(h, round(tile_m / src.sy))
    step_x, step_y = max(1, round(stride_m / src.sx)), max(1, round(stride_m / src.sy))
    xs = range(0, w - tw + 1, step_x)
    ys = range(0, h - th + 1, step_y)
    return [(x, y, x + tw, y + th) for y in ys for x in xs]


def block_of(src: Source, window: Window, block_m: float) -> tuple[int, int]:
    cx, cy = (window[0] + window[2]) / 2, (window[1] + window[3]) / 2
    return math.floor(cx * src.sx / block_m), math.floor(cy * src.sy / block_m)


def split_tiles(tiles: list[Tile], test_fraction: float, rng: np.random.Generator) -> list[Tile]:
    """Assign whole blocks of one source to test (shuffled, greedily up to `test_fraction` of its
    tiles), then drop train tiles overlapping any test tile. Returns the kept tiles with their split."""
    if not tiles:
        return []
    blocks = sorted({t.block for t in tiles})
    order = [blocks[i] for i in rng.permutation(len(blocks))]
    target = test_fraction * len(tiles)
    test_blocks: set[tuple[int, int]] = set()
    if len(blocks) == 1:  # a one-block source goes wholly to one side
        if rng.random() < test_fraction:
            test_blocks.add(blocks[0])
    else:
        n_test = 0
        for b in order[:-1]:  # always leave at least one block for training
            if n_test >= target:
                break
            n_block = sum(t.block == b for t in tiles)
            if n_test and n_test + n_block - target > target - n_test:
                continue  # this block would overshoot more than it helps; try a smaller one
            test_blocks.add(b)
            n_test += n_block
    test = [Tile(t.source, t.window, t.block, "test") for t in tiles if t.block in test_blocks]
    train = [Tile(t.source, t.window, t.block, "train") for t in tiles if t.block not in test_blocks
             and not any(overlaps(t.window, u.window) for u in test)]
    return sorted(test + train, key=lambda t: (t.window[1], t.window[0]))


def overlap_fraction(a: Window, b: Window) -> float:
    """Intersection area over the smaller window's area (tiles of one source have one size, so
    this is "share of the tile" and symmetric)."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return iw * ih / smaller


def semi_positives(tiles: list[Tile], min_overlap: float) -> dict[str, list[str]]:
    """VIGOR-style semi-positives: for each location, the other locations of the same split and
    the same source image whose tile overlaps it by >= min_overlap of the tile area. They are
    near-duplicates of the true tile, so evaluation should not count them as wrong and training
    should not use them as negatives. min_overlap == 0 disables (every list empty)."""
    found: dict[str, list[str]] = {t.location_id: [] for t in tiles}
    if min_overlap <= 0:
        return found
    for i, a in enumerate(tiles):
        for b in tiles[i + 1:]:
            if (a.source is b.source and a.split == b.split
                    and overlap_fraction(a.window, b.window) >= min_overlap):
                found[a.location_id].append(b.location_id)
                found[b.location_id].append(a.location_id)
    return {loc: sorted(ids) for loc, ids in found.items()}
