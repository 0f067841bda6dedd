"""Small I/O helpers shared by every stage: atomic writes, content hashes, safe image decoding.

Every stage output goes through these so that a run killed at any moment leaves either the
previous complete file or the new complete file, never a torn one.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from PIL import Image, ImageOps, UnidentifiedImageError

from data_assets.errors import DataError

# mkstemp/mkdtemp create 0600/0700 entries; outputs should get the permissions a plain open() gives.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK
DIR_MODE = 0o777 & ~_UMASK


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to `path`; move it into place only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        _fsync(tmp_path)
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_directory(path: str | Path) -> Iterator[Path]:
    """Yield an empty temporary directory that replaces `path` as a whole on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, DIR_MODE)
        old = path.with_name(f".{path.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def relative_path(path: str | Path, root: str | Path) -> str:
    """`path` as a stage output records it: relative to the project root (posix) when it lies
    inside it, so the file is the same bytes in every clone; absolute (posix) when outside."""
    path, root = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# Largest image decoded (pixels, from the header, checked before any pixel is decoded). The biggest
# images of the supported datasets are ~2-8 MP; a 169 MP PNG took 1.1 GB to decode. Validation
# passes validate.max_image_pixels; every other loader uses this default.
MAX_IMAGE_PIXELS = 40_000_000
# Bumped whenever load_image can return different pixels for the same file (caches key on it).
LOADER_VERSION = 2  # 2: EXIF orientation, 16-bit scaling
_HIGH_DEPTH_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}


def open_image(path: str | Path, max_pixels: int | None = None) -> Image.Image:
    """Open an image and read its header only; DataError if it is not one or is too large to decode."""
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "image file does not exist")
    limit = MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
    try:
        with warnings.catch_warnings():  # PIL warns from 89 MP; the limit below is ours
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(path)
    except UnidentifiedImageError:
        raise DataError(path, "not an image (no decoder recognises its contents)") from None
    except Image.DecompressionBombError:
        raise DataError(path, f"image header declares more than {limit:,} pixels; refused before decoding") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise DataError(path, f"image cannot be decoded ({e})") from None
    width, height = im.size
    if width <= 0 or height <= 0 or width * height > limit:
        im.close()
        raise DataError(path, f"image header declares {width} x {height} pixels ({width * height / 1e6:.1f} MP), "
                              f"outside 1..{limit:,} pixels; refused before decoding")
    return im


def load_image(path: str | Path, mode: str = "RGB", max_pixels: int | None = None) -> Image.Image:
    """Decode an image fully, the one way every stage does (validation, training, evaluation, teachers).

    Truncated files fail here, not later in a data loader; the size is bounded from the header
    before decoding; EXIF orientation is applied (a portrait photo loads upright); 16-bit and float
    images are scaled to 8 bits by their real range instead of being clipped to white.
    """
    path = Path(path)
    with open_image(path, max_pixels) as im:
        try:
            im.load()
            im = ImageOps.exif_transpose(im)
            if im.mode in _HIGH_DEPTH_MODES:
                im = _to_8bit(im)
            return im.convert(mode)
        except Exception as e:  # noqa: BLE001 - hostile files raise many types (OSError, ValueError, struct.error)
            raise DataError(path, f"image cannot be decoded ({e})") from None


def _to_8bit(im: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grey -> 8-bit grey, scaled by the bit depth its values actually use."""
    import numpy as np

    arr = np.asarray(im, dtype=np.float64)
    if not np.isfinite(arr).all():
        raise ValueError(f"{im.mode} image has non-finite pixel values")
    low, high = float(arr.min()), float(arr.max())
    if im.mode == "F":
        scale = (arr - low) / (high - low) if high > low else np.zeros_like(arr)
    else:
        if low < 0:
            arr, high = arr - low, high - low
        top = 2.0 ** max(8, int(np.ceil(np.log2(high + 1)))) - 1  # 12-bit data in a 16-bit PNG: /4095
        scale = arr / top
    return Image.fromarray(np.round(scale * 255).astype(np.uint8), mode="L")


def clean_stale_temporaries(path: str | Path, min_age_s: float = 0.0) -> int:
    """Remove `.<name>.*.tmp` files/folders next to `path` left by killed writers; returns how many.

    A temporary belongs to a writer still running only if that writer holds the output's lock, so
    call this with the lock held (or give min_age_s to spare fresh ones). Also drops `.<name>.old`.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return 0
    now, removed = time.time(), 0
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*"):
        if not (stale.name.endswith(".tmp") or stale.name == f".{path.name}.old"):
            continue
        try:
            if now - stale.lstat().st_mtime < min_age_s:
                continue
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale)
            else:
                stale.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    return removed


def clean_stale_tree(root: str | Path, min_age_s: float = 0.0) -> int:
    """clean_stale_temporaries for every `.*.tmp` under `root` (a stage's output folder)."""
    root = Path(root)
    if not root.is_dir():
        return clean_stale_temporaries(root, min_age_s)
    removed = clean_stale_temporaries(root, min_age_s)
    for stale in sorted(root.rglob(".*.tmp"), key=lambda p: len(p.parts), reverse=True):
        try:
            if time.time() - stale.lstat().st_mtime < min_age_s:
                continue
            shutil.rmtree(stale) if stale.is_dir() and not stale.is_symlink() else stale.unlink()
            removed += 1
        except FileNotFoundError:
            continue
    return removed


def resolve_inside(root: str | Path, relative: str | Path) -> Path:
    """Join `relative` onto `root`, refusing paths that escape the root (../, absolute, symlinks)."""
    root = Path(root).resolve()
    candidate = (root / relative).resolve()
    if candidate != root and root not in candidate.parents:
        raise DataError(relative, f"path escapes the dataset root {root}")
    return candidate
