"""The loop as a whole: version names, each version up to its stage, and the chain between
steps (a later step's artifacts with an earlier step missing), ``max_versions`` and the
``dataset_id`` lock."""

from __future__ import annotations

import re
import unicodedata

from ..layout import BASELINE, BASELINE_SCRIPT, PROGRESSIVE_TRAINING, SPEC, TESTS, version_id, version_number
from ..stages import ACTION, ACTION_DOC, ANALYSED, ANALYSIS_DOC, EVALUATED, TRAINED, VersionStage, version_stage
from . import documents, evaluation, training
from .context import Context

STEP_ARTIFACT = {None: "nothing", "authored": "its script", "trained": "training outputs",
                 "evaluated": "evaluation outputs", "analysed": ANALYSIS_DOC, "action": ACTION_DOC}


# ---- names -----------------------------------------------------------------------------------

def misspelled_version(name: str) -> str | None:
    """The version id a misspelled folder name means (``V001``, ``v1``, ``v0001``, ``"v001 "``,
    full-width digits), or None when the name is something else (``v001.bak``)."""
    text = unicodedata.normalize("NFKC", name).strip().lower()
    m = re.fullmatch(r"v([0-9]+)", text)
    if not m or int(m.group(1)) < 1:
        return None
    return version_id(int(m.group(1)))


def check_names(ctx: Context) -> None:
    root = ctx.project.root
    for path in ctx.project.stray_version_names():
        name = path.name
        if path.parent == root:
            ctx.problem("versions.misnamed_script", path,
                        f"{name!r} is not a training script name ({BASELINE_SCRIPT} or 02_train_vNNN.py, e.g. 02_train_v001.py): "
                        "its version cannot be read from its name; rename it, or move a backup out of the project root")
            continue
        meant = misspelled_version(name)
        if meant is not None:
            ctx.problem("versions.misnamed", path, f"{name!r} looks like version {meant} but is not spelled {meant}; "
                        f"rename it to {meant} (versions are v001, v002, …)")
        else:
            ctx.warn("versions.stray", path, f"{name!r} is not a version folder (vNNN) and is ignored; "
                     "keep backups outside Models/Artifacts")


# ---- each version ------------------------------------------------------------------------------

def stages(ctx: Context) -> dict[str, VersionStage | None]:
    """Every version's stage; None for a version folder that is a link out of the project."""
    out = {}
    ctx.dir_ok(ctx.project.models) and ctx.dir_ok(ctx.project.artifacts_root)  # resolve the parents once
    for vid in ctx.project.versions():
        folder = ctx.project.artifact_dir(vid)
        if (folder.exists() or folder.is_symlink()) and not ctx.dir_ok(folder):
            out[vid] = None
        else:
            out[vid] = version_stage(ctx.project, vid)
    return out


def check_version(ctx: Context, vid: str, st: VersionStage) -> None:
    """``vid`` up to its stage: everything of every step up to the furthest one is required."""
    if not st.has_script and not ctx.project.script(vid).is_file():
        ctx.problem("versions.no_script", ctx.project.script(vid),
                    f"Models/Artifacts/{vid}/ exists but 02_train_{vid}.py does not; a version starts from its script "
                    "(`mlloop new-version`)")
    for step in STEP_PARTS:
        check_version_step(ctx, vid, st, step)


# The parts of a version's check, by the progressive-training step whose artifacts each reads;
# `mlloop status` asks for the part of the step it stands on, so the two never disagree.
STEP_PARTS = {1: None, 2: EVALUATED, 3: ANALYSED, 4: ACTION}


def check_version_step(ctx: Context, vid: str, st: VersionStage, step: int) -> None:
    """The part of ``mlloop check vid`` for Step ``step`` (1 train, 2 evaluate, 3 analyse, 4
    action); a step the version has not reached is not required."""
    if step == 1:
        text = documents.script_text(ctx, vid)
        parent = documents.check_script(ctx, vid, text)
        if st.reached(TRAINED):
            spec = training.check_training_outputs(ctx, vid)
            if isinstance(spec, dict) and parent is not None and "parent" in spec and spec["parent"] != parent:
                ctx.problem("spec.parent", ctx.project.artifact_dir(vid) / SPEC,
                            f"parent is {spec['parent']!r} but the script's change summary says {parent!r}", "$.parent")
        documents.check_retry_report(ctx, vid)
    elif not st.reached(STEP_PARTS[step]):
        return
    elif step == 2:
        evaluation.check_evaluation(ctx, vid)
    elif step == 3:
        documents.check_analysis(ctx, vid)
    elif step == 4:
        documents.check_action(ctx, vid)


def check_one_version(ctx: Context, vid: str) -> None:
    """``mlloop check vNNN``: the version must exist; then it and its parent link are checked."""
    all_stages = stages(ctx)
    if vid not in all_stages:
        known = ", ".join(all_stages) or "none yet"
        ctx.problem("versions.unknown", ctx.project.artifact_dir(vid),
                    f"{vid} does not exist (no 02_train_{vid}.py, no Models/Artifacts/{vid}/); versions: {known}")
        return
    st = all_stages[vid]
    if st is None:
        return
    check_version(ctx, vid, st)
    n = version_number(vid)
    for other, ost in all_stages.items():
        if version_number(other) < n and ost is not None and not ost.reached(ACTION):
            _incomplete(ctx, other, ost, vid)
    if not _baseline_started(ctx):
        ctx.problem("chain.baseline", ctx.project.artifact_dir(BASELINE),
                    f"{vid} exists but the baseline does not; build-baseline (02_train_baseline.py, its smoke test) comes first")


# ---- the whole loop ----------------------------------------------------------------------------

def check_all_versions(ctx: Context) -> None:
    check_names(ctx)
    all_stages = stages(ctx)
    for vid, st in all_stages.items():
        if st is not None:
            check_version(ctx, vid, st)
    check_chain(ctx, all_stages)


def _incomplete(ctx: Context, vid: str, st: VersionStage, later: str) -> None:
    ctx.problem("versions.chain", ctx.project.artifact_dir(vid),
                f"{later} exists, so {vid} must be complete through {ACTION_DOC} (it has only reached "
                f"{STEP_ARTIFACT.get(st.stage, st.stage)}); finish {vid} before starting a new version")


def _baseline_started(ctx: Context) -> bool:
    return ctx.project.script(BASELINE).is_file() or ctx.project.artifact_dir(BASELINE).is_dir()


def check_chain(ctx: Context, all_stages: dict[str, VersionStage | None]) -> None:
    project = ctx.project
    numbers = sorted(version_number(v) for v in all_stages)
    if numbers:
        # One problem per run of missing numbers, so a stray 02_train_v100000.py costs one line,
        # not 99,998 (and never a loop over the numbers in between).
        for before, after in zip([0] + numbers, numbers):
            if after - before == 2:
                ctx.problem("versions.gap", project.artifact_dir(version_id(before + 1)),
                            f"{version_id(before + 1)} is missing between the versions around it; versions are numbered without gaps")
            elif after - before > 2:
                first, last = version_id(before + 1), version_id(after - 1)
                ctx.problem("versions.gap", project.artifact_dir(first),
                            f"{first}…{last} ({after - before - 1:,} versions) are missing before {version_id(after)}; "
                            f"versions are numbered without gaps: rename or remove {version_id(after)} if it is a stray copy")
        # Each version is finished (through Step 4) before the next one is authored.
        later = version_id(numbers[-1])
        for vid, st in all_stages.items():
            if vid != later and st is not None and not st.reached(ACTION):
                _incomplete(ctx, vid, st, later)
        cur = project.cur()
        limit = ctx.rules.max_versions
        if cur is not None and cur > limit:
            ctx.problem("versions.max", project.script(version_id(cur)),
                        f"{version_id(cur)} exceeds loop_config.max_versions = {limit}; the loop ends at {version_id(limit)} "
                        "with the final report (Step 7)")
        base = version_stage(project, BASELINE)
        if not _baseline_started(ctx):
            ctx.problem("chain.baseline", project.artifact_dir(BASELINE),
                        f"{version_id(numbers[0])} exists but the baseline does not; build-baseline comes first")
        elif not base.reached(TRAINED):
            ctx.problem("chain.baseline", project.artifact_dir(BASELINE),
                        f"{version_id(numbers[0])} exists but the baseline has no training outputs; pass the smoke test first")
    # build-baseline: profiling (Step 0) -> prepdata (Step 1) -> baseline (Step 2).
    base = version_stage(project, BASELINE)
    prep = project.prepdata(ctx.dataset_id) if ctx.dataset_id else None
    prep_exists = prep is not None and prep.is_dir()
    if base.reached(TRAINED) and prep is not None and not prep_exists:
        ctx.problem("chain.prepdata", prep, f"the baseline is trained but dataset/prepdata/{ctx.dataset_id}/ does not exist; "
                    "run 01_data_pipeline.py (Step 1) first")
    if prep_exists and not project.profiling_md.exists():
        ctx.problem("chain.profiling", project.profiling_md,
                    "prepdata exists but dataset/rawdata/profiling.md does not; profiling (Step 0) comes first")
    # dataset_id is fixed once build-baseline hands over.
    rules_id = ctx.rules.dataset_id
    if ctx.dataset_id_source != "rules" and rules_id and rules_id != ctx.dataset_id:
        rf = ctx.rules.files[PROGRESSIVE_TRAINING]
        ctx.problem("versions.dataset_id", rf.rel,
                    f"the rules say dataset_id {rules_id!r} but the loop is locked to {ctx.dataset_id!r} "
                    f"({ctx.dataset_id_source}); dataset_id never changes once the loop has started",
                    "$.dataset_config.dataset_id")


# ---- the baseline ---------------------------------------------------------------------------------

def check_baseline(ctx: Context, required: bool) -> None:
    project = ctx.project
    folder = project.artifact_dir(BASELINE)
    if not _baseline_started(ctx) and not folder.is_symlink():
        if required:
            ctx.problem("baseline.missing", folder, "there is no baseline yet: 02_train_baseline.py writes "
                        "Models/Artifacts/baseline/ and its smoke test report (build-baseline Step 2)")
        return
    if (folder.exists() or folder.is_symlink()) and not ctx.dir_ok(folder):
        return
    text = documents.script_text(ctx, BASELINE)
    st = version_stage(project, BASELINE)
    smoke = folder / TESTS / "baseline_smoke_test_report.md"
    if text is None and (required or st.reached(TRAINED)):
        ctx.problem("baseline.no_script", project.script(BASELINE), f"{BASELINE_SCRIPT} is missing")
    documents.check_script(ctx, BASELINE, text)
    if required or st.reached(TRAINED):
        training.check_training_outputs(ctx, BASELINE)
    if required or st.reached(TRAINED) or smoke.exists():
        documents.check_smoke_report(ctx)
    documents.check_retry_report(ctx, BASELINE)
    documents.check_patch_report(ctx)
