"""Training augmentation keeps a pair showing one place (Sample4Geo's University-1652 recipe for UAV)."""
from __future__ import annotations

import torch

from gleam_models.data import augment_pair, sample_aug_params


def _asymmetric(size: int = 8) -> torch.Tensor:
    """An image no flip or rotation maps onto itself (each pixel a distinct value)."""
    return torch.arange(size * size * 3, dtype=torch.int32).reshape(size, size, 3)


def test_uav_flip_is_applied_to_both_views_and_the_drone_view_rotates_on_its_own():
    img = _asymmetric()
    gen = torch.Generator().manual_seed(0)
    params = sample_aug_params(gen, 256)
    flips = rots = 0
    for i in range(256):
        q, s = augment_pair(img, img, "uav", params, i)
        # undo the satellite's rotation, then its flip: the drone view must be the same image up
        # to a pure rotation (never a mirror image of it)
        s_back = torch.rot90(s, -int(params["sat_rot"][i]), dims=(0, 1))
        flipped = bool(params["sat_flip"][i])
        if flipped:
            s_back = s_back.flip(1)
        assert torch.equal(s_back, img)
        q_back = torch.rot90(q, -int(params["q_rot"][i]), dims=(0, 1))
        assert torch.equal(q_back.flip(1) if flipped else q_back, img), i
        flips += flipped
        rots += int(params["q_rot"][i]) != int(params["sat_rot"][i])
    assert 80 < flips < 176  # about half the pairs are flipped (both views together)
    assert rots > 100  # the drone view's rotation is independent of the satellite's


def test_street_map_and_panorama_follow_the_satellite():
    img = _asymmetric()
    params = sample_aug_params(torch.Generator().manual_seed(1), 64)
    for i in range(64):
        q, s = augment_pair(img, img, "street_map", params, i)
        assert torch.equal(q, s)  # both north-up overhead views: the same flip and rotation
