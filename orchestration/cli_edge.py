"""`gleam gallery build` and `gleam localize`: a trained model on a user's own maps and images.

Registered on the main app by orchestration/cli.py (`register(app)`). torch, faiss and rasterio
are imported inside the commands, so `gleam --help` stays fast.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

console = Console(stderr=True, soft_wrap=True)
stdout = Console(width=max(Console().width, 120))  # the results are the command's output; tile ids never wrap
DEFAULT_TRACK = Path("localize_track.csv")
gallery_app = typer.Typer(help="Georeferenced satellite galleries for `gleam localize`; without a subcommand: "
                                "the pipeline stage (the embedded default's gallery, models/gallery/).")

ParamsOpt = Annotated[Optional[Path], typer.Option("--params", "-p", help="Config file (default: ./params.yaml).",
                                                   show_default=False)]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", metavar="KEY=VALUE",
                                                     help="Override a config value by dotted key (repeatable).")]
CheckpointOpt = Annotated[Optional[Path], typer.Option(
    help="GLEAM-C model.safetensors (default: the phase-2 model; for localize: the gallery's own model).",
    show_default=False)]


def _project(params, overrides):
    from orchestration.cli import _project as load

    return load(params, overrides)


def _model(project, checkpoint: Optional[Path]):
    from data_assets.errors import DataError
    from export.gallery import load_model
    from orchestration.stages_edge import gallery_config

    if checkpoint is not None and not Path(checkpoint).is_file():
        raise DataError(checkpoint, "checkpoint not found")
    return load_model(project.cfg.model, checkpoint, batch_size=gallery_config(project).batch_size)


@gallery_app.callback(invoke_without_command=True)
def gallery_stage(ctx: typer.Context, params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Without a subcommand: the pipeline stage `gallery` (the embedded default's imagery, phase-2 encoder).

    Examples:
      gleam gallery                                      # models/gallery/ for the embedded default
      gleam gallery --set gallery.embedded_stride_fraction=0.5
      gleam gallery build MAP.tif --out galleries/area   # your own map
    """
    if ctx.invoked_subcommand is None:
        _run_edge_stage("gallery", params, set_)


def localization_cmd(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Localisation error in metres of the embedded test frames against the gallery (metrics/localize.json).

    Median error and the share within 10 m / 25 m per modality, from the rank-1 tile's centre to
    each frame's true position (pyproj.Geod), with the model fingerprint and the gallery hash.

    Example: gleam localization --set gallery.k=10
    """
    _run_edge_stage("localization", params, set_)


@gallery_app.command("build")
def gallery_build(
    rasters: Annotated[list[Path], typer.Argument(help="Georeferenced rasters (GeoTIFF or any format rasterio reads, any CRS).")],
    out: Annotated[Path, typer.Option(help="Gallery directory to write.")],
    checkpoint: CheckpointOpt = None,
    tile_m: Annotated[Optional[float], typer.Option(help="Tile ground side, metres (default gallery.tile_m).")] = None,
    stride_m: Annotated[Optional[float], typer.Option(help="Tile step, metres (default gallery.stride_m).")] = None,
    index_kind: Annotated[Optional[str], typer.Option(help="flat (exact), hnsw or ivf (default gallery.index_kind).")] = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Tile maps by ground size, embed every tile with GLEAM-C, write embeddings, positions and a FAISS index.

    Several rasters make one gallery. Each tile records its centre lat/lon and footprint (WGS84).

    Examples:
      gleam gallery build area.tif --out galleries/area
      gleam gallery build west.tif east.jp2 --out galleries/both --tile-m 48 --stride-m 12 --index-kind hnsw
    """
    from pydantic import ValidationError

    from data_assets.errors import ConfigError
    from export.gallery import build_gallery
    from orchestration.stages_edge import gallery_config

    project = _project(params, set_)
    cfg = gallery_config(project)
    updates = {k: v for k, v in {"tile_m": tile_m, "stride_m": stride_m, "index_kind": index_kind}.items() if v is not None}
    try:
        cfg = cfg.model_validate({**cfg.model_dump(), **updates})
    except ValidationError as e:
        err = e.errors()[0]
        raise ConfigError(f"--{str(err['loc'][0]).replace('_', '-')}: {err['msg']} (got {err.get('input')!r})") from None
    if checkpoint is None:
        default = project.gleamc_dir("phase2") / "model.safetensors"
        checkpoint = default if default.is_file() else None
    model = _model(project, checkpoint)
    console.print(f"model: {checkpoint or 'ImageNet init (no phase-2 model found)'} ({model.fingerprint})", highlight=False)
    start = time.perf_counter()
    summary = build_gallery([Path(r) for r in rasters], model, cfg, project.path(out), root=project.root)
    console.print(f"gallery {project.path(out)}: {summary['count']} tiles from {summary['rasters']} raster(s), "
                  f"model {summary['model_fingerprint']}, index {summary['index_kind']}"
                  f"{' (cached)' if summary['cached'] else ''} in {time.perf_counter() - start:.1f} s", highlight=False)


def localize_cmd(
    frames: Annotated[list[Path], typer.Argument(help="Images, or folders of images (a sequence, in name order).")],
    gallery: Annotated[Path, typer.Option(help="Gallery directory (from `gleam gallery build`).")],
    k: Annotated[int, typer.Option(help="Tiles to report per frame.")] = 5,
    modality: Annotated[str, typer.Option(help="View of the frames: uav, street_map, panorama or ground.")] = "uav",
    track: Annotated[Optional[Path], typer.Option(help="CSV track to write (default for a folder or several frames: ./localize_track.csv).", show_default=False)] = None,
    checkpoint: CheckpointOpt = None,
    params: ParamsOpt = None,
    set_: SetOpt = None,
) -> None:
    """Place camera frames on the map: the top-k gallery tiles with lat/lon and similarity.

    The encoder must be the one that built the gallery (checked by its fingerprint).

    A folder or several frames also give a CSV track: one row per frame (rank-1 position, similarity, margin).

    Examples:
      gleam localize DJI_0005.JPG --gallery models/gallery
      gleam localize flight/ --gallery galleries/area --track flight_track.csv --k 3
    """
    from export.localize import localize, open_gallery, write_track

    project = _project(params, set_)
    g = open_gallery(project.path(gallery))
    if checkpoint is None and g.meta.get("checkpoint"):
        checkpoint = Path(g.meta["checkpoint"])
    model = _model(project, checkpoint)
    start = time.perf_counter()
    results = localize([Path(f) for f in frames], g, model, modality=modality, k=k)
    seconds = time.perf_counter() - start
    for r in results:
        table = Table(title=str(r.frame), title_justify="left")
        for col in ("rank", "tile", "raster", "lat", "lon", "similarity"):
            table.add_column(col)
        for rank, m in enumerate(r.matches, 1):
            table.add_row(str(rank), m.tile_id, m.raster, f"{m.lat:.7f}", f"{m.lon:.7f}", f"{m.similarity:.4f}")
        stdout.print(table)
    console.print(f"{len(results)} frame(s) against {len(g.tiles)} tiles in {seconds:.2f} s", highlight=False)
    if track is None and (len(results) > 1 or any(Path(f).is_dir() for f in frames)):
        track = DEFAULT_TRACK
    if track is not None:
        console.print(f"track: {write_track(results, project.path(track))}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(gallery_app, name="gallery")
    # the export stages follow the `gleam <stage-with-dashes>` rule (below)
    app.command("onnx-export")(export_onnx_cmd)
    app.command("jetson-bundle")(export_bundle_cmd)
    app.command("localize")(localize_cmd)
    app.command("localization")(localization_cmd)


# ============================================================================ export + bundle (H4)

def _run_edge_stage(name: str, params, overrides) -> None:
    from orchestration.cli import _run_stage

    _run_stage(name, params, overrides)


def export_onnx_cmd(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Export the phase-2 encoder to ONNX (fp32, fp16, INT8) with parity checks (models/onnx/).

    Input uint8 NHWC frames, preprocessing inside the graph; one file per input size of
    export.profiles. Fails (nothing written) when ONNX Runtime does not match torch; a quantized
    variant outside its accuracy bounds is marked failed and left out of the bundle. Speeds, parity
    figures and R@1 changes go to metrics/export.json. TensorRT engines are built too where
    `import tensorrt` works (else one line says so).

    Examples:
      gleam onnx-export
      gleam onnx-export --set export.calibration_images=256 --set export.int8_cpu_format=qdq
    """
    _run_edge_stage("onnx_export", params, set_)


def export_bundle_cmd(params: ParamsOpt = None, set_: SetOpt = None) -> None:
    """Assemble the Jetson bundle (models/jetson_bundle/ + .tar.gz) from models/onnx/ and models/gallery/.

    ONNX models, calibration frames, the gallery, build_engine.sh (trtexec for Jetson Orin), the
    standalone runner localize.py and manifest.json (sha256 of every file, model fingerprint).

    Example: gleam jetson-bundle && python3 models/jetson_bundle/localize.py frame.jpg
    """
    _run_edge_stage("jetson_bundle", params, set_)
