"""Training progress for Dagster: a line per logged step in the run's event log (through Pipes), and
the loss / lr curves as a picture on the training asset.

The trainers only take an `on_progress(step, total, metrics)` callback (library code never imports
Dagster); the CLI, when it runs under Dagster Pipes, passes a PipesProgress that forwards each call
to the Pipes context's log. Matplotlib is imported only when a picture is drawn.
"""
from __future__ import annotations

import base64
import io
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from orchestration.config import Project

TRAINING_STAGES = ("gleamc_phase1", "gleamc_phase2", "gleamc_presets", "gleamx_finetune")
RATE_KEYS = (("images_per_s", "images/s"), ("tokens_per_s", "tokens/s"))


def _duration(seconds: float) -> str:
    minutes, s = divmod(int(round(seconds)), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m" if hours else f"{m}m{s:02d}s"


class PipesProgress:
    """on_progress callback writing one line per call to `log` (a Pipes context's log, or any
    logger with .info). ETA from the wall time between this run's calls (none on its first)."""

    def __init__(self, log: Any, clock: Callable[[], float] = time.perf_counter):
        self.log, self.clock = log, clock
        self.last: dict[str, tuple[float, int]] = {}  # run -> (time, step) of its previous call

    def __call__(self, step: int, total: int, metrics: dict[str, Any]) -> None:
        run = str(metrics.get("run") or metrics.get("phase") or "training")
        now = self.clock()
        eta = "?"
        if run in self.last and step > self.last[run][1]:
            t0, s0 = self.last[run]
            eta = _duration((now - t0) / (step - s0) * max(0, total - step))
        self.last[run] = (now, step)
        parts = [f"{run}: step {step}/{total}"]
        if "loss" in metrics:
            parts.append(f"loss {float(metrics['loss']):.4f}")
        if "lr" in metrics:
            parts.append(f"lr {float(metrics['lr']):.3g}")
        parts += [f"{float(metrics[key]):.0f} {unit}" for key, unit in RATE_KEYS if key in metrics]
        parts.append(f"ETA {eta}")
        self.log.info(", ".join(parts))


# ----------------------------------------------------------------------------- the final picture

def _metrics_logs(name: str, project: Project) -> dict[str, Path]:
    if name == "gleamx_finetune":
        return {run: project.models_dir / run / "metrics.jsonl" for run in ("gleamx", "gleamx_label_only")}
    if name == "gleamc_presets":
        return {run: out / "metrics.jsonl" for run, out in project.gleamc_preset_runs().items()}
    phase = name.removeprefix("gleamc_")
    return {phase: project.gleamc_dir(phase) / "metrics.jsonl"}


def _read_rows(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def curves_png(curves: dict[str, list[dict]]) -> bytes:
    """Loss and lr against step, one line per run, as PNG bytes."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, (loss_ax, lr_ax) = plt.subplots(1, 2, figsize=(9, 3.2), dpi=100)
    for run, rows in curves.items():
        steps = [r["step"] for r in rows]
        loss_ax.plot(steps, [r["loss"] for r in rows], label=run)
        lr_ax.plot(steps, [r["lr"] for r in rows], label=run)
    for ax, title in ((loss_ax, "training loss"), (lr_ax, "learning rate")):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    lr_ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    loss_ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _hyperparameters(name: str, project: Project) -> dict[str, Any]:
    if name == "gleamx_finetune":
        cfg = project.cfg.gleamx_train
        return {"lr": cfg.lr, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "steps": cfg.steps}
    if name == "gleamc_presets":
        return {f"{preset}_{phase}": f"lr {cfg.lr}, batch {cfg.batch_size}, {cfg.epochs} epochs, modalities {cfg.modalities or 'all'}"
                for preset, blocks in project.cfg.train.presets.items()
                for phase, cfg in (("phase1", blocks.phase1), ("phase2", blocks.phase2))}
    cfg = getattr(project.cfg.train, name.removeprefix("gleamc_"))
    return {"lr": cfg.lr, "batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum, "epochs": cfg.epochs}


def training_metadata(name: str, project: Project) -> dict[str, Any]:
    """Pipes-wire metadata for a training stage: the curves picture, lr, batch size, steps."""
    curves = {run: rows for run, path in _metrics_logs(name, project).items() if (rows := _read_rows(path))}
    meta: dict[str, Any] = dict(_hyperparameters(name, project))
    if curves:
        meta["steps"] = max(r["step"] for rows in curves.values() for r in rows)
        b64 = base64.b64encode(curves_png(curves)).decode()
        meta["training_curves"] = {"raw_value": f"![loss and lr](data:image/png;base64,{b64})", "type": "md"}
    return meta
