"""Every metric mlloop computes, in one registry: name, aliases, direction, the fields of
``predict()``'s per-record dict it needs, the task families it fits, its trivial floor and its
compute function. Adding a metric is one ``_add(Metric(...))`` here.

Light at import (``mlloop rules``, ``mlloop check`` and ``mlloop metrics`` read it): torch,
torchmetrics, numpy and scikit-learn are imported inside the compute functions.

Names are case-insensitive, ``-`` reads as ``_``, and aliases resolve to one canonical name
(``auc`` -> ``roc_auc``, ``mAP`` -> ``map``, ``top5_accuracy`` -> ``top_k_accuracy@5``). A name
may carry a parameter after ``@``: ``top_k_accuracy@5``, ``ndcg@10``, ``precision@5`` (ranking),
``map@10`` (ranking), ``mase@7`` (season length), ``binary_f1@churn`` (positive class). The
record representation per family is in docs/contracts.md ("Predictions") and
task_format.yaml's ``predictions`` section. The compute functions (torch side) are in
``mlloop.runtime.metrics.COMPUTE``, keyed by the same names; a test keeps the two in step.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass

CLASSIFICATION, REGRESSION, FORECASTING, TEXT = "classification", "regression", "forecasting", "text"
DETECTION, SEGMENTATION, RANKING, ANY = "detection", "segmentation", "ranking", "any"
FAMILIES = (CLASSIFICATION, REGRESSION, FORECASTING, TEXT, DETECTION, SEGMENTATION, RANKING)

# task_format.yaml's task types (aliases resolved) -> the families of metrics that fit them.
# A task type not listed (custom, or one the user added) fits every metric.
TASK_FAMILIES: dict[str, tuple[str, ...]] = {
    **dict.fromkeys(("text-classification", "text-matching", "image-classification", "audio-classification",
                     "tabular-classification"), (CLASSIFICATION,)),
    "recommender-ranking": (CLASSIFICATION, RANKING),
    **dict.fromkeys(("image-regression", "tabular-regression"), (REGRESSION,)),
    "time-series-forecasting": (FORECASTING, REGRESSION),
    **dict.fromkeys(("text-generation", "image-to-text", "vqa", "document-qa", "ocr-recognition",
                     "ocr-line-recognition", "asr", "multimodal-chat", "ocr-kie", "document-understanding",
                     "token-classification"), (TEXT,)),
    **dict.fromkeys(("object-detection", "ocr-detection"), (DETECTION,)),
    "instance-segmentation": (DETECTION, SEGMENTATION),
    "image-segmentation": (SEGMENTATION,),
    **dict.fromkeys(("text-pair-ranking", "dense-retrieval", "recommender-sequence"), (RANKING,)),
    **dict.fromkeys(("image-generation", "tts"), ()),
}
TASK_ALIASES = {"text-ranking": "text-pair-ranking", "image-captioning": "image-to-text",
                "speech-recognition": "asr", "recommendation": "recommender-ranking"}

# What each family's trivial floor is (runtime/trivial.py computes it with the same code).
FLOORS = {
    "labels": "majority_class and class_prior (labels drawn with the training frequencies)",
    "prior_scores": "the training class prior as constant scores (ROC AUC 0.5, log loss/Brier of the prior)",
    "mean_median": "the mean and the median of the training targets",
    "seasonal_naive": "the seasonal naive forecast (the last season of each record's history repeated)",
    "strings": "the empty string and the most frequent training text",
    "no_boxes": "no boxes at all (mAP 0)",
    "majority_pixel": "every pixel the most frequent class of the evaluated masks",
    "shuffled": "the model's own candidate list in a seeded random order",
    "none": "no trivial predictor (trivial predictors output values, not probabilities or losses)",
}


@dataclass(frozen=True)
class Metric:
    name: str                         # canonical name (without the @parameter)
    higher_is_better: bool
    families: tuple[str, ...]         # task families it fits (ANY: every task)
    needs: tuple[str, ...]            # fields of predict()'s per-record dict
    floor: str                        # key of FLOORS
    description: str
    aliases: tuple[str, ...] = ()
    param: str | None = None          # what @X means: "k", "m" or "label"
    bare: bool = True                 # usable without @X
    default: str | None = None        # @X when absent
    per_sample: bool = False          # decomposes per record (eval_samples.jsonl carries the value)
    corpus: str = "mean"              # how per-record values combine, for the docs

    @property
    def usage(self) -> str:
        if self.param is None:
            return self.name
        return f"{self.name}[@{self.param}]" if self.bare else f"{self.name}@{self.param}"

    def to_dict(self) -> dict:
        return {"name": self.usage, "higher_is_better": self.higher_is_better, "aliases": list(self.aliases),
                "needs": list(self.needs), "families": list(self.families), "floor": self.floor,
                "floor_description": FLOORS[self.floor], "description": self.description,
                "parameter": self.param, "default_parameter": self.default, "per_sample": self.per_sample}


REGISTRY: list[Metric] = []
_BARE: dict[str, Metric] = {}     # name or alias -> metric, written without @
_PARAM: dict[str, Metric] = {}    # name or alias -> metric, written with @X


def _add(m: Metric) -> None:
    REGISTRY.append(m)
    for key in (m.name, *m.aliases):
        key = _norm(key)
        table = _BARE if m.bare else _PARAM
        assert key not in table, f"metric name {key!r} registered twice"
        table[key] = m
        if m.param and m.bare:
            _PARAM.setdefault(key, m)


def _norm(name: str) -> str:
    return name.strip().lower().replace("-", "_")


PV, PT, SC = "prediction", "target", "scores"
C, R, F, T, D, S, K = CLASSIFICATION, REGRESSION, FORECASTING, TEXT, DETECTION, SEGMENTATION, RANKING

# ---- the registry ---------------------------------------------------------------------------
_add(Metric("loss", False, (ANY,), ("loss",), "none", "mean of the per-record losses predict() returned",
            per_sample=True))
_add(Metric("perplexity", False, (TEXT,), ("loss",), "none", "exp of the mean per-record loss (a token-level NLL)"))
# classification from labels (single-label: int/str; multilabel: lists of labels)
_add(Metric("accuracy", True, (C,), (PV, PT), "labels", "fraction of records predicted exactly (multilabel: the whole "
            "label set)", aliases=("acc",), per_sample=True))
_add(Metric("balanced_accuracy", True, (C,), (PV, PT), "labels",
            "recall averaged over the classes present in the targets (scikit-learn's definition)"))
for _avg in ("macro", "micro", "weighted", "binary"):
    for _m in ("precision", "recall", "f1"):
        _add(Metric(f"{_avg}_{_m}", True, (C,), (PV, PT), "labels",
                    f"{_avg}-averaged {_m}" + (" of the positive class (@label; default: the last label in "
                                                "sorted order, as scikit-learn's pos_label=1 for 0/1)"
                                                if _avg == "binary" else ""),
                    aliases=(f"{_m}_{_avg}",), param="label" if _avg == "binary" else None))
for _m in ("precision", "recall", "f1"):
    _add(Metric(_m, True, (C,), (PV, PT), "labels", f"macro-averaged {_m} (the same value as macro_{_m}); "
                f"{_m}@k is the ranking metric" if _m != "f1" else "macro-averaged F1 (the same value as macro_f1)"))
_add(Metric("mcc", True, (C,), (PV, PT), "labels", "Matthews correlation coefficient (scikit-learn)",
            aliases=("matthews_corrcoef", "matthews")))
_add(Metric("cohen_kappa", True, (C,), (PV, PT), "labels", "Cohen's kappa (scikit-learn)",
            aliases=("kappa", "cohen_kappa_score")))
# classification from scores ({class: probability} per record)
_add(Metric("top_k_accuracy", True, (C,), (SC, PT), "prior_scores",
            "target among the k highest-scored classes (a tie counts the expected hit in a random order, "
            "so constant scores give k/classes); top5_accuracy = @5",
            param="k", bare=False, per_sample=True))
_add(Metric("roc_auc", True, (C,), (SC, PT), "prior_scores",
            "ROC AUC (scikit-learn): binary on the positive class, multiclass one-vs-rest macro over the classes "
            "present in the targets, multilabel macro over labels", aliases=("auc", "auroc", "rocauc", "roc_auc_score")))
_add(Metric("average_precision", True, (C,), (SC, PT), "prior_scores",
            "average precision = area under the precision-recall curve as scikit-learn's step sum; binary on the "
            "positive class, else macro one-vs-rest", aliases=("pr_auc", "prauc", "auprc", "ap", "average_precision_score")))
_add(Metric("log_loss", False, (C,), (SC, PT), "prior_scores",
            "mean negative log probability of the target class (natural log; probabilities clipped at float64 eps)",
            aliases=("logloss", "nll", "cross_entropy_loss"), per_sample=True))
_add(Metric("brier", False, (C,), (SC, PT), "prior_scores",
            "Brier score: binary (p_positive - y)^2, multiclass sum over classes of (p_c - y_c)^2, averaged",
            aliases=("brier_score", "brier_score_loss"), per_sample=True))
# regression and forecasting (numbers, or equal-length lists of numbers flattened)
_add(Metric("mse", False, (R, F), (PV, PT), "mean_median", "mean squared error (torchmetrics)", per_sample=True))
_add(Metric("rmse", False, (R, F), (PV, PT), "mean_median", "root of the mean squared error (torchmetrics)",
            per_sample=True))
_add(Metric("mae", False, (R, F), (PV, PT), "mean_median", "mean absolute error (torchmetrics)", per_sample=True))
_add(Metric("mape", False, (R, F), (PV, PT), "mean_median",
            "mean absolute percentage error as a fraction (torchmetrics; |target| clamped at 1.17e-6)", per_sample=True))
_add(Metric("smape", False, (R, F), (PV, PT), "mean_median",
            "symmetric MAPE as torchmetrics defines it: mean 2|p-t|/(|p|+|t|), range 0..2", per_sample=True))
_add(Metric("r2", True, (R, F), (PV, PT), "mean_median", "coefficient of determination (torchmetrics)",
            aliases=("r2_score", "r_squared")))
_add(Metric("mase", False, (F,), (PV, PT, "history"), "seasonal_naive",
            "mean absolute scaled error: each record's MAE over the in-sample MAE of the seasonal naive forecast "
            "of its history (season @m, default 1), averaged over records", param="m", default="1", per_sample=True))
# sequences
_add(Metric("cer", False, (T,), (PV, PT), "strings", "character error rate: total edits / total target characters",
            per_sample=True))
_add(Metric("wer", False, (T,), (PV, PT), "strings", "word error rate: total word edits / total target words",
            per_sample=True))
_add(Metric("bleu", True, (T,), (PV, PT), "strings", "corpus BLEU, 4-gram, one reference (torchmetrics)"))
_add(Metric("chrf", True, (T,), (PV, PT), "strings", "corpus chrF (torchmetrics)"))
_add(Metric("exact_match", True, (ANY,), (PV, PT), "strings", "fraction of predictions equal to their target",
            aliases=("em",), per_sample=True))
# detection (prediction {boxes, labels, scores}, target {boxes, labels}; xyxy pixels)
_add(Metric("map", True, (D,), (PV, PT), "no_boxes", "COCO mAP over IoU 0.50:0.95 (torchmetrics MeanAveragePrecision)",
            aliases=("mean_average_precision", "map_50_95")))
_add(Metric("map_50", True, (D,), (PV, PT), "no_boxes", "mAP at IoU 0.50 (torchmetrics)", aliases=("map50", "ap50")))
_add(Metric("map_75", True, (D,), (PV, PT), "no_boxes", "mAP at IoU 0.75 (torchmetrics)", aliases=("map75", "ap75")))
# segmentation (masks of class ids; corpus values from the pixel counts summed over records)
_add(Metric("miou", True, (S,), (PV, PT), "majority_pixel",
            "mean over classes (present in prediction or target) of pixel IoU, counts summed over all records",
            aliases=("mean_iou", "iou", "jaccard")))
_add(Metric("dice", True, (S,), (PV, PT), "majority_pixel", "mean over classes of 2TP/(2TP+FP+FN), counts summed",
            aliases=("dice_score", "mean_dice")))
_add(Metric("pixel_accuracy", True, (S,), (PV, PT), "majority_pixel", "fraction of pixels labelled correctly",
            aliases=("pixel_acc",)))
# ranking and retrieval (prediction: ranked item ids, best first; target: relevant ids, or {id: gain})
_add(Metric("ndcg", True, (K,), (PV, PT), "shuffled", "normalised DCG (log2 discount, gains 1 or from {id: gain}) "
            "over the top k (@k; default the whole list)", param="k", per_sample=True))
_add(Metric("precision", True, (K,), (PV, PT), "shuffled", "relevant items among the top k, over k",
            param="k", bare=False, per_sample=True))
_add(Metric("recall", True, (K,), (PV, PT), "shuffled", "relevant items among the top k, over all relevant items",
            param="k", bare=False, per_sample=True))
_add(Metric("map", True, (K,), (PV, PT), "shuffled",
            "mean average precision at k: sum of precision@i at each relevant i <= k, over min(k, #relevant)",
            param="k", bare=False, per_sample=True))
_add(Metric("mrr", True, (K,), (PV, PT), "shuffled", "mean reciprocal rank of the first relevant item (0 if none)",
            aliases=("mean_reciprocal_rank",), per_sample=True))

_TOP_K = re.compile(r"top_?(\d+)(?:_acc|_accuracy)?")


@dataclass(frozen=True)
class Parsed:
    metric: Metric
    param: str | None

    @property
    def name(self) -> str:
        """The canonical spelling: the registry name, with ``@param`` when given."""
        return self.metric.name + (f"@{self.param}" if self.param is not None else "")


def parse(name: str) -> Parsed | None:
    """The metric ``name`` means, or None when the registry does not know it."""
    if not isinstance(name, str) or not name.strip():
        return None
    raw = name.strip()
    base, at, param = raw.partition("@")
    key = _norm(base)
    top = _TOP_K.fullmatch(key)
    if top and not at:
        key, at, param = "top_k_accuracy", "@", top.group(1)
    if not at:
        m = _BARE.get(key)
        return Parsed(m, None) if m is not None else None
    m = _PARAM.get(key)
    if m is None or m.param is None or not param:
        return None
    if m.param in ("k", "m"):
        if not param.isdigit() or int(param) < 1:
            return None
        param = str(int(param))
    return Parsed(m, param)


def canonical(name: str) -> str | None:
    p = parse(name)
    return p.name if p else None


def spellings() -> list[str]:
    """Every way of writing a metric (for 'did you mean')."""
    out = [n for n in _BARE] + [f"{n}@{_PARAM[n].param}" for n in _PARAM if _PARAM[n].param]
    return sorted(set(out) | {"top_k_accuracy@5", "ndcg@10", "precision@10", "recall@10", "map@10"})


def closest(name: str) -> str | None:
    key, pool = _norm(name), spellings()
    match = difflib.get_close_matches(key, pool, n=1, cutoff=0.5) or \
        difflib.get_close_matches(key.partition("@")[0], pool, n=1, cutoff=0.5)
    if not match:
        return None
    p = parse(match[0])
    return p.name if p else match[0]


def unknown_message(name: str) -> str:
    near = closest(name)
    hint = f"; the closest known metric is {near!r}" if near else ""
    return f"{name!r} is not a metric mlloop knows{hint} (`mlloop metrics` lists them)"


def higher_is_better(name: str) -> bool | None:
    p = parse(name)
    return p.metric.higher_is_better if p else None


def task_families(task_type: str | None) -> tuple[str, ...] | None:
    """Families of metrics that fit ``task_type``; None for a task type not listed (fits all)."""
    if not isinstance(task_type, str):
        return None
    return TASK_FAMILIES.get(TASK_ALIASES.get(task_type, task_type))


def fits(name: str, task_type: str | None) -> bool:
    p = parse(name)
    families = task_families(task_type)
    if p is None or families is None or ANY in p.metric.families:
        return True
    return bool(set(p.metric.families) & set(families))


def for_task(task_type: str | None) -> list[Metric]:
    families = task_families(task_type)
    return [m for m in REGISTRY if families is None or ANY in m.families or set(m.families) & set(families)]


def listing(task_type: str | None = None) -> list[dict]:
    return [m.to_dict() for m in (for_task(task_type) if task_type else REGISTRY)]


__all__ = ["Metric", "Parsed", "REGISTRY", "parse", "canonical", "closest", "unknown_message", "higher_is_better",
           "fits", "task_families", "listing", "FAMILIES"]
