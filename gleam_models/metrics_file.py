"""metrics/gleamc.json: one result set, written whole and atomically, that says what produced it.

    {"format": 2,
     "manifest": {"path": "data/...", "sha256": "..."},     # the manifest every run was evaluated on
     "config": {...},                                       # the evaluate section used
     "definitions": {...},                                  # the metric definitions (gleam_models.metrics)
     "runs": {"phase2": {"weights": "<weights_fingerprint>" | "imagenet:<backbone>",
                         "splits": {"test": {"uav": {"query_to_satellite": {"R@1": 41.2, ...}}}}}}}

Every run of a file was evaluated against the same manifest with the same config; each carries
the fingerprint of the weights it came from. The file is replaced as a whole once every run is
done, so a killed evaluation leaves the previous file intact (never half old, half new), and
`load_metrics` refuses a file whose runs or manifest differ from what the caller expects.
Floats are rounded to `DECIMALS` places so the file and its tables stay readable.

Every metrics/*.json is committed to git, so it must be the same bytes in every clone and on every
run of the same code and data: paths relative to the project root (`relative_path`), rounded
floats, no clock times, throughputs or timestamps (stages write those to reports/timings/).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from data_assets.errors import DataError
from data_assets.io import read_json, relative_path, write_json  # noqa: F401 (relative_path: re-exported)

FORMAT = 2
DECIMALS = 4
DEFINITIONS = {
    "R@K": "share of queries whose best true item is ranked <= K (percent)",
    "R@1%": "university1652: rank <= round(N*0.01)+1 (Sample4Geo / University-1652 CMC index round(N/100)); "
            "vigor: rank <= N//100 (Sample4Geo's VIGOR code)",
    "AP": "University-1652 AP: trapezoid over recall steps, precision 0 before the first true item "
          "(one true item at rank r: 1 if r == 1 else 0.5/r), mean over queries (percent)",
    "mAP_plain": "textbook mean average precision (one true item at rank r: 1/r)",
    "hit_rate": "vigor protocol only: no gallery tile outside the true tile and its semi-positives scores "
                "strictly above the true tile (Sample4Geo's VIGOR code)",
    "ties": "university1652: a false item tied with a true one ranks ahead of it; vigor: ties count for the query",
    "protocol": "vigor for galleries whose queries carry semi-positives (evaluate.protocol=auto), else university1652",
}



def significant(value, digits: int = 6):
    """The same structure with every float rounded to `digits` significant digits (for figures
    like 3.3e-07 that fixed decimals would turn into 0)."""
    if isinstance(value, float):
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    if isinstance(value, dict):
        return {k: significant(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [significant(v, digits) for v in value]
    return value


def rounded(value, decimals: int = DECIMALS):
    """The same structure with every float rounded (ints, strings, bools untouched)."""
    if isinstance(value, float):
        return round(value, decimals)
    if isinstance(value, dict):
        return {k: rounded(v, decimals) for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # tuples (e.g. confidence intervals) become JSON lists
        return [rounded(v, decimals) for v in value]
    return value


def metrics_document(manifest: dict, config: dict, runs: dict[str, dict]) -> dict:
    """The whole file: `runs` is {run: {"weights": str, "splits": {...}}}."""
    missing = [r for r, v in runs.items() if not v.get("weights")]
    if missing:
        raise DataError(None, f"run {missing[0]!r} has no weights fingerprint; every result must say its model")
    return {"format": FORMAT, "manifest": manifest, "config": config, "definitions": DEFINITIONS,
            "runs": rounded(runs)}


def write_metrics(path: Path, document: dict) -> None:
    write_json(path, document)  # atomic: temp file next to it, then rename


def load_metrics(path: Path, weights: dict[str, str] | None = None, manifest_sha256: str | None = None) -> dict:
    """Read a metrics file and refuse it if it cannot be trusted for these models and this manifest.

    `weights` {run: fingerprint}: each listed run must be in the file with exactly that fingerprint.
    `manifest_sha256`: the file must have been computed on that manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(path, "metrics file not found (run gleamc-evaluation first)")
    try:
        doc = read_json(path)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(path, f"metrics file is not valid JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or not isinstance(doc.get("runs"), dict):
        raise DataError(path, f"not a format-{FORMAT} metrics file (an older evaluation?); re-run gleamc-evaluation")
    if manifest_sha256 is not None and doc.get("manifest", {}).get("sha256") != manifest_sha256:
        raise DataError(path, "metrics were computed on another manifest; re-run gleamc-evaluation")
    for run, fp in (weights or {}).items():
        found = doc["runs"].get(run, {}).get("weights")
        if found != fp:
            raise DataError(path, f"run {run!r} was evaluated with weights {found or 'missing'}, the model is {fp}; "
                                  "re-run gleamc-evaluation")
    return doc


def metrics_table(metrics: dict) -> str:
    """A markdown table: one line per run, split, modality and direction."""
    runs = metrics.get("runs", {}) if metrics.get("format") == FORMAT else {}
    lines = [(run, split, mod, d, v) for run, entry in runs.items()
             for split, by_mod in entry.get("splits", {}).items()
             for mod, by_dir in by_mod.items() for d, v in by_dir.items()]
    columns = list(dict.fromkeys(k for *_, v in lines for k in v))
    header = ["run", "split", "modality", "direction", *columns]
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run, split, mod, d, v in lines:
        out.append("| " + " | ".join([run, split, mod, d, *(_cell(v.get(c)) for c in columns)]) + " |")
    return "\n".join(out) + "\n"


def headline(metrics: dict, metric: str = "R@1") -> dict[str, float]:
    """{"<run>/<split>/<modality>/q2s_<metric>": value}: the figures a dashboard shows."""
    return {f"{run}/{split}/{mod}/q2s_{metric}": by_dir["query_to_satellite"][metric]
            for run, entry in metrics.get("runs", {}).items()
            for split, by_mod in entry.get("splits", {}).items()
            for mod, by_dir in by_mod.items() if "query_to_satellite" in by_dir}


def _cell(value) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if isinstance(value, float) else str(value)
