"""The skills as Claude Code loads them: frontmatter, size, CLI names, en/ko parity, links, examples.

The skills are prose an agent follows, so these tests pin what prose can get wrong: a command or
check target the CLI does not have, a Korean version that drifted from the English one, a body
that no longer fits in what Claude Code re-attaches after compaction (5,000 tokens), a reference
link that leads nowhere, and example rules the schemas reject.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from mlloop.formats import action_extract, final_analysis, result_analysis
from mlloop.cli import cli
from mlloop.layout import Project
from mlloop.rules import resolve

REPO = Path(__file__).resolve().parents[1]
LANG_DIRS = {"en": REPO / "skills", "ko": REPO / "skills-ko"}
SKILL_NAMES = ("build-baseline", "progressive-training")
CASES = [(lang, skill) for lang in LANG_DIRS for skill in SKILL_NAMES]
CASE_IDS = [f"{lang}-{skill}" for lang, skill in CASES]

# The Agent Skills spec (anthropics/skills quick_validate.py): the only portable keys.
ALLOWED_KEYS = {"name", "description", "license", "allowed-tools", "metadata", "compatibility"}
NAME_RE = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
CHECK_TARGETS = {"all", "rules", "profiling", "prepdata", "baseline", "report"}
VERSION_TARGET_RE = re.compile(r"^v(\d{3,}|NNN)$")  # v001, v1000, or the placeholder vNNN
TOKEN_BUDGET = 5000  # Claude Code re-attaches the first 5,000 tokens of a skill after compaction
FILE_EXTENSIONS = ("md", "py", "json", "jsonl", "yaml", "csv", "parquet", "ckpt")
# Documents that exist in one language only (the data file a translation does not carry).
ENGLISH_ONLY = {"build-baseline/task_format.yaml"}


# ---- reading the documents ----------------------------------------------------------------

def skill_dir(lang: str, skill: str) -> Path:
    return LANG_DIRS[lang] / skill


def markdown_files(lang: str, skill: str) -> list[Path]:
    return sorted(skill_dir(lang, skill).rglob("*.md"))


def split_frontmatter(text: str) -> tuple[dict, str]:
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    assert m, "SKILL.md must start with a --- frontmatter block"
    meta = yaml.safe_load(m.group(1))
    assert isinstance(meta, dict), "the frontmatter must be a YAML mapping"
    return meta, m.group(2)


FENCE_RE = re.compile(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)
INLINE_RE = re.compile(r"`([^`]+?)`", re.S)


def code_spans(text: str) -> list[str]:
    """Fenced blocks and inline code spans (whitespace normalised): where commands and files are named."""
    fenced = [m.group(1) for m in FENCE_RE.finditer(text)]
    rest = FENCE_RE.sub("", text)
    inline = [" ".join(m.group(1).split()) for m in INLINE_RE.finditer(rest)]
    return fenced + inline


def prose(text: str) -> str:
    return FENCE_RE.sub("", text)


SHELL_BREAK = {"&&", "||", "|", ";", ">", "2>&1", "then", "and", "or"}


def mlloop_invocations(text: str) -> list[tuple[str, list[str]]]:
    """``(command, args)`` for every ``mlloop <command> ...`` written in code."""
    found = []
    for span in code_spans(text):
        # Comments are not commands (`# === mlloop change summary ===` in a script header).
        code = "\n".join(re.sub(r"(^|\s)#.*$", "", line) for line in span.splitlines())
        tokens = code.replace("`", " ").split()
        for i, token in enumerate(tokens):
            if token.strip("(") != "mlloop" or i + 1 >= len(tokens):
                continue
            command = tokens[i + 1].rstrip(".,:)")
            if not re.match(r"^[a-z][a-z-]*$", command):
                continue  # `mlloop <command> --help`, `mlloop.runtime`
            args = []
            for arg in tokens[i + 2:]:
                if arg in SHELL_BREAK or arg == "mlloop":
                    break
                args.append(arg.rstrip(".,:);"))
            found.append((command, args))
    return found


def normalised_commands(text: str) -> set[str]:
    """``mlloop check prepdata``, ``mlloop new-version --from``…: the command, its first
    positional argument and its options (option values dropped)."""
    out = set()
    for command, args in mlloop_invocations(text):
        words = ["mlloop", command]
        positional = [a for a in args if not a.startswith(("-", "<", "[")) and a]
        if command in ("check", "analyze") and positional:
            words.append(positional[0])
        words += sorted(a.split("=")[0] for a in args if a.startswith("--"))
        out.add(" ".join(words))
    return out


def named_steps(text: str) -> set[int]:
    return {int(n) for n in re.findall(r"\bStep (\d+)", text)}


FILE_TOKEN_RE = re.compile(r"[A-Za-z0-9_.<>{}\[\]*#/-]+")


def named_files(text: str) -> set[str]:
    """Paths and file names written in code: tokens with a ``/`` or a known extension."""
    out = set()
    ext = re.compile(r"\.(%s)$" % "|".join(FILE_EXTENSIONS))
    for span in code_spans(text):
        for token in FILE_TOKEN_RE.findall(span):
            token = token.rstrip(".,:;")
            if "://" in token or token.startswith("--") or len(token) < 3:
                continue
            if "/" in token or ext.search(token):
                out.add(token)
    return out


def named_options(text: str) -> set[str]:
    """``--KEY`` options written in code (``--version``, ``--RETRY_CAUSE``), values dropped."""
    return {m.group(1) for span in code_spans(text) for m in re.finditer(r"(?<![\w-])(--[A-Za-z][\w-]*)", span)}


LINK_RE = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def links(text: str) -> list[str]:
    return [t for t in LINK_RE.findall(prose(text)) if not re.match(r"^[a-z]+:", t) and not t.startswith("#")]


HANGUL_RE = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
CJK_RE = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


def estimate_tokens(text: str) -> int:
    """A conservative token estimate (no tokenizer is installed, and Claude's is not public).

    - ASCII: 1 token per 3.0 characters. Anthropic's rule of thumb is about 3.5 characters of
      English prose per token; markdown, paths and code tokenise worse, so 3.0.
    - Hangul syllables and jamo (and CJK): 1.5 tokens each. English-centred BPE vocabularies
      (cl100k) spend about 1.5-2 tokens per syllable and multilingual ones (o200k) 20-30% less;
      1.5 sits at the top of the multilingual range.
    - Any other non-ASCII character (arrows, dashes, ≥): 1 token each.
    """
    hangul = len(HANGUL_RE.findall(text)) + len(CJK_RE.findall(text))
    ascii_chars = sum(1 for c in text if ord(c) < 128)
    other = len(text) - ascii_chars - hangul
    return math.ceil(ascii_chars / 3.0 + hangul * 1.5 + other * 1.0)


def load_skill(lang: str, skill: str) -> tuple[dict, str]:
    return split_frontmatter((skill_dir(lang, skill) / "SKILL.md").read_text(encoding="utf-8"))


# ---- frontmatter and size -----------------------------------------------------------------

@pytest.mark.parametrize("lang,skill", CASES, ids=CASE_IDS)
def test_frontmatter_follows_the_spec(lang, skill):
    meta, body = load_skill(lang, skill)
    assert set(meta) <= ALLOWED_KEYS, f"unexpected frontmatter keys: {set(meta) - ALLOWED_KEYS}"
    assert meta["name"] == skill  # = the folder name, English in both languages
    assert NAME_RE.match(meta["name"]) and len(meta["name"]) <= 64
    description = meta["description"]
    assert isinstance(description, str) and description.strip()
    assert len(description) <= 1024, f"description has {len(description)} characters"
    assert "<" not in description and ">" not in description
    assert f"/{skill}" in description  # it triggers on the slash command
    assert len(body.splitlines()) < 500
    if lang == "ko":
        assert HANGUL_RE.search(description), "the Korean description must be in Korean"


@pytest.mark.parametrize("lang,skill", CASES, ids=CASE_IDS)
def test_body_fits_the_compaction_budget(lang, skill):
    _, body = load_skill(lang, skill)
    tokens = estimate_tokens(body)
    assert tokens < TOKEN_BUDGET, f"{lang}/{skill}/SKILL.md body is about {tokens} tokens"


def test_token_estimate_is_conservative_for_known_text():
    # 350 characters of English prose are about 100 tokens by Anthropic's rule of thumb.
    assert estimate_tokens("a" * 350) > 100
    assert estimate_tokens("한국어") == 5  # 3 syllables x 1.5, rounded up
    assert estimate_tokens("→") == 1


def test_korean_bodies_are_translated():
    for skill in SKILL_NAMES:
        for path in markdown_files("ko", skill):
            text = prose(path.read_text(encoding="utf-8"))
            assert len(HANGUL_RE.findall(text)) > 50, f"{path} is not translated"


# ---- the CLI the skills name --------------------------------------------------------------

def all_documents():
    for lang in LANG_DIRS:
        for skill in SKILL_NAMES:
            for path in markdown_files(lang, skill):
                yield path


def test_every_named_command_and_option_exists():
    commands = cli.commands
    seen = set()
    for path in all_documents():
        for command, args in mlloop_invocations(path.read_text(encoding="utf-8")):
            assert command in commands, f"{path.relative_to(REPO)} names `mlloop {command}`, which does not exist"
            options = {o for p in commands[command].params for o in p.opts} | {"--help", "-h"}
            for arg in args:
                if arg.startswith("--"):
                    assert arg.split("=")[0] in options, f"{path.relative_to(REPO)}: `mlloop {command} {arg}` is not an option"
            seen.add(command)
    # The skills route through these; losing one from the text would break the loop.
    assert {"rules", "profile", "status", "check", "new-version", "analyze", "report"} <= seen


def test_every_check_target_is_valid():
    targets = set()
    for path in all_documents():
        for command, args in mlloop_invocations(path.read_text(encoding="utf-8")):
            if command != "check":
                continue
            positional = [a for a in args if not a.startswith(("-", "<", "["))]
            if positional:
                target = positional[0]
                assert target in CHECK_TARGETS or VERSION_TARGET_RE.match(target), \
                    f"{path.relative_to(REPO)}: `mlloop check {target}` is not a valid target"
                targets.add(target)
    assert {"profiling", "prepdata", "baseline", "all", "report", "vNNN"} <= targets


def test_command_extraction_sees_what_a_reader_sees():
    text = "Run `mlloop check v001 --json`, then `mlloop <command> --help`.\n```\nmlloop new-version --from best\n```\n"
    assert normalised_commands(text) == {"mlloop check v001 --json", "mlloop new-version --from"}
    assert named_files("`02_train_v001.py` and `Models/Artifacts/v001/` but not `--json`") == \
        {"02_train_v001.py", "Models/Artifacts/v001/"}


# ---- English and Korean say the same thing ------------------------------------------------

def relative_files(lang: str) -> set[str]:
    """Every file of the skills, through links (skills-ko's templates/ links to the English one)."""
    root = LANG_DIRS[lang]
    return {(Path(d) / n).relative_to(root).as_posix() for skill in SKILL_NAMES
            for d, _, names in os.walk(root / skill, followlinks=True) for n in names
            if "__pycache__" not in Path(d).parts}


def test_korean_mirrors_the_english_files():
    assert relative_files("ko") == relative_files("en") - ENGLISH_ONLY


@pytest.mark.parametrize("rel", sorted(p.relative_to(LANG_DIRS["en"]).as_posix()
                                       for skill in SKILL_NAMES for p in markdown_files("en", skill)))
def test_english_and_korean_name_the_same_commands_steps_and_files(rel):
    en = (LANG_DIRS["en"] / rel).read_text(encoding="utf-8")
    ko = (LANG_DIRS["ko"] / rel).read_text(encoding="utf-8")
    assert normalised_commands(ko) == normalised_commands(en), "commands differ"
    assert named_steps(ko) == named_steps(en), "steps differ"
    assert named_options(ko) == named_options(en), "options differ"
    en_files, ko_files = named_files(en), named_files(ko)
    assert ko_files == en_files, f"only in en: {sorted(en_files - ko_files)}; only in ko: {sorted(ko_files - en_files)}"


# ---- reference files ----------------------------------------------------------------------

SHARED_CLI_OUTPUT = "../build-baseline/reference/cli-output.md"  # one per language, for both skills


def test_one_cli_output_reference_per_language():
    for lang, root in LANG_DIRS.items():
        copies = sorted(p.relative_to(root).as_posix() for p in root.glob("*/reference/cli-output.md"))
        assert copies == ["build-baseline/reference/cli-output.md"], f"{lang}: {copies}"
        assert (root / "progressive-training" / SHARED_CLI_OUTPUT).resolve() == (root / copies[0]).resolve()

@pytest.mark.parametrize("lang,skill", CASES, ids=CASE_IDS)
def test_reference_links_resolve_one_level_deep(lang, skill):
    root = skill_dir(lang, skill)
    _, body = load_skill(lang, skill)
    linked = set()
    for target in links(body):
        # Its own reference/<file>.md, or the one CLI-output reference both skills share.
        assert re.match(r"^reference/[A-Za-z0-9_.-]+\.md$", target) or target == SHARED_CLI_OUTPUT, \
            f"SKILL.md links {target!r}: not reference/<file>.md"
        assert (root / target).is_file(), f"SKILL.md links {target!r}, which does not exist"
        linked.add(target)
    references = {p.relative_to(root).as_posix() for p in (root / "reference").glob("*")}
    assert references == linked - {SHARED_CLI_OUTPUT}, \
        f"reference files not linked from SKILL.md: {sorted(references - linked)}"
    assert {"reference/cli-output.md", SHARED_CLI_OUTPUT} & linked, "SKILL.md must link the CLI-output reference"
    for path in (root / "reference").glob("*.md"):
        for target in links(path.read_text(encoding="utf-8")):
            # A reference may point at a sibling, never deeper or back up.
            assert "/" not in target and (path.parent / target).is_file(), f"{path.name} links {target!r}"


# ---- what the seeds require stays ---------------------------------------------------------

REQUIRED_MENTIONS = {
    "build-baseline": ["user_defined_rules.json", "user_instruction.md", "42", "task_format.yaml",
                       "mlloop status", "dataset_id", "../progressive-training/SKILL.md",
                       "dataset/rawdata/profiling.md", "01_data_pipeline.py", "02_train_baseline.py",
                       "load_test", "expected_*", "baseline_smoke_test_report.md"],
    "progressive-training": ["user_defined_rules.json", "user_instruction.md", "42", "mlloop status",
                             "dataset_id", "max_versions", "branch_from", "eval_score.json", "infer_samples/",
                             "result-analysis.md", "action-extract.md", "train_retry_report.md",
                             "baseline_patch_report.md", "final-analysis.md", "03_eval.py", "04_final_report.py",
                             "mlloop:analysis:start"],
}
STEPS = {"build-baseline": set(range(4)), "progressive-training": set(range(8))}


@pytest.mark.parametrize("lang,skill", CASES, ids=CASE_IDS)
def test_the_seed_requirements_stay_in_the_body(lang, skill):
    _, body = load_skill(lang, skill)
    for needle in REQUIRED_MENTIONS[skill]:
        assert needle in body, f"{lang}/{skill}/SKILL.md no longer mentions {needle!r}"
    assert STEPS[skill] <= named_steps(body)
    assert "mlloop check" in body


# ---- the filled examples in the references pass the real parsers ---------------------------

def filled_example(path: Path) -> str:
    text = path.read_text(encoding="utf-8")
    m = re.search(r"```markdown\n(.*?)\n```", text, re.S)
    assert m, f"{path} has no filled example"
    return m.group(1)


@pytest.mark.parametrize("lang", list(LANG_DIRS))
def test_filled_examples_are_valid(lang):
    ref = skill_dir(lang, "progressive-training") / "reference"
    fields, gaps = action_extract.parse(filled_example(ref / "action-extract-format.md"))
    assert gaps == [] and set(fields) == {"Goal", "Change", "Where", "Expected impact", "Risk", "Verification"}
    assert result_analysis.gaps(filled_example(ref / "result-analysis-format.md")) == []


@pytest.mark.parametrize("lang", list(LANG_DIRS))
def test_final_analysis_example_is_not_a_placeholder(lang):
    from mlloop import markdown as md

    text = (skill_dir(lang, "progressive-training") / "reference" / "final-report.md").read_text(encoding="utf-8")
    block = re.search(r"```markdown\n(.*?)\n```", text, re.S).group(1)
    section = final_analysis.agent_section(block)
    assert section is not None and not md.is_placeholder(section)
    assert "v003" in section and "v002" in section and "glm-ocr" in section  # the top 3


@pytest.mark.parametrize("lang", list(LANG_DIRS))
def test_profiling_example_passes_the_check(tmp_path, lang):
    root = tmp_path / "proj"
    for source in ("lines_jsonl", "scans_zip"):
        (root / "dataset" / "rawdata" / source).mkdir(parents=True)
    example = filled_example(skill_dir(lang, "build-baseline") / "reference" / "profiling-format.md")
    (root / "dataset" / "rawdata" / "profiling.md").write_text(example + "\n", encoding="utf-8")
    result = CliRunner().invoke(cli, ["check", "profiling", "--project", str(root)])
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith("check profiling: ok")


@pytest.mark.parametrize("lang", list(LANG_DIRS))
def test_profiling_example_has_every_section(lang):
    text = filled_example(skill_dir(lang, "build-baseline") / "reference" / "profiling-format.md")
    sources = re.findall(r"^## Source: (.+)$", text, re.M)
    assert len(sources) == 2
    for heading in ("# Raw data profiling", "## Overview", "## Sources"):
        assert re.search(rf"^{re.escape(heading)}$", text, re.M)
    for sub in ("Sample unit definition", "Paths & naming rules", "Label schema", "Edge cases",
                "Extraction rules", "Sanity checks"):
        assert len(re.findall(rf"^### {re.escape(sub)}$", text, re.M)) == 2
    assert len(re.findall(r"^- load_test: PASS \(10/10 samples, seed 42\)$", text, re.M)) == 2


# ---- example rules and instructions -------------------------------------------------------

def example_project(tmp_path: Path, lang: str) -> Path:
    root = tmp_path / f"proj-{lang}"
    for skill in SKILL_NAMES:
        dest = root / ".claude" / "skills" / skill
        dest.mkdir(parents=True)
        for name in ("user_defined_rules.json", "user_instruction.md"):
            shutil.copy(skill_dir(lang, skill) / name, dest / name)
    return root


@pytest.mark.parametrize("lang", list(LANG_DIRS))
def test_example_rules_are_valid(tmp_path, lang):
    root = example_project(tmp_path, lang)
    rules = resolve(Project.at(root))
    assert rules.findings.problems == [] and rules.findings.warnings == []
    result = CliRunner().invoke(cli, ["rules", "--project", str(root)])
    assert result.exit_code == 0, result.output
    assert result.output.rstrip().endswith("rules ok")


def test_example_rules_are_the_same_in_both_languages():
    for skill in SKILL_NAMES:
        assert (skill_dir("ko", skill) / "user_defined_rules.json").read_bytes() == \
            (skill_dir("en", skill) / "user_defined_rules.json").read_bytes()


def test_example_rules_fix_the_seed_slips():
    bb = json.loads((skill_dir("en", "build-baseline") / "user_defined_rules.json").read_text())
    pt = json.loads((skill_dir("en", "progressive-training") / "user_defined_rules.json").read_text())
    dc = bb["dataset_config"]
    assert "dataset_id" in dc and "prepdata_version" not in dc
    assert dc["split_strategy"] in ("random", "stratified")
    assert bb["model_config"]["vision_pretrained"] is False  # no network for weights
    names = [m["name"] for m in pt["eval_config"]["metrics"]]
    assert {"cer", "wer", "exact_match", "loss"} <= set(names)
    assert pt["eval_config"]["primary_metric"] == "cer"
    assert pt["loop_config"]["branch_from"] in ("best", "previous")
    assert pt["dataset_config"]["dataset_id"] == dc["dataset_id"]
    for lang in LANG_DIRS:
        instruction = (skill_dir(lang, "progressive-training") / "user_instruction.md").read_text(encoding="utf-8")
        assert "cer" in instruction.lower()  # the instruction says why cer, not loss


def test_seed_slip_aliases_still_work(tmp_path):
    """The original README's rules (prepdata_version) resolve; its split "uniform" is refused."""
    root = tmp_path / "old"
    dest = root / ".claude" / "skills" / "build-baseline"
    dest.mkdir(parents=True)
    bb = json.loads((skill_dir("en", "build-baseline") / "user_defined_rules.json").read_text())
    dc = bb["dataset_config"]
    dc["prepdata_version"] = dc.pop("dataset_id")
    (dest / "user_defined_rules.json").write_text(json.dumps(bb), encoding="utf-8")
    rules = resolve(Project.at(root))
    assert rules.findings.problems == [] and rules.dataset_id == "v1"
    dc["split_strategy"] = "uniform"
    (dest / "user_defined_rules.json").write_text(json.dumps(bb), encoding="utf-8")
    problems = resolve(Project.at(root)).findings.problems
    assert [p.json_path for p in problems] == ["$.dataset_config.split_strategy"]


@pytest.mark.parametrize("lang,cite,seeded", [("en", "cite the interval, not the raw delta", "seeded"),
                                              ("ko", "원래 변화량이 아니라 구간을 인용한다", "시드가 고정되어")])
def test_the_loop_skill_says_cite_the_interval_and_use_compare(lang, cite, seeded):
    skill = LANG_DIRS[lang] / "progressive-training"
    body = " ".join((skill / "SKILL.md").read_text(encoding="utf-8").split())
    assert cite in body and "`mlloop compare vA vB`" in body and seeded in body
    analysis = " ".join((skill / "reference" / "result-analysis-format.md").read_text(encoding="utf-8").split())
    assert "| metric | v001 | v002 | delta | 95% interval | verdict |" in analysis
