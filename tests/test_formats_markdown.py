"""Each Markdown document's one module: what it renders, its parser reads back without a gap, and
every reader of a document (checks, status, analysis, report, runtime) gets the same values."""

from factory import PROFILE_SECTION
from mlloop.analysis import version_parent
from mlloop.formats import Gap, action_extract, change_summary, final_analysis, profiling, result_analysis
from mlloop.runtime.artifacts import paths_for_script, parent_of

HEADER = {"version": "v002", "parent": "v001", "action_source": "Models/Artifacts/v001/action-extract.md",
          "goal": "raise accuracy", "change": "EPOCHS 1 -> 2", "where": "EPOCHS at the top"}


def test_a_rendered_change_summary_parses_back_without_gaps():
    text = change_summary.replace("#!/usr/bin/env python\nEPOCHS = 2\n", change_summary.render(HEADER))
    summary = change_summary.parse(text)
    assert summary.fields == HEADER and summary.gaps == []
    assert change_summary.code_body(text) == ["EPOCHS = 2"]


def test_a_repeated_field_is_a_gap_and_every_reader_takes_the_first(factory):
    factory.build_baseline_done().version(1, "action").version(2, "authored")
    script = factory.root / "02_train_v002.py"
    script.write_text(script.read_text().replace("# parent: v001\n", "# parent: v001\n# parent: baseline\n"))
    summary = change_summary.parse(script.read_text())
    assert summary.fields["parent"] == "v001"
    assert summary.gaps == [Gap("script.header", "the change summary has 2 '# parent:' lines; keep one "
                                                 "(the first, 'v001', is the one read)")]
    assert change_summary.read_fields(script)["parent"] == "v001"
    assert version_parent(factory.project, "v002") == "v001"
    assert parent_of(paths_for_script(script)) == "v001"


def test_a_header_below_the_top_is_no_header():
    text = "import os\n" + change_summary.render(HEADER)
    assert change_summary.parse(text).fields is None
    assert [g.code for g in change_summary.parse(text).gaps] == ["script.header"]


def test_result_analysis_draft_has_a_gap_per_agent_section_until_written():
    text = result_analysis.render("v001", {"Metric deltas": ["| accuracy | 0.6 |"]})
    assert [g.message for g in result_analysis.gaps(text)] == [
        f"the section {name!r} is empty or placeholder text; write it" for name in result_analysis.AGENT_SECTIONS]
    filled = result_analysis.render("v001", {name: [f"written about {name}"] for name in result_analysis.SECTIONS})
    assert result_analysis.gaps(filled) == []


def test_a_rendered_action_extract_parses_back():
    fields = {name: f"the {name.lower()}" for name in action_extract.FIELDS}
    assert action_extract.parse(action_extract.render("v001", fields, deferred=["label smoothing"])) == (fields, [])
    fields["Risk"] = "TBD"
    assert action_extract.parse(action_extract.render("v001", fields))[1] == [
        Gap("action.empty_field", "the Selected Action's 'Risk' is empty or placeholder text")]


def test_profiling_accepts_headings_in_other_words_and_only_pass_or_fail():
    top = "## Overview\nOne source.\n## Sources\n- src_a\n"
    text = top + PROFILE_SECTION.format(name="src_a").replace("## Source: src_a", "## **Source: `src_a/`**").replace(
        "### Paths & naming rules", "### Paths and naming rules")
    assert profiling.gaps(text, ["src_a"]) == []
    line = profiling.load_test_line(True, "10/10 samples, seed 42")
    assert line == "- load_test: PASS (10/10 samples, seed 42)" and line in text
    maybe = text.replace(line, "- load_test: maybe")
    assert profiling.gaps(maybe, ["src_a"]) == [
        Gap("profiling.load_test", "'Source: src_a' load_test is 'maybe'; expected PASS or FAIL")]
    assert profiling.gaps(text, ["src_a", "src_b"])[-1].code == "profiling.source_missing"
    assert profiling.gaps(text, []) == [
        Gap("profiling.unknown_source", "the section 'Source: src_a' names no folder in dataset/rawdata/", warning=True)]


def test_final_analysis_agent_section():
    block = "\n".join(["# Final analysis", *final_analysis.render_agent_block()])
    assert [g.code for g in final_analysis.gaps(block)] == ["report.analysis_pending"]
    written = block.replace(final_analysis.PLACEHOLDER, "v003 trained longer.")
    assert final_analysis.gaps(written) == [] and final_analysis.agent_section(written).strip() == "v003 trained longer."
    assert [g.code for g in final_analysis.gaps(written.replace(final_analysis.END, ""))] == ["report.analysis_pending"]
