"""`mlloop profile`: the profiling.md draft (facts filled, gaps marked) and its refusal to overwrite."""

import io
import json
import subprocess
import sys
import zipfile

import pytest
from click.testing import CliRunner

from mlloop import markdown as md
from mlloop.cli import cli
from mlloop.layout import Project
from mlloop.profiling_draft import draft_profiling

SUBSECTIONS = ("Sample unit definition", "Paths & naming rules", "Label schema", "Edge cases",
               "Extraction rules", "Sanity checks")


def png(w, h) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (w, h), (w % 255, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def project(tmp_path):
    root = tmp_path / "proj"
    raw = root / "dataset" / "rawdata"
    (raw / "folders" / "cat").mkdir(parents=True)
    (raw / "folders" / "dog").mkdir()
    for i in range(15):
        (raw / "folders" / ("cat" if i % 2 else "dog") / f"{i:03d}.png").write_bytes(png(20 + i, 10))
    (raw / "folders" / "dog" / "broken.png").write_bytes(png(5, 5)[:20])
    (raw / "folders" / ".DS_Store").write_bytes(b"junk")
    (raw / "zipped").mkdir()
    with zipfile.ZipFile(raw / "zipped" / "imgs.zip", "w") as z:
        z.writestr("imgs/", b"")
        for i in range(15):
            z.writestr(f"imgs/{i}.png", png(50, 30 + i))
        z.writestr("__MACOSX/imgs/._0.png", b"x")
        z.writestr("imgs/labels.csv", "name,text\n0.png,a\n")
    (raw / "zipped" / "labels.csv").write_bytes(b"\xef\xbb\xbfname,text,extra\n0.png,hello,1\n1.png,\"a, b\",2\n")
    (raw / "tables").mkdir()
    (raw / "tables" / "rows.jsonl").write_text('{"file": "a", "text": "x"}\n\n{"file": "b", "label": 1}\nnot json\n')
    (raw / "tables" / "export.json").write_text('{"exported_at": "x", "records": [{"id": 1, "v": NaN}, {"id": 2}]}')
    (raw / "loose.txt").write_text("a file outside any source")
    rules = root / ".claude" / "skills" / "build-baseline" / "user_defined_rules.json"
    rules.parent.mkdir(parents=True)
    rules.write_text(json.dumps({"seed": 42, "dataset_config": {"dataset_id": "v1", "task_type": "image-classification",
                                                                 "max_profile_samples": 12}}))
    return Project(root.resolve())


def source_sections(text):
    out = {}
    for sec in md.sections(text):
        if sec.level == 2 and sec.title.startswith("Source: "):
            out[sec.title[len("Source: "):]] = {s.title: s.body for s in md.sections(sec.body)}
    return out


def test_draft_holds_the_facts(project):
    result = draft_profiling(project)
    text = project.profiling_md.read_text(encoding="utf-8")
    assert text.startswith("# Raw data profiling\n")
    assert [s.title for s in md.sections(text) if s.level == 2] == [
        "Overview", "Sources", "Source: folders", "Source: tables", "Source: zipped"]
    secs = source_sections(text)
    assert all(list(secs[name]) == list(SUBSECTIONS) for name in secs)
    paths = secs["folders"]["Paths & naming rules"]
    assert "- files: 17 (16 .png, 1 (no extension))" in paths
    assert "- folders: cat/ (7), dog/ (9)" in paths
    zipped = secs["zipped"]["Paths & naming rules"]
    assert "`imgs.zip`: 16 members (15 .png, 1 .csv), read without extracting; 1 folder entries; " \
           "1 junk member(s) such as __MACOSX/imgs/._0.png" in zipped
    assert "`labels.csv`: 2 rows, columns: name, text, extra; UTF-8 with a byte-order mark" in zipped
    assert "`imgs.zip::imgs/labels.csv`: 1 rows, columns: name, text" in zipped
    tables = secs["tables"]["Paths & naming rules"]
    assert "`rows.jsonl`: 3 records, keys: file, text, label; 1 blank line(s); 1 line(s) that are not JSON" in tables
    assert "`export.json`: keys: exported_at, records; 1 NaN/Infinity token(s): not strict JSON; " \
           "`records`: list of 2, first keys: id, v" in tables
    overview = next(s.body for s in md.sections(text) if s.title == "Overview")
    assert "- task_type (rules): image-classification" in overview
    assert "files outside any source folder (not profiled): loose.txt" in overview
    assert "decoded for this profile: 12 image(s), a seeded draw over all sources together (seed 42, max_profile_samples 12)" in overview
    assert result.decoded == 12 and result.to_dict()["decoded_images"] == 12
    assert sum(len(s.decoded) + len(s.failed) for s in result.sources) == 12  # all sources together, not per source


def test_draft_gaps_are_placeholders_until_the_agent_fills_them(project):
    draft_profiling(project)
    secs = source_sections(project.profiling_md.read_text(encoding="utf-8"))
    for name, subs in secs.items():
        for title in ("Sample unit definition", "Label schema", "Edge cases", "Extraction rules"):
            assert md.is_placeholder(subs[title]), (name, title)
        assert md.bullets(subs["Sanity checks"])["load_test"].startswith("<TODO")
    assert not md.is_placeholder(secs["folders"]["Paths & naming rules"])


def test_the_check_rejects_the_draft(project):
    draft_profiling(project)
    result = CliRunner().invoke(cli, ["check", "profiling", "--project", str(project.root), "--json"])
    assert result.exit_code == 1, result.output
    problems = json.loads(result.output)["problems"]
    messages = [p["message"] for p in problems]
    assert "'Source: zipped' → 'Extraction rules' is empty or placeholder text" in messages
    assert any(p["code"] == "profiling.load_test" for p in problems)


def drawn(result):
    return sorted(ref for s in result.sources for ref in [d[0] for d in s.decoded] + [f[0] for f in s.failed])


def test_seeded_draw_is_deterministic_and_capped(project):
    first = draft_profiling(project)
    again = draft_profiling(project, force=True)
    assert drawn(first) == drawn(again) and len(drawn(first)) == 12  # of 31 images over two sources
    rules = project.rules_path("build-baseline")
    rules.write_text(json.dumps({"seed": 7, "dataset_config": {"max_profile_samples": 12}}))
    assert drawn(draft_profiling(project, force=True)) != drawn(first)


def test_decode_failures_are_reported(tmp_path, project):
    rules = project.rules_path("build-baseline")
    rules.write_text(json.dumps({"dataset_config": {"max_profile_samples": 1000}}))
    result = draft_profiling(project)
    folders = next(s for s in result.sources if s.name == "folders")
    assert [r for r, _ in folders.failed] == ["dog/broken.png"]
    text = project.profiling_md.read_text(encoding="utf-8")
    assert "images that failed to decode: dog/broken.png" in text
    assert "- seeded draw: 16 of 16 images, 15 decoded: width 20–34 px (median 27), height 10–10 px (median 10), modes RGB (15)" in text


def test_refuses_to_overwrite_without_force(project):
    project.profiling_md.parent.mkdir(parents=True, exist_ok=True)
    project.profiling_md.write_text("# my notes\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["profile", "--project", str(project.root)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: dataset/rawdata/profiling.md already exists and is kept; pass --force to rewrite it "
        "(the old one is saved as profiling.md.bak).")
    assert project.profiling_md.read_text() == "# my notes\n"
    result = runner.invoke(cli, ["profile", "--project", str(project.root), "--force"])
    assert result.exit_code == 0, result.output
    assert "the previous profiling.md was kept as dataset/rawdata/profiling.md.bak" in result.output
    assert (project.rawdata / "profiling.md.bak").read_text() == "# my notes\n"
    assert project.profiling_md.read_text().startswith("# Raw data profiling")
    runner.invoke(cli, ["profile", "--project", str(project.root), "--force"])  # a second .bak never overwrites the first
    assert (project.rawdata / "profiling.md.bak").read_text() == "# my notes\n"
    assert (project.rawdata / "profiling.md.bak.1").read_text().startswith("# Raw data profiling")


def test_json_output_and_clean_errors(tmp_path, project):
    result = CliRunner().invoke(cli, ["profile", "--project", str(project.root), "--json"])
    doc = json.loads(result.output)
    assert doc["ok"] and doc["path"] == "dataset/rawdata/profiling.md"
    assert [s["name"] for s in doc["sources"]] == ["folders", "tables", "zipped"]
    empty = tmp_path / "empty"
    (empty / "dataset" / "rawdata").mkdir(parents=True)
    result = CliRunner().invoke(cli, ["profile", "--project", str(empty)])
    assert result.exit_code == 1
    assert "Error: dataset/rawdata/ has no source folders; put each data source in its own folder" in result.output
    result = CliRunner().invoke(cli, ["profile", "--project", str(tmp_path)])
    assert result.exit_code == 1 and "Error: dataset/rawdata/ does not exist; run `mlloop init`" in result.output


@pytest.mark.slow
def test_profile_imports_nothing_heavy(project):
    probe = ("import sys; from click.testing import CliRunner; from mlloop.cli import cli; "
             f"r = CliRunner().invoke(cli, ['profile', '--project', {str(project.root)!r}]); "
             "print(r.exit_code, sorted(m for m in ('torch', 'lightning', 'timm', 'torchvision', 'pandas', 'numpy', "
             "'pyarrow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "0 []", out.stderr


def test_hostile_raw_files_are_named_never_opened_or_fatal(tmp_path, project):
    """Issue 13: a FIFO (opening it would block), a bare carriage return, a non-UTF-8 file name,
    a 5,000-digit integer and 100,000 nested lists each become a note naming the file."""
    import os

    raw = project.rawdata / "hostile"
    raw.mkdir()
    (raw / "labels.csv").write_bytes(b"id,label\r1,cat\r2,dog\n3,fox\n")
    (raw / "big.jsonl").write_text('{"a": ' + "9" * 5000 + "}\n")
    (raw / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    (raw / os.fsdecode(b"\xff.csv")).write_text("a,b\n1,2\n")
    os.mkfifo(raw / "pipe.csv")
    result = CliRunner().invoke(cli, ["profile", "--project", str(project.root)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    text = project.profiling_md.read_text(encoding="utf-8")
    section = source_sections(text)["hostile"]
    paths, edges = section["Paths & naming rules"], section["Edge cases"]
    assert "`labels.csv`: 3 rows, columns: id, label; 2 bare carriage return(s)" in paths
    assert "`big.jsonl`: 1 records, keys: none found; 1 line(s) that are not JSON" in paths
    assert "`deep.json`: keys: none found; not usable JSON (RecursionError" in paths
    assert "pipe.csv (not a regular file: a pipe, device or socket; not read)" in edges
    assert "\\xff.csv (the file name is not valid UTF-8, not read; rename it)" in edges


def test_force_keeps_the_old_draft_until_the_new_one_is_written(project, monkeypatch):
    project.profiling_md.parent.mkdir(parents=True, exist_ok=True)
    project.profiling_md.write_text("# my notes\n")

    def full_disk(path, text):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("mlloop.profiling_draft.write_text_atomic", full_disk)
    result = CliRunner().invoke(cli, ["profile", "--project", str(project.root), "--force"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: dataset/rawdata/profiling.md: cannot be written (No space left on device); the old one is kept as it "
        "was. Free some space or fix the folder's permissions, then run `mlloop profile --force` again.")
    assert project.profiling_md.read_text() == "# my notes\n"
    assert not (project.rawdata / "profiling.md.bak").exists()


# ---- mlloop profile --load-test (Step 0's seeded load test) -----------------------------------

def test_load_test_runs_the_pipelines_parse_region_with_a_defined_draw(tmp_path):
    import random

    from mlloop.bundle import examples_dir
    from mlloop.rules import resolve
    from mlloop.runtime import data
    from mlloop.taskformat import load_task_format
    from test_examples import registry

    root = tmp_path / "proj"
    registry.prepare_project("image-classification", root, seed=42, size="tiny")
    args = ["profile", "--load-test", "--project", str(root)]
    allowed = [a for d in registry.DOCUMENTED_DEFECTS for a in ("--allow", d)]
    result = CliRunner().invoke(cli, [*args, *allowed, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["ok"] and doc["seed"] == 42 and doc["samples"] == 10
    assert sorted(doc["sources"]) == sorted(p.name for p in (root / "dataset/rawdata").iterdir() if p.is_dir())
    # The draw is the documented one: per source, records sorted by sample_id, Random(seed).sample.
    project = Project(root.resolve())
    records = data.as_records(registry.parser("image-classification").parse_sources(project.rawdata))
    for source, got in doc["sources"].items():
        pool = sorted((r for r in records if r["source"] == source), key=lambda r: r["sample_id"])
        drawn = random.Random(42).sample(pool, min(10, len(pool)))
        assert got["drawn"] == len(drawn) and got["line"].startswith("- load_test: PASS (")
    # The same lines as the examples' scripted agent records, and nothing written.
    spec = data.task_spec(load_task_format(project), resolve(project).task_type)
    expected = data.load_test(records, spec, project.rawdata, 42, 10, allowed_defects=registry.DOCUMENTED_DEFECTS)
    assert {s: v["line"] for s, v in doc["sources"].items()} == {s: v["line"] for s, v in expected.items()}
    assert not project.profiling_md.exists() and not (root / "__pycache__").exists()
    # Every record drawn, and the documented defects not allowed: a source with a broken asset fails.
    strict = CliRunner().invoke(cli, [*args, "--samples", "100000"])
    assert strict.exit_code == 1 and "- load_test: FAIL (" in strict.output
    assert strict.output.strip().splitlines()[-1].startswith("load test: ")


def test_load_test_without_a_pipeline_or_task_type_is_one_line(project):
    result = CliRunner().invoke(cli, ["profile", "--load-test", "--project", str(project.root)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: 01_data_pipeline.py does not exist; copy the build-baseline skill's templates/01_data_pipeline.py here "
        "and write parse_sources() in its parse region from profiling.md's extraction rules, then run the load test."]
    from mlloop.bundle import template

    (project.root / "01_data_pipeline.py").write_text(template("01_data_pipeline.py").read_text())
    result = CliRunner().invoke(cli, ["profile", "--load-test", "--project", str(project.root)])
    assert result.exit_code == 1 and result.output.count("\n") == 1
    assert result.output.startswith("Error: 01_data_pipeline.py: the parse region of 01_data_pipeline.py is not written")
    result = CliRunner().invoke(cli, ["profile", "--load-test", "--samples", "0", "--project", str(project.root)])
    assert (result.exit_code, result.output) == (1, "Error: --samples must be at least 1, not 0.\n")


def test_draft_flags_label_spellings_missing_files_and_join_only_sources(tmp_path):
    root = tmp_path / "proj"
    raw = root / "dataset" / "rawdata"
    for folder in ("Cat", "cat ", "dog"):
        (raw / "folders" / folder).mkdir(parents=True)
        (raw / "folders" / folder / "a.png").write_bytes(png(8, 8))
    (raw / "listed" / "images").mkdir(parents=True)
    for name in ("1.png", "2.png"):
        (raw / "listed" / "images" / name).write_bytes(png(8, 8))
    (raw / "listed" / "labels.csv").write_text("filename,label\nimages/1.png,Dog\nimages/2.png,dog\n"
                                               "images/3.png,Dog\nimages/gone.png, cat\n")
    (raw / "meta").mkdir()
    (raw / "meta" / "extra.csv").write_text("image_id,weight\n1,3.5\n2,4.0\n")
    result = draft_profiling(Project(root.resolve()))
    looks = {s.name: s.looks for s in result.sources}
    assert looks["folders"] == ["folder names: 'Cat', 'cat ' differ only by case or spaces; one label or several?"]
    assert looks["listed"] == [
        "`labels.csv` column `label`: 'Dog', 'dog' differ only by case or spaces; one label or several?",
        "`labels.csv` column `filename`: 2 of 4 rows name a file that is not in the source "
        "(e.g. `images/3.png`, `images/gone.png`)"]
    assert looks["meta"] == [
        "no sample files, only tables: `extra.csv` column `image_id` matches 2 of 2 values of source listed; it adds "
        "columns to listed's samples through a join, not samples of its own"]
    text = Project(root.resolve()).profiling_md.read_text(encoding="utf-8")
    assert "<!-- look at: folder names: 'Cat', 'cat ' differ only by case or spaces; one label or several? -->" in text
    assert "<!-- look at: no sample files, only tables: `extra.csv` column `image_id`" in text
    assert any(line.startswith("meta: look at: no sample files") for line in result.lines())
