"""`mlloop compare`: seeded paired-bootstrap deltas, with cases one can check by hand."""

import json
import random

import numpy as np
import pytest
from click.testing import CliRunner

from mlloop.bootstrap import _kernel, _weights, paired_bootstrap, verdict
from mlloop.cli import cli
from mlloop.runtime.metrics import compute_metrics

CLASSES = ("cat", "dog", "fox")


def records(ids, correct, losses=None):
    """One record per id; ``correct[i]`` says whether the prediction equals the target."""
    out = []
    for i, (sid, ok) in enumerate(zip(ids, correct)):
        target = CLASSES[i % 3]
        out.append({"id": sid, "prediction": target if ok else CLASSES[(i + 1) % 3], "target": target,
                    "loss": losses[i] if losses else (0.2 if ok else 1.5)})
    return out


def compare(factory, *args):
    return CliRunner().invoke(cli, ["compare", *args, "--project", str(factory.root)])


@pytest.fixture
def project(tmp_path):
    from factory import ProjectFactory

    f = ProjectFactory(tmp_path / "proj", n_samples=500)  # 100 validation records
    f.complete(versions=2)
    return f


def test_identical_versions_give_zero_with_a_zero_interval(project):
    ids = project.sample_ids("valid")
    same = records(ids, [i % 4 != 0 for i in range(len(ids))])
    project.scored("v001", same).scored("v002", same)
    result = compare(project, "v001", "v002")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "v002 − v001 on 100 paired records (dataset_id v1); paired by record id, i.i.d. records, seeded "
        "percentile bootstrap (2000 resamples, 95% interval of B − A), seed 42.",
        "",
        "| metric | v001 | v002 | delta | 95% interval | verdict |",
        "|---|---|---|---|---|---|",
        "| loss | 0.525 | 0.525 | +0 | [+0, +0] | within noise |",
        "| accuracy (primary) | 0.75 | 0.75 | +0 | [+0, +0] | within noise |",
        "| macro_f1 | 0.750038 | 0.750038 | +0 | [+0, +0] | within noise |",
    ]


def test_a_clearly_better_version_is_better_on_every_metric(project):
    ids = project.sample_ids("valid")
    project.scored("v001", records(ids, [i % 2 == 0 for i in range(100)]))   # 50% right
    project.scored("v002", records(ids, [i % 10 != 0 for i in range(100)]))  # 90% right
    result = compare(project, "v001", "v002", "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert {m["name"]: m["verdict"] for m in doc["metrics"]} == {
        "loss": "better", "accuracy": "better", "macro_f1": "better"}
    accuracy = next(m for m in doc["metrics"] if m["name"] == "accuracy")
    assert accuracy["a"] == 0.5 and accuracy["b"] == 0.9 and accuracy["delta"] == pytest.approx(0.4)
    assert 0 < accuracy["low"] < 0.4 < accuracy["high"]
    assert (doc["paired"], doc["interval"], doc["level"], doc["resamples"], doc["seed"]) == (
        True, "percentile", 0.95, 2000, 42)
    # the other way round: the same interval, mirrored, and "worse"
    back = json.loads(compare(project, "v002", "v001", "--json").output)
    mirrored = next(m for m in back["metrics"] if m["name"] == "accuracy")
    assert mirrored["verdict"] == "worse"
    assert (mirrored["low"], mirrored["high"]) == pytest.approx((-accuracy["high"], -accuracy["low"]))


def test_running_it_again_gives_the_same_numbers(project):
    ids = project.sample_ids("valid")
    rnd = random.Random(1)
    project.scored("v001", records(ids, [rnd.random() < 0.7 for _ in ids]))
    project.scored("v002", records(ids, [rnd.random() < 0.75 for _ in ids]))
    first, second = compare(project, "v001", "v002", "--json"), compare(project, "v001", "v002", "--json")
    assert first.exit_code == 0 and first.output == second.output


def test_different_records_are_refused_in_one_line(project):
    ids = project.sample_ids("valid")
    project.scored("v001", records(ids, [True] * 100))
    project.scored("v002", records(ids[:-1] + ["other"], [True] * 100))
    result = compare(project, "v001", "v002")
    assert result.exit_code == 1
    assert result.output == (
        "Error: v001 and v002 were evaluated on different records (1 id(s) only in v001, 1 only in v002, "
        "e.g. \"s0099\"); a paired comparison needs the same validation records: re-evaluate both with "
        "`python 03_eval.py --version vNNN`.\n")


def test_different_datasets_are_refused(project):
    ids = project.sample_ids("valid")
    project.scored("v001", records(ids, [True] * 100)).scored("v002", records(ids, [True] * 100))
    doc = project.read_json("Models/Artifacts/v002/eval_score.json")
    doc["dataset_id"] = "v2"
    from mlloop.formats.eval_score import score_digest

    doc["score_sha256"] = score_digest(doc)
    project.write_json("Models/Artifacts/v002/eval_score.json", doc)
    result = compare(project, "v001", "v002")
    assert result.exit_code == 1
    assert result.output == ("Error: v001 was evaluated on dataset_id 'v1' and v002 on 'v2'; compare versions "
                             "evaluated on the same dataset.\n")


def test_records_that_do_not_give_the_recorded_score_are_refused(project):
    # the factory's default records predict every target (accuracy 1) while eval_score.json says 0.6
    result = compare(project, "v001", "v002")
    assert result.exit_code == 1
    assert result.output == ("Error: Models/Artifacts/v001/eval_samples.jsonl gives accuracy 1 but its "
                             "eval_score.json says 0.6; they come from different evaluations: re-run "
                             "`python 03_eval.py --version v001`.\n")


def test_a_metric_the_records_do_not_reproduce_is_refused(project):
    ids = project.sample_ids("valid")
    project.scored("v001", records(ids, [True] * 100)).scored("v002", records(ids, [True] * 100))
    doc = project.read_json("Models/Artifacts/v002/eval_score.json")
    doc["metrics"][2]["value"] = 0.5  # macro_f1: neither the vectorised form nor compute_metrics gives it
    from mlloop.formats.eval_score import score_digest

    doc["score_sha256"] = score_digest(doc)
    project.write_json("Models/Artifacts/v002/eval_score.json", doc)
    result = compare(project, "v001", "v002")
    assert result.exit_code == 1
    assert result.output == ("Error: Models/Artifacts/v002/eval_samples.jsonl gives macro_f1 1 but its "
                             "eval_score.json says 0.5; they come from different evaluations: re-run "
                             "`python 03_eval.py --version v002`.\n")


def test_unevaluated_version_and_bad_id(project):
    project.version(3, "trained")
    result = compare(project, "v001", "v003")
    assert result.exit_code == 1
    assert result.output == ("Error: Models/Artifacts/v003/eval_score.json does not exist: v003 is not evaluated; "
                             "run `python 03_eval.py --version v003`.\n")
    result = compare(project, "v001", "best")
    assert result.exit_code == 2
    assert result.output == "Error: 'best' is not a version id; use vNNN, e.g. v001.\n"


# ---- the statistics, without a project ---------------------------------------------------------

SPEC = {"name": "accuracy", "higher_is_better": True}


def test_pairing_narrows_the_interval_when_the_versions_share_their_errors():
    # B fixes 8 of A's 40 errors and breaks none: a consistent gain of 0.04 that independent
    # resamples of A and B drown in the sampling noise both share.
    n = 200
    a_ok = [i >= 40 for i in range(n)]
    b_ok = [i >= 32 for i in range(n)]
    a, b = records(range(n), a_ok), records(range(n), b_ok)
    [paired] = paired_bootstrap(a, b, [SPEC], seed=42)
    [unpaired] = paired_bootstrap(a, b, [SPEC], seed=42, paired=False)
    assert paired.verdict == "better" and paired.low > 0
    assert unpaired.verdict == "within noise" and unpaired.low < 0
    assert (paired.high - paired.low) < 0.5 * (unpaired.high - unpaired.low)


@pytest.mark.slow
def test_interval_covers_the_true_delta_about_95_percent_of_the_time():
    # Two classifiers with true accuracies 0.70 and 0.75, errors correlated through shared hard
    # samples; 200 independent validation sets of 200 records each.
    rng = np.random.default_rng(7)
    covered, trials, n = 0, 200, 200
    for _ in range(trials):
        u = rng.random(n)
        a_ok, b_ok = u < 0.70, u < 0.75
        noise = rng.random(n) < 0.2  # a fifth of the records are decided independently
        a_ok = np.where(noise, rng.random(n) < 0.70, a_ok)
        b_ok = np.where(noise, rng.random(n) < 0.75, b_ok)
        [m] = paired_bootstrap(records(range(n), a_ok.tolist()), records(range(n), b_ok.tolist()), [SPEC],
                               seed=int(rng.integers(1 << 30)), resamples=500)
        covered += m.low <= 0.05 <= m.high
    assert 0.88 <= covered / trials <= 0.99


@pytest.mark.parametrize("name", ["accuracy", "balanced_accuracy", "macro_f1", "micro_f1", "weighted_f1", "f1",
                                  "precision", "recall", "exact_match", "loss", "cer", "wer", "mse", "rmse",
                                  "mae", "mape", "r2", "bleu", "roc_auc", "roc_auc-binary", "roc_auc-multilabel",
                                  "mase@2", "smape-forecast", "mae-forecast", "rmse-forecast"])
def test_each_resample_is_the_metric_recomputed_on_the_resampled_rows(name):
    rnd = random.Random(3)
    n = 30
    if name == "bleu":
        words = ["the", "cat", "sat", "on", "a", "mat"]
        rows = []
        for i in range(n):
            target = " ".join(rnd.choice(words) for _ in range(rnd.randint(3, 9)))
            pred = target if rnd.random() < 0.4 else " ".join(rnd.sample(target.split(), k=len(target.split())))
            rows.append({"id": i, "prediction": pred, "target": target})
    elif name in ("cer", "wer"):
        words = ["ab", "cde", "f", "", "ghij"]
        rows = []
        for i in range(n):
            target = " ".join(rnd.choice(words) for _ in range(rnd.randint(0, 3)))
            pred = target if rnd.random() < 0.5 else target[::-1] + rnd.choice(["", "x"])
            rows.append({"id": i, "prediction": pred, "target": target, "loss": 0.1})
        rows = compute_metrics_rows(rows, name)
    elif name in ("mse", "rmse", "mae", "mape", "r2"):
        rows = [{"id": i, "prediction": rnd.uniform(-2, 2), "target": rnd.choice([0.0, rnd.uniform(-2, 2)]),
                 "loss": 0.1} for i in range(n)]
    elif name.startswith("mase") or name.endswith("-forecast"):  # forecasts of varying horizons
        name = name.removesuffix("-forecast")
        rows = []
        for i in range(n):
            horizon = rnd.choice([2, 3, 5])
            target = [rnd.uniform(1, 5) for _ in range(horizon)]
            rows.append({"id": i, "prediction": [t + rnd.gauss(0, 0.5) for t in target], "target": target,
                         "history": [rnd.uniform(1, 5) for _ in range(8)], "loss": 0.1})
        rows = compute_metrics_rows(rows, name)
    elif name.startswith("roc_auc"):  # scores rounded to 0.1: many ties; 3 classes in 30 records, often one missing
        labels = ["a", "b"] if name.endswith("binary") else ["a", "b", "c", "d"]
        rows = []
        for i in range(n):
            raw = [round(rnd.random(), 1) + 0.05 for _ in labels]
            target = (sorted(rnd.sample(labels, 2)) if name.endswith("multilabel")
                      else rnd.choice(labels if len(labels) == 2 else labels[:3]))
            rows.append({"id": i, "prediction": labels[0], "target": target, "loss": 0.1,
                         "scores": {c: v / sum(raw) for c, v in zip(labels, raw)}})
        name = "roc_auc"
    else:
        labels = [0, 1, 2, 3]  # 4 classes in 30 records: resamples often miss one
        rows = [{"id": i, "prediction": rnd.choice(labels), "target": rnd.choice(labels[:3]),
                 "loss": rnd.random()} for i in range(n)]
    kernel = _kernel(name, rows)
    assert kernel is not None
    idx = np.random.default_rng(0).integers(0, n, size=(20, n))
    weights = _weights(np, idx, n)
    values = kernel.finish(weights if kernel.per_record else weights @ kernel.columns)
    for r in range(20):
        resampled = [rows[i] for i in idx[r]]
        want = compute_metrics(resampled, [{"name": name, "higher_is_better": True}]).values[0]["value"]
        tolerance = 1e-5 if name == "bleu" else 1e-9  # torchmetrics' BLEU sums in float32
        assert values[r] == pytest.approx(want, rel=tolerance, abs=1e-12), (name, r)


def compute_metrics_rows(rows, name):
    """Rows with the per-record error rate, as 03_eval.py writes them into eval_samples.jsonl."""
    per = compute_metrics(rows, [{"name": name, "higher_is_better": False}]).per_sample
    return [{**r, **p} for r, p in zip(rows, per)]


def test_cer_is_total_edits_over_total_length_not_a_mean_of_rates():
    rows_a = [{"id": 0, "prediction": "a", "target": "b"},            # 1 edit / 1 char
              {"id": 1, "prediction": "abcdefghij", "target": "abcdefghij"}]  # 0 / 10
    rows_b = [{"id": 0, "prediction": "b", "target": "b"},
              {"id": 1, "prediction": "abcdefghiX", "target": "abcdefghij"}]  # 1 / 10
    rows_a, rows_b = compute_metrics_rows(rows_a, "cer"), compute_metrics_rows(rows_b, "cer")
    [m] = paired_bootstrap(rows_a, rows_b, [{"name": "cer", "higher_is_better": False}], seed=42)
    assert (m.a, m.b) == (1 / 11, 1 / 11)  # a mean of per-record rates would say 0.5 vs 0.05
    assert m.method == "vectorised"


@pytest.mark.slow
def test_a_metric_without_a_vectorised_form_is_recomputed_per_resample():
    rnd = random.Random(5)
    words = ["the", "cat", "sat", "on", "a", "mat", "dog", "ran"]
    targets = [" ".join(rnd.choice(words) for _ in range(6)) for _ in range(30)]
    rows_a = [{"id": i, "prediction": " ".join(reversed(t.split())), "target": t} for i, t in enumerate(targets)]
    rows_b = [{"id": i, "prediction": t, "target": t} for i, t in enumerate(targets)]
    spec = {"name": "chrf", "higher_is_better": True}
    [m] = paired_bootstrap(rows_a, rows_b, [spec], seed=42, resamples=20)  # chrF is slow to recompute
    assert m.method == "recomputed" and m.verdict == "better" and m.b == pytest.approx(1.0)
    assert m.a == pytest.approx(compute_metrics(rows_a, [spec]).values[0]["value"])


def test_verdict_follows_the_direction_and_zero_on_the_edge_is_noise():
    assert verdict(0.01, 0.2, True) == "better" and verdict(0.01, 0.2, False) == "worse"
    assert verdict(-0.2, -0.01, True) == "worse" and verdict(-0.2, -0.01, False) == "better"
    assert verdict(0.0, 0.2, True) == "within noise" and verdict(-0.1, 0.0, False) == "within noise"
    assert verdict(None, None, True) == "undefined"


def test_a_recomputation_over_the_time_budget_gives_no_interval_and_says_why(monkeypatch):
    import mlloop.bootstrap as bootstrap

    monkeypatch.setattr(bootstrap, "RECOMPUTE_BUDGET_S", 0.0)
    rows = [{"id": i, "prediction": "a b", "target": "a b c"} for i in range(5)]
    [m] = paired_bootstrap(rows, rows, [{"name": "chrf", "higher_is_better": True}], seed=42)
    assert (m.low, m.high, m.verdict, m.method) == (None, None, "undefined", "not resampled")
    assert m.note.startswith("no interval: recomputing chrf through compute_metrics 2000 times would take about ")
    assert m.note.endswith(" here (over the 0 s budget of one comparison)")


def test_the_budget_is_shared_by_the_recomputed_metrics_of_one_comparison():
    import mlloop.bootstrap as bootstrap

    notes = bootstrap._over_budget({"chrf": 20.0, "map": 20.0, "map_50": 5.0}, 2000)
    assert list(notes) == ["map"]  # chrf fits, map would pass 30 s after it, map_50 still fits
    assert notes["map"] == ("no interval: recomputing map through compute_metrics 2000 times would take about 20 s "
                            "here, after 20 s for the metrics before it (over the 30 s budget of one comparison)")
