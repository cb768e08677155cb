"""Text classification: a word-level tokenizer fitted on the training split, embeddings and a small
1-D CNN (or tiny transformer) encoder, pooled into a linear head; trained from scratch with Lightning.

Copy this file to the project root as 02_train_baseline.py (the smoke test of build-baseline
Step 2) or 02_train_vNNN.py (full training); the mode follows the file name.

Usage (from the project root):
    python 02_train_baseline.py                    # contract -> probe -> batch search -> subset run
    python 02_train_v001.py                        # full training of v001
    python 02_train_v001.py --ENCODER=transformer --LR=1e-3

Reads dataset/prepdata/<dataset_id>/{train,valid}/<split>.jsonl (id, input, label) and
common/label_map.json. The tokenizer (HF `tokenizers`, WordLevel: NFKC + lower case, split on
whitespace and punctuation, words seen fewer than MIN_FREQUENCY times -> [UNK]) is trained on the
whole training split only, never on valid or test, and saved as additional_assets/tokenizer.json;
load_for_eval rebuilds the same encoding from that file and refuses one that changed. Nothing is
downloaded. Writes Models/Artifacts/<version>/: best.ckpt, last.ckpt, spec.json, logs/version_0/,
additional_assets/{tokenizer.json,label_map.json}, _tests/. predict() gives softmax scores per
class, so roc_auc, log_loss and top_k_accuracy can be computed.
Run switches (any script, also --KEY=VALUE): SMOKE=True forces the smoke test, DETERMINISTIC=True,
PRECISION="bf16-mixed", CPU_DEVICES=2 (DDP on CPU processes); after a failure, rerun with
--RETRY_CAUSE="why it failed" --RETRY_CHANGE="what you changed" to fill the retry history.
"""

import hashlib
import json
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mlloop.script import MlloopError, entry, load_checkpoint, read_index, start

# ---- settings (UPPER_CASE; override one run with --KEY=VALUE) ------------------------------------
VOCAB_SIZE = 20000       # most frequent training words kept (with [PAD] and [UNK]); the rest become [UNK]
MIN_FREQUENCY = 2        # a word seen once in training is a typo or an id more often than a pattern
MAX_LENGTH = 128         # tokens per text; longer texts are cut (profile.md's length column shows the spread)
ENCODER = "cnn"          # "cnn": 1-D convolutions, fast on CPU; "transformer": a tiny encoder that sees word order
EMBED_DIM = 64           # word embedding width (trained from scratch)
HIDDEN = 128             # cnn: channels per conv layer; transformer: feed-forward width
LAYERS = 1               # conv layers or transformer layers
KERNEL_SIZE = 3          # cnn: words per convolution window (3 = trigrams)
HEADS = 4                # transformer: attention heads (EMBED_DIM must divide by it)
POOL = "max"             # "max" or "mean" over the real (non-padding) tokens
DROPOUT = 0.1            # on embeddings and before the head; raise it when valid loss climbs while train falls
LR = 2e-3                # AdamW learning rate; embeddings from scratch like 1e-3..3e-3
WEIGHT_DECAY = 1e-4      # AdamW weight decay
LABEL_SMOOTHING = 0.0    # cross-entropy label smoothing (noisy labels)
BATCH_SIZE = None        # None: training_config.batch_size, else derived from the smoke test's memory fit
NUM_WORKERS = 0          # texts are encoded once in setup: worker processes cost more than they save
TRAINER = {}             # lightning.Trainer arguments, e.g. {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

TASK_TYPES = ("text-classification",)
FROM_RULES = {"ENCODER": "model_config.encoder", "EMBED_DIM": "model_config.embed_dim",
              "MAX_LENGTH": "model_config.max_length"}
PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1: the trainer assigns special tokens first


# ---- data -----------------------------------------------------------------------------------------
def read_label_map(prepdata_dir, records):
    """{label: index}: common/label_map.json from the pipeline, else the sorted labels seen."""
    path = Path(prepdata_dir) / "common" / "label_map.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    return {label: i for i, label in enumerate(sorted({str(r["label"]) for r in records}))}


def train_tokenizer(texts, vocab_size, min_frequency):
    """A WordLevel tokenizer fitted on ``texts`` (the training split); deterministic for the same texts."""
    tokenizer = Tokenizer(models.WordLevel(unk_token=UNK))
    tokenizer.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.train_from_iterator(texts, trainers.WordLevelTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[PAD, UNK], show_progress=False))
    return tokenizer


def encode(tokenizer, texts, max_length):
    """Token ids per text, cut to ``max_length``; a text with no word at all is one [UNK]."""
    unk = tokenizer.token_to_id(UNK)
    return [e.ids[:max_length] or [unk] for e in tokenizer.encode_batch([str(t) for t in texts])]


def pad_batch(id_lists):
    """[B, longest] LongTensor padded with [PAD] (id 0): each batch is only as long as its longest text."""
    out = torch.zeros(len(id_lists), max(len(ids) for ids in id_lists), dtype=torch.long)
    for i, ids in enumerate(id_lists):
        out[i, :len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out


def collate(items):
    return pad_batch([ids for ids, _ in items]), torch.tensor([y for _, y in items], dtype=torch.long)


class TextDataset(Dataset):
    def __init__(self, records, tokenizer, label_map, max_length):
        self.ids = encode(tokenizer, [r["input"] for r in records], max_length)
        self.labels = [label_map[str(r["label"])] for r in records]

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.ids[i], self.labels[i]


class TextData(L.LightningDataModule):
    """Train/valid texts; run.records() gives the smoke test's seeded subset or the whole split."""

    def __init__(self, run, tokenizer, label_map, max_length, num_workers, batch_size=32):
        super().__init__()
        self.run, self.tokenizer, self.label_map = run, tokenizer, label_map
        self.max_length, self.num_workers, self.batch_size = max_length, num_workers, batch_size
        self.train_dataset = self.valid_dataset = None

    def setup(self, stage=None):
        args = (self.tokenizer, self.label_map, self.max_length)
        self.train_dataset = TextDataset(self.run.records("train"), *args)
        self.valid_dataset = TextDataset(self.run.records("valid"), *args)

    def _loader(self, dataset, shuffle):
        # drop_last in training: a last batch of one sample gives a noisy step (runtime.training.count_steps agrees)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          collate_fn=collate, drop_last=shuffle and len(dataset) > self.batch_size,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.valid_dataset, shuffle=False)


# ---- model ----------------------------------------------------------------------------------------
class TextClassifier(L.LightningModule):
    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)  # a plain dict: both checkpoints load with weights_only=True
        h = self.hparams
        if h.encoder not in ("cnn", "transformer") or h.pool not in ("max", "mean"):
            raise MlloopError(f"ENCODER must be 'cnn' or 'transformer' and POOL 'max' or 'mean', "
                              f"got {h.encoder!r} and {h.pool!r}.")
        self.embed = nn.Embedding(h.vocab_size, h.embed_dim, padding_idx=0)
        self.drop = nn.Dropout(h.dropout)
        if h.encoder == "cnn":
            widths = [h.embed_dim] + [h.hidden] * h.layers
            self.convs = nn.ModuleList(nn.Conv1d(a, b, h.kernel_size, padding=h.kernel_size // 2)
                                       for a, b in zip(widths, widths[1:]))
            width = widths[-1]
        else:
            self.position = nn.Embedding(h.max_length, h.embed_dim)
            layer = nn.TransformerEncoderLayer(h.embed_dim, h.heads, h.hidden, h.dropout, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, h.layers, enable_nested_tensor=False)
            width = h.embed_dim
        self.head = nn.Linear(width, h.num_classes)

    def features(self, ids):
        """[B, L] token ids -> [B, width]: the encoder's output pooled over the real tokens."""
        mask = ids != 0
        x = self.drop(self.embed(ids))
        if self.hparams.encoder == "cnn":
            x, keep = x.transpose(1, 2), mask[:, None]
            for conv in self.convs:  # padding stays zero, so a text's score does not depend on its batch
                x = F.relu(conv(x))[..., :ids.shape[1]] * keep  # [:L]: an even kernel yields one extra position
            x = x.transpose(1, 2)
        else:
            x = self.encoder(x + self.position(torch.arange(ids.shape[1], device=ids.device)), src_key_padding_mask=~mask)
        if self.hparams.pool == "max":
            return x.masked_fill(~mask[..., None], float("-inf")).amax(1)
        return (x * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1)

    def forward(self, ids):
        return self.head(self.drop(self.features(ids)))

    def training_step(self, batch, batch_idx):
        ids, y = batch
        # the returned loss is logged by mlloop as train_loss_step / train_loss_epoch
        return F.cross_entropy(self(ids), y, label_smoothing=self.hparams.label_smoothing)

    def validation_step(self, batch, batch_idx):
        ids, y = batch
        logits = self(ids)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self.log("val_accuracy", (logits.argmax(1) == y).float().mean(), on_epoch=True, sync_dist=True)

    def score_batch(self, batch):
        """The task metric on one batch (the learnability probe's check)."""
        ids, y = batch
        return {"accuracy": (self(ids).argmax(1) == y).float().mean().item()}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def observe(model):
    """observed_* for the expected_* contract: one dummy forward pass, batch 1, one [UNK] token."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(torch.ones(1, 1, dtype=torch.long, device=model.device))
    model.train(was_training)
    h = model.hparams
    return {"num_classes": logits.shape[-1], "vocab_size": h.vocab_size, "embed_dim": h.embed_dim,
            "max_length": h.max_length, "encoder": h.encoder, "output_shape": list(logits.shape)}


# ---- evaluation interface (called by 03_eval.py; docs/contracts.md) --------------------------------
_EVAL = {}  # load_for_eval keeps the version's tokenizer here, so make_batch encodes as training did


def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path)  # checked, then torch.load(weights_only=True); no fallback
    model = TextClassifier(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    path = Path(checkpoint_path).parent / "additional_assets" / "tokenizer.json"
    if not path.is_file():
        raise MlloopError(f"{path}: the tokenizer of this checkpoint is missing; retrain the version.")
    text = path.read_text(encoding="utf-8")
    if hashlib.sha256(text.encode("utf-8")).hexdigest() != model.hparams.tokenizer_sha256:
        raise MlloopError(f"{path}: not the tokenizer this checkpoint was trained with (sha256 differs); retrain.")
    _EVAL.update(tokenizer=Tokenizer.from_str(text), max_length=model.hparams.max_length)
    return model.eval().to(device)


def eval_records(prepdata_dir, split="valid"):
    return read_index(prepdata_dir, split)


def make_batch(records, prepdata_dir, device):
    ids = pad_batch(encode(_EVAL["tokenizer"], [r["input"] for r in records], _EVAL["max_length"]))
    return {"ids": ids.to(device), "labels": [None if r.get("label") is None else str(r["label"]) for r in records]}


def predict(model, batch):
    logits = model(batch["ids"]).float()
    classes = list(model.hparams.classes)
    index = {c: i for i, c in enumerate(classes)}
    out = []
    probabilities = logits.softmax(-1).tolist()  # scores: roc_auc, log_loss, top_k_accuracy need them
    for row, label, probs in zip(logits, batch["labels"], probabilities):
        loss = None
        if label in index:
            loss = F.cross_entropy(row[None], torch.tensor([index[label]], device=row.device)).item()
        out.append({"prediction": classes[int(row.argmax())], "target": label, "loss": loss,
                    "scores": dict(zip(classes, probs))})
    return out


def write_sample(record, result, folder, prepdata_dir):
    folder = Path(folder)
    (folder / "input.txt").write_text(f"{record['input']}\n", encoding="utf-8")
    (folder / "output.txt").write_text(f"{result['prediction']}\n", encoding="utf-8")
    (folder / "gt.txt").write_text(f"{result['target']}\n", encoding="utf-8")
    top = sorted(result["scores"].items(), key=lambda kv: -kv[1])
    (folder / "scores.txt").write_text("".join(f"{c}\t{p:.4f}\n" for c, p in top), encoding="utf-8")


# ---- Trainer options (forwarded to lightning.Trainer; the harness refuses the keys it owns) -------
def callbacks():
    """Extra Lightning callbacks for this version, e.g. [EarlyStopping("val_loss", patience=3)] or
    [StochasticWeightAveraging(swa_lrs=1e-4)] from lightning.pytorch.callbacks; [] for none."""
    return []


# ---- main -----------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    run = start(__file__, globals(), argv, from_rules=FROM_RULES, task_types=TASK_TYPES)
    s = run.settings
    label_map = read_label_map(run.prepdata_dir, run.full_index("train") + run.full_index("valid"))
    classes = [label for label, _ in sorted(label_map.items(), key=lambda kv: kv[1])]
    # the training split only: a word first seen in valid must be [UNK] there, as it will be in production
    tokenizer = train_tokenizer([r["input"] for r in run.full_index("train")], s["VOCAB_SIZE"], s["MIN_FREQUENCY"])
    tokenizer_json = tokenizer.to_str()
    model = TextClassifier({
        "vocab_size": tokenizer.get_vocab_size(), "max_length": s["MAX_LENGTH"], "encoder": s["ENCODER"],
        "embed_dim": s["EMBED_DIM"], "hidden": s["HIDDEN"], "layers": s["LAYERS"], "kernel_size": s["KERNEL_SIZE"],
        "heads": s["HEADS"], "pool": s["POOL"], "dropout": s["DROPOUT"], "num_classes": len(classes),
        "classes": classes, "lr": s["LR"], "weight_decay": s["WEIGHT_DECAY"], "label_smoothing": s["LABEL_SMOOTHING"],
        "tokenizer_sha256": hashlib.sha256(tokenizer_json.encode("utf-8")).hexdigest()})
    run.log(f"tokenizer: {tokenizer.get_vocab_size()} tokens from {len(run.full_index('train'))} training texts "
            f"(min frequency {s['MIN_FREQUENCY']})")
    run.save_asset("tokenizer.json", tokenizer_json)
    run.save_asset("label_map.json", label_map)
    return run.fit(model, TextData(run, tokenizer, label_map, s["MAX_LENGTH"], s["NUM_WORKERS"]), observe=observe)


if __name__ == "__main__":
    raise SystemExit(entry(main))
