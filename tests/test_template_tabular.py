"""The tabular template's feature encoding (no training)."""

import math

from train_fixture import TRAIN_TEMPLATES, load_script


def test_nan_and_inf_count_as_missing_and_leave_the_column_finite():
    tabular = load_script(TRAIN_TEMPLATES["tabular"], "tabular_encoding")
    records = [{"features": {"x": v}} for v in (1.0, 3.0, float("nan"), float("inf"), None)]
    stats = tabular.feature_stats(records)
    assert stats["x"] == {"type": "numeric", "mean": 2.0, "std": 1.0, "missing": 3}
    rows = [tabular.encode(r["features"], stats) for r in records]
    assert rows == [[-1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]
    assert all(math.isfinite(v) for row in rows for v in row)
