"""`gleam explain` and `gleam gleamx-merge`: the GLEAM-X model from the command line.

Heavy imports (torch, transformers) stay inside the commands so that `gleam --help` stays fast.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Optional

import typer

from data_assets.errors import ConfigError, DataError

MODALITIES = ("uav", "street_map", "panorama", "ground")
PAIR_COLUMNS = ("query_path", "satellite_path")


def guess_modality(query: Path) -> str:
    """The modality from the image's folder (data/embedded/images/<modality>/...)."""
    for part in reversed(Path(query).parts[:-1]):
        if part in MODALITIES:
            return part
    raise ConfigError(f"{query}: cannot tell the query's modality from its path; pass --modality "
                      f"({'|'.join(MODALITIES)})")


def read_pairs_csv(path: Path, language: str, modality: str | None) -> list[dict]:
    from gleam_models.gleamx.prompts import check_language

    if not path.is_file():
        raise DataError(path, "pairs CSV not found")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise DataError(path, "pairs CSV has no rows")
    missing = [c for c in PAIR_COLUMNS if c not in rows[0]]
    if missing:
        raise DataError(path, f"missing column(s) {missing}; needs query_path, satellite_path "
                              "(optional: modality, language)")
    base = path.parent
    for n, row in enumerate(rows, 2):
        for col in PAIR_COLUMNS:
            p = Path(row[col])
            row[col] = str(p if p.is_absolute() or p.exists() else base / p)
        row["language"] = check_language((row.get("language") or language).strip())
        row["modality"] = (row.get("modality") or modality or guess_modality(Path(row["query_path"]))).strip()
        if row["modality"] not in MODALITIES:
            raise DataError(path, f"line {n}: modality {row['modality']!r} is not one of {', '.join(MODALITIES)}")
    return rows


ParamsOption = Annotated[Optional[Path], typer.Option("--params", "-p", help="Config file.")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", metavar="KEY=VALUE", help="Config override.")]


def register(app: typer.Typer) -> None:
    from orchestration.cli import _run_stage

    @app.command("gleamx-finetune")
    def finetune_cmd(params: ParamsOption = None, set_: SetOption = None) -> None:
        """GLEAM-X fine-tuning: LoRA on the LM + projector over the frozen GLEAM-C tower (models/gleamx/),
        and the label-only ablation (models/gleamx_label_only/). Resumes from checkpoints.

        Example: gleam gleamx-finetune --set gleamx_train.steps=200 --set gleamx_train.train_subsample=null
        """
        _run_stage("gleamx_finetune", params, set_)

    @app.command("gleamx-evaluation")
    def evaluation_cmd(params: ParamsOption = None, set_: SetOption = None) -> None:
        """GLEAM-X evaluation: verdict accuracy (95% CI), SBERT/BLEU-4/ROUGE-L, grounded-fact accuracy and
        hallucination rate of the fine-tune, the label-only ablation, the untuned base model and the
        GLEAM-C cosine threshold, on the same stratified pairs (metrics/gleamx.json, reports/gleamx/).

        Example: gleam gleamx-evaluation --set gleamx_eval.subset_size=null
        """
        _run_stage("gleamx_evaluation", params, set_)

    @app.command("explain")
    def explain_cmd(
        query: Annotated[Optional[Path], typer.Argument(help="Query image (drone photo, street map, panorama, ground photo).", show_default=False)] = None,
        satellite: Annotated[Optional[Path], typer.Argument(help="Satellite image.", show_default=False)] = None,
        lang: Annotated[str, typer.Option("--lang", help="Answer language: en | zh.")] = "en",
        modality: Annotated[Optional[str], typer.Option(help="Query modality (default: from the image's folder).")] = None,
        model: Annotated[Optional[Path], typer.Option("--model", help="Trained (adapter) or merged GLEAM-X directory (default: models/gleamx).")] = None,
        pairs: Annotated[Optional[Path], typer.Option("--pairs", help="Batch: CSV with query_path, satellite_path[, modality, language].")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", help="Batch output CSV (default: <pairs>.explained.csv).")] = None,
        batch_size: Annotated[int, typer.Option(help="Pairs per generation batch.")] = 16,
        params: ParamsOption = None,
        set_: SetOption = None,
    ) -> None:
        """Say whether two images show the same place, and why (GLEAM-X).

        Examples:
          gleam explain data/embedded/images/uav/x.jpg data/embedded/images/satellite/x.jpg --lang zh
          gleam explain --pairs pairs.csv --out answers.csv
        """
        from gleam_models.gleamx.prompts import check_language
        from orchestration.cli import _project

        check_language(lang)
        if pairs is None and (query is None or satellite is None):
            raise ConfigError("give QUERY_IMAGE and SATELLITE_IMAGE, or --pairs pairs.csv")
        if modality is not None and modality not in MODALITIES:
            raise ConfigError(f"--modality {modality!r} is not one of {', '.join(MODALITIES)}")
        rows = (read_pairs_csv(pairs, lang, modality) if pairs is not None else
                [{"query_path": str(query), "satellite_path": str(satellite), "language": lang,
                  "modality": modality or guess_modality(query)}])
        from data_assets.io import load_image
        for row in rows:  # one clear message per bad image, before any model is loaded
            load_image(Path(row["query_path"]))
            load_image(Path(row["satellite_path"]))
        project = _project(params, set_)
        model_dir = project.path(model) if model is not None else project.models_dir / "gleamx"
        from gleam_models.gleamx.model_dir import check_model_dir
        check_model_dir(model_dir)
        from gleam_models.gleamx.generate import ExplainInput, load_explainer

        explainer = load_explainer(model_dir, cache_dir=project.cache_dir, base_dir=project.root,
                                   max_new_tokens=project.cfg.gleamx_train.max_new_tokens,
                                   stance_guard=project.cfg.gleamx_train.stance_guard)
        items = [ExplainInput(Path(r["query_path"]), Path(r["satellite_path"]), r["modality"], r["language"]) for r in rows]
        outputs = explainer.explain(items, batch_size=batch_size)
        from gleam_models.gleamx.consistency import explanation_stance

        stances = [explanation_stance(o.text, r["language"]) for r, o in zip(rows, outputs)]
        if pairs is None:
            o, stance = outputs[0], stances[0]
            typer.echo(f"verdict: {o.verdict or 'none (no verdict line)'}")
            typer.echo(o.text)
            if stance is not None and o.verdict is not None and stance != o.verdict:
                typer.echo(f"warning: the explanation reads as {stance!r}, the verdict line says {o.verdict!r}", err=True)
            return
        target = out or pairs.with_suffix(".explained.csv")
        _write_csv(target, [{**r, "verdict": o.verdict or "", "explanation": o.text, "explanation_stance": stance or "",
                             "stance_guard_changed": o.stance_changed, "new_tokens": o.new_tokens,
                             "seconds": round(o.seconds, 3)}
                            for r, o, stance in zip(rows, outputs, stances)])
        typer.echo(f"{len(rows)} pairs -> {target} ({explainer.tokens_per_s:.0f} tokens/s)")

    @app.command("gleamx-merge")
    def merge_cmd(
        model: Annotated[Optional[Path], typer.Option("--model", help="Trained GLEAM-X adapter directory (default: models/gleamx).")] = None,
        out: Annotated[Optional[Path], typer.Option("--out", help="Merged model directory (default: models/gleamx_merged).")] = None,
        params: ParamsOption = None,
        set_: SetOption = None,
    ) -> None:
        """Fold the LoRA adapters into the LM: a standalone GLEAM-X model (config.json + model.safetensors).

        Example: gleam gleamx-merge --out models/gleamx_merged && gleam explain q.jpg s.jpg --model models/gleamx_merged
        """
        from orchestration.cli import _project

        project = _project(params, set_)
        src = project.path(model) if model is not None else project.models_dir / "gleamx"
        target = project.path(out) if out is not None else project.models_dir / "gleamx_merged"
        from gleam_models.gleamx.model_dir import check_model_dir
        check_model_dir(src)
        from gleam_models.gleamx.build import merge

        merge(src, target, project.root, project.cache_dir)
        typer.echo(f"merged {src} -> {target}")


def _write_csv(path: Path, rows: list[dict]) -> None:
    import io

    from data_assets.io import write_text

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buf.getvalue())
