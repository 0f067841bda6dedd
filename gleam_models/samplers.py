"""Batch samplers: modality-balanced, one location per batch, optionally built from hard negatives.

A batch is a list of pair indices. Three rules hold for every batch:
- each location appears at most once (two queries of one place would be each other's false
  negatives in InfoNCE);
- no two locations in it are semi-positives of each other (`conflicts`: overlapping tiles, VIGOR's
  semi-positives). An overlapping neighbour shows half the same ground, so as an InfoNCE negative
  it is a false negative; the similarity sampler would even seek it out, being the nearest
  neighbour. A pair whose location conflicts with the batch stays queued for a later batch;
- each query modality fills an equal share of the batch (GLEAM: every modality equally
  represented), as far as the data allows.

Batches are a pure function of (seed, epoch, neighbour table), so every rank builds the same
global batches and takes its own contiguous slice (`shard`): gathering the slices in rank order
rebuilds the global batch exactly, and a resumed run replays the same batches.

An epoch has len(pairs) // batch_size batches. Each modality draws from its own shuffled stream
that restarts (reshuffled) when exhausted, so small modalities repeat within an epoch rather than
being drowned out by large ones.

Filling a batch is greedy, so with a dense semi-positive graph it can run out of locations that
conflict with nothing already in it. It is then redrawn (at most `_FILL_TRIES` times, the streams
moving on each time); if no draw fills it, the fullest draw is kept, cut to a multiple of
`multiple_of` (the number of ranks): a shorter batch, never one with a conflict and never an
endless loop. (Lower batch_size if that happens often; train.py logs the shortfall.)
"""
from __future__ import annotations

from collections import deque

import numpy as np

from data_assets.errors import ConfigError

_FILL_TRIES = 8  # draws of one batch before keeping a shorter one (see the module docstring)


class _Stream:
    """An endless shuffled stream of pair indices; takes the first whose location is still free."""

    def __init__(self, items: np.ndarray, rng: np.random.Generator):
        self.items, self.rng = items, rng
        self.queue: deque[int] = deque(rng.permutation(items).tolist())

    def take(self, pair_loc: np.ndarray, used: set[int]) -> int | None:
        """`used`: locations that may not join (already in the batch, or a semi-positive of one)."""
        for attempt in range(2):  # the tail of a pass may hold only used locations: start the next pass
            if attempt or not self.queue:
                self.queue.extend(self.rng.permutation(self.items).tolist())
            for i, p in enumerate(self.queue):
                if pair_loc[p] not in used:
                    del self.queue[i]
                    return p
        return None


def modality_quota(n_modalities: int, batch_size: int, batch_index: int) -> np.ndarray:
    """Slots per modality in one batch: equal shares, the remainder rotating across batches."""
    quota = np.full(n_modalities, batch_size // n_modalities)
    for j in range(batch_size % n_modalities):
        quota[(batch_index + j) % n_modalities] += 1
    return quota


def epoch_batches(pair_loc: np.ndarray, pair_mod: np.ndarray, batch_size: int, seed: int, epoch: int,
                  neighbours: np.ndarray | None = None, group_size: int = 8,
                  closest_share: float = 0.5, conflicts: list[np.ndarray] | None = None,
                  multiple_of: int = 1) -> list[np.ndarray]:
    """Global batches of one epoch.

    pair_loc / pair_mod: location index and modality index of each pair. With `neighbours`
    ([n_locations, K] nearest other locations, closest first) batches are built from anchor groups:
    an anchor pair, then up to group_size-1 of its neighbouring locations, `closest_share` of them
    the very closest and the rest drawn at random from the K nearest (Sample4Geo's dynamic
    similarity sampling). Without it, batches are balanced random.
    conflicts[l]: locations that may never share a batch with location l (semi-positives; must be
    symmetric, see `conflict_lists`); neighbours that are semi-positives of the anchor are skipped,
    so a group holds hard negatives that are truly other places. multiple_of: a batch that cannot
    be filled is cut to a multiple of this (the number of ranks).
    """
    n_locations = int(pair_loc.max()) + 1 if len(pair_loc) else 0
    if n_locations < batch_size:
        raise ConfigError(f"batch_size={batch_size} is larger than the {n_locations} training locations; "
                          "a batch holds each location once, so lower the phase's batch_size")
    rng = np.random.default_rng([seed, epoch])
    modalities = np.unique(pair_mod)
    streams = [_Stream(np.flatnonzero(pair_mod == m), rng) for m in modalities]
    by_loc_mod = _pairs_by_location_and_modality(pair_loc, pair_mod, modalities, rng) if neighbours is not None else None
    conflicts = conflicts if conflicts is not None else [np.empty(0, np.int64)] * n_locations
    batches = []
    for b in range(len(pair_loc) // batch_size):
        quota = modality_quota(len(modalities), batch_size, b)
        best: list[int] = []
        for _ in range(_FILL_TRIES):  # only a conflict can leave a batch short: redraw, bounded
            if neighbours is None:
                batch = _random_batch(streams, quota, pair_loc, conflicts, rng)
            else:
                batch = _similarity_batch(streams, quota, pair_loc, neighbours, by_loc_mod, group_size,
                                          closest_share, conflicts, rng)
            best = batch if len(batch) > len(best) else best
            if len(best) == batch_size:
                break
        keep = len(best) - len(best) % multiple_of
        if keep < max(2, multiple_of):
            raise ConfigError(f"batch {b} of epoch {epoch}: only {len(best)} training locations are free of "
                              "semi-positive conflicts with each other; a contrastive batch needs at least "
                              f"{max(2, multiple_of)}")
        batches.append(np.asarray(best[:keep], dtype=np.int64))
    return batches


def conflict_lists(n_locations: int, pairs: list[tuple[int, int]] | np.ndarray) -> list[np.ndarray]:
    """Symmetric closure of (location, semi-positive) index pairs -> sorted conflicts per location."""
    out: list[set[int]] = [set() for _ in range(n_locations)]
    for a, b in pairs:
        a, b = int(a), int(b)
        if a != b:
            out[a].add(b)
            out[b].add(a)
    return [np.array(sorted(s), dtype=np.int64) for s in out]


def _block(used: set[int], loc: int, conflicts: list[np.ndarray]) -> None:
    """A location joined the batch: it and its semi-positives may no longer join."""
    used.add(loc)
    used.update(conflicts[loc].tolist())


def _take(streams: list[_Stream], m: int, quota: np.ndarray, pair_loc: np.ndarray, used: set[int]) -> tuple[int, int] | None:
    """Next free pair of modality m; if m has no free location left, of any modality with quota."""
    order = [m] + [j for j in np.argsort(-quota, kind="stable") if j != m]
    for j in order:
        p = streams[j].take(pair_loc, used)
        if p is not None:
            return p, j
    return None


def _random_batch(streams, quota, pair_loc, conflicts, rng) -> list[int]:
    quota, batch, used = quota.copy(), [], set()
    slots = rng.permutation(np.repeat(np.arange(len(quota)), quota))
    for m in slots:
        got = _take(streams, int(m), quota, pair_loc, used)
        if got is None:
            break
        p, j = got
        quota[j] -= 1
        batch.append(p)
        _block(used, int(pair_loc[p]), conflicts)
    return batch


def _pairs_by_location_and_modality(pair_loc, pair_mod, modalities, rng) -> dict[int, dict[int, deque]]:
    out: dict[int, dict[int, deque]] = {}
    for j, m in enumerate(modalities):
        for p in rng.permutation(np.flatnonzero(pair_mod == m)):
            out.setdefault(int(pair_loc[p]), {}).setdefault(j, deque()).append(int(p))
    return out


def _neighbour_group(candidates: np.ndarray, size: int, closest_share: float, rng) -> np.ndarray:
    n_close = min(len(candidates), int(round(closest_share * size)))
    rest = candidates[n_close:]
    n_random = min(len(rest), size - n_close)
    return np.concatenate([candidates[:n_close], rng.choice(rest, size=n_random, replace=False)])


def _similarity_batch(streams, quota, pair_loc, neighbours, by_loc_mod, group_size, closest_share, conflicts,
                      rng) -> list[int]:
    quota, batch, used = quota.copy(), [], set()
    batch_size = int(quota.sum())
    while len(batch) < batch_size:
        m = int(rng.choice(np.flatnonzero(quota == quota.max())))
        got = _take(streams, m, quota, pair_loc, used)
        if got is None:
            break
        anchor, j = got
        quota[j] -= 1
        batch.append(anchor)
        _block(used, int(pair_loc[anchor]), conflicts)
        # the group draws from neighbours that can still join: not the anchor's semi-positives (the
        # same ground, not a hard negative) nor those of locations already in the batch
        candidates = neighbours[pair_loc[anchor]]
        candidates = candidates[~np.isin(candidates, list(used))]
        for loc in _neighbour_group(candidates, group_size - 1, closest_share, rng):
            if len(batch) >= batch_size:
                break
            loc = int(loc)
            if loc in used or loc not in by_loc_mod:
                continue
            options = [k for k in by_loc_mod[loc] if quota[k] > 0]
            if not options:
                continue
            k = max(options, key=lambda k: quota[k])
            queue = by_loc_mod[loc][k]
            p = queue.popleft()
            queue.append(p)  # cycle through the location's queries of this modality
            quota[k] -= 1
            batch.append(p)
            _block(used, loc, conflicts)
    return batch


def shard(batch: np.ndarray, rank: int, world_size: int) -> np.ndarray:
    """This rank's contiguous slice of a global batch (rank order = global order)."""
    if len(batch) % world_size:
        raise ConfigError(f"batch_size={len(batch)} must be divisible by the number of processes ({world_size})")
    n = len(batch) // world_size
    return batch[rank * n:(rank + 1) * n]


def nearest_locations(embeddings: np.ndarray, k: int) -> np.ndarray:
    """[L, D] unit vectors -> [L, k] indices of the most similar OTHER locations, closest first."""
    import faiss

    emb = np.ascontiguousarray(embeddings, dtype=np.float32)
    k = min(k, len(emb) - 1)
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    _, idx = index.search(emb, k + 1)
    own = np.arange(len(emb))[:, None]
    out = np.empty((len(emb), k), dtype=np.int64)
    for i, row in enumerate(idx):  # drop self (usually column 0, but ties can move it)
        row = row[(row != own[i, 0]) & (row >= 0)]
        out[i] = row[:k]
    return out
