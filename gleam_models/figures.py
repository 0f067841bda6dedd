"""Retrieval pictures: each row is a query followed by its top-k satellite tiles.

The true satellite tile is outlined in green; the others are left plain, so a glance shows where
the model is right and what it confuses the place with. Drawn with Pillow (a grid of
images needs no plotting library), small tiles, PNG written atomically.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from data_assets.io import load_image, write_bytes

TRUE_COLOUR = (0, 170, 0)  # outline of a true satellite tile
BACKGROUND = (255, 255, 255)
TEXT_COLOUR = (40, 40, 40)
MARGIN = 6  # around and between tiles
GAP = 14  # extra space between the query column and its results
CAPTION = 14  # strip under each tile for the score / label
BORDER = 4  # outline width


@dataclass(frozen=True)
class FigureRow:
    query: Path  # the query image
    results: list[Path]  # its top-k satellite images, best first
    correct: list[bool]  # per result: is it the query's true satellite
    scores: list[float]  # per result: cosine similarity
    caption: str = ""  # under the query tile, e.g. its location id


def tile_box(row: int, col: int, tile: int) -> tuple[int, int, int, int]:
    """Pixel box (x0, y0, x1, y1) of a tile; column 0 is the query, 1.. the ranked results."""
    x0 = MARGIN + col * (tile + MARGIN) + (GAP if col > 0 else 0)
    y0 = MARGIN + row * (tile + CAPTION + MARGIN)
    return x0, y0, x0 + tile, y0 + tile


def retrieval_figure(rows: list[FigureRow], tile: int = 96) -> Image.Image:
    """Draw the rows into one RGB image."""
    if not rows:
        raise ValueError("a retrieval figure needs at least one row")
    n_cols = 1 + max(len(r.results) for r in rows)
    width = tile_box(0, n_cols - 1, tile)[2] + MARGIN
    height = tile_box(len(rows) - 1, 0, tile)[3] + CAPTION + MARGIN
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for r, row in enumerate(rows):
        _paste(canvas, row.query, tile_box(r, 0, tile), tile)
        _caption(draw, font, tile_box(r, 0, tile), row.caption)
        for c, (path, correct, score) in enumerate(zip(row.results, row.correct, row.scores), start=1):
            box = tile_box(r, c, tile)
            _paste(canvas, path, box, tile)
            if correct:
                draw.rectangle(box, outline=TRUE_COLOUR, width=BORDER)
            _caption(draw, font, box, f"{c}: {score:.3f}")
    return canvas


def save_figure(image: Image.Image, path: str | Path) -> Path:
    """Write a PNG atomically (optimised: these pictures end up in reports and Dagster metadata)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    write_bytes(path, buf.getvalue())
    return Path(path)


def _paste(canvas: Image.Image, path: Path, box: tuple[int, int, int, int], tile: int) -> None:
    # pad, not crop: a 4:1 panorama stays whole, letterboxed inside the square tile
    thumb = ImageOps.pad(load_image(path), (tile, tile), color=BACKGROUND)
    canvas.paste(thumb, box[:2])


def _caption(draw: ImageDraw.ImageDraw, font, box: tuple[int, int, int, int], text: str) -> None:
    fits = max(4, (box[2] - box[0]) // 6)  # the default font is about 6 px per character
    if len(text) > fits:
        text = ".." + text[-(fits - 2):]  # keep the tail: "<source>/<id>" ends in what differs
    if text:
        draw.text((box[0], box[3] + 1), text, fill=TEXT_COLOUR, font=font)
