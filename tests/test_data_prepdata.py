"""Records, df_meta facts, NaN handling and the prepdata writers/verifier of mlloop.runtime."""

import io
import json
import math
import zipfile

import pytest

from mlloop.errors import MlloopError
from mlloop.jsonio import parse_json_text
from mlloop.runtime import data, prepdata
from mlloop.taskformat import load_task_format


@pytest.fixture(scope="module")
def tf():
    return load_task_format(None)  # the bundled skills/build-baseline/task_format.yaml


def png(width=20, height=10, shade=128) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (width, height), shade).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def rawdata(tmp_path):
    raw = tmp_path / "rawdata"
    (raw / "files").mkdir(parents=True)
    for i in range(12):
        (raw / "files" / f"{i}.png").write_bytes(png(20 + i, 10, 10 * i))
    (raw / "files" / "broken.png").write_bytes(png()[:30])
    (raw / "zipped").mkdir()
    with zipfile.ZipFile(raw / "zipped" / "a.zip", "w") as z:
        for i in range(8):
            z.writestr(f"inner/{i}.png", png(40, 10, 200 - 10 * i))
        z.writestr("inner/same.png", png(20, 10, 0))  # same bytes as files/0.png
    return raw


def image_records():
    recs = [{"sample_id": f"files-{i}", "source": "files", "category": "even" if i % 2 == 0 else "odd",
             "assets": {"image_path": f"files/{i}.png"}, "label": "even" if i % 2 == 0 else "odd",
             "group_id": f"g{i // 3}"} for i in range(12)]
    recs += [{"sample_id": f"zipped-{i}", "source": "zipped", "category": "odd" if i % 2 else "even",
              "assets": {"image_path": data.zip_ref("zipped/a.zip", f"inner/{i}.png")},
              "label": "odd" if i % 2 else "even", "group_id": f"z{i // 2}"} for i in range(8)]
    recs += [{"sample_id": "zipped-same", "source": "zipped", "category": "even", "label": "even",
              "assets": {"image_path": "zipped/a.zip::inner/same.png"}, "group_id": "zs"},
             {"sample_id": "files-broken", "source": "files", "category": "odd", "label": "odd",
              "assets": {"image_path": "files/broken.png"}},
             {"sample_id": "files-gone", "source": "files", "category": "odd", "label": "odd",
              "asset_paths": ["files/gone.png"]},
             {"sample_id": "zipped-gone", "source": "zipped", "category": "odd", "label": "odd",
              "assets": {"image_path": "zipped/a.zip::inner/gone.png"}},
             {"sample_id": "files-nolabel", "source": "files", "category": None, "label": None,
              "assets": {"image_path": "files/3.png"}}]
    return recs


# ---- task format --------------------------------------------------------------------------------

def test_task_spec_reads_task_format(tf):
    ocr = data.task_spec(tf, "ocr-line-recognition")
    assert ocr.required == ("id", "image_path", "target", "line_id")
    assert ocr.path_fields == ("image_path",) and ocr.label_field == "target" and not ocr.is_classification
    assert ("target", "string") in ocr.types
    tab = data.task_spec(tf, "tabular-classification")
    assert tab.path_fields == () and tab.input_fields == ("features",) and tab.is_classification
    assert data.task_spec(tf, "image-classification").is_classification
    assert data.task_spec(tf, "speech-recognition").name == "asr"  # an alias of task_format.yaml
    with pytest.raises(data.PipelineError, match="'nope' is not in task_format.yaml"):
        data.task_spec(tf, "nope")


# ---- records ------------------------------------------------------------------------------------

def test_make_id_is_file_name_safe():
    assert data.make_id("scans", "img 01.png") == "scans-img_01.png"
    assert data.make_id("a/b", "../c") == "a_b-.._c"
    long = data.make_id("x" * 300)
    assert len(long) <= 160 and data.ID_RE.match(long) and long != data.make_id("x" * 301)


def test_nan_from_pandas_becomes_null_everywhere(tmp_path):
    import pandas as pd

    df = pd.DataFrame({"sample_id": ["a", "b"], "source": ["s", "s"], "humidity": [1.5, float("nan")],
                       "site": ["x", None], "n": pd.array([1, None], dtype="Int64")})
    records = data.as_records(df)
    assert records[1]["humidity"] is None and records[1]["site"] is None and records[1]["n"] is None
    assert records[0]["n"] == 1 and isinstance(records[0]["n"], int)
    nested = [{"id": "c", "features": {"t": float("nan"), "u": math.inf, "v": [1.0, float("nan")]}}]
    prepdata.write_jsonl(tmp_path / "x.jsonl", records + nested)
    text = (tmp_path / "x.jsonl").read_text(encoding="utf-8")
    assert "NaN" not in text and "Infinity" not in text
    lines = [parse_json_text(line, "x.jsonl") for line in text.splitlines()]  # strict: would raise on NaN
    assert lines[1]["humidity"] is None and lines[2]["features"] == {"t": None, "u": None, "v": [1.0, None]}
    prepdata.write_parquet(tmp_path / "x.parquet", records, ["sample_id", "humidity", "site", "n"])
    import pyarrow.parquet as pq

    rows = pq.read_table(tmp_path / "x.parquet").to_pylist()
    assert rows[1] == {"sample_id": "b", "humidity": None, "site": None, "n": None}


def test_validate_records_reports_each_problem(tf):
    spec = data.task_spec(tf, "image-classification")
    bad = [{"sample_id": "a", "source": "s", "assets": {"image_path": "s/a.png"}},
           {"sample_id": "a", "source": "s", "assets": {"image_path": "s/b.png"}},
           {"sample_id": "A", "source": "s", "assets": {"image_path": "s/c.png"}},
           {"sample_id": "x/y", "source": "s", "assets": {"image_path": "s/d.png"}},
           {"sample_id": "z", "source": "", "label": "cat"}]
    with pytest.raises(data.PipelineError) as err:
        data.validate_records(bad, spec)
    text = str(err.value)
    assert text.startswith("5 problem(s) in the parsed records:")
    assert "record 1 (source 's'): sample_id 'a' repeats record 0" in text
    assert "record 2 (source 's'): sample_id 'A' differs from record 0 only by case" in text
    assert "sample_id 'x/y' must be a file-name-safe string" in text
    assert "record 4 (source ''): source must be the folder name" in text
    assert "no asset for image_path" in text


def test_enrich_records_facts_and_drop_reasons(tf, rawdata):
    spec = data.task_spec(tf, "image-classification")
    recs = image_records()
    with data.AssetReader(rawdata) as reader:
        data.enrich(recs, spec, reader)
    by_id = {r["sample_id"]: r for r in recs}
    assert (by_id["files-2"]["width"], by_id["files-2"]["height"]) == (22, 10)
    assert by_id["zipped-3"]["width"] == 40 and by_id["zipped-3"]["asset_paths"] == ["zipped/a.zip::inner/3.png"]
    assert by_id["files-broken"]["drop_reason"].startswith("unreadable_asset")
    assert by_id["files-gone"]["drop_reason"] == "missing_asset: files/gone.png"
    assert by_id["zipped-gone"]["drop_reason"] == "missing_asset: zipped/a.zip::inner/gone.png"
    assert by_id["files-nolabel"]["drop_reason"] == "missing_field: label"
    assert by_id["zipped-same"]["hash"] == by_id["files-0"]["hash"]
    assert by_id["files-1"]["hash"] != by_id["files-0"]["hash"]
    data.apply_filter(recs, lambda r: "too_narrow" if r["width"] < 22 else None)
    data.deduplicate(recs)
    assert by_id["files-0"]["drop_reason"] == "too_narrow"
    assert by_id["zipped-same"]["drop_reason"] == "too_narrow"  # filtered before deduplication
    assert data.drop_counts(recs) == {"missing_asset": 2, "missing_field": 1, "too_narrow": 3, "unreadable_asset": 1}


def test_enrich_flags_wrong_types_and_deduplicates_index_only_records(tf):
    spec = data.task_spec(tf, "tabular-classification")
    recs = [{"sample_id": "r1", "source": "s", "features": {"a": 1.0, "b": None}, "label": "x"},
            {"sample_id": "r2", "source": "s", "features": {"b": None, "a": 1.0}, "label": "y"},
            {"sample_id": "r3", "source": "s", "features": [1.0], "label": "x"},
            {"sample_id": "r4", "source": "t", "features": {"b": None, "a": 1.0}, "label": "x", "meta": {"row": 9}}]
    data.enrich(recs, spec, data.AssetReader("."))
    assert recs[2]["drop_reason"] == "wrong_type: features (expected object)"
    data.deduplicate(recs)
    assert "drop_reason" not in recs[1]  # same input, another target: not a duplicate
    assert recs[3]["drop_reason"] == "duplicate: same content as r1"  # input and target; key order, source, meta aside


def test_load_test_per_source(tf, rawdata):
    spec = data.task_spec(tf, "image-classification")
    recs = image_records()
    strict = data.load_test(recs, spec, rawdata, seed=42, n=50)
    assert strict["files"]["line"].startswith("- load_test: FAIL (12/15 samples, seed 42; ")
    assert "missing_asset x1" in strict["files"]["line"] and not strict["files"]["passed"]
    lenient = data.load_test(recs, spec, rawdata, 42, 50, allowed_defects=("missing_asset", "unreadable_asset", "missing_field"))
    assert lenient["files"]["passed"] and "(documented edge case)" in lenient["files"]["line"]
    few = data.load_test(recs, spec, rawdata, 42, 3)
    assert few["zipped"]["drawn"] == 3 and few == data.load_test(recs, spec, rawdata, 42, 3)
    assert "drop_reason" not in recs[0]  # the load test works on copies


# ---- writing and verifying ----------------------------------------------------------------------

def build(tf, rawdata, out, strategy="group", index_format=None):
    import dataclasses

    spec = data.task_spec(tf, "image-classification")
    if index_format:
        spec = dataclasses.replace(spec, index_format=index_format)
    recs = image_records()
    with data.AssetReader(rawdata) as reader:
        data.enrich(recs, spec, reader)
        data.deduplicate(recs)
        train, valid = data.split_records(data.kept(recs), strategy, 0.25, 42, "category", "group_id")
        train, unused = data.cap_train(train, 10, 42)
        stats = prepdata.write_prepdata(out, records=recs, train=train, valid=valid, spec=spec, reader=reader,
                                        group_key="group_id", stats={"dataset_id": "v1", "task_type": spec.name,
                                                                     "seed": 42, "split_strategy": strategy,
                                                                     "valid_ratio": 0.25})
    return spec, recs, train, valid, stats


def test_write_prepdata_layout(tf, rawdata, tmp_path):
    out = tmp_path / "prep"
    spec, recs, train, valid, stats = build(tf, rawdata, out)
    assert stats["counts"] == {"train": 10, "valid": len(valid)} and len(train) == 10
    assert stats["parsed"] == len(recs) and stats["dropped"] == {"duplicate": 1, "missing_asset": 2,
                                                                  "missing_field": 1, "unreadable_asset": 1}
    assert stats["unused_by_max_train_samples"] == sum(1 for r in recs if r.get("split") == "unused") > 0
    assert sum(v["parsed"] for v in stats["sources"].values()) == len(recs)
    for src in stats["sources"].values():
        assert src["parsed"] == src["dropped"] + src["unused"] + src["train"] + src["valid"]
    written = json.loads((out / "stats.json").read_text())
    assert written["counts"] == stats["counts"] and written["created_at"]
    for split, rows in (("train", train), ("valid", valid)):
        lines = [json.loads(x) for x in (out / split / f"{split}.jsonl").read_text().splitlines()]
        assert [x["id"] for x in lines] == [r["sample_id"] for r in rows]
        for x in lines:
            assert x["image_path"].startswith("image/") and (out / split / x["image_path"]).is_file()
            assert x["label"] in ("even", "odd") and x["group_id"] and x["source"] in ("files", "zipped")
    zipped = next(x for x in train + valid if x["source"] == "zipped")
    split_dir = out / zipped["split"]
    assert (split_dir / f"image/{zipped['sample_id']}.png").read_bytes() == zipfile.ZipFile(rawdata / "zipped/a.zip").read(
        zipped["asset_paths"][0].split("::")[1])
    assert json.loads((out / "common/label_map.json").read_text()) == {"even": 0, "odd": 1}
    import pyarrow.parquet as pq

    meta = pq.read_table(out / "common/df_meta.parquet")
    assert {"sample_id", "source", "category", "asset_paths", "group_id", "width", "height", "hash",
            "split", "drop_reason"} <= set(meta.column_names)
    assert meta.num_rows == len(recs)
    assert str(meta.schema.field("asset_paths").type) == "list<element: string>"
    manifest = pq.read_table(out / "common/valid_manifest.parquet").to_pylist()
    assert sorted(m["sample_id"] for m in manifest) == sorted(r["sample_id"] for r in valid)
    assert all(m["image_path"].startswith("image/") for m in manifest)


@pytest.mark.slow
def test_verify_prepdata_passes_and_catches_damage(tf, rawdata, tmp_path):
    out = tmp_path / "prep"
    spec, *_ = build(tf, rawdata, out)
    report = prepdata.verify_prepdata(out, spec, split_strategy="group", group_key="group_id",
                                      stratify_key="category", seed=42)
    assert report.passed, report.markdown()
    names = [name for name, _, _ in report.lines]
    assert {"no_group_in_both_splits", "asset_paths_exist_inside_split", "label_map_covers_labels",
            "stats_counts_match_indexes", "load_test"} <= set(names)
    text = report.markdown()
    assert text.startswith("# Pipeline test report\n- overall_result: PASS\n")
    # Break it: one asset gone, one extra line in valid whose id and group are in train.
    first_train = json.loads((out / "train/train.jsonl").read_text().splitlines()[0])
    (out / "train" / first_train["image_path"]).unlink()
    with open(out / "valid/valid.jsonl", "a") as fh:
        fh.write(json.dumps({**first_train, "image_path": "../train/x.png"}) + "\n")
    report = prepdata.verify_prepdata(out, spec, split_strategy="group", group_key="group_id",
                                      stratify_key="category", seed=42)
    failed = {name for name, status, _ in report.lines if status == "FAIL"}
    assert {"asset_paths_exist_inside_split", "ids_unique", "no_id_in_both_splits", "no_group_in_both_splits",
            "stats_counts_match_indexes"} <= failed
    assert "- overall_result: FAIL" in report.markdown()


def test_parquet_index_and_stratified_distribution(tf, rawdata, tmp_path):
    out = tmp_path / "prep"
    spec, *_ = build(tf, rawdata, out, strategy="stratified", index_format="parquet")
    assert (out / "train/train.parquet").is_file() and not (out / "train/train.jsonl").exists()
    report = prepdata.verify_prepdata(out, spec, split_strategy="stratified", group_key="group_id",
                                      stratify_key="category", seed=42)
    assert report.passed, report.markdown()
    assert "## Stratified distribution" in report.markdown() and '"even"' in report.sections["Stratified distribution"]


def test_install_moves_the_previous_folder_aside(tmp_path):
    final, staging, trash = tmp_path / "v1", tmp_path / ".v1.staging", tmp_path / ".trash"
    final.mkdir()
    (final / "old.txt").write_text("old")
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    aside = prepdata.install(staging, final, trash)
    assert (final / "new.txt").read_text() == "new" and not staging.exists()
    assert aside.parent == trash and (aside / "old.txt").read_text() == "old"


def test_parse_settings():
    ns = {"SEED_NOTE": "x", "LOAD_TEST_SAMPLES": 10, "INDEX_FORMAT": None, "lower": 1}
    assert data.parse_settings(ns, None) == {"SEED_NOTE": "x", "LOAD_TEST_SAMPLES": 10, "INDEX_FORMAT": None}
    got = data.parse_settings(ns, ["--LOAD_TEST_SAMPLES=3", "--INDEX_FORMAT=parquet"])
    assert got["LOAD_TEST_SAMPLES"] == 3 and got["INDEX_FORMAT"] == "parquet"
    with pytest.raises(MlloopError, match="--NOPE: unknown setting"):
        data.parse_settings(ns, ["--NOPE=1"])


def test_enrich_checks_every_asset_even_with_a_given_hash(tf, rawdata):
    spec = data.task_spec(tf, "image-classification")
    recs = [{"sample_id": "a", "source": "files", "label": "x", "hash": "given", "width": 1, "height": 1,
             "assets": {"image_path": "files/nowhere.png"}},
            {"sample_id": "b", "source": "files", "label": "x", "hash": "given", "width": 1, "height": 1,
             "assets": {"image_path": "../outside.png"}},
            {"sample_id": "c", "source": "files", "label": "x", "hash": "given2", "width": 1, "height": 1,
             "assets": {"image_path": "files/1.png"}}]
    with data.AssetReader(rawdata) as reader:
        data.enrich(recs, spec, reader)
    assert recs[0]["drop_reason"] == "missing_asset: files/nowhere.png"
    assert recs[1]["drop_reason"] == "missing_asset: ../outside.png"  # outside rawdata is never read
    assert "drop_reason" not in recs[2] and recs[2]["hash"] == "given2"


def test_asset_files_keep_one_extension(tf, rawdata, tmp_path):
    """An id made from a file name (`x.png`) names its asset `x.png`, never `x.png.png`."""
    spec = data.task_spec(tf, "image-classification")
    recs = [{"sample_id": sid, "source": "files", "category": "even", "label": "even",
             "assets": {"image_path": f"files/{i}.png"}}
            for i, sid in enumerate(["files-0.png", "files-1.PNG", "files-2", "files-2.png"])]
    with data.AssetReader(rawdata) as reader:
        index = prepdata.write_split(tmp_path / "train", "train", recs, spec, reader, None)
    assert [x["image_path"] for x in index] == ["image/files-0.png", "image/files-1.PNG", "image/files-2.png",
                                                "image/files-2.png.png"]  # the last one would clash otherwise
    assert sorted(p.name for p in (tmp_path / "train/image").iterdir()) == [
        "files-0.png", "files-1.PNG", "files-2.png", "files-2.png.png"]


# ---- segmentation: LABEL_MAP, convert_asset and the mask checks -----------------------------------

def grey_mask(values, width=4, height=4) -> bytes:
    """A 'visible' 0-255 mask as some tools export it: class k stored as k * 85."""
    from PIL import Image

    buf = io.BytesIO()
    image = Image.new("L", (width, height), 0)
    image.putdata([values[i % len(values)] for i in range(width * height)])
    image.save(buf, format="PNG")
    return buf.getvalue()


def to_class_ids(field, payload, record):
    """The parse region's convert_asset: 0/85/170/255 -> 0..3; anything else is refused."""
    import numpy as np
    from PIL import Image

    if field != "mask_path":
        return payload
    values = np.asarray(Image.open(io.BytesIO(payload)))
    lookup = {0: 0, 85: 1, 170: 2, 255: 3}
    unknown = set(np.unique(values).tolist()) - set(lookup)
    if unknown:
        raise ValueError(f"mask values {sorted(unknown)} are not in the label list")
    buf = io.BytesIO()
    Image.fromarray(np.vectorize(lookup.get)(values).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def seg_build(tf, tmp_path, masks: dict, class_ids=None, convert=to_class_ids):
    raw, out = tmp_path / "raw", tmp_path / "prep"
    (raw / "s").mkdir(parents=True)
    recs = []
    for i, (size, values) in enumerate(masks.items() if isinstance(masks, dict) else masks):
        (raw / "s" / f"{i}.png").write_bytes(png(4, 4, 20 * i))
        (raw / "s" / f"{i}_m.png").write_bytes(grey_mask(values, *size))
        recs.append({"sample_id": f"s-{i}", "source": "s", "category": None, "group_id": f"s-{i}",
                     "assets": {"image_path": f"s/{i}.png", "mask_path": f"s/{i}_m.png"}})
    spec = data.task_spec(tf, "image-segmentation")
    with data.AssetReader(raw) as reader:
        data.enrich(recs, spec, reader)
        train, valid = data.split_records(data.kept(recs), "random", 0.25, 42)
        prepdata.write_prepdata(out, records=recs, train=train, valid=valid, spec=spec, reader=reader,
                                group_key="group_id", convert=convert,
                                class_ids=class_ids or {"background": 0, "circle": 1, "square": 2, "triangle": 3},
                                stats={"dataset_id": "v1", "task_type": spec.name, "seed": 42,
                                       "split_strategy": "random", "valid_ratio": 0.25})
    report = prepdata.verify_prepdata(out, spec, split_strategy="random", group_key="group_id",
                                      stratify_key=None, seed=42)
    return raw, out, report


def test_segmentation_masks_are_converted_to_class_ids_and_checked(tf, tmp_path):
    import numpy as np
    from PIL import Image

    masks = [((4, 4), [0, 85]), ((4, 4), [0, 170, 255]), ((4, 4), [85, 255]), ((4, 4), [0])]
    raw, out, report = seg_build(tf, tmp_path, masks)
    assert report.passed, report.markdown()
    status = {name: (s, detail) for name, s, detail in report.lines}
    assert status["label_map_names_mask_ids"] == ("PASS", "4 classes")
    assert status["masks_hold_label_map_ids"][0] == "PASS" and status["mask_sizes_match_images"][0] == "PASS"
    assert json.loads((out / "common/label_map.json").read_text()) == {"background": 0, "circle": 1, "square": 2,
                                                                       "triangle": 3}
    written = sorted(set(np.unique(np.asarray(Image.open(p))).tolist()) for p in out.glob("*/mask/*.png"))
    assert sorted(map(sorted, written)) == [[0], [0, 1], [0, 2, 3], [1, 3]]
    assert set(np.unique(np.asarray(Image.open(raw / "s/1_m.png"))).tolist()) == {0, 170, 255}  # raw untouched


def test_segmentation_mask_checks_fail_on_unconverted_values_and_wrong_sizes(tf, tmp_path):
    masks = [((4, 4), [0, 85]), ((6, 4), [0]), ((4, 4), [0]), ((4, 4), [0])]
    _, _, report = seg_build(tf, tmp_path, masks, convert=None)  # 85 is not a class id
    failed = {name: detail for name, s, detail in report.lines if s == "FAIL"}
    assert set(failed) == {"masks_hold_label_map_ids", "mask_sizes_match_images"}
    assert "['85']" in failed["masks_hold_label_map_ids"] and "6x4, image 4x4" in failed["mask_sizes_match_images"]


def test_segmentation_label_map_and_convert_errors_are_one_line(tf, tmp_path):
    with pytest.raises(data.PipelineError, match=r"LABEL_MAP: the ids must be 0\.\.1, each once; got \[0, 2\]"):
        seg_build(tf, tmp_path / "a", [((4, 4), [0])] * 4, class_ids={"background": 0, "thing": 2})
    with pytest.raises(data.PipelineError, match=r"convert_asset\('mask_path'\) failed for sample_id 's-0' "
                                                 r"\(s/0_m.png\): ValueError: mask values \[7\] are not in the label list"):
        seg_build(tf, tmp_path / "b", [((4, 4), [7])] * 4)
