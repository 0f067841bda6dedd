"""`localize`: a crop of the map finds its own tile, the CSV track, the error paths, and the
localisation error in metres (pyproj.Geod) on hand-made positions."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from pyproj import Geod

from data_assets.errors import DataError
from data_assets.io import read_json
from export.localize import error_metres, localization_metrics, localize, write_track
from gallery_support import crop_frames, tiny_gallery

GEOD = Geod(ellps="WGS84")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return tiny_gallery(tmp_path_factory.mktemp("loc"))


def test_a_crop_of_the_map_finds_its_tile(setup, tmp_path):
    g = setup[4]
    wanted = list(g.tiles.tile_id.iloc[[0, 7, 24]])
    results = localize(crop_frames(setup, wanted, tmp_path / "f"), g, setup[1], modality="uav", k=3)
    assert [r.best.tile_id for r in results] == wanted
    for r, tile_id in zip(results, wanted):
        t = g.tiles.set_index("tile_id").loc[tile_id]
        assert r.best.similarity == pytest.approx(1.0, abs=1e-4)
        assert (r.best.lat, r.best.lon) == pytest.approx((t.center_lat, t.center_lon))
        assert len(r.matches) == 3 and r.matches[0].similarity >= r.matches[1].similarity >= r.matches[2].similarity


def test_csv_track_for_a_folder(setup, tmp_path):
    g = setup[4]
    wanted = list(g.tiles.tile_id.iloc[[0, 1, 2, 6]])
    crop_frames(setup, wanted, tmp_path / "flight")
    results = localize([tmp_path / "flight"], g, setup[1], k=2)
    track = pd.read_csv(write_track(results, tmp_path / "track.csv"))
    assert list(track.tile_id) == wanted and list(track.seq) == [0, 1, 2, 3]
    assert track.frame.str.endswith(("frame_00.png", "frame_01.png", "frame_02.png", "frame_03.png")).all()
    assert np.isnan(track.step_m.iloc[0]) and track.step_m.iloc[1] == pytest.approx(32, abs=0.1)
    assert (track.margin_to_rank2.dropna() >= 0).all()


def test_unreadable_and_missing_frames(setup, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="broken.jpg"):
        localize([bad], setup[4], setup[1])
    with pytest.raises(DataError, match="frame not found"):
        localize([tmp_path / "nope.jpg"], setup[4], setup[1])


def test_gallery_of_another_model_is_refused(setup, tmp_path):
    from export.gallery import load_model
    from gleam_models.checkpoint import save_model
    from gleam_models.encoder import create_encoder
    import torch

    cfg = setup[2]
    torch.manual_seed(1)
    save_model(tmp_path / "other.safetensors", create_encoder(cfg), None)
    other = load_model(cfg, tmp_path / "other.safetensors")
    frames = crop_frames(setup, [setup[4].tiles.tile_id.iloc[0]], tmp_path / "f")
    with pytest.raises(DataError, match="gallery was built with model"):
        localize(frames, setup[4], other)


def test_error_metres_is_geodesic():
    # one minute of latitude at the equator is 1842.9 m on WGS84
    assert error_metres(0.0, 0.0, 1 / 60, 0.0)[0] == pytest.approx(1842.9, abs=0.1)


def test_localization_metrics_on_hand_made_positions(setup, tmp_path):
    g = setup[4]
    ids = list(g.tiles.tile_id.iloc[[0, 5, 12, 18]])
    frames = crop_frames(setup, ids, tmp_path / "f")
    offsets = [3.0, 8.0, 20.0, 40.0]  # true position this far (m) from the tile the frame matches
    rows = []
    for path, tile_id, off, az in zip(frames, ids, offsets, [0, 90, 180, 270]):
        t = g.tiles.set_index("tile_id").loc[tile_id]
        lon, lat, _ = GEOD.fwd(t.center_lon, t.center_lat, az, off)
        rows.append({"path": str(path), "modality": "uav", "lat": lat, "lon": lon, "truth": "hand-made"})
    out = tmp_path / "metrics" / "localize.json"
    report = localization_metrics(pd.DataFrame(rows), g, setup[1], out)
    assert read_json(out) == report
    m = report["per_modality"]["uav"]
    assert m["count"] == 4 and m["median_m"] == pytest.approx(14.0, abs=0.01)
    assert m["within_10m"] == 0.5 and m["within_25m"] == 0.75
    assert m["rank1_footprint_hit"] == 0.75 and m["by_truth"]["hand-made"]["count"] == 4  # 40 m is outside a 64 m tile
    assert report["model_fingerprint"] == g.meta["model_fingerprint"] and report["gallery"]["content_sha256"]


# ----------------------------------------------------------------------------- the CLI

def cli_project(tmp_path):
    from gallery_support import SIZE_32

    sizes = ", ".join(f"{k}: [{h}, {w}]" for k, (h, w) in SIZE_32.items())
    (tmp_path / "params.yaml").write_text(
        "ingest:\n  sources:\n    - {adapter: manifest, root: ds}\n"
        f"model: {{backbone: mobilenetv2_050, weights: none, channels_last: false, input_size: {{{sizes}}}}}\n")
    return tmp_path


@pytest.mark.slow
def test_cli_gallery_build_and_localize(setup, tmp_path):
    from pipeline_support import gleam

    d, _, _, raster, g = setup
    root = cli_project(tmp_path)
    built = gleam("gallery", "build", str(raster), "--out", "g", "--checkpoint", str(d / "model.safetensors"),
                  "--tile-m", "64", "--stride-m", "32", cwd=root)
    assert built.returncode == 0, built.stderr
    assert "25 tiles from 1 raster" in built.stderr
    crop_frames(setup, list(g.tiles.tile_id.iloc[[3, 4]]), root / "flight")
    found = gleam("localize", "flight", "--gallery", "g", "--k", "2", "--track", "t.csv", cwd=root)
    assert found.returncode == 0, found.stderr
    assert g.tiles.tile_id.iloc[3] in found.stdout and "similarity" in found.stdout
    assert list(pd.read_csv(root / "t.csv").tile_id) == list(g.tiles.tile_id.iloc[[3, 4]])


@pytest.mark.slow
def test_cli_errors_are_one_line(setup, tmp_path):
    from pipeline_support import gleam

    d = setup[0]
    root = cli_project(tmp_path)
    plain = root / "plain.png"
    Image.new("RGB", (80, 80)).save(plain)
    ckpt = ["--checkpoint", str(d / "model.safetensors")]
    for args, needle in [(["gallery", "build", str(plain), "--out", "g", *ckpt], "not georeferenced"),
                         (["localize", "missing.jpg", "--gallery", str(d / "gallery")], "frame not found"),
                         (["localize", "x.jpg", "--gallery", str(root)], "not a gallery")]:
        result = gleam(*args, cwd=root)
        err = result.stderr + result.stdout
        assert result.returncode == 2 and "Traceback" not in err and needle in err, err
