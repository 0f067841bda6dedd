"""Item 8: a generated corpus of hostile images through the one loader every stage uses.

Each file either loads correctly (right orientation, right tones) or is refused with its reason:
validation quarantines it (decodes=False + the reason), training and evaluation raise DataError.
"""
from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_assets.errors import DataError
from data_assets.io import load_image
from data_assets.validation.files import inspect_image
from gleam_models.data import decode_resized

PROJECT = Path(__file__).resolve().parents[2]


def _gradient16(path: Path, top: int) -> Path:
    arr = np.tile(np.linspace(0, top, 64).round().astype(np.uint16), (16, 1))
    Image.fromarray(arr).save(path)  # mode I;16, written as a 16-bit grey PNG
    return path


def _exif_rotated(path: Path) -> Path:
    """Stored 40 wide x 20 high, left half red; EXIF orientation 6 = show rotated 90 degrees clockwise."""
    im = Image.new("RGB", (40, 20), "blue")
    im.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    im.save(path, "JPEG", exif=exif, quality=95)
    return path


def _png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hostile")
    files = {"gray16": _gradient16(d / "gray16.png", 65535), "gray12_in_16": _gradient16(d / "gray12.png", 4095),
             "exif_rotated": _exif_rotated(d / "portrait.jpg")}
    Image.new("CMYK", (32, 32), (0, 255, 255, 0)).save(d / "cmyk.jpg")  # red in CMYK
    files["cmyk"] = d / "cmyk.jpg"
    pal = Image.new("P", (32, 32), 1)
    pal.putpalette([0, 0, 0, 0, 200, 0] + [0] * 762)
    pal.save(d / "palette.png", transparency=0)
    files["palette"] = d / "palette.png"
    whole = _png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    (d / "truncated.png").write_bytes(whole[: len(whole) // 2])
    files["truncated"] = d / "truncated.png"
    (d / "empty.jpg").write_bytes(b"")
    files["zero_size"] = d / "empty.jpg"
    (d / "notes.jpg").write_text("this is a text file, not a JPEG\n")
    files["text_as_jpg"] = d / "notes.jpg"
    Image.new("1", (13000, 13000)).save(d / "huge.png")  # 169 MP, ~20 kB on disk
    files["huge_header"] = d / "huge.png"
    return files


def test_16_bit_images_keep_their_tones(corpus):
    for name in ("gray16", "gray12_in_16"):
        arr = np.asarray(load_image(corpus[name]))
        assert (arr == 255).mean() < 0.05, f"{name} decoded as mostly white"
        row = arr[0, :, 0].astype(int)
        assert row[0] == 0 and row[-1] == 255 and abs(int(row[32]) - 128) <= 3 and (np.diff(row) >= 0).all()


def test_exif_orientation_is_applied_by_every_loader(corpus):
    im = load_image(corpus["exif_rotated"])
    assert im.size == (20, 40), "portrait photo loaded sideways"
    arr = np.asarray(im).astype(int)
    assert arr[5, 10, 0] > 200 and arr[35, 10, 2] > 200  # the red half is now on top
    resized = decode_resized(corpus["exif_rotated"], (40, 20))  # GLEAM-C's image cache decodes the same way
    assert np.array_equal(resized, np.asarray(im.resize((20, 40), Image.Resampling.BICUBIC, reducing_gap=3.0)))


def test_other_colour_modes_load_as_rgb(corpus):
    cmyk = np.asarray(load_image(corpus["cmyk"])).astype(int)
    assert cmyk.shape == (32, 32, 3) and cmyk[..., 0].mean() > 200 and cmyk[..., 1].mean() < 60
    palette = np.asarray(load_image(corpus["palette"]))
    assert palette.shape == (32, 32, 3) and (palette[..., 1] == 200).all()


@pytest.mark.parametrize("name, reason", [
    ("truncated", "cannot be decoded"), ("zero_size", "not an image"), ("text_as_jpg", "not an image"),
    ("huge_header", r"13000 x 13000 pixels \(169.0 MP\).*refused before decoding"),
])
def test_broken_files_are_refused_with_the_reason_and_quarantined(corpus, name, reason):
    with pytest.raises(DataError, match=reason):
        load_image(corpus[name])
    for decode in (True, False):
        facts = inspect_image(corpus[name], decode)
        if name == "truncated" and not decode:
            continue  # header-only checks cannot see missing pixel data (that is what decode_images is for)
        assert facts.decodes is False and facts.error and str(corpus[name]) in facts.error


def test_good_files_pass_validation_with_their_displayed_size(corpus):
    facts = inspect_image(corpus["exif_rotated"], decode=True)
    assert facts.decodes and (facts.width, facts.height) == (20, 40)


def test_a_huge_header_is_refused_before_any_pixel_is_decoded(corpus):
    code = textwrap.dedent(f"""
        import resource, sys
        from data_assets.io import load_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_image({str(corpus["huge_header"])!r})
        except Exception as e:
            print(type(e).__name__)
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, capture_output=True, text=True, timeout=120)
    kind, grown_mb = out.stdout.split()
    assert kind == "DataError" and int(grown_mb) < 50, out.stdout + out.stderr
