"""GLEAM-X with the grounded facts teacher: truthful bilingual records, shards + merge, revision."""
from __future__ import annotations

import csv
import io
import json
import re

import pytest

from data_assets.errors import DataError
from data_assets.gleamx import (GleamXDataConfig, export_revision_sheet, generate_gleamx_dataset,
                                import_revision_sheet, merge_shards, read_records)
from data_assets.gleamx.revision import levenshtein
from data_assets.manifest import read_manifest
from test_gleamx_support import make_dataset

CJK = re.compile(r"[\u4e00-\u9fff]")
COUNT_PATTERNS = {  # how the facts teacher states counts, per language
    "en": {"roads": r"(\d+) roads?\b", "buildings": r"(\d+) buildings?\b", "trees": r"(\d+) trees?\b"},
    "zh": {"roads": r"(\d+) 条(?:[^，。；]*?)道路", "buildings": r"(\d+) 栋建筑", "trees": r"(\d+) 棵树"},
}
NONE_PHRASES = {"en": {"roads": "no roads", "buildings": "no buildings", "trees": "no trees"},
                "zh": {"roads": "没有道路", "buildings": "没有建筑", "trees": "没有树木"}}
DOMINANT = {"en": {"road": "mostly paved roads", "building": "mostly buildings", "tree": "mostly tree cover",
                   "bare": "mostly bare ground", "other": "mostly ground other than"},
            "zh": {"road": "以道路和铺装地面为主", "building": "以建筑屋顶为主", "tree": "以树木为主", "bare": "以裸露地面为主", "other": "以外的地表为主"}}


def counts(truth: dict) -> dict:
    """Known counts; None where the class is not annotated (then nothing may be said about it)."""
    ann = truth.get("annotated", ["road", "building", "tree"])
    return {"roads": len(truth["roads"]) if "road" in ann else None,
            "buildings": truth["buildings"]["count"], "trees": truth["trees"]["count"]}


@pytest.fixture(scope="module")
def facts_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gx")
    manifest, base = make_dataset(root, modalities=("uav", "street_map", "panorama"))
    cfg = GleamXDataConfig(negatives_per_positive=2, progress=False, num_shards=3, seed=7)
    report = generate_gleamx_dataset(cfg, manifest, base, root / "out", root / "cache")
    return root, manifest, base, cfg, report


def load_all(out_dir) -> list[dict]:
    return [json.loads(line) for s in ("train", "val", "test") for line in (out_dir / f"{s}.jsonl").read_text().splitlines()]


def test_report_accounts_for_every_pair(facts_run):
    root, manifest, base, cfg, report = facts_run
    n_pairs = 3 * len(read_manifest(manifest))
    records = load_all(root / "out")
    assert report["pairs"] == n_pairs == report["records"] == len(records) and report["rejected"] == 0
    assert sum(report["counts"]["split"].values()) == n_pairs
    assert report["counts"]["label"] == {"match": n_pairs // 3, "no_match": 2 * n_pairs // 3}
    assert set(report["counts"]["language"]) == {"en", "zh"}
    assert report["visual_negatives"].startswith("replaced_by_random")
    assert set(report["failures_by_kind"]) >= {"429", "5xx", "timeout", "connection", "bad_json", "wrong_schema",
                                               "contradiction"}
    assert (root / "out" / "pairs.parquet").is_file()


def test_facts_are_true_for_each_location(facts_run):
    root, manifest, base, cfg, report = facts_run
    truth = {r.location_id: json.loads(r.ground_truth) for r in read_manifest(manifest).itertuples()}
    records = load_all(root / "out")
    checked = 0
    for rec in records:
        lang, text = rec["language"], rec["explanation"]
        assert bool(CJK.search(text)) == (lang == "zh"), text
        q, s = truth[rec["query_location_id"]], truth[rec["satellite_location_id"]]
        allowed = {k: {counts(q)[k], counts(s)[k]} - {None} for k in counts(q)}
        for fact, pattern in COUNT_PATTERNS[lang].items():
            for n in re.findall(pattern, text):
                assert int(n) in allowed[fact], (fact, n, text)
                checked += 1
            if NONE_PHRASES[lang][fact] in text:
                assert 0 in allowed[fact], text
        if rec["label"] == "match":
            # a match states the shared facts of the one location, and always its dominant cover
            assert DOMINANT[lang][s["dominant"]] in text.lower(), text
            for fact, pattern in COUNT_PATTERNS[lang].items():
                assert all(int(n) == counts(s)[fact] for n in re.findall(pattern, text)), text
        else:
            assert rec["negative_kind"] in ("geo", "random")
    assert checked > len(records)  # the check actually saw numbers


def test_facts_teacher_is_deterministic_and_seeded(facts_run, tmp_path):
    root, manifest, base, cfg, report = facts_run
    generate_gleamx_dataset(cfg, manifest, base, tmp_path / "again", tmp_path / "cache")
    # the records are a DVC output: the same bytes on every run (the facts teacher stamps no clock time)
    assert all(r["created_at"] is None for r in load_all(root / "out"))
    for name in ("train.jsonl", "val.jsonl", "test.jsonl", "test_cross.jsonl", "rejects.jsonl"):
        if (root / "out" / name).is_file():
            assert (tmp_path / "again" / name).read_bytes() == (root / "out" / name).read_bytes(), name
    other = cfg.model_copy(update={"seed": 8})
    generate_gleamx_dataset(other, manifest, base, tmp_path / "other", tmp_path / "cache")
    assert [r["explanation"] for r in load_all(tmp_path / "other")] != [r["explanation"] for r in load_all(root / "out")]


def test_slices_then_merge_equal_a_full_run(facts_run, tmp_path):
    root, manifest, base, cfg, report = facts_run
    out = tmp_path / "sliced"
    for modality in ("uav", "street_map", "panorama"):
        for shard in range(cfg.num_shards):
            part = generate_gleamx_dataset(cfg, manifest, base, out, tmp_path / "cache", modality=modality, shard=shard)
            assert "slices" in part
    merged = merge_shards(out)
    assert load_all(out) == load_all(root / "out")
    assert merged["counts"] == report["counts"]


def test_merge_refuses_missing_slices(facts_run, tmp_path):
    root, manifest, base, cfg, _ = facts_run
    out = tmp_path / "partial"
    generate_gleamx_dataset(cfg, manifest, base, out, tmp_path / "cache", modality="uav", shard=0)
    with pytest.raises(DataError, match="has not finished"):
        merge_shards(out)


def test_missing_ground_truth_is_a_clear_error(tmp_path):
    manifest, base = make_dataset(tmp_path, n_locations=4, modalities=("uav",))
    df = read_manifest(manifest)
    df.loc[1, "ground_truth"] = None
    from data_assets.manifest import write_manifest
    write_manifest(df, manifest)
    with pytest.raises(DataError, match="no ground_truth"):
        generate_gleamx_dataset(GleamXDataConfig(progress=False), manifest, base, tmp_path / "o", tmp_path / "c")


def test_revision_round_trip(facts_run, tmp_path):
    root, manifest, base, cfg, _ = facts_run
    test_path = root / "out" / "test.jsonl"
    originals = {r.id: r for r in read_records(test_path)}
    sheet = tmp_path / "sheet.csv"
    assert export_revision_sheet(test_path, sheet, base) == len(originals)
    text = sheet.read_text(encoding="utf-8-sig")
    rows = list(csv.DictReader(io.StringIO(text)))
    assert (base / rows[0]["query_image"]).is_file() and rows[0]["query_image"].startswith("/")
    assert all(r["revised_verdict"] == "" and r["reviewer"] == "" for r in rows)
    # a reviewer edits one explanation, flips one verdict (with a new explanation), leaves a note on a third
    rows[0]["revised_explanation"] = rows[0]["explanation"] + " Checked by hand."
    rows[0]["reviewer"] = "alice"
    flip = {"match": "no_match", "no_match": "match"}[rows[1]["label"]]
    rows[1]["revised_verdict"], rows[1]["revised_explanation"] = flip, "人工复核：判断有误。"
    rows[2]["notes"] = "looks fine"
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    w.writeheader()
    w.writerows(rows)
    sheet.write_text(buf.getvalue(), encoding="utf-8")
    out = tmp_path / "test.revised.jsonl"
    rep = import_revision_sheet(sheet, test_path, out)
    assert rep["records"] == len(originals) and rep["reviewed"] == 3
    assert rep["explanations_edited"] == 2 and rep["verdicts_flipped"] == 1
    revised = {r.id: r for r in read_records(out)}
    assert revised[rows[1]["id"]].label == flip and revised[rows[1]["id"]].revision.original_label == rows[1]["label"]
    assert revised[rows[0]["id"]].revision.reviewer == "alice"
    d0 = levenshtein(rows[0]["explanation"], rows[0]["revised_explanation"]) / len(rows[0]["revised_explanation"])
    assert revised[rows[0]["id"]].revision.normalised_edit_distance == pytest.approx(d0, abs=1e-6)
    untouched = [rid for rid in originals if rid not in {r["id"] for r in rows[:3]}]
    assert all(revised[rid] == originals[rid] for rid in untouched)
    assert rep["mean_normalised_edit_distance"] > 0
    assert (tmp_path / "test.revised.report.json").is_file()


def test_revision_sheet_errors_name_the_row(facts_run, tmp_path):
    root, manifest, base, cfg, _ = facts_run
    test_path = root / "out" / "test.jsonl"
    sheet = tmp_path / "sheet.csv"
    export_revision_sheet(test_path, sheet, base)
    rows = list(csv.DictReader(io.StringIO(sheet.read_text(encoding="utf-8-sig"))))

    def write(rows):
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
        w.writeheader()
        w.writerows(rows)
        sheet.write_text(buf.getvalue(), encoding="utf-8")

    bad = [dict(r) for r in rows]
    bad[3]["id"] = "not-a-record"
    write(bad)
    with pytest.raises(DataError, match="row 5: id 'not-a-record'"):
        import_revision_sheet(sheet, test_path, tmp_path / "o.jsonl")
    bad = [dict(r) for r in rows]
    bad[0]["revised_verdict"] = "maybe"
    write(bad)
    with pytest.raises(DataError, match="row 2: revised_verdict"):
        import_revision_sheet(sheet, test_path, tmp_path / "o.jsonl")
    sheet.write_text("id,label\nx,match\n", encoding="utf-8")
    with pytest.raises(DataError, match="missing column"):
        import_revision_sheet(sheet, test_path, tmp_path / "o.jsonl")
    assert not (tmp_path / "o.jsonl").exists()  # nothing half-written
