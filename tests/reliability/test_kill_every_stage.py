"""Kill -9 at random points of every stage, then re-run: the result equals an uninterrupted run's.

One tiny project goes through the pipeline in order. For each stage: an uninterrupted run gives
the reference outputs; its outputs and every cache are then removed, `gleam <stage>` starts as a
subprocess and its whole process group is SIGKILLed at a seeded random point of its work (timed
from the moment it holds its output lock, within the reference's duration); after the kill every
declared output is either absent or complete (equal to the reference; but for its params.resolved.yaml,
WRITTEN_AFTER; an output that fills piece by piece only holds whole files); the next run exits 0, leaves
no `.tmp` anywhere in the project and writes the reference's outputs again. Files that record when
or how fast they were made are compared with those fields masked (TIME_KEYS, TIMESTAMP).

GLEAM-C training and GLEAM-X fine-tuning have their own kill tests (tests/test_gleamc_train.py,
tests/test_gleamx_model.py; GLEAM-X generation from an API teacher: tests/test_gleamx_openai.py):
fine-tuning only runs here, for the evaluation after it.
GLEAM_KILL_POINTS=N kills each stage N times in a row (each killed run starting on the leftovers
of the one before) before the final run; the default of 1 keeps the module near a minute.
"""
from __future__ import annotations

import io
import json
import os
import random
import re
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from pipeline_support import PROJECT_ROOT, VENV_BIN

pytestmark = pytest.mark.slow

SEED = 10
KILL_POINTS = int(os.environ.get("GLEAM_KILL_POINTS", "1"))
SIZE_32 = {"satellite": [32, 32], "uav": [32, 32], "street_map": [32, 32], "panorama": [32, 64], "ground": [32, 32]}
# Fields that record when or how fast a file was made (an uninterrupted run differs there too).
TIME_KEYS = {"run_name", "run_time", "created_at", "p50_ms", "p95_ms", "images_per_s", "seconds"}
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?( UTC|Z|[+-]\d{2}:\d{2})?"
                       r"|\d{8}T\d{6}(\.\d+)?Z|(?<='_run_time_sort': )\d+\.\d+"  # GX Data Docs' sort key
                       r"|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")  # GX's random HTML ids


@dataclass(frozen=True)
class Case:
    stage: str
    outputs: tuple[str, ...]  # declared outputs, relative to the project root; the first is locked
    catchable_write: bool = True  # False: its writes last too little to poll for (kill at a random time)
    killed: bool = True  # False: only run, for the stages after it (its own kill test lives elsewhere)
    whole: bool = True  # False: the output fills piece by piece by design (only its files must be whole)


CASES = [  # pipeline order: each stage runs on the outputs of the ones before
    Case("embedded_dataset", ("data/embedded",)),
    Case("ingested_manifest", ("data/ingested",), catchable_write=False),  # 0.1 s of work
    Case("validated_manifest", ("data/validated",)),
    Case("gleamx_dataset", ("data/gleamx",), whole=False),  # slices land one by one (Dagster partitions)
    Case("gleamc_evaluation", ("reports/gleamc", "metrics/gleamc.json", "metrics/headline/gleamc.json")),
    Case("gallery", ("models/gallery",)),
    Case("localization", ("reports/localize", "metrics/localize.json", "metrics/headline/localize.json")),
    Case("onnx_export", ("models/onnx", "metrics/export.json", "metrics/headline/export.json")),
    Case("jetson_bundle", ("models/jetson_bundle", "models/jetson_bundle.tar.gz")),
    Case("gleamx_finetune", ("models/gleamx", "models/gleamx_label_only"), killed=False),  # tests/test_gleamx_model.py
    Case("gleamx_evaluation", ("reports/gleamx", "metrics/gleamx.json", "metrics/headline/gleamx.json")),
]


def tiny_params(root: Path, backbone_weights: Path, lm_dir: Path) -> Path:
    """params.yaml with a smaller embedded dataset, a tiny encoder at 32 px, small export settings and a
    tiny GLEAM-X language model (tests/gleamx_tiny.py) fine-tuned for two steps."""
    params = yaml.safe_load((PROJECT_ROOT / "params.yaml").read_text())
    params["embedded"].update(tile_px=128, uav_px=128, panorama_px=[64, 256], ground_px=96, uav_views=1,
                              ground_views=1, spacenet_stride_m=36.0, neon_stride_m=32.0)
    params["model"].update(backbone="test_efficientnet", weights=str(backbone_weights), input_size=SIZE_32,
                           channels_last=False)
    params["evaluate"].update(figure_rows=2)
    params["gallery"].update(embedded_stride_fraction=1.0, localize_modalities=["uav", "street_map"])
    params["export"].update(profiles=["satellite", "uav"], calibration_images=8, parity_images=8, max_batch=4)
    params["gleamx"].update(max_pairs_per_modality_per_split=4, progress=False)
    params["gleamx_model"].update(lm_source=str(lm_dir), projector_hidden=16, lora={"r": 4, "alpha": 8, "dropout": 0.1})
    params["gleamx_train"].update(steps=2, batch_size=4, train_subsample=None, progress=False, max_new_tokens=6,
                                  gen_batch_size=8, checkpoint_every_steps=1)
    params["gleamx_eval"].update(subset_size=12, threshold_pairs=40, report_examples=2, thumbnail_px=32)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def tiny_models(root: Path) -> Path:
    """Fixed backbone weights (the 'ImageNet' init, so the frozen run is deterministic) and GLEAM-C
    checkpoints near it standing in for phase 1, phase 2 and the paper preset's two phases."""
    import timm
    import torch
    from safetensors.torch import save_file

    from gleam_models.checkpoint import save_model
    from gleam_models.config import EncoderConfig
    from gleam_models.encoder import create_encoder

    torch.manual_seed(0)
    weights = root / "backbone.safetensors"
    save_file(timm.create_model("test_efficientnet", num_classes=0).state_dict(), str(weights))
    cfg = EncoderConfig(backbone="test_efficientnet", weights=str(weights), input_size=SIZE_32, channels_last=False)
    models = ["gleamc_phase1", "gleamc_phase2", "gleamc_presets/paper/phase1", "gleamc_presets/paper/phase2"]
    for seed, model in enumerate(models, start=1):
        encoder = create_encoder(cfg)
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in encoder.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=gen))
        (root / "models" / model).mkdir(parents=True, exist_ok=True)
        save_model(root / "models" / model / "model.safetensors", encoder, None)
    return weights


# ------------------------------------------------------------------------------------- comparing

def _mask(value):
    if isinstance(value, dict):
        return {k: "<time>" if k in TIME_KEYS else _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return TIMESTAMP.sub("<time>", value) if isinstance(value, str) else value


def _content(name: str, data: bytes):
    """What must not change between two runs: the bytes, or the text with times masked."""
    if name.endswith(".tar.gz"):
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return {m.name: _content(m.name, tar.extractfile(m).read()) if m.isfile() else m.type
                    for m in tar.getmembers()}
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    if name.endswith(".json"):
        return _mask(json.loads(text))
    return TIMESTAMP.sub("<time>", text)


def _diff(mine, theirs) -> str:
    import difflib

    def lines(v):
        return (v if isinstance(v, str) else json.dumps(v, indent=1, sort_keys=True, default=repr)).splitlines()
    return "\n".join(list(difflib.unified_diff(lines(theirs), lines(mine), "uninterrupted", "re-run", lineterm=""))[:40])


def _is_bookkeeping(rel: Path) -> bool:
    return rel.name.endswith((".lock", ".lock.holder"))


def snapshot(root: Path, case: Case) -> dict[str, object]:
    """{relative path: content} of a stage's declared outputs (time-stamped names masked)."""
    files = {}
    for out in case.outputs:
        path = root / out
        for f in ([path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())):
            rel = f.relative_to(root)
            if not _is_bookkeeping(rel):
                files[TIMESTAMP.sub("<time>", str(rel))] = _content(f.name, f.read_bytes())
    return files


def _is_temporary(name: str) -> bool:
    return name.endswith(".tmp") or name.endswith(".old")


def temporaries(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if _is_temporary(p.name))


def output_temporaries(root: Path, case: Case) -> set[str]:
    """The temporaries beside and inside a stage's declared outputs (data_assets.io's atomic writers
    make them beside their target): fast enough to catch a write that lasts a few milliseconds, where
    a walk of the whole project takes longer than the Jetson bundle's whole write on a quiet machine."""
    found = set()
    for parent in {(root / out).parent for out in case.outputs}:
        with os.scandir(parent) as entries:
            found |= {str(parent / e.name) for e in entries if _is_temporary(e.name)}
    for out in case.outputs:  # a stage that resumes writes inside its output folder
        for folder, dirs, files in os.walk(root / out):
            found |= {os.path.join(folder, n) for n in dirs + files if _is_temporary(n)}
    return found


# ------------------------------------------------------------------------------------- running

def _env(root: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}", "DAGSTER_HOME": str(root / ".dagster")}


def _command(case: Case) -> list[str]:
    return [str(VENV_BIN / "gleam"), case.stage.replace("_", "-")]


def killed_run(root: Path, case: Case, delay_s: float, mid_write: bool) -> float:
    """Start the stage, SIGKILL its process group `delay_s` after it holds its output lock (or, with
    mid_write, after its first temporary file appears); the seconds it had been working when killed."""
    out = root / case.outputs[0]
    holder = out.parent / f".{out.name}.lock.holder"
    holder.unlink(missing_ok=True)  # a killed run leaves its holder note behind
    log = open(root / f"killed-{case.stage}.log", "w")
    proc = subprocess.Popen(_command(case), cwd=root, env=_env(root), stdout=log, stderr=log, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not holder.exists():
            assert proc.poll() is None, f"{case.stage} exited ({proc.returncode}) before it started writing"
            assert time.monotonic() < deadline, f"{case.stage} never took its output lock"
            time.sleep(0.01)
        started, before = time.monotonic(), output_temporaries(root, case)
        while mid_write and not output_temporaries(root, case) - before:
            if proc.poll() is not None:  # its write came and went between two listings: draw again
                raise FinishedBeforeKill(f"{case.stage} finished before a temporary was seen")
            time.sleep(0.001)
        time.sleep(delay_s)
        finished = proc.poll()
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:  # it finished (and its group is gone) just before the kill
            finished = proc.wait(timeout=30)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
    if finished is not None or proc.returncode != -signal.SIGKILL:
        raise FinishedBeforeKill(f"{case.stage} finished before the kill at {delay_s:.2f} s")
    return time.monotonic() - started


def fresh_start(root: Path, case: Case) -> None:
    """No output of the stage and no cache: the next run has to do all of its work."""
    for out in case.outputs:
        shutil.rmtree(root / out) if (root / out).is_dir() else (root / out).unlink(missing_ok=True)
    shutil.rmtree(root / ".cache", ignore_errors=True)


class FinishedBeforeKill(AssertionError):
    """The kill point fell after the stage had finished: no kill happened (the caller draws an earlier one)."""


def kill_somewhere(root: Path, case: Case, delay_s: float, mid_write: bool, attempts: int = 4) -> float:
    """killed_run, halving the delay whenever the stage was faster than the drawn point (a loaded or
    quiet machine changes how long a stage takes); fails only if even tiny delays come too late."""
    for attempt in range(attempts):
        try:
            return killed_run(root, case, delay_s, mid_write)
        except FinishedBeforeKill:
            if attempt == attempts - 1:
                raise
            fresh_start(root, case)  # it finished: start afresh again, or it would skip as done
            delay_s /= 2
    raise AssertionError("unreachable")


# Written into an output after the output itself has landed (Project.save_resolved): a kill in
# between leaves a complete output without it, which the next run writes. Known, and accepted here.
WRITTEN_AFTER = "params.resolved.yaml"


def _inside(files: dict[str, object], out: str) -> dict[str, object]:
    return {k: v for k, v in files.items() if k == out or k.startswith(out + "/")}


def torn_outputs(root: Path, case: Case, reference: dict[str, object]) -> list[str]:
    """Each declared output must be absent or exactly the reference, never a part of it (for a
    piecewise output: every file it holds is the reference's): the ones that are not."""
    torn = []
    after = snapshot(root, case)
    for out in case.outputs:
        mine = {k: v for k, v in _inside(after, out).items()
                if not any(_is_temporary(part) for part in Path(k).parts)}  # the next run drops temporaries
        theirs = _inside(reference, out)
        if not mine:
            continue
        lacking = sorted(k for k in set(theirs) - set(mine) if Path(k).name != WRITTEN_AFTER)
        extra = sorted(set(mine) - set(theirs))
        if (case.whole and lacking) or extra:
            torn.append(f"{out} lacks {lacking[:3]}, has {extra[:3]} extra")
        torn += [f"{k} differs from a complete run's" for k in mine if k in theirs and mine[k] != theirs[k]]
    return torn


# ------------------------------------------------------------------------------------- the test

@pytest.fixture(scope="module")
def project_dir(tmp_path_factory) -> Path:
    from gleamx_tiny import tiny_lm_dir

    root = tmp_path_factory.mktemp("kill-every-stage")
    tiny_params(root, tiny_models(root), tiny_lm_dir(root / "lm"))
    return root


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.stage)
def test_a_stage_killed_anywhere_reruns_to_the_uninterrupted_result(project_dir, case):
    from orchestration import stages
    from orchestration.config import load_project

    root = project_dir
    began = time.monotonic()
    stages.require_passed(stages.STAGES[case.stage](load_project(root / "params.yaml")))
    reference_s = time.monotonic() - began
    reference = snapshot(root, case)
    assert reference, f"{case.stage} wrote none of {case.outputs}"
    if not case.killed:
        return

    fresh_start(root, case)

    rng = random.Random(f"{SEED}:{case.stage}")
    torn = []  # checked after the re-run, so the next stage still gets its inputs
    for point in range(KILL_POINTS):  # mid-write first, then anywhere in its work
        mid_write = point % 2 == 0 and case.catchable_write
        delay_s = rng.uniform(0.0, 0.05) if mid_write else rng.uniform(0.05, 0.9) * reference_s
        worked = kill_somewhere(root, case, delay_s, mid_write)
        print(f"{case.stage}: killed {worked:.2f} s into its work (reference {reference_s:.2f} s), "
              f"{len(temporaries(root))} temporaries left")
        torn += torn_outputs(root, case, reference)

    rerun = subprocess.run(_command(case), cwd=root, env=_env(root), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert temporaries(root) == [], "left behind by the killed run and never cleaned"
    again = snapshot(root, case)
    assert sorted(again) == sorted(reference)
    differ = [k for k in again if again[k] != reference[k]]
    assert torn == [], f"{case.stage}: a killed run left a part of its outputs: {torn}"
    assert differ == [], f"the re-run differs from an uninterrupted run in {differ}:\n{_diff(again[differ[0]], reference[differ[0]])}"
