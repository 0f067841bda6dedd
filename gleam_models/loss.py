"""Symmetric InfoNCE with a learnable temperature (CLIP / Sample4Geo style).

Row i of the query batch and row i of the satellite batch are a positive pair; every other
satellite image in the (global) batch is a negative for query i and vice versa. The loss is the
mean of the row-wise (query->satellite) and column-wise (satellite->query) cross-entropies, with
label smoothing. The temperature is learned as a log scale, initialised at 1/0.07.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

MAX_LOGIT_SCALE = 100.0  # clamp as in CLIP: beyond this the softmax saturates and training stalls


class ContrastiveLoss(nn.Module):
    def __init__(self, init_temperature: float = 0.07, label_smoothing: float = 0.1):
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.label_smoothing = label_smoothing

    @property
    def temperature(self) -> float:
        return (1.0 / self.scale()).item()  # tensor division: inf rather than an exception

    def scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, query: torch.Tensor, reference: torch.Tensor,
                gather: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """query, reference: [B, D] unit vectors. `gather` concatenates every rank's rows (DDP)."""
        if gather is not None:
            query, reference = gather(query), gather(reference)
        logits = self.scale() * query.float() @ reference.float().t()
        labels = torch.arange(logits.shape[0], device=logits.device)
        row = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        col = F.cross_entropy(logits.t(), labels, label_smoothing=self.label_smoothing)
        return (row + col) / 2
