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


# ----------------------------------------------------------------------------- semi-positives

def _grid_semi_positives(side: int) -> list[np.ndarray]:
    """Strided tiles on a side x side grid: each overlaps its 8 surrounding tiles (king moves)."""
    from gleam_models.samplers import conflict_lists

    edges = [(y * side + x, (y + dy) * side + x + dx) for y in range(side) for x in range(side)
             for dy in (-1, 0, 1) for dx in (-1, 0, 1)
             if (dy or dx) and 0 <= y + dy < side and 0 <= x + dx < side and dy >= 0]  # one direction only
    return conflict_lists(side * side, edges)


def _assert_conflict_free(batch, loc, conflicts):
    locs = loc[batch].tolist()
    assert len(set(locs)) == len(locs)
    for l in locs:
        assert not set(conflicts[l].tolist()) & set(locs), f"location {l} shares a batch with a semi-positive"


def test_conflict_lists_are_symmetric_and_drop_self_loops():
    from gleam_models.samplers import conflict_lists

    c = conflict_lists(4, [(0, 1), (2, 2), (3, 1), (0, 1)])
    assert [x.tolist() for x in c] == [[1], [0, 3], [], [1]]


@pytest.mark.parametrize("sampler", ["balanced_random", "similarity"])
def test_no_batch_holds_semi_positives_and_guarantees_hold(sampler):
    side = 12
    conflicts = _grid_semi_positives(side)
    loc, mod = _pairs(n_locations=side * side, modalities=4)
    # neighbours closest first by grid distance: the 8 overlapping tiles come first, exactly what a
    # similarity sampler would put together without the semi-positive rule
    yx = np.stack(np.divmod(np.arange(side * side), side), 1)
    dist = np.abs(yx[:, None] - yx[None]).max(-1) + 0.01 * np.abs(yx[:, None] - yx[None]).sum(-1)
    np.fill_diagonal(dist, np.inf)
    neighbours = np.argsort(dist, axis=1, kind="stable")[:, :24] if sampler == "similarity" else None
    kw = dict(neighbours=neighbours, group_size=4, closest_share=0.5, conflicts=conflicts, multiple_of=4)
    batches = epoch_batches(loc, mod, 16, seed=0, epoch=0, **kw)
    assert len(batches) == len(loc) // 16
    for b in batches:
        assert len(b) == 16  # a 12x12 grid has 36 mutually non-overlapping tiles: every batch fills
        _assert_conflict_free(b, loc, conflicts)
        assert np.bincount(mod[b], minlength=4).tolist() == [4, 4, 4, 4]
        parts = [shard(b, r, 4) for r in range(4)]
        assert np.concatenate(parts).tolist() == b.tolist()
    again = epoch_batches(loc, mod, 16, seed=0, epoch=0, **kw)
    assert all((x == y).all() for x, y in zip(batches, again))  # a resumed run replays the same batches
    plain = epoch_batches(loc, mod, 16, seed=0, epoch=0, neighbours=neighbours, group_size=4, closest_share=0.5)
    assert any(not set(conflicts[l].tolist()).isdisjoint(loc[b].tolist())  # the rule is what removes them
               for b in plain for l in loc[b].tolist())


def test_similarity_groups_use_neighbours_that_are_not_semi_positives():
    side = 12
    conflicts = _grid_semi_positives(side)
    loc, mod = _pairs(n_locations=side * side, modalities=2)
    yx = np.stack(np.divmod(np.arange(side * side), side), 1)
    dist = np.abs(yx[:, None] - yx[None]).max(-1).astype(float)
    np.fill_diagonal(dist, np.inf)
    neighbours = np.argsort(dist, axis=1, kind="stable")[:, :24]  # 8 semi-positives, then ring 2
    batches = epoch_batches(loc, mod, 16, seed=0, epoch=0, neighbours=neighbours, group_size=4,
                            closest_share=1.0, conflicts=conflicts)
    ring2 = hits = 0
    for b in batches:
        _assert_conflict_free(b, loc, conflicts)
        locs = set(loc[b].tolist())
        ring2 += sum(len(locs & set(np.flatnonzero(dist[l] == 2).tolist())) > 0 for l in locs)
        hits += len(locs)
    # with the semi-positives ruled out, the closest remaining (ring 2, true hard negatives) are grouped;
    # a random batch of 16 out of 144 would give a location a ring-2 partner ~ 1 - (127/143)^16 ~ 85%
    # of the time at best, groups of 4 from ring 2 do it for nearly all
    assert ring2 / hits > 0.9


def test_unfillable_batches_are_shorter_never_conflicting_and_terminate():
    side = 5  # a 5x5 grid has at most 9 mutually non-overlapping tiles: batches of 12 cannot fill
    conflicts = _grid_semi_positives(side)
    loc, mod = _pairs(n_locations=side * side, modalities=2)
    for neighbours in (None, np.argsort(np.random.default_rng(0).random((25, 25)), 1)[:, :8]):
        batches = epoch_batches(loc, mod, 12, seed=0, epoch=0, neighbours=neighbours, conflicts=conflicts,
                                multiple_of=2)
        assert len(batches) == len(loc) // 12
        for b in batches:
            assert 2 <= len(b) < 12 and len(b) % 2 == 0
            _assert_conflict_free(b, loc, conflicts)
    from gleam_models.samplers import conflict_lists
    everything = conflict_lists(6, [(a, b) for a in range(6) for b in range(6)])  # all overlap all
    loc, mod = _pairs(n_locations=6, modalities=1)
    with pytest.raises(ConfigError, match="free of semi-positive conflicts"):
        epoch_batches(loc, mod, 4, seed=0, epoch=0, conflicts=everything)


def test_load_pairs_reads_semi_positives_symmetric_and_within_the_training_set(tmp_path):
    from data_assets.manifest import read_manifest, write_manifest
    from gleam_models.data import load_pairs
    from gleam_models.synthetic import make_synthetic_dataset

    path = make_synthetic_dataset(tmp_path, n_locations=6, modalities=("uav", "street_map"), size=16,
                                  test_fraction=1 / 6)  # synthetic/0000 is a test location
    df = read_manifest(path)
    semi = {"synthetic/0001": ["synthetic/0002", "synthetic/0000", "elsewhere/9"],  # test / unknown: ignored
            "synthetic/0003": ["synthetic/0004"]}
    df["semi_positive_ids"] = [semi.get(l, []) if m == "uav" else [] for l, m in zip(df["location_id"], df["modality"])]
    pairs = load_pairs(write_manifest(df, tmp_path / "semi.parquet"), tmp_path)
    got = {pairs.location_ids[i]: sorted(pairs.location_ids[j] for j in c) for i, c in enumerate(pairs.semi_positives)}
    assert got == {"synthetic/0001": ["synthetic/0002"], "synthetic/0002": ["synthetic/0001"],
                   "synthetic/0003": ["synthetic/0004"], "synthetic/0004": ["synthetic/0003"],
                   "synthetic/0005": []}
