"""Training data: manifest pairs, a decode-once image cache, and cheap per-step tensor augmentation.

On a 2-core CPU, JPEG/PNG decoding and PIL resizing cost more than a small convnet's step, so each
image is decoded and resized ONCE to the size its view needs and kept as a uint8 HxWx3 array: in a
.npy file under cache_dir (survives runs) and in RAM (within a budget). Steps then only stack
arrays and apply tensor flips/rotations/colour jitter.
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from data_assets.errors import ConfigError, DataError
from data_assets.io import LOADER_VERSION, atomic_path, clean_stale_temporaries, load_image, sha256_text
from data_assets.manifest import MODALITIES, read_manifest, resolve_query, resolve_satellite
from gleam_models.samplers import conflict_lists


# ----------------------------------------------------------------------------- manifest pairs

@dataclass
class TrainPairs:
    """Training pairs with integer ids: pair i = (query_paths[i], satellite of location pair_loc[i])."""

    query_paths: list[Path]
    pair_loc: np.ndarray  # [N] location index
    pair_mod: np.ndarray  # [N] index into `modalities`
    modalities: list[str]
    location_ids: list[str]  # [L] "<source>/<id>"
    satellite_paths: list[Path]  # [L] one satellite image per location
    # [L] per location, the locations it may not share a batch with: its semi-positives (overlapping
    # tiles) in this training set, symmetric; empty arrays when the manifest lists none
    semi_positives: list[np.ndarray] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.query_paths)


def load_pairs(manifest_path: Path, base_dir: Path, split: str = "train",
               modalities: list[str] | None = None) -> TrainPairs:
    """kind="pair" rows of `split`, restricted to `modalities` (None = all present)."""
    if modalities is not None:
        unknown = sorted(set(modalities) - set(MODALITIES))
        if unknown:
            raise ConfigError(f"modalities: unknown {unknown}; valid: {list(MODALITIES)}")
    df = read_manifest(manifest_path)
    df = df[(df["kind"] == "pair") & (df["split"] == split)]
    if df.empty:
        raise DataError(manifest_path, f"no {split} pairs (kind='pair', split='{split}') to train on")
    present = sorted(df["modality"].dropna().unique(), key=MODALITIES.index)
    wanted = present if modalities is None else list(modalities)
    empty = [m for m in wanted if m not in present]
    if empty:
        raise DataError(manifest_path, f"modality {', '.join(map(repr, empty))} has no {split} pairs "
                                       f"(present: {', '.join(present) or 'none'}); remove it from the phase's modalities")
    df = df[df["modality"].isin(wanted)].reset_index(drop=True)
    location_ids = sorted(df["location_id"].unique())
    loc_index = {loc: i for i, loc in enumerate(location_ids)}
    first = df.drop_duplicates("location_id").set_index("location_id")
    semi = [(loc_index[a], loc_index[b]) for a, ids in zip(df["location_id"], df["semi_positive_ids"])
            for b in ([] if ids is None else ids) if b in loc_index]  # others are not trained on here
    return TrainPairs(
        query_paths=[resolve_query(r, base_dir) for _, r in df.iterrows()],
        pair_loc=df["location_id"].map(loc_index).to_numpy(np.int64),
        pair_mod=df["modality"].map({m: i for i, m in enumerate(wanted)}).to_numpy(np.int64),
        modalities=wanted,
        location_ids=location_ids,
        satellite_paths=[resolve_satellite(first.loc[loc].to_dict() | {"location_id": loc}, base_dir)
                         for loc in location_ids],
        semi_positives=conflict_lists(len(location_ids), semi),
    )


# ----------------------------------------------------------------------------- image cache

class ImageCache:
    """uint8 [H,W,3] arrays of images resized to a view's input size, decoded once ever."""

    def __init__(self, cache_dir: Path, ram_budget_mb: int = 4096):
        self.root = Path(cache_dir) / "gleamc-images"
        self.ram: dict[tuple[str, tuple[int, int]], np.ndarray] = {}
        self.ram_left = ram_budget_mb << 20

    @staticmethod
    def key(path: Path) -> str:
        """Content identity by path + size + mtime: a rewritten file gets a new entry."""
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise DataError(path, "image file does not exist") from None
        # LOADER_VERSION: arrays decoded by an older loader (no EXIF turn, clipped 16-bit) are not reused
        return sha256_text(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}|{LOADER_VERSION}")[:32]

    def file(self, key: str, size: tuple[int, int]) -> Path:
        return self.root / f"{size[0]}x{size[1]}" / key[:2] / f"{key}.npy"

    def get(self, path: Path, size: tuple[int, int]) -> np.ndarray:
        size = (int(size[0]), int(size[1]))
        mem_key = (str(path), size)
        if mem_key in self.ram:
            return self.ram[mem_key]
        target = self.file(self.key(path), size)
        try:
            arr = np.load(target)
        except (FileNotFoundError, ValueError, OSError):  # missing or torn by an old crash: rebuild
            arr = decode_resized(path, size)
            buf = io.BytesIO()
            np.save(buf, arr)
            write_cache_entry(target, buf.getvalue())
        if arr.nbytes <= self.ram_left:
            self.ram[mem_key] = arr
            self.ram_left -= arr.nbytes
        return arr

    def prefill(self, items: list[tuple[Path, tuple[int, int]]], workers: int = 2, progress: bool = False) -> None:
        """Decode everything up front with a thread pool (PIL releases the GIL while decoding)."""
        from tqdm.auto import tqdm

        unique = list(dict.fromkeys((Path(p), (int(s[0]), int(s[1]))) for p, s in items))
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for _ in tqdm(pool.map(lambda it: self.get(*it), unique), total=len(unique),
                          desc="decode+resize (once)", disable=not progress, leave=False):
                pass


def write_cache_entry(target: Path, data: bytes) -> None:
    """Write one cache file atomically, first dropping the temporaries a killed writer of the same
    entry left (the entry never landed, so this run rewrites it). Two processes filling the same
    entry at once may remove each other's temporary: the loser's write is skipped, which a cache
    can afford (the winner's identical file lands)."""
    clean_stale_temporaries(target)
    try:
        with atomic_path(target) as tmp:
            tmp.write_bytes(data)
    except FileNotFoundError:
        pass


def decode_resized(path: Path, size: tuple[int, int]) -> np.ndarray:
    image = load_image(path)
    image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC, reducing_gap=3.0)
    return np.asarray(image, dtype=np.uint8).copy()


# ----------------------------------------------------------------------------- augmentation

def aug_generator(seed: int, epoch: int, step: int, micro: int) -> torch.Generator:
    """Augmentation randomness of one global micro-batch: the same on every rank and on resume."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 1_000_003 + step) * 101 + micro)


def sample_aug_params(gen: torch.Generator, n: int) -> dict[str, torch.Tensor]:
    """Per-pair random choices for a global batch of n pairs."""
    return {
        "sat_rot": torch.randint(0, 4, (n,), generator=gen),
        "sat_flip": torch.rand(n, generator=gen) < 0.5,
        "q_rot": torch.randint(0, 4, (n,), generator=gen),
        "q_flip": torch.rand(n, generator=gen) < 0.5,
        "jitter": 0.8 + 0.4 * torch.rand(n, 4, generator=gen),  # brightness, contrast for query, satellite
    }


def augment_pair(query: torch.Tensor, sat: torch.Tensor, modality: str, p: dict[str, torch.Tensor], i: int
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Geometric augmentation of one pair of uint8 [H,W,3] tensors, keeping them consistent.

    Satellite: random flip + rot90. Panorama: flipped with the satellite and rolled by k*W/4 for a
    k*90 degree rotation (north moves with the satellite; Sample4Geo's VIGOR/CVUSA recipe).
    Street map: same flip/rotation as the satellite (both north-up overhead views). UAV as
    Sample4Geo's University-1652 recipe: the horizontal flip applied to both views consistently (a
    mirror image of one view alone shows no real place) and the drone view rotated by its own
    random k*90 degrees (drone heading is arbitrary). Ground photo: its own horizontal flip.
    """
    k = int(p["sat_rot"][i]) if sat.shape[0] == sat.shape[1] else 0
    flip = bool(p["sat_flip"][i])
    if flip:
        sat = sat.flip(1)
    sat = torch.rot90(sat, k, dims=(0, 1))
    if modality == "panorama":
        if flip:
            query = query.flip(1)
        query = torch.roll(query, shifts=-(query.shape[1] // 4) * k, dims=1)
    elif modality == "street_map":
        if flip:
            query = query.flip(1)
        query = torch.rot90(query, k if query.shape[0] == query.shape[1] else 0, dims=(0, 1))
    elif modality == "uav":
        if flip:  # with the satellite: consistent, as Sample4Geo's U1652DatasetTrain
            query = query.flip(1)
        query = torch.rot90(query, int(p["q_rot"][i]) if query.shape[0] == query.shape[1] else 0, dims=(0, 1))
    elif bool(p["q_flip"][i]):  # ground
        query = query.flip(1)
    return query, sat


def colour_jitter(x: torch.Tensor, brightness: torch.Tensor, contrast: torch.Tensor) -> torch.Tensor:
    """x float [B,3,H,W] in 0..1; per-image brightness/contrast factors [B]."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * contrast.view(-1, 1, 1, 1) + mean
    return (x * brightness.view(-1, 1, 1, 1)).clamp_(0, 1)


def to_nchw(images: list[torch.Tensor] | list[np.ndarray]) -> torch.Tensor:
    """Stack HWC uint8 images into NCHW whose memory is NHWC (channels_last for free)."""
    stacked = torch.stack([torch.as_tensor(im) for im in images])
    return stacked.permute(0, 3, 1, 2)
