"""GLEAM-C batch samplers: balanced, one location per batch, hard-negative groups, rank sharding."""
from __future__ import annotations

import numpy as np
import pytest

from data_assets.errors import ConfigError
from gleam_models.samplers import epoch_batches, nearest_locations, shard


def _pairs(n_locations=40, modalities=4, per=1, skip_mod=None):
    loc, mod = [], []
    for l in range(n_locations):
        for m in range(modalities):
            if skip_mod is not None and m == skip_mod and l % 2:
                continue
            for _ in range(per):
                loc.append(l)
                mod.append(m)
    return np.array(loc), np.array(mod)


def test_balanced_random_batches_are_balanced_and_location_unique():
    loc, mod = _pairs()
    batches = epoch_batches(loc, mod, batch_size=16, seed=0, epoch=0)
    assert len(batches) == len(loc) // 16
    for b in batches:
        assert len(b) == 16
        assert len(set(loc[b])) == 16  # each location at most once
        assert np.bincount(mod[b], minlength=4).tolist() == [4, 4, 4, 4]


def test_unbalanced_modalities_still_share_batches_equally():
    loc, mod = _pairs(n_locations=40, modalities=2, per=1)
    loc = np.concatenate([loc, np.repeat(np.arange(40), 5)])  # modality 0 has 6x the pairs
    mod = np.concatenate([mod, np.zeros(200, dtype=int)])
    for b in epoch_batches(loc, mod, batch_size=10, seed=3, epoch=1):
        assert np.bincount(mod[b], minlength=2).tolist() == [5, 5]
        assert len(set(loc[b])) == 10


def test_batches_depend_only_on_seed_and_epoch():
    loc, mod = _pairs()
    a = epoch_batches(loc, mod, 8, seed=1, epoch=2)
    b = epoch_batches(loc, mod, 8, seed=1, epoch=2)
    c = epoch_batches(loc, mod, 8, seed=1, epoch=3)
    assert all((x == y).all() for x, y in zip(a, b))
    assert any((x != y).any() for x, y in zip(a, c))


def test_similarity_batches_hold_anchor_neighbours():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(64, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    neighbours = nearest_locations(emb, k=16)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    assert (neighbours[:, 0] == sims.argmax(1)).all()  # closest other location first, never itself
    loc, mod = _pairs(n_locations=64, modalities=2)
    batches = epoch_batches(loc, mod, 16, seed=0, epoch=0, neighbours=neighbours, group_size=4, closest_share=1.0)
    hits = 0
    for b in batches:
        locs = set(loc[b].tolist())
        assert len(locs) == 16
        assert np.bincount(mod[b], minlength=2).tolist() == [8, 8]
        hits += sum(len(locs & set(neighbours[l, :3].tolist())) > 0 for l in locs)
    total = sum(len(b) for b in batches)
    # with groups of the 3 closest, most locations share a batch with one of their 3 nearest
    # (a random batch of 16 out of 64 would do so for about 1 - (48/63)^3 ~ 56%)
    assert hits / total > 0.8


def test_shards_are_disjoint_and_complete():
    loc, mod = _pairs()
    for b in epoch_batches(loc, mod, 12, seed=0, epoch=0):
        parts = [shard(b, r, 3) for r in range(3)]
        assert np.concatenate(parts).tolist() == b.tolist()  # rank order rebuilds the global batch
        assert len(set(np.concatenate(parts).tolist())) == 12
    with pytest.raises(ConfigError, match="divisible"):
        shard(np.arange(10), 0, 3)


def test_batch_larger_than_locations_is_a_config_error():
    loc, mod = _pairs(n_locations=5)
    with pytest.raises(ConfigError, match="larger than the 5 training locations"):
        epoch_batches(loc, mod, 8, seed=0, epoch=0)
