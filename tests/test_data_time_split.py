"""The time split of time-series windows (mlloop.runtime.data.time_split) and the rules that
require it for time-series-forecasting (`mlloop rules`, `mlloop check rules`)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from factory import BB_RULES
from mlloop.checks import data_intent
from mlloop.cli import cli
from mlloop.runtime import data

BB_FILE = ".claude/skills/build-baseline/user_defined_rules.json"


def windows(series=("a", "b"), n=10, stride=6, horizon=12):
    """``n`` windows per series, origins ``stride`` rows apart, each forecasting ``horizon`` rows."""
    return [{"sample_id": f"{s}-w{k:02d}", "source": "st", "series_id": s, "start": 48 + k * stride, "horizon": horizon}
            for s in series for k in range(n)]


def test_time_split_puts_the_last_windows_of_each_series_in_valid_and_drops_the_straddlers():
    records = windows()
    train, valid = data.split_records(records, "time", 0.2, seed=1)
    for s in ("a", "b"):
        starts = {r["start"] for r in valid if r["series_id"] == s}
        assert starts == {48 + 8 * 6, 48 + 9 * 6}  # the last 2 of 10 windows, per series
        cut = min(starts)
        assert all(r["start"] + r["horizon"] <= cut for r in train if r["series_id"] == s)
    dropped = [r for r in records if r.get("drop_reason")]
    # origins 84 and 90 forecast rows up to 96 and 102, past the cut at 96: one window per series straddles it
    assert sorted(r["sample_id"] for r in dropped) == ["a-w07", "b-w07"]
    assert dropped[0]["drop_reason"] == "straddles_time_cut: series a cut at row 96"
    assert data.drop_counts(records) == {"straddles_time_cut": 2}
    assert len(train) == 14 and {r["split"] for r in train} == {"train"} and {r["split"] for r in valid} == {"valid"}
    assert data_intent.time_order(train, valid) == []
    assert data.split_composition(train, valid, "time", None, None) == {
        "time_cut": {"key": "start", "series": 2, "cuts": {"a": 96, "b": 96}}}


def test_time_split_ignores_the_seed_and_input_order():
    one, _ = data.split_records(windows(), "time", 0.3, seed=1)
    two, _ = data.split_records(list(reversed(windows())), "time", 0.3, seed=99)
    assert [r["sample_id"] for r in one] == [r["sample_id"] for r in two]


def test_time_split_refuses_records_without_series_or_start():
    records = windows()
    records[3]["start"] = None
    with pytest.raises(data.PipelineError) as err:
        data.split_records(records, "time", 0.2, 42)
    assert str(err.value) == (
        "split_strategy is time but 1 of 20 records lack 'series_id' or a numeric 'start' (the row of the first "
        "target value), e.g. sample_id 'a-w03' (source 'st'); set both on every record in parse_sources().")


def test_time_split_refuses_a_series_with_one_window():
    with pytest.raises(data.PipelineError, match=r"^time split: series 'c' has 1 window after filtering"):
        data.split_records(windows() + windows(series=("c",), n=1), "time", 0.2, 42)


def test_a_held_out_test_split_is_the_latest_part():
    records = windows(n=20, horizon=6)
    train, valid, test = data.split_with_test(records, "time", 0.2, 0.2, 42)
    for s in ("a", "b"):
        last = lambda rows: max(r["start"] for r in rows if r["series_id"] == s)  # noqa: E731
        first = lambda rows: min(r["start"] for r in rows if r["series_id"] == s)  # noqa: E731
        assert last(train) + 6 <= first(valid) and last(valid) + 6 <= first(test)


def test_time_order_names_a_train_window_that_reaches_into_valid():
    train = [{"id": "a-1", "series_id": "a", "start": 90, "horizon": 12}, {"id": "a-0", "series_id": "a", "start": 10}]
    valid = [{"id": "a-2", "series_id": "a", "start": 96, "horizon": 12}]
    assert data_intent.time_order(train, valid) == [
        "1 train window(s) end after their series' first valid window starts (e.g. 'a-1' of series 'a' ends at row "
        "102, valid starts at 96)"]


@pytest.mark.parametrize("strategy", ["random", "group", "stratified"])
@pytest.mark.parametrize("command", [["rules"], ["check", "rules"]])
def test_forecasting_rules_refuse_a_split_that_is_not_by_time(factory, command, strategy):
    bb = json.loads(json.dumps(BB_RULES))
    bb["dataset_config"].update(task_type="time-series-forecasting", split_strategy=strategy)
    factory.rules(bb=bb)
    out = CliRunner().invoke(cli, [*command, "--project", str(factory.root)])
    assert out.exit_code == 1
    assert (f"problem: {BB_FILE}::$.dataset_config.split_strategy: split_strategy is {strategy} but "
            f"time-series-forecasting must be split by time: a {strategy} split trains on the future of the windows "
            "it validates on; set dataset_config.split_strategy to \"time\"") in out.output.splitlines()


def test_forecasting_rules_accept_the_time_split(factory):
    bb = json.loads(json.dumps(BB_RULES))
    bb["dataset_config"].update(task_type="time-series-forecasting", split_strategy="time")
    factory.rules(bb=bb)
    out = CliRunner().invoke(cli, ["rules", "--project", str(factory.root), "--json"])
    doc = json.loads(out.output)
    assert out.exit_code == 0 and doc["problems"] == [] and doc["rules"]["dataset_config"]["split_strategy"] == "time"


def test_check_prepdata_finds_a_train_window_that_reaches_into_valid(tmp_path):
    from mlloop.checks import run_check
    from mlloop.layout import Project
    from train_fixture import series_prepdata, write_rules

    write_rules(tmp_path, "time-series-forecasting", dataset={"split_strategy": "time"})
    base = series_prepdata(tmp_path)

    def leaks():
        return [p.message for p in run_check(Project(tmp_path.resolve()), "prepdata").problems
                if p.code == "prepdata.leak_time"]

    assert leaks() == []
    rows = [json.loads(line) for line in (base / "train/train.jsonl").read_text().splitlines()]
    last = max((r for r in rows if r["series_id"] == "s0"), key=lambda r: r["start"])
    last["start"] += 6  # its target now ends 6 rows into the validation period
    (base / "train/train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert len(leaks()) == 1 and leaks()[0].startswith("1 train window(s) end after their series' first valid window")
