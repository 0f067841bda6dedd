"""GLEAM-C loss: known values, symmetry, label smoothing, and the DDP gather with gradients."""
from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from gleam_models.distributed import gather_with_grad
from gleam_models.loss import ContrastiveLoss


def _expected_identity_loss(scale: float, n: int, eps: float) -> float:
    """q = r = I_n: each row's logits are [scale at the positive, 0 elsewhere]."""
    log_z = math.log(math.exp(scale) + (n - 1))
    log_p_pos, log_p_neg = scale - log_z, -log_z
    target_pos = 1 - eps + eps / n
    return -(target_pos * log_p_pos + (n - 1) * (eps / n) * log_p_neg)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_known_value_on_identity_features(eps):
    loss_fn = ContrastiveLoss(init_temperature=0.5, label_smoothing=eps)  # scale 2
    q = torch.eye(3)
    got = loss_fn(q, q.clone()).item()
    assert got == pytest.approx(_expected_identity_loss(2.0, 3, eps), rel=1e-6)


def test_initial_temperature_and_log_scale():
    loss_fn = ContrastiveLoss()
    assert loss_fn.logit_scale.item() == pytest.approx(math.log(1 / 0.07))
    assert loss_fn.temperature == pytest.approx(0.07)
    assert loss_fn.logit_scale.requires_grad


def test_symmetric_and_label_smoothing_changes_value():
    g = torch.Generator().manual_seed(0)
    q = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    r = torch.nn.functional.normalize(torch.randn(6, 8, generator=g), dim=1)
    loss_fn = ContrastiveLoss(label_smoothing=0.1)
    assert loss_fn(q, r).item() == pytest.approx(loss_fn(r, q).item(), rel=1e-6)
    plain = ContrastiveLoss(label_smoothing=0.0)
    logits = plain.scale() * q @ r.t()
    labels = torch.arange(6)
    manual = (torch.nn.functional.cross_entropy(logits, labels) + torch.nn.functional.cross_entropy(logits.t(), labels)) / 2
    assert plain(q, r).item() == pytest.approx(manual.item(), rel=1e-6)
    assert loss_fn(q, r).item() != pytest.approx(plain(q, r).item(), rel=1e-3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _gather_worker(rank: int, world: int, port: int, q_all, r_all, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        n = q_all.shape[0] // world
        q = q_all[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        r = r_all[rank * n:(rank + 1) * n].clone().requires_grad_(True)
        loss = ContrastiveLoss()(q, r, gather=gather_with_grad)
        loss.backward()
        out[rank] = (loss.detach(), q.grad.clone(), r.grad.clone())
    finally:
        dist.destroy_process_group()


def test_gather_with_grad_two_gloo_processes_matches_one():
    g = torch.Generator().manual_seed(1)
    q_all = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    r_all = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    q1, r1 = q_all.clone().requires_grad_(True), r_all.clone().requires_grad_(True)
    full = ContrastiveLoss()(q1, r1)
    full.backward()

    out = mp.Manager().dict()
    mp.spawn(_gather_worker, args=(2, _free_port(), q_all, r_all, out), nprocs=2, join=True)
    for rank in range(2):
        loss, gq, gr = out[rank]
        assert loss.item() == pytest.approx(full.item(), rel=1e-6)  # every rank sees all negatives
        # each rank's rows get the sum over ranks of the (identical) full-batch gradient; DDP's
        # averaging over 2 ranks then gives exactly the single-process gradient
        torch.testing.assert_close(gq / 2, q1.grad[rank * 4:(rank + 1) * 4], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(gr / 2, r1.grad[rank * 4:(rank + 1) * 4], rtol=1e-5, atol=1e-7)
