"""The embedded default dataset: determinism, cache, split hygiene, derived flags, ground truth vs source."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image
from pydantic import ValidationError

from data_assets.embedded import EmbeddedConfig, build_embedded_dataset
from data_assets.embedded import geometry as geo
from data_assets.embedded import groundtruth
from data_assets.embedded import views
from data_assets.embedded.sources import load_sources
from data_assets.errors import ConfigError
from data_assets.io import sha256_file
from data_assets.registry_assets import asset_path

MODALITIES = ("uav", "street_map", "panorama", "ground")
# what each source's labels cover; everything else must be reported as unknown (null), not as 0
ANNOTATED = {"las_vegas": ["road"], "atlanta": ["building"], "yellowstone": ["tree"], "osbs": ["tree"],
             "soap": ["tree"]}
GT_KEYS = {"region", "annotated", "gsd_m", "extent_m", "land_cover", "roads", "intersections", "buildings", "trees", "dominant"}
# a fast configuration for the byte-level determinism / cache checks
SMALL = dict(tile_px=64, uav_px=64, ground_px=48, panorama_px=(32, 128), uav_views=1, ground_views=1,
             spacenet_stride_m=36.0, neon_stride_m=32.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("embedded") / "default"
    summary = build_embedded_dataset(EmbeddedConfig(), out)
    return summary, out, pd.read_csv(out / "manifest.csv", dtype={"derived": str, "semi_positive_ids": str})


@pytest.fixture(scope="module")
def locations(built):
    _, _, m = built
    return m.drop_duplicates("location_id").set_index("location_id")


def _window(row) -> tuple[int, int, int, int]:
    return tuple(json.loads(row.query_meta)["source_window_px"])


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and p.name != "DATASET.md" and p.name != "metadata.json"}


# ---------------------------------------------------------------- build, cache, determinism

def test_summary_and_layout(built):
    summary, out, m = built
    assert summary["cached"] is False and summary["out_dir"] == str(out)
    assert 250 <= summary["locations"] <= 400
    assert set(m.columns) >= {"query_path", "satellite_path", "location_id", "modality", "split"}
    assert m.groupby(["modality", "split"]).size().to_dict() == {
        (mod, s): n for mod, c in summary["counts"].items() for s, n in c.items() if n}
    for p in set(m.query_path) | set(m.satellite_path):
        assert not Path(p).is_absolute() and (out / p).is_file()
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 50 * 2**20
    sat = Image.open(out / m.satellite_path.iloc[0])
    assert sat.size == (256, 256)
    pano = Image.open(out / m[m.modality == "panorama"].query_path.iloc[0])
    assert pano.size == (512, 128)


def test_every_modality_in_every_split_with_enough_locations(built):
    _, _, m = built
    for mod in MODALITIES:
        sub = m[m.modality == mod]
        assert set(sub.split) == {"train", "val", "test", "test_cross"}, mod
        for split in ("val", "test", "test_cross"):  # validation's floor is 10 pairs per split and modality
            assert sub[sub.split == split].location_id.nunique() >= 10, (mod, split)
        assert sub[sub.split == "train"].location_id.nunique() >= 60, mod


def test_cache_short_circuit(built):
    summary, out, _ = built
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = build_embedded_dataset(EmbeddedConfig(), out)
    assert again["cached"] is True and again["fingerprint"] == summary["fingerprint"]
    assert again["counts"] == summary["counts"] and again["locations"] == summary["locations"]
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_deterministic_per_seed_and_rebuilt_on_change(tmp_path):
    a = build_embedded_dataset(EmbeddedConfig(seed=7, **SMALL), tmp_path / "a")
    b = build_embedded_dataset(EmbeddedConfig(seed=7, **SMALL), tmp_path / "b")
    assert a["fingerprint"] == b["fingerprint"]
    assert _tree_bytes(tmp_path / "a") == _tree_bytes(tmp_path / "b")  # manifest and every image byte
    c = build_embedded_dataset(EmbeddedConfig(seed=8, **SMALL), tmp_path / "a")  # same dir, new config
    assert c["cached"] is False and c["fingerprint"] != a["fingerprint"]
    ma = pd.read_csv(tmp_path / "b" / "manifest.csv")
    mc = pd.read_csv(tmp_path / "a" / "manifest.csv")
    assert ma.query_meta.tolist() != mc.query_meta.tolist()
    assert _tree_bytes(tmp_path / "a") != _tree_bytes(tmp_path / "b")
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # no leftover temp dirs


def test_bad_config_is_refused():
    with pytest.raises(ValidationError):
        EmbeddedConfig(uav_tilt_deg=(30.0, 80.0))
    with pytest.raises(ValidationError):
        EmbeddedConfig(unknown_key=1)


# ---------------------------------------------------------------- split hygiene

def _source_key(loc: str) -> str:
    return loc.rsplit("_x", 1)[0]


def test_no_location_in_two_splits_and_no_spatial_overlap(locations):
    splits = locations.groupby(level=0).split.nunique()
    assert (splits == 1).all()
    for key, group in locations.groupby(locations.index.map(_source_key)):
        wins = {s: [_window(r) for r in group[group.split == s].itertuples()]
                for s in ("train", "val", "test", "test_cross")}
        evaluation = wins["val"] + wins["test"] + wins["test_cross"]
        for w in evaluation:  # no evaluation tile shares a pixel with a train tile
            assert not any(geo.overlaps(w, v) for v in wins["train"]), (key, w)
        for i, w in enumerate(evaluation):  # evaluation tiles never overlap each other, whatever their split
            assert not any(geo.overlaps(w, v) for v in evaluation[i + 1:]), (key, w)


def test_cross_area_ground_is_never_trained_on(built, locations):
    _, out, _ = built
    cfg = EmbeddedConfig()
    keys = locations.index.map(_source_key)
    by_source = locations.groupby(keys).split.agg(set)
    for key in cfg.cross_area_sources:  # whole sources: only test_cross
        assert by_source[key] == {"test_cross"}, key
    regions = locations.ground_truth.map(lambda g: json.loads(g)["region"])
    held_regions = set(regions[keys.isin(cfg.cross_area_sources)])
    assert "osbs" in held_regions and "soap" in held_regions
    assert not (regions[locations.split != "test_cross"].isin({"osbs", "soap"})).any()
    for key, share in cfg.cross_area_strip.items():  # strips: one tile side of empty ground in between
        group = locations[keys == key]
        wins = {s: [_window(r) for r in group[group.split == s].itertuples()] for s in ("train", "val", "test")}
        cross = [_window(r) for r in group[group.split == "test_cross"].itertuples()]
        assert cross, key
        tile = cross[0][2] - cross[0][0]
        west_edge = min(w[0] for w in cross)
        others = [w for ws in wins.values() for w in ws]
        assert others and max(w[2] for w in others) <= west_edge - tile, key
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["split"]["cross_area_sources"] == cfg.cross_area_sources
    assert set(meta["locations"]["per_source"]["soap061"]) == {"train", "val", "test", "test_cross"}


def test_evaluation_tiles_have_no_semi_positives_and_the_footprint_is_config(built, locations, tmp_path):
    evaluation = locations[locations.split != "train"]
    assert evaluation.semi_positive_ids.isna().all()  # they never overlap, so nothing is a near-duplicate
    extents = locations.ground_truth.map(lambda g: tuple(json.loads(g)["extent_m"]))
    spacenet = locations.index.map(_source_key).isin(["vegas", "atlanta"])
    assert {round(e[0]) for e in extents[spacenet]} == {36}  # spacenet_tile_m
    assert {round(e[0]) for e in extents[~spacenet & ~locations.index.str.startswith(("osbs", "soap"))]} == {32}
    small = build_embedded_dataset(EmbeddedConfig(spacenet_tile_m=54.0, spacenet_stride_m=54.0, **{
        k: v for k, v in SMALL.items() if k != "spacenet_stride_m"}), tmp_path / "wide")
    wide = pd.read_csv(tmp_path / "wide" / "manifest.csv")
    wide = wide[wide.modality == "street_map"].drop_duplicates("location_id")
    assert {round(json.loads(g)["extent_m"][0]) for g in wide.ground_truth} == {54}
    assert small["locations"] < len(locations)


def test_split_config_is_checked(tmp_path):
    with pytest.raises(ValidationError, match="test_fraction"):
        EmbeddedConfig(test_fraction=0.6, val_fraction=0.4)
    with pytest.raises(ValidationError, match="both held out"):
        EmbeddedConfig(cross_area_sources=["vegas"], cross_area_strip={"vegas": 0.2})
    with pytest.raises(ValidationError, match="cross_area_strip"):
        EmbeddedConfig(cross_area_strip={"vegas": 1.0})
    with pytest.raises(ConfigError, match="unknown source 'paris'"):
        build_embedded_dataset(EmbeddedConfig(cross_area_sources=["paris"], **SMALL), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_derived_flags(built):
    _, _, m = built
    expected = {"uav": "true", "street_map": "false", "panorama": "true", "ground": "true"}
    for mod, flag in expected.items():
        sub = m[m.modality == mod]
        assert set(sub.derived) == {flag}, mod
        metas = [json.loads(q) for q in sub.query_meta]
        assert all(q["derived"] == (flag == "true") for q in metas)
        if flag == "true":
            assert all(q["derivation"] for q in metas)
    uav = [json.loads(q) for q in m[m.modality == "uav"].query_meta]
    assert all(q["altitude_m"] > 0 and 0 <= q["heading_deg"] < 360 and 10 <= q["tilt_deg"] <= 40 for q in uav)


# ---------------------------------------------------------------- ground truth vs the sources

def test_ground_truth_schema(locations):
    for row in locations.itertuples():
        gt = json.loads(row.ground_truth)
        assert set(gt) == GT_KEYS
        assert set(gt["land_cover"]) == {"road", "building", "tree", "other"}
        known = sum(v for k, v in gt["land_cover"].items() if k != "other" and v is not None)
        assert gt["land_cover"]["other"] == pytest.approx(1 - known, abs=2e-4)  # other = not an annotated class
        assert gt["dominant"] in {"road", "building", "tree", "other"}
        assert all(0 <= r["bearing_deg"] < 180 and r["length_m"] > 0 for r in gt["roads"])
        assert gt["gsd_m"] == pytest.approx(max(gt["extent_m"]) / 256, rel=1e-3)


def test_annotated_classes_per_region(built, locations):
    _, out, _ = built
    regions = set()
    for row in locations.itertuples():
        gt = json.loads(row.ground_truth)
        assert gt["annotated"] == ANNOTATED[gt["region"]], row.Index
        regions.add(gt["region"])
    assert regions == set(ANNOTATED)
    assert json.loads((out / "metadata.json").read_text())["annotated_classes"] == ANNOTATED


def test_unannotated_classes_are_null_not_zero(locations):
    for row in locations.itertuples():
        gt = json.loads(row.ground_truth)
        ann = gt["annotated"]
        for cls in ("road", "building", "tree"):
            share = gt["land_cover"][cls]
            assert (share is None) == (cls not in ann), (row.Index, cls)
            if share is not None:
                assert 0 <= share <= 1
        if "road" in ann:
            assert isinstance(gt["intersections"], int) and gt["intersections"] >= 0
        else:
            assert gt["roads"] == [] and gt["intersections"] is None
        if "building" in ann:
            assert isinstance(gt["buildings"]["count"], int)
            assert (gt["buildings"]["largest_area_m2"] is None) == (gt["buildings"]["count"] == 0)
        else:
            assert gt["buildings"] == {"count": None, "mean_area_m2": None, "largest_area_m2": None}
        if "tree" in ann:
            assert isinstance(gt["trees"]["count"], int) and gt["trees"]["per_hectare"] >= 0
        else:
            assert gt["trees"] == {"count": None, "per_hectare": None}


def test_dominant_only_names_an_annotated_class(locations):
    seen = set()
    for row in locations.itertuples():
        gt = json.loads(row.ground_truth)
        cover, dom = gt["land_cover"], gt["dominant"]
        assert dom != "bare" and dom in gt["annotated"] + ["other"], (row.Index, dom)
        best = max(cover[c] for c in gt["annotated"])
        if dom == "other":
            assert best < groundtruth.MIN_DOMINANT_SHARE, row.Index
        else:
            assert cover[dom] == best >= groundtruth.MIN_DOMINANT_SHARE, row.Index
        seen.add(dom)
    assert {"tree", "other"} <= seen  # the rule really separates tiles (NEON has dense and sparse canopy)


def test_dominant_rule():
    share = groundtruth.MIN_DOMINANT_SHARE
    assert groundtruth.dominant({"road": None, "building": 0.6, "tree": None, "other": 0.4}) == "building"
    assert groundtruth.dominant({"road": None, "building": share / 2, "tree": None, "other": 1 - share / 2}) == "other"
    assert groundtruth.dominant({"road": 0.2, "building": 0.3, "tree": None, "other": 0.5}) == "building"
    assert groundtruth.dominant({"road": None, "building": None, "tree": None, "other": 1.0}) == "other"
    # an unannotated class never wins, however the other fractions look
    assert groundtruth.dominant({"road": 0.0, "building": None, "tree": None, "other": 1.0}) == "other"


def test_vegas_road_fraction_matches_mask_and_map(built, locations):
    _, out, m = built
    mask = tifffile.imread(asset_path("spacenet_vegas_road_mask")) > 0
    vegas = locations[locations.index.str.startswith("vegas_")]
    assert len(vegas) >= 20
    assert (vegas.ground_truth.map(lambda g: bool(json.loads(g)["roads"]))).mean() > 0.5
    agree = []
    for loc, row in vegas.iterrows():
        x0, y0, x1, y1 = _window(row)
        gt = json.loads(row.ground_truth)
        assert gt["land_cover"]["road"] == pytest.approx(mask[y0:y1, x0:x1].mean(), abs=1e-3)
        assert gt["region"] == "las_vegas" and 36.1388 <= row.lat <= 36.1424 and -115.2339 <= row.lon <= -115.2302
        # the rendered map draws its roads where SpaceNet's mask has them
        street = m[(m.location_id == loc) & (m.modality == "street_map")].query_path.iloc[0]
        drawn = np.asarray(Image.open(out / street).convert("RGB")).astype(int)
        on_road = (np.abs(drawn - np.array(views.MAP_STYLE["background"])).sum(axis=2) > 12)
        tile_mask = np.asarray(Image.fromarray(mask[y0:y1, x0:x1]).resize(on_road.shape[::-1])) > 0
        if tile_mask.sum() > 100:
            agree.append((on_road & tile_mask).sum() / tile_mask.sum())
        if gt["land_cover"]["road"] > 0.15:  # a 36 m tile can hold ~5 m of a road's edge (14%) without its axis
            assert gt["roads"], loc  # a road in the mask has a centre-line in the tile
    assert agree and np.mean(agree) > 0.8


def _atlanta_footprints():
    with tifffile.TiffFile(asset_path("spacenet_atlanta_image")) as tif:
        tie = tif.pages[0].tags["ModelTiepointTag"].value
        scale = tif.pages[0].tags["ModelPixelScaleTag"].value
    feats = json.loads(asset_path("spacenet_atlanta_buildings").read_text())["features"]
    out = []
    for f in feats:
        ring = np.array(f["geometry"]["coordinates"][0])[:, :2]
        origin = ring[0].copy()  # shoelace on raw UTM numbers (~1e6) would lose the centroid to rounding
        x, y = ring[:, 0] - origin[0], ring[:, 1] - origin[1]
        xn, yn = np.roll(x, -1), np.roll(y, -1)
        cross = x * yn - xn * y
        a = cross.sum() / 2
        cx, cy = ((x + xn) * cross).sum() / (6 * a), ((y + yn) * cross).sum() / (6 * a)
        cx, cy = cx + origin[0], cy + origin[1]
        out.append(((cx - tie[3]) / scale[0], (tie[4] - cy) / scale[1], abs(a)))
    return out


def test_atlanta_buildings_match_footprints(locations):
    footprints = _atlanta_footprints()
    atlanta = locations[locations.index.str.startswith("atlanta_")]
    assert len(atlanta) >= 30
    for _, row in atlanta.iterrows():
        x0, y0, x1, y1 = _window(row)
        inside = [a for px, py, a in footprints if x0 <= px < x1 and y0 <= py < y1]
        gt = json.loads(row.ground_truth)
        assert gt["buildings"]["count"] == len(inside)
        assert gt["land_cover"]["road"] is None and gt["trees"]["count"] is None  # Atlanta labels buildings only
        if inside:
            assert gt["buildings"]["largest_area_m2"] == pytest.approx(max(inside), abs=0.1)
            assert gt["land_cover"]["building"] > 0
        assert 33.5 < row.lat < 34.0 and -84.6 < row.lon < -84.3  # Atlanta, from the UTM 16N tags


def test_neon_trees_match_crown_boxes(locations):
    import xml.etree.ElementTree as ET
    boxes = ET.parse(asset_path("neon_yell_crop2_trees")).getroot().iter("bndbox")
    centres = [((float(b.findtext("xmin")) + float(b.findtext("xmax"))) / 2,
                (float(b.findtext("ymin")) + float(b.findtext("ymax"))) / 2) for b in boxes]
    yell = locations[locations.index.str.startswith("yell2_")]
    assert len(yell) >= 30
    for _, row in yell.iterrows():
        x0, y0, x1, y1 = _window(row)
        gt = json.loads(row.ground_truth)
        n = sum(x0 <= cx < x1 and y0 <= cy < y1 for cx, cy in centres)
        assert gt["trees"]["count"] == n
        area_ha = (x1 - x0) * 0.1 * (y1 - y0) * 0.1 / 1e4
        assert gt["trees"]["per_hectare"] == pytest.approx(n / area_ha, abs=0.1)
        assert gt["region"] == "yellowstone" and pd.isna(row.lat) and gt["roads"] == []
        assert gt["intersections"] is None and gt["buildings"]["count"] is None  # unlabelled, not absent


# ---------------------------------------------------------------- views stay inside their tile

def test_drone_and_panorama_never_see_outside_the_tile():
    src = next(s for s in load_sources() if s.key == "yell1")
    win = (300, 200, 620, 520)
    marked = Image.new("RGB", src.size, (255, 0, 255))  # anything outside the tile is magenta
    marked.paste(src.image.crop(win), win[:2])
    src.image = marked
    rng = np.random.default_rng(0)
    for _ in range(8):
        img, alt = views.drone_view(src, win, 96, float(rng.uniform(0, 360)), float(rng.uniform(0, 50)), 1.0)
        a = np.asarray(img).astype(int)
        assert alt > 0
        assert not ((a[..., 0] > 200) & (a[..., 1] < 60) & (a[..., 2] > 200)).any()
    pano = np.asarray(views.panorama(src, win, 32, 128, 0.3)).astype(int)
    assert not ((pano[..., 0] > 200) & (pano[..., 1] < 60) & (pano[..., 2] > 200)).any()


# ---------------------------------------------------------------- geometry

def test_junctions_count_arms():
    cross = [np.array([[0, 5], [10, 5]], float), np.array([[5, 0], [5, 10]], float)]
    tee = [np.array([[0, 5], [10, 5]], float), np.array([[5, 5], [5, 10]], float)]
    continuation = [np.array([[0, 5], [5, 5]], float), np.array([[5, 5], [10, 5]], float)]
    assert len(geo.junctions(cross, 0.5)) == 1
    assert len(geo.junctions(tee, 0.5)) == 1
    assert geo.junctions(continuation, 0.5) == []


def test_length_bearing_and_utm():
    length, bearing = geo.length_and_bearing([(np.array([0.0, 10.0]), np.array([10.0, 0.0]))], 1.0, 1.0)
    assert length == pytest.approx(14.142, abs=1e-3) and bearing == pytest.approx(45.0)
    lat, lon = geo.utm_to_wgs84(630084.30, 4833438.55, 17)  # CN Tower, Toronto (published UTM 17N)
    assert lat == pytest.approx(43.642567, abs=2e-5) and lon == pytest.approx(-79.387139, abs=2e-5)


def test_geometry_agrees_with_the_reference_libraries_and_hand_values():
    # clipping (shapely): through, in-and-out-twice, corner touch
    win = (0, 0, 10, 10)
    (p, q), = geo.clipped_segments(np.array([[-5.0, 5.0], [15.0, 5.0]]), win)
    assert p.tolist() == [0.0, 5.0] and q.tolist() == [10.0, 5.0]
    zigzag = np.array([[-2.0, 2.0], [5.0, 2.0], [5.0, -5.0], [8.0, -5.0], [8.0, 4.0]])
    pieces = geo.clipped_segments(zigzag, win)
    assert sum(np.hypot(*(q - p)) for p, q in pieces) == pytest.approx(5 + 2 + 4)
    assert geo.clipped_segments(np.array([[-1.0, 1.0], [1.0, -1.0]]), win) == []  # touches a corner only
    # footprint area and centroid with a hole
    outer = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hole = np.array([[1, 1], [3, 1], [3, 3], [1, 3]], float)
    area, centroid = geo.footprint([outer, hole])
    assert area == pytest.approx(96.0)
    assert centroid == pytest.approx([(5 * 100 - 2 * 4) / 96] * 2)  # area-weighted: square minus hole
    # a degree-sized pixel on the WGS84 ellipsoid (pyproj geodesics) vs the meridian / parallel radii
    lat = 36.14
    a_, f = 6378137.0, 1 / 298.257223563
    e2 = f * (2 - f)
    w = np.sqrt(1 - e2 * np.sin(np.radians(lat)) ** 2)
    per_deg_lon = np.radians(1) * a_ / w * np.cos(np.radians(lat))
    per_deg_lat = np.radians(1) * a_ * (1 - e2) / w ** 3
    sx, sy = geo.lonlat_pixel_size_m(-115.23, lat, 1e-5, 1e-5)
    assert sx == pytest.approx(per_deg_lon * 1e-5, rel=1e-6) and sy == pytest.approx(per_deg_lat * 1e-5, rel=1e-6)


def test_sources_are_georeferenced_with_rasterio_and_rasterised_like_shapely_areas():
    import rasterio
    from shapely.geometry import box, shape

    sources = {s.key: s for s in load_sources()}
    atlanta = sources["atlanta"]
    with rasterio.open(asset_path("spacenet_atlanta_image")) as ds:
        assert ds.crs.to_epsg() == 32616
        east, north = ds.transform @ (100, 200)
    lat, lon = atlanta.to_latlon(100, 200)
    assert (lat, lon) == pytest.approx(geo.utm_to_wgs84(east, north, 16))
    # building share of a few windows: rasterised class raster vs exact polygon areas (shapely)
    feats = json.loads(asset_path("spacenet_atlanta_buildings").read_text())["features"]
    polys = [shape(f["geometry"]) for f in feats]
    for x0, y0 in ((0, 0), (300, 300), (600, 150)):
        win = (x0, y0, x0 + 120, y0 + 120)
        e0, n0 = ds.transform @ (x0, y0)
        e1, n1 = ds.transform @ (x0 + 120, y0 + 120)
        tile = box(e0, n1, e1, n0)
        exact = sum(p.intersection(tile).area for p in polys) / tile.area
        drawn = groundtruth.land_cover(atlanta, win)["building"]
        assert drawn == pytest.approx(exact, abs=0.02), win
    vegas = sources["vegas"]
    with rasterio.open(asset_path("spacenet_vegas_image")) as ds:
        lon0, lat0 = ds.transform @ (0, 0)
    assert vegas.to_latlon(0, 0) == pytest.approx((lat0, lon0))
    assert 0.24 < vegas.sx < 0.25 and 0.29 < vegas.sy < 0.31  # 2.7e-6 degrees at 36 N


# ---------------------------------------------------------------- metadata and datasheet

def test_metadata_provenance_and_datasheet(built):
    summary, out, m = built
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["fingerprint"] == summary["fingerprint"] and meta["seed"] == 0
    assert meta["counts"] == summary["counts"]
    assert meta["locations"]["total"] == m.location_id.nunique()
    licences = {s["package"]: s["licence"] for s in meta["sources"]}
    assert licences == {"solaris": "CC BY-SA 4.0", "deepforest": "CC0 1.0"}
    for s in meta["sources"]:
        assert s["sha256"] == sha256_file(asset_path(s["asset"]))
        assert s["version"] and s["path_in_package"] and s["attribution"]
    assert set(meta["derived"]) >= set(MODALITIES)
    sheet = (out / "DATASET.md").read_text()
    for needle in ("CC BY-SA 4.0", "CC0", "derived", "street_map", str(meta["locations"]["total"]),
                   '"annotated"', "null", str(groundtruth.MIN_DOMINANT_SHARE)):
        assert needle in sheet
    assert '"bare"' not in sheet
    assert set(meta["ground_truth_schema"]) == GT_KEYS and meta["builder_version"] == "4"
    for split in ("val", "test_cross"):
        assert split in sheet


# ---------------------------------------------------------------- semi-positives

def _semi(row) -> set[str]:
    return set(row.semi_positive_ids.split(";")) if isinstance(row.semi_positive_ids, str) else set()


def _overlap_share(a, b) -> float:
    """Recomputed here from the windows: intersection pixels over the tile's pixels."""
    iw = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return iw * ih / ((a[2] - a[0]) * (a[3] - a[1]))


def test_semi_positives_are_consistent_per_row(built):
    _, _, m = built
    per_loc = m.groupby("location_id").semi_positive_ids.nunique(dropna=False)
    assert (per_loc == 1).all()  # every query row of a location carries the same list


def test_semi_positives_match_the_tile_overlap(locations):
    semi = {loc: _semi(row) for loc, row in locations.iterrows()}
    src = {loc: tuple(json.loads(q)["source_assets"]) for loc, q in locations.query_meta.items()}
    wins = {loc: _window(row) for loc, row in locations.iterrows()}
    assert sum(map(len, semi.values())) > 0
    for loc, ids in semi.items():
        assert loc not in ids and ids <= set(semi), loc
        for other in ids:
            assert loc in semi[other], (loc, other)  # symmetric
            assert locations.at[other, "split"] == locations.at[loc, "split"], (loc, other)
        expected = {o for o in semi if o != loc and src[o] == src[loc]
                    and locations.at[o, "split"] == locations.at[loc, "split"]
                    and _overlap_share(wins[loc], wins[o]) >= 0.25}
        assert ids == expected, loc


def test_semi_positive_stats_and_off_switch(built, locations, tmp_path):
    _, out, _ = built
    meta = json.loads((out / "metadata.json").read_text())["semi_positives"]
    n = locations.semi_positive_ids.map(lambda v: len(v.split(";")) if isinstance(v, str) else 0)
    assert meta["min_overlap"] == 0.25
    assert meta["per_location"] == {"locations": len(n), "mean": round(float(n.mean()), 3), "max": int(n.max())}
    regions = locations.ground_truth.map(lambda g: json.loads(g)["region"])
    for region, stats in meta["per_region"].items():
        assert stats["max"] == int(n[regions == region].max()), region
    assert "Semi-positives" in (out / "DATASET.md").read_text()
    build_embedded_dataset(EmbeddedConfig(semi_positive_min_overlap=0.0, **SMALL), tmp_path / "off")
    off = pd.read_csv(tmp_path / "off" / "manifest.csv", dtype={"semi_positive_ids": str})
    assert off.semi_positive_ids.isna().all()
