"""Seeded splits, max_train_samples and leakage checks of mlloop.runtime.data."""

from collections import Counter

import pytest

from mlloop.runtime import data


def ids(n, prefix="s"):
    return [f"{prefix}{i:04d}" for i in range(n)]


def recs(n, **fields):
    out = []
    for i, sid in enumerate(ids(n)):
        r = {"sample_id": sid, "source": "a"}
        for k, fn in fields.items():
            r[k] = fn(i)
        out.append(r)
    return out


# ---- random -------------------------------------------------------------------------------------

def test_random_split_is_a_seeded_partition():
    train, valid = data.random_split(ids(100), 0.2, seed=42)
    assert len(valid) == 20 and len(train) == 80
    assert set(train).isdisjoint(valid) and set(train) | set(valid) == set(ids(100))
    assert data.random_split(list(reversed(ids(100))), 0.2, seed=42) == (train, valid)  # input order does not matter
    assert data.random_split(ids(100), 0.2, seed=7)[1] != valid


def test_split_needs_two_samples_and_keeps_one_in_train():
    with pytest.raises(data.PipelineError, match="at least 2"):
        data.random_split(["only"], 0.5, 1)
    train, valid = data.random_split(ids(2), 0.9, 1)
    assert len(train) == 1 and len(valid) == 1


# ---- stratified ---------------------------------------------------------------------------------

def test_stratified_split_keeps_proportions():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    all_ids = ids(100)
    train, valid = data.stratified_split(all_ids, labels, 0.2, seed=42)
    by_id = dict(zip(all_ids, labels))
    assert Counter(by_id[i] for i in valid) == {"a": 12, "b": 6, "c": 2}
    assert set(train).isdisjoint(valid) and len(train) + len(valid) == 100
    assert data.stratified_split(all_ids, labels, 0.2, seed=42) == (train, valid)


def test_stratified_split_rounds_by_largest_remainder_and_spares_singletons():
    labels = ["a"] * 7 + ["b"] * 7 + ["c"] * 1 + [None] * 5
    all_ids = ids(20)
    train, valid = data.stratified_split(all_ids, labels, 0.25, seed=3)
    by_id = dict(zip(all_ids, labels))
    counts = Counter(by_id[i] for i in valid)
    assert len(valid) == 5
    assert counts["c"] == 0                      # the only "c" stays in train
    assert counts["a"] in (1, 2) and counts["b"] in (1, 2) and counts[None] in (1, 2)
    assert all(any(by_id[i] == lab for i in train) for lab in ("a", "b", "c", None))


# ---- group --------------------------------------------------------------------------------------

def test_group_split_never_puts_a_group_in_both():
    all_ids = ids(90)
    groups = [f"g{i // 6}" for i in range(90)]            # 15 groups of 6
    train, valid = data.group_split(all_ids, groups, 0.2, seed=42)
    g = dict(zip(all_ids, groups))
    assert {g[i] for i in train}.isdisjoint({g[i] for i in valid})
    assert len(valid) == 18                               # exactly three whole groups
    assert data.group_split(all_ids, groups, 0.2, seed=42) == (train, valid)
    assert data.group_split(all_ids, groups, 0.2, seed=9) != (train, valid)


def test_group_split_handles_uneven_groups_and_missing_groups():
    all_ids = ids(40)
    groups = ["big"] * 30 + [None] * 10                    # one huge group and ten loners
    train, valid = data.group_split(all_ids, groups, 0.2, seed=1)
    assert set(all_ids[:30]) <= set(train)                 # the big group would overshoot: kept in train
    assert 1 <= len(valid) <= 12


def test_group_split_refuses_a_single_group():
    with pytest.raises(data.PipelineError, match="one group"):
        data.group_split(ids(10), ["g"] * 10, 0.2, 1)


def test_split_records_refuses_records_without_the_rules_keys():
    records = recs(30, group_id=lambda i: f"g{i // 5}" if i < 20 else None)
    with pytest.raises(data.PipelineError) as err:
        data.split_records(records, "group", 0.3, 42, group_key="group_id")
    assert str(err.value) == (
        "split_strategy is group but 10 of 30 records have no 'group_id' field (the rules' group_key), e.g. sample_id "
        "'s0020' (source 'a'); set 'group_id' on every record in parse_sources(), or change group_key or "
        "split_strategy in the rules.")
    assert all("split" not in r for r in records) and records[25]["group_id"] is None  # nothing filled in
    labelled = recs(20, label=lambda i: "x" if i != 7 else None)
    with pytest.raises(data.PipelineError, match=r"^split_strategy is stratified but 1 of 20 records have no 'label' "
                                                 r"field \(the rules' stratify_key\), e.g. sample_id 's0007'"):
        data.split_records(labelled, "stratified", 0.2, 42, stratify_key="label")
    train, valid = data.split_records(labelled, "random", 0.2, 42, stratify_key="label")  # random needs neither
    assert len(train) + len(valid) == 20


def test_split_records_uses_the_rules_keys():
    records = recs(50, label=lambda i: "x" if i < 40 else "y", session=lambda i: f"s{i // 10}")
    _, valid = data.split_records(records, "stratified", 0.2, 42, stratify_key="label")
    assert Counter(r["label"] for r in valid) == {"x": 8, "y": 2}
    train, valid = data.split_records(recs(50, session=lambda i: f"s{i // 10}"), "group", 0.2, 42, group_key="session")
    assert {r["session"] for r in train}.isdisjoint({r["session"] for r in valid})
    with pytest.raises(data.PipelineError, match="uniform"):
        data.split_records(records, "uniform", 0.2, 42)


# ---- max_train_samples --------------------------------------------------------------------------

def _sources(sizes):
    out = []
    for src, n in sizes.items():
        out += [{"sample_id": f"{src}-{i:04d}", "source": src} for i in range(n)]
    return out


def test_cap_train_is_uniform_over_sources():
    train = _sources({"big": 100, "mid": 50, "small": 10})
    kept, unused = data.cap_train(train, 60, seed=42)
    assert Counter(r["source"] for r in kept) == {"big": 25, "mid": 25, "small": 10}
    assert len(unused) == 100 and {r["split"] for r in unused} == {"unused"}
    again, _ = data.cap_train(_sources({"big": 100, "mid": 50, "small": 10}), 60, seed=42)
    assert [r["sample_id"] for r in again] == [r["sample_id"] for r in kept]
    other, _ = data.cap_train(_sources({"big": 100, "mid": 50, "small": 10}), 60, seed=1)
    assert [r["sample_id"] for r in other] != [r["sample_id"] for r in kept]


def test_cap_train_spreads_the_remainder_and_is_a_no_op_when_small():
    kept, _ = data.cap_train(_sources({"a": 10, "b": 10, "c": 10}), 10, seed=0)
    assert sorted(Counter(r["source"] for r in kept).values()) == [3, 3, 4]
    kept, unused = data.cap_train(_sources({"a": 5}), 10, seed=0)
    assert len(kept) == 5 and unused == []
    kept, unused = data.cap_train(_sources({"a": 5}), None, seed=0)
    assert len(kept) == 5 and unused == []


def test_max_train_samples_never_changes_the_valid_pool():
    def run(cap):
        records = _sources({"a": 80, "b": 40})
        train, valid = data.split_records(records, "random", 0.25, 42)
        train, _ = data.cap_train(train, cap, 42)
        return [r["sample_id"] for r in train], [r["sample_id"] for r in valid]

    full_train, full_valid = run(None)
    capped_train, capped_valid = run(20)
    assert capped_valid == full_valid
    assert len(capped_train) == 20 and set(capped_train) <= set(full_train)
    assert set(capped_train).isdisjoint(capped_valid)


# ---- leakage ------------------------------------------------------------------------------------

def test_leakage_findings():
    train = [{"sample_id": "a", "hash": "h1", "group_id": "g1"}, {"sample_id": "b", "hash": "h2", "group_id": "g2"}]
    valid = [{"sample_id": "c", "hash": "h3", "group_id": "g3"}]
    assert data.leakage_findings(train, valid, "group_id", True).ok
    leaky = [{"sample_id": "a", "hash": "h9", "group_id": "g9"}, {"sample_id": "d", "hash": "h2", "group_id": "g1"}]
    f = data.leakage_findings(train, leaky, "group_id", groups_must_separate=True)
    assert sorted(p.code for p in f.problems) == ["prepdata.leak_group", "prepdata.leak_hash", "prepdata.leak_id"]
    assert "1 id(s) in both train and valid (e.g. 'a')" in f.problems[0].message
    f = data.leakage_findings(train, leaky, "group_id", groups_must_separate=False)
    assert [w.code for w in f.warnings] == ["prepdata.leak_group"]
    assert "prepdata.leak_group" not in {p.code for p in f.problems}
