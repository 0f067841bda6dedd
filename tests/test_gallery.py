"""The georeferenced satellite gallery: tile positions against rasterio's own transform, several
rasters in one gallery, the FAISS index, and one clear error per bad raster."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Geod, Transformer
from rasterio.transform import xy
from rasterio.vrt import WarpedVRT
from shapely import wkt

from data_assets.errors import DataError
from export.gallery import FORMAT, TILE_COLUMNS, GalleryConfig, build_gallery
from gallery_support import tiny_model, write_utm_rgb, write_wgs84_grey16

GEOD = Geod(ellps="WGS84")
CFG = GalleryConfig(tile_m=64, stride_m=32)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("model"))[0]


@pytest.fixture(scope="module")
def maps(tmp_path_factory):
    d = tmp_path_factory.mktemp("maps")
    return write_utm_rgb(d / "utm.tif"), write_wgs84_grey16(d / "wgs84.tif")


@pytest.fixture(scope="module")
def gallery(maps, model, tmp_path_factory):
    out = tmp_path_factory.mktemp("g") / "gallery"
    build_gallery(list(maps), model, CFG, out)
    return out


def tiles_of(gallery, raster_name):
    tiles = pd.read_csv(gallery / "tiles.csv")
    return tiles[tiles.raster == raster_name]


def centre_by_rasterio(ds, row):
    """The tile centre from rasterio's own transform: the corner of the middle pixel (even sides)
    or the centre of the middle pixel (odd sides; square tiles have one parity)."""
    offset = "ul" if row.width_px % 2 == 0 else "center"
    x, y = xy(ds.transform, row.row_off + row.height_px // 2, row.col_off + row.width_px // 2, offset=offset)
    lon, lat = Transformer.from_crs(ds.crs.to_wkt(), "EPSG:4326", always_xy=True).transform(x, y)
    return lat, lon


def test_utm_tile_centres_match_rasterio_transform(gallery, maps):
    tiles = tiles_of(gallery, "utm.tif")
    assert len(tiles) == 25  # 200 m at 1 m/px, 64 m tiles every 32 m: 5 x 5
    with rasterio.open(maps[0]) as ds:
        for row in tiles.itertuples():
            lat, lon = centre_by_rasterio(ds, row)
            assert row.center_lat == pytest.approx(lat, abs=1e-7) and row.center_lon == pytest.approx(lon, abs=1e-7)
            poly = wkt.loads(row.footprint_wkt)
            assert poly.contains(wkt.loads(f"POINT ({row.center_lon} {row.center_lat})"))
            area, _ = GEOD.geometry_area_perimeter(poly)
            assert abs(area) == pytest.approx(64 * 64, rel=0.01)  # UTM scale factor ~0.9996-1.0004


def test_wgs84_raster_is_tiled_in_metres(gallery, maps):
    meta = json.loads((gallery / "gallery.json").read_text())
    entry = next(r for r in meta["rasters"] if r["path"].endswith("wgs84.tif"))
    assert entry["crs"] == "EPSG:4326" and entry["view_crs"] == "EPSG:32611"  # Las Vegas: UTM 11N
    tiles = tiles_of(gallery, "wgs84.tif")
    assert len(tiles) > 10
    with rasterio.open(maps[1]) as src, WarpedVRT(src, crs=entry["view_crs"]) as vrt:
        west, south, east, north = src.bounds
        for row in tiles.itertuples():
            lat, lon = centre_by_rasterio(vrt, row)
            assert row.center_lat == pytest.approx(lat, abs=1e-7) and row.center_lon == pytest.approx(lon, abs=1e-7)
            assert west < row.center_lon < east and south < row.center_lat < north
            ring = list(wkt.loads(row.footprint_wkt).exterior.coords)
            for (lon0, lat0), (lon1, lat1) in zip(ring[:2], ring[1:3]):  # top and right edges
                assert GEOD.inv(lon0, lat0, lon1, lat1)[2] == pytest.approx(64, abs=1.5)
    first, second = tiles.sort_values(["row_off", "col_off"]).iloc[:2].itertuples()
    assert GEOD.inv(first.center_lon, first.center_lat, second.center_lon, second.center_lat)[2] == pytest.approx(32, abs=1.5)


def test_several_rasters_make_one_gallery(gallery):
    meta = json.loads((gallery / "gallery.json").read_text())
    tiles = pd.read_csv(gallery / "tiles.csv")
    emb = np.load(gallery / "embeddings.npy", allow_pickle=False)
    assert meta["format"] == FORMAT and list(tiles.columns) == TILE_COLUMNS
    assert len(meta["rasters"]) == 2 and meta["count"] == len(tiles) == len(emb) == sum(r["tiles"] for r in meta["rasters"])
    assert set(tiles.raster) == {"utm.tif", "wgs84.tif"} and tiles.tile_id.is_unique
    assert emb.dtype == np.float32 and emb.shape[1] == meta["embed_dim"]
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    for key in ("model_fingerprint", "backbone", "input_size", "tile_m", "stride_m", "index", "index_kind"):
        assert key in meta
    import faiss
    assert faiss.read_index(str(gallery / "index.faiss")).ntotal == len(tiles)


def test_rebuild_with_same_inputs_is_cached(gallery, maps, model):
    assert build_gallery(list(maps), model, CFG, gallery)["cached"] is True


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_indexes_find_each_tile_itself(gallery, maps, model, tmp_path, kind):
    out = tmp_path / kind
    build_gallery([maps[0]], model, CFG.model_copy(update={"index_kind": kind, "ivf_nlist": 4}), out)
    import faiss
    index = faiss.read_index(str(out / "index.faiss"))
    emb = np.load(out / "embeddings.npy")
    _, ids = index.search(emb, 1)
    assert (ids[:, 0] == np.arange(len(emb))).mean() == 1.0
    assert json.loads((out / "gallery.json").read_text())["index_kind"] != "IndexFlatIP"


def test_raster_without_georeferencing(tmp_path, model):
    plain = tmp_path / "plain.tif"
    with rasterio.open(plain, "w", driver="GTiff", width=100, height=100, count=1, dtype="uint8") as ds:
        ds.write(np.zeros((1, 100, 100), np.uint8))
    with pytest.raises(DataError, match="not georeferenced"):
        build_gallery([plain], model, CFG, tmp_path / "g")
    assert not (tmp_path / "g").exists()


def test_unreadable_and_missing_raster(tmp_path, model):
    bad = tmp_path / "bad.tif"
    bad.write_text("not a raster")
    with pytest.raises(DataError, match="not a raster rasterio can read") as e:
        build_gallery([bad], model, CFG, tmp_path / "g")
    assert "bad.tif" in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        build_gallery([tmp_path / "missing.tif"], model, CFG, tmp_path / "g")


def test_uint16_tiles_use_the_embedded_stretch(maps):
    """Grey uint16 is scaled with the embedded dataset's whole-raster percentile stretch."""
    from data_assets.embedded.sources import _stretch
    from export.georaster import TileWindow, open_metric, read_rgb

    with rasterio.open(maps[1]) as ds:
        expected = np.asarray(_stretch(ds.read(1)))
    from export.georaster import _stretch_limits
    with rasterio.open(maps[1]) as ds:
        lo, hi = _stretch_limits(ds, [1])[0]
    with open_metric(maps[1]) as view:
        assert view.limits == [(lo, hi)]
        tile = read_rgb(view, TileWindow(50, 50, 64, 64))
    assert tile.dtype == np.uint8 and tile.shape == (64, 64, 3) and (tile[..., 0] == tile[..., 2]).all()
    assert expected.min() == 0 and expected.max() == 255


def test_neon_png_gets_a_nominal_georeference(tmp_path):
    """YELL crops carry their NEON 1 km tile in the name: placed at its north-west corner, 10 cm, UTM 12N."""
    from data_assets.registry_assets import asset_path
    from export.embedded_gallery import georeference_neon_png

    png = asset_path("neon_yell_crop")  # 2019_YELL_2_541000_4977000_image_crop.png
    tif = georeference_neon_png(png, tmp_path / "yell.tif")
    with rasterio.open(tif) as ds:
        assert ds.crs.to_epsg() == 32612 and ds.count == 3
        assert (ds.transform.c, ds.transform.f, ds.transform.a, ds.transform.e) == (541000.0, 4978000.0, 0.1, -0.1)
        assert "nominal" in ds.tags()["georeference"]
    with pytest.raises(DataError, match="no NEON site"):
        georeference_neon_png(asset_path("neon_soap_061"), tmp_path / "soap.tif")
