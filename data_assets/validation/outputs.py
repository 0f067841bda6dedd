"""What validation writes besides the report: quarantine.csv and the thumbnails of sample pairs."""
from __future__ import annotations

import io
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
from PIL import Image

from data_assets.errors import DataError
from data_assets.io import atomic_directory, atomic_path, load_image
from data_assets.manifest import resolve_query, resolve_satellite

if TYPE_CHECKING:  # importing the suite imports GX (seconds); only the type is needed here
    from data_assets.validation.suite import Outcome

log = logging.getLogger(__name__)

# `row` (position in the input manifest) tells apart rows whose pair_id is null or duplicated
QUARANTINE_COLUMNS = ["row", "pair_id", "kind", "split", "modality", "query_path", "satellite_path",
                      "expectation", "reason"]
THUMB_HEIGHT = 128  # px; small enough to embed in Dagster metadata and the HTML docs
THUMB_MAX_WIDTH = 256  # panoramas are wide: cap each side's width (squashed, still recognisable)
THUMB_GAP = 4


def quarantine_table(frame: pd.DataFrame, outcomes: list[Outcome]) -> pd.DataFrame:
    """One line per (bad row, failed check); `row` is the position in the input manifest."""
    lines = []
    for o in outcomes:
        index = o.unexpected_index
        if o.check.keep_first_of:  # GX flags every copy; keep the first, quarantine the rest
            later = frame.duplicated(list(o.check.keep_first_of), keep="first")
            index = [i for i in index if later.iat[i]]
        for i in index:
            row = frame.iloc[i]
            lines.append({"row": i, **{c: row[c] for c in QUARANTINE_COLUMNS[1:7]},
                          "expectation": o.check.name, "reason": row_reason(o, row)})
    table = pd.DataFrame(lines, columns=QUARANTINE_COLUMNS)
    return table.sort_values(["row", "expectation"], kind="stable").reset_index(drop=True)


def row_reason(o: Outcome, row: pd.Series) -> str:
    """The check's reason plus what this row got wrong (the file error, or the offending value)."""
    if o.check.detail_column is not None:
        detail = row[o.check.detail_column]
        return f"{o.check.reason}: {detail}" if isinstance(detail, str) else o.check.reason
    if len(o.columns) == 1 and not o.check.name.startswith("not_null"):
        value = row[o.columns[0]]
        if not pd.isna(value):
            value = value.item() if hasattr(value, "item") else value  # np.int64(8) -> 8
            return f"{o.check.reason} (got {value!r})"
    return o.check.reason


def write_quarantine(table: pd.DataFrame, path: Path) -> Path:
    with atomic_path(path) as tmp:
        table[QUARANTINE_COLUMNS].to_csv(tmp, index=False)
    return path


def pick_thumbnail_rows(pairs: pd.DataFrame, n: int) -> pd.DataFrame:
    """Up to `n` pairs, taking modalities in turn so each view type is shown; deterministic."""
    if n <= 0 or pairs.empty:
        return pairs.iloc[:0]
    ordered = pairs.sort_values("pair_id", kind="stable")
    ordered = ordered.assign(_turn=ordered.groupby("modality").cumcount())
    return ordered.sort_values(["_turn", "modality"], kind="stable").head(n).drop(columns="_turn")


def side_by_side(query: Image.Image, satellite: Image.Image) -> Image.Image:
    views = []
    for im in (query, satellite):
        width = max(1, min(THUMB_MAX_WIDTH, round(im.width * THUMB_HEIGHT / im.height)))
        views.append(im.resize((width, THUMB_HEIGHT), Image.Resampling.BILINEAR))
    canvas = Image.new("RGB", (views[0].width + THUMB_GAP + views[1].width, THUMB_HEIGHT), "white")
    canvas.paste(views[0], (0, 0))
    canvas.paste(views[1], (views[0].width + THUMB_GAP, 0))
    return canvas


def write_thumbnails(pairs: pd.DataFrame, n: int, base_dir: Path, out_dir: Path) -> list[Path]:
    """query | satellite PNGs for up to `n` sample pairs, replacing the folder as a whole."""
    names = []
    with atomic_directory(out_dir) as tmp:
        for i, (_, row) in enumerate(pick_thumbnail_rows(pairs, n).iterrows()):
            try:
                image = side_by_side(load_image(resolve_query(row, base_dir)),
                                     load_image(resolve_satellite(row, base_dir)))
            except DataError as e:  # changed on disk since it was checked: show the others
                log.warning("thumbnail skipped: %s", e)
                continue
            name = f"pair{i}_{row['modality']}_{re.sub(r'[^A-Za-z0-9]+', '', str(row['pair_id']))[:10]}.png"
            buf = io.BytesIO()
            image.save(buf, format="PNG", optimize=True)
            (tmp / name).write_bytes(buf.getvalue())
            names.append(name)
    return [out_dir / name for name in names]
