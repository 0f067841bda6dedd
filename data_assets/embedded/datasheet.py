"""DATASET.md: a short human-readable datasheet written next to the manifest."""
from __future__ import annotations

GROUND_TRUTH_SCHEMA = """\
{
  "region": "las_vegas" | "atlanta" | "yellowstone" | "osbs" | "soap",
  "annotated": ["road" | "building" | "tree", ...],  # classes this source labels; the rest is UNKNOWN
  "gsd_m": float,                    # metres per pixel of the saved satellite tile
  "extent_m": [width_m, height_m],   # ground footprint of the satellite tile
  "land_cover": {"road": f|null, "building": f|null, "tree": f|null,  # area fractions 0..1; null = not annotated
                 "other": f},        # 1 - sum of the annotated fractions: "none of the annotated classes"
  "roads": [{"name": str|null, "bearing_deg": float in [0,180), "length_m": float}],  # clipped; [] if not annotated
  "intersections": int|null,         # junctions with >= 3 road arms inside the tile; null if roads not annotated
  "buildings": {"count": int|null, "mean_area_m2": float|null, "largest_area_m2": float|null},  # all null if not annotated
  "trees": {"count": int|null, "per_hectare": float|null},     # both null if trees are not annotated
  "dominant": "road" | "building" | "tree" | "other"  # largest ANNOTATED share if >= MIN_SHARE, else "other"
}"""


def datasheet(meta: dict) -> str:
    counts, locs = meta["counts"], meta["locations"]
    lines = [
        "# GLEAM embedded default dataset",
        "",
        f"Builder version {meta['builder_version']}, seed {meta['seed']}, fingerprint `{meta['fingerprint'][:16]}`.",
        f"{locs['total']} locations ({locs['train']} train, {locs['val']} val, {locs['test']} test, "
        f"{locs['test_cross']} test_cross), {meta['pairs']} query/satellite "
        "pairs. Every location is one satellite tile; `manifest.csv` has one row per (query, satellite) pair.",
        "",
        "## Sources and licences",
        "",
        "| asset | package | licence | sha256 |",
        "| --- | --- | --- | --- |",
    ]
    lines += [f"| {s['path_in_package']} | {s['package']} {s['version']} | {s['licence']} | `{s['sha256'][:12]}` |"
              for s in meta["sources"]]
    lines += ["", "Attribution:", ""]
    lines += sorted({f"- {s['package']}: {s['attribution']} ({s['licence']})" for s in meta["sources"]})
    lines += [
        "",
        "Derived images are adaptations of these sources and carry the same licences (SpaceNet-derived "
        "images: CC BY-SA 4.0, share alike).",
        "",
        "## Views and what is derived",
        "",
    ]
    lines += [f"- **{view}**: {text}" for view, text in meta["derived"].items()]
    splits = ("train", "val", "test", "test_cross")
    lines += ["", "## Pairs (locations) per modality and split", "", "| modality | " + " | ".join(splits) + " |",
              "| --- |" + " --- |" * len(splits)]
    lines += [f"| {m} | " + " | ".join(f"{c[s]} ({locs['per_modality'][m][s]})" for s in splits) + " |"
              for m, c in counts.items()]
    lines += ["", "Locations per source:", "", "| source | " + " | ".join(splits) + " |",
              "| --- |" + " --- |" * len(splits)]
    lines += [f"| {k} | " + " | ".join(str(n[s]) for s in splits) + " |" for k, n in locs["per_source"].items()]
    lines += ["", "## Splits", "", f"{meta['split']['method']}: {meta['split']['rule']}.",
              "`test` is the same-area test split, `test_cross` the cross-area one (ground no training tile "
              "comes from); every default is chosen on `val`, never on a test split.", ""]
    semi = meta["semi_positives"]
    lines += ["## Semi-positives (manifest column `semi_positive_ids`)", "",
              f"Tiles are strided with heavy overlap, so a location's neighbours are near-duplicates of its tile. "
              f"VIGOR-style semi-positives: {semi['rule']}; min_overlap = {semi['min_overlap']}. Evaluation should "
              "not count them as wrong matches and training should not use them as negatives.", "",
              "| region | locations | mean per location | max |", "| --- | --- | --- | --- |"]
    lines += [f"| {r} | {s['locations']} | {s['mean']} | {s['max']} |"
              for r, s in [*semi["per_region"].items(), ("all", semi["per_location"])]]
    lines += ["",
              "## Ground truth (manifest column `ground_truth`, JSON)", "", "```", GROUND_TRUTH_SCHEMA.replace("MIN_SHARE", str(meta["dominant_min_share"])), "```", "",
              "Computed from each source's own labels clipped to the tile: Las Vegas road fractions from SpaceNet's "
              "road mask and road lengths/bearings/junctions from its centre-lines; Atlanta building fractions from "
              "the rasterised footprints and counts from footprints whose area centroid lies in the tile; NEON tree "
              "counts from DeepForest crown boxes whose centre lies in the tile and tree fractions from the union of "
              "those boxes (boxes over-cover round crowns).", "",
              "Only these classes are annotated per region (the `annotated` key). Every value about another "
              "class is null (roads `[]`, intersections null): it is unknown, NOT absent (Las Vegas has "
              "unlabelled houses, Atlanta's trees and streets are unlabelled, a Yellowstone crop shows an unlabelled "
              "road). "
              "`other` is therefore \"none of the annotated classes\", not bare ground. `dominant` names the "
              f"annotated class with the largest share when that share is at least {meta['dominant_min_share']}, "
              "and `other` otherwise. A consumer must not state anything about a class outside `annotated`.", ""]
    lines += [f"- {region}: {', '.join(classes)}" for region, classes in meta["annotated_classes"].items()]
    lines += ["", "Lat/lon (WGS84, tile centre) is given for Las Vegas (EPSG:4326 GeoTIFF), Atlanta and OSBS (UTM "
              "GeoTIFF tags, inverse transverse Mercator); the Yellowstone crops and SOAP have no georeference "
              "inside the tile, so their lat/lon is empty.", ""]
    return "\n".join(lines)
