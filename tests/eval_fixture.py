"""A tiny project that 03_eval.py can evaluate for real: prepdata, a torch model, best.ckpt.

The model is a linear layer with identity weights over one-hot features, so every prediction
and loss is known by hand: the prediction is the class whose feature is hot (``guess``), the
logits are the features themselves. Tests compute the expected numbers from the records.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

from mlloop.bundle import template

REPO = Path(__file__).resolve().parents[1]
EVAL_TEMPLATE = template("03_eval.py")
CLASSES = ["cat", "dog", "fox"]
# (label, guess): the model predicts ``guess``; 7 of 10 right.
VALID = [("cat", "cat"), ("dog", "dog"), ("fox", "cat"), ("cat", "cat"), ("dog", "fox"),
         ("fox", "fox"), ("cat", "dog"), ("dog", "dog"), ("fox", "fox"), ("cat", "cat")]
TRAIN_LABELS = ["cat"] * 6 + ["dog"] * 4 + ["fox"] * 2

TRAIN_SCRIPT = '''"""Tiny training script (test fixture): the evaluation interface over a linear model."""
import json
from pathlib import Path

import torch
from torch import nn

from mlloop.runtime.checkpoint import load_checkpoint

CLASSES = ["cat", "dog", "fox"]


def build(hparams):
    return nn.Linear(hparams["in_features"], hparams["num_classes"])


def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path, map_location=device)
    model = build(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    return model.to(device).eval()


def eval_records(prepdata_dir, split="valid"):
    path = Path(prepdata_dir) / split / f"{split}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def make_batch(records, prepdata_dir, device):
    x = torch.tensor([r["x"] for r in records], dtype=torch.float32, device=device)
    y = torch.tensor([CLASSES.index(r["label"]) for r in records], device=device)
    return x, y


def predict(model, batch):
    x, y = batch
    logits = model(x)
    losses = nn.functional.cross_entropy(logits, y, reduction="none")
    return [{"prediction": CLASSES[p], "target": CLASSES[t], "loss": float(l)}
            for p, t, l in zip(logits.argmax(1).tolist(), y.tolist(), losses.tolist())]


def write_sample(record, result, folder, prepdata_dir):
    (folder / "input.json").write_text(json.dumps(record["x"]), encoding="utf-8")
    (folder / "output.txt").write_text(result["prediction"] + "\\n", encoding="utf-8")
    (folder / "gt.txt").write_text(result["target"] + "\\n", encoding="utf-8")


def main(argv=None):
    Path("MAIN_RAN").write_text("main ran")
    return {}


if __name__ == "__main__":
    main()
'''

PT_RULES = {
    "seed": 42,
    "dataset_config": {"dataset_id": "v1"},
    "eval_config": {"primary_metric": "accuracy",
                    "metrics": [{"name": "loss", "higher_is_better": False},
                                {"name": "accuracy", "higher_is_better": True},
                                {"name": "macro_f1", "higher_is_better": True}],
                    "infer_samples": 4},
}
BB_RULES = {"seed": 42, "dataset_config": {"dataset_id": "v1", "task_type": "image-classification"}}


def features(guess: str) -> list[float]:
    return [1.0 if c == guess else 0.0 for c in CLASSES] + [0.5]


def expected_losses() -> list[float]:
    """Cross-entropy of logits = the one-hot features (identity weights, zero bias)."""
    out = []
    for label, guess in VALID:
        logits = features(guess)[:3]
        log_z = math.log(sum(math.exp(v) for v in logits))
        out.append(log_z - logits[CLASSES.index(label)])
    return out


def valid_ids() -> list[str]:
    return [f"v{i:03d}" for i in range(len(VALID))]


def write(root: Path, rel: str, content) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content if isinstance(content, str) else json.dumps(content, indent=2), encoding="utf-8")
    return path


def save_checkpoint(path: Path) -> None:
    import torch

    weight = torch.zeros(3, 4)
    weight[0, 0] = weight[1, 1] = weight[2, 2] = 1.0
    torch.save({"epoch": 0, "global_step": 3, "state_dict": {"weight": weight, "bias": torch.zeros(3)},
                "hyper_parameters": {"in_features": 4, "num_classes": 3}}, path)


def build_project(root: Path, vid: str = "v001", script: str = TRAIN_SCRIPT, pt_rules: dict | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    write(root, ".claude/skills/build-baseline/user_defined_rules.json", BB_RULES)
    write(root, ".claude/skills/progressive-training/user_defined_rules.json", pt_rules or PT_RULES)
    base = "dataset/prepdata/v1"
    train = [{"id": f"t{i:03d}", "x": features(label), "label": label} for i, label in enumerate(TRAIN_LABELS)]
    valid = [{"id": sid, "x": features(guess), "label": label} for sid, (label, guess) in zip(valid_ids(), VALID)]
    write(root, f"{base}/train/train.jsonl", "".join(json.dumps(r) + "\n" for r in train))
    write(root, f"{base}/valid/valid.jsonl", "".join(json.dumps(r) + "\n" for r in valid))
    write(root, f"{base}/stats.json", {"dataset_id": "v1", "task_type": "image-classification",
                                       "counts": {"train": len(train), "valid": len(valid)}})
    name = "02_train_baseline.py" if vid == "baseline" else f"02_train_{vid}.py"
    write(root, name, script)
    art = root / "Models" / "Artifacts" / vid
    art.mkdir(parents=True, exist_ok=True)
    save_checkpoint(art / "best.ckpt")
    shutil.copyfile(art / "best.ckpt", art / "last.ckpt")
    write(root, f"Models/Artifacts/{vid}/spec.json", {
        "version_id": vid, "dataset_id": "v1", "parent": None if vid == "baseline" else "baseline", "seed": 42,
        "task_type": "image-classification", "mode": "train", "script": name,
        "model": {"in_features": 4}, "training": {"epochs": 1, "batch_size": 4},
        "best_checkpoint": {"monitor": "val_loss", "mode": "min", "score": 0.75, "epoch": 0, "step": 3},
        "additional_assets": "not_required"})
    shutil.copyfile(EVAL_TEMPLATE, root / "03_eval.py")
    return root
