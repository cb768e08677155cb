"""The expected_* model contract (docs/contracts.md; checked against one dummy forward pass)."""

import pytest

from mlloop.errors import MlloopError
from mlloop.runtime import contract
from mlloop.runtime.contract import ContractError, check, enforce, expected_map
from train_fixture import one_thread  # noqa: F401  (a fixture: one torch thread)

# Trains, evaluates or spawns interpreters: `pytest -m "not slow"` leaves it out (see conftest.py).
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]


def statuses(result):
    return {row["key"]: row["status"] for row in result.validation_table}


def test_the_two_settings_are_not_claims():
    cfg = {"expected_stride": 4, "expected_tolerance": 0.1, "expected_allow_missing_keys": True, "backbone": "x"}
    assert expected_map(cfg) == {"stride": 4}


def test_all_claims_met_is_pass_and_the_maps_are_kept():
    result = check({"expected_stride": 4, "expected_channels": 48, "expected_feature_shape": [48, 16, 64]},
                   {"stride": 4, "channels": 48, "feature_shape": (48, 16, 64), "seq_len": 64})
    assert result.overall_result == "PASS"
    assert result.expected_map == {"stride": 4, "channels": 48, "feature_shape": [48, 16, 64]}
    assert result.observed_map["feature_shape"] == [48, 16, 64] and result.observed_map["seq_len"] == 64
    assert [r["key"] for r in result.validation_table] == ["stride", "channels", "feature_shape"]
    assert enforce(result) is result


@pytest.mark.parametrize("expected,observed,reason", [
    (4, 8, "observed 8, expected 4"),
    ([48, 16, 64], [48, 64, 16], "observed 64, expected 16 at [1]"),   # lists compare in order
    ([1, 2], [1, 2, 3], "observed length 3, expected 2"),
    ({"h": 16, "w": 64}, {"h": 16, "w": 32}, "observed 32, expected 64 at w"),  # dicts key by key
    ({"h": 16}, {"h": 16, "w": 64}, "unexpected keys ['w']"),
    ("resnet", "resnet18", 'observed "resnet18", expected "resnet"'),
    (True, 1, "observed 1, expected true"),                  # a bool equals only a bool
    (0.5, 0.6, "observed 0.6, expected 0.5 ± 0"),            # floats exact without a tolerance
])
def test_mismatches_fail_with_the_reason(expected, observed, reason):
    result = check({"expected_x": expected}, {"x": observed})
    assert result.overall_result == "FAIL"
    assert result.validation_table[0]["status"] == "FAIL"
    assert result.validation_table[0]["reason"] == reason
    with pytest.raises(ContractError, match=f"model contract FAIL: x: {reason[:8]}"):
        enforce(result)


def test_floats_within_the_tolerance_pass_and_outside_fail():
    cfg = {"expected_scale": 0.25, "expected_ratio": [0.5, 2.0], "expected_tolerance": 0.01}
    assert check(cfg, {"scale": 0.255, "ratio": [0.505, 1.995]}).overall_result == "PASS"
    failed = check(cfg, {"scale": 0.27, "ratio": [0.5, 2.0]})
    assert statuses(failed) == {"scale": "FAIL", "ratio": "PASS"}
    assert failed.validation_table[0]["reason"] == "observed 0.27, expected 0.25 ± 0.01"


def test_an_unobservable_key_fails_unless_missing_keys_are_allowed():
    strict = check({"expected_stride": 4, "expected_vocab": 97}, {"stride": 4})
    assert statuses(strict) == {"stride": "PASS", "vocab": "FAIL"}
    assert "not observable" in strict.validation_table[1]["reason"]
    lenient = check({"expected_stride": 4, "expected_vocab": 97, "expected_allow_missing_keys": True}, {"stride": 4})
    assert statuses(lenient) == {"stride": "PASS", "vocab": "SKIP(allow_missing)"}
    assert lenient.overall_result == "PASS"


def test_no_claims_is_skip():
    result = check({"backbone": "resnet18", "expected_tolerance": 0.1}, {"stride": 32})
    assert result.overall_result == "SKIP" and result.validation_table == []
    assert enforce(result).overall_result == "SKIP"


def test_a_negative_tolerance_is_refused():
    with pytest.raises(MlloopError, match="expected_tolerance must be a number"):
        check({"expected_x": 1, "expected_tolerance": -1}, {"x": 1})


def test_seed_example_tf_efficientnetv2_s_out_indices_1_is_stride_4_channels_48():
    import timm
    import torch

    backbone = timm.create_model("tf_efficientnetv2_s.in21k_ft_in1k", pretrained=False, features_only=True,
                                 out_indices=[1])
    backbone.eval()
    x = torch.zeros(1, 3, 64, 256)  # H_TARGET=64, the smallest of W_BUCKETS=[256, 384, 512]
    with torch.no_grad():
        features = backbone(x)[-1]
    observed = contract.feature_observations(features, x.shape)
    assert observed == {"channels": 48, "feature_shape": [48, 16, 64], "stride": 4}
    seed_rules = {"H_TARGET": 64, "W_BUCKETS": [256, 384, 512], "MAX_TOKENS": 64,
                  "vision_backbone": "tf_efficientnetv2_s.in21k_ft_in1k", "vision_backbone_out_indices": [1],
                  "expected_stride": 4, "expected_channels": 48, "expected_allow_missing_keys": False}
    assert check(seed_rules, observed).overall_result == "PASS"
    assert check({**seed_rules, "expected_channels": 64}, observed).overall_result == "FAIL"
