"""Object detection: a timm feature backbone, a small top-down neck and a CenterNet head, from scratch.

Copy this file to the project root as 02_train_baseline.py (the smoke test of build-baseline
Step 2) or 02_train_vNNN.py (full training); the mode follows the file name.

Usage (from the project root):
    python 02_train_baseline.py                    # contract -> probe -> batch search -> subset run
    python 02_train_v001.py                        # full training of v001
    python 02_train_v001.py --LR=3e-3 --NUM_WORKERS=0 --SCORE_THRESHOLD=0.1

Why CenterNet ("Objects as Points", 2019): one stride-4 map predicts per-class centre heatmaps, box
sizes and sub-pixel offsets. No anchors or box matching, plain tensor losses: it trains from scratch
on a CPU in minutes, and encoding, decoding (3x3 peaks, top-k) and NMS (torchvision.ops) are readable
here; torchvision's FasterRCNN/RetinaNet/FCOS resize to 800 px and hide anchors and decoding.

Boxes: [x1, y1, x2, y2] in pixels of the original image (x right, y down; torchvision's "xyxy"). Reads
<split>.jsonl (id, image_path, label_path, width, height) and label/<id>.json = {"boxes": [{"bbox":
[x1, y1, x2, y2], "label": "car"}]} ([] for an image without objects; COCO's [x, y, w, h] is
[x, y, x + w, y + h], converted by 01_data_pipeline.py). predict() returns {"boxes", "labels",
"scores"} per image (map, map_50). Writes Models/Artifacts/<version>/ like every template, with
additional_assets/label_map.json; 03_eval.py evaluates through the interface below.
Run switches (any script, also --KEY=VALUE): SMOKE=True forces the smoke test, DETERMINISTIC=True,
PRECISION="bf16-mixed", CPU_DEVICES=2 (DDP on CPU processes); after a failure, rerun with
--RETRY_CAUSE="why it failed" --RETRY_CHANGE="what you changed" to fill the retry history.
"""

import functools
import json
from pathlib import Path

import lightning as L
import timm
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchmetrics.detection import MeanAveragePrecision
from torchvision import transforms
from torchvision.ops import batched_nms, clip_boxes_to_image

from mlloop.script import entry, boxes as box_labels, feature_observations, load_checkpoint, read_index, start

# ---- settings (UPPER_CASE; override one run with --KEY=VALUE) ------------------------------------
BACKBONE = "resnet18"     # any timm model that supports features_only; test_resnet for quick checks
PRETRAINED = False        # True downloads ImageNet weights (needs network access)
OUT_INDICES = [1, 2, 3]   # feature levels (timm feature_info index) fused top-down; the first sets the output stride
IMAGE_SIZE = None         # None: from the data (median side, a multiple of 32, ≤ 224); images are resized, boxes scaled
NECK_CHANNELS = 64        # width of the neck and the heads
GAUSSIAN_ALPHA = 0.54     # centre heatmap sigma = alpha * box side / 6 (TTFNet): larger = softer targets
SIZE_WEIGHT = 0.1         # weight of the box-size L1 loss against the heatmap focal loss (CenterNet's 0.1)
SCORE_THRESHOLD = 0.05    # detections below this score are dropped before NMS (low: mAP rewards recall)
NMS_IOU = 0.5             # class-wise NMS IoU; CenterNet's peak picking already removes most duplicates
MAX_DETECTIONS = 50       # top-k heatmap peaks per image
LR = 2e-3                 # AdamW learning rate: from scratch, a small detector likes 1e-3..3e-3
WEIGHT_DECAY = 1e-4       # AdamW weight decay
HFLIP = True              # random horizontal flips of image and boxes in training
BATCH_SIZE = None         # None: training_config.batch_size, else derived from the smoke test's memory fit
NUM_WORKERS = None        # None: from the usable CPUs and dataset size; 0 loads in the main process
TRAINER = {}              # lightning.Trainer arguments, e.g. {"gradient_clip_val": 1.0, "accumulate_grad_batches": 4}

TASK_TYPES = ("object-detection",)
FROM_RULES = {"BACKBONE": "model_config.backbone", "PRETRAINED": "model_config.pretrained",
              "IMAGE_SIZE": "model_config.image_size", "OUT_INDICES": "model_config.out_indices"}


# ---- data -----------------------------------------------------------------------------------------
def class_names(split_dir, records):
    """The sorted labels of the training boxes (box_labels.read checks each file: one line naming it)."""
    return sorted({label for r in records for label in box_labels.read(Path(split_dir) / r["label_path"])[1]})


class DetectionDataset(Dataset):
    """(image tensor, boxes scaled to the input, labels, boxes in image pixels, the image's (width, height))."""

    def __init__(self, records, split_dir, image_size, mean, std, hflip=False):
        self.records, self.split_dir, self.size, self.hflip = records, Path(split_dir), image_size, hflip
        self.to_tensor = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        r = self.records[i]
        with Image.open(self.split_dir / r["image_path"]) as image:
            image = image.convert("RGB")
        boxes, labels = box_labels.read(self.split_dir / r["label_path"])
        w, h = image.size
        if self.hflip and torch.rand(()) < 0.5:  # the boxes move with the image (the targets mAP is scored on, too)
            image, boxes = image.transpose(Image.FLIP_LEFT_RIGHT), [[w - x2, y1, w - x1, y2] for x1, y1, x2, y2 in boxes]
        scaled = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4) * torch.tensor([self.size / w, self.size / h] * 2)
        image = image.resize((self.size, self.size), Image.BILINEAR)
        return self.to_tensor(image), scaled, labels, boxes, (w, h)


def collate(items, classes, stride, image_size, alpha):
    """Images, CenterNet targets on the stride map (heatmap, size, offset at each centre) and the originals."""
    index = {c: k for k, c in enumerate(classes)}
    side = -(-image_size // stride)  # ceil: a stride-2 convolution rounds up
    n = max(1, max(len(it[2]) for it in items))
    heat = torch.zeros(len(items), len(classes), side, side)
    size, offset = torch.zeros(len(items), n, 2), torch.zeros(len(items), n, 2)
    where, mask = torch.zeros(len(items), n, dtype=torch.long), torch.zeros(len(items), n)
    grid_y, grid_x = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    for b, (_, scaled, labels, _, _) in enumerate(items):
        for j, (box, label) in enumerate(zip(scaled / stride, labels)):
            if label not in index:  # a class never seen in training cannot be a target
                continue
            cx, cy, bw, bh = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2, box[2] - box[0], box[3] - box[1]
            ix, iy = int(cx.clamp(0, side - 1)), int(cy.clamp(0, side - 1))
            sx, sy = max(alpha * bw / 6, 0.3), max(alpha * bh / 6, 0.3)
            g = torch.exp(-((grid_x - ix) ** 2 / (2 * sx ** 2) + (grid_y - iy) ** 2 / (2 * sy ** 2)))
            heat[b, index[label]] = torch.maximum(heat[b, index[label]], g)  # the centre itself is exactly 1
            size[b, j], offset[b, j] = torch.stack([bw, bh]), torch.stack([cx - ix, cy - iy])
            where[b, j], mask[b, j] = iy * side + ix, 1.0
    return {"images": torch.stack([it[0] for it in items]), "heat": heat, "size": size, "offset": offset,
            "where": where, "mask": mask, "boxes": [it[3] for it in items], "labels": [it[2] for it in items],
            "sizes": [it[4] for it in items]}


class DetectionData(L.LightningDataModule):
    def __init__(self, run, classes, image_size, stride, alpha, mean, std, hflip, num_workers, batch_size=16):
        super().__init__()
        self.run, self.image = run, (image_size, mean, std)
        self.hflip, self.num_workers, self.batch_size = hflip, num_workers, batch_size
        self.collate_fn = functools.partial(collate, classes=classes, stride=stride, image_size=image_size, alpha=alpha)
        self.train_dataset = self.valid_dataset = None

    def setup(self, stage=None):
        root = self.run.prepdata_dir
        self.train_dataset = DetectionDataset(self.run.records("train"), root / "train", *self.image, hflip=self.hflip)
        self.valid_dataset = DetectionDataset(self.run.records("valid"), root / "valid", *self.image)

    def _loader(self, dataset, shuffle):
        # drop_last in training: a last batch of one sample breaks BatchNorm (runtime.training.count_steps agrees)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          drop_last=shuffle and len(dataset) > self.batch_size, collate_fn=self.collate_fn,
                          pin_memory=torch.cuda.is_available(), persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader(self.train_dataset, shuffle=True)

    def val_dataloader(self):
        return self._loader(self.valid_dataset, shuffle=False)


# ---- model ----------------------------------------------------------------------------------------
def head(channels, out, bias=0.0):
    layers = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, out, 1))
    nn.init.constant_(layers[-1].bias, bias)
    return layers


class CenterNet(L.LightningModule):
    def __init__(self, hparams: dict):
        super().__init__()
        self.save_hyperparameters(hparams)  # a plain dict: both checkpoints load with weights_only=True
        h = self.hparams
        self.backbone = timm.create_model(h.backbone, pretrained=h.pretrained, features_only=True,
                                          out_indices=list(h.out_indices))
        self.stride = self.backbone.feature_info.reduction()[0]  # the output map: the finest level fused
        n = h.neck_channels
        self.lateral = nn.ModuleList(nn.Conv2d(c, n, 1) for c in self.backbone.feature_info.channels())  # sized by timm
        self.smooth = nn.Sequential(nn.Conv2d(n, n, 3, padding=1, bias=False), nn.BatchNorm2d(n), nn.ReLU(inplace=True))
        self.heat = head(n, len(h.classes), bias=-2.19)  # sigmoid(-2.19) = 0.1: a calm start (CenterNet)
        self.size, self.offset = head(n, 2), head(n, 2)
        cfg = timm.data.resolve_model_data_config(self.backbone)
        self.mean, self.std = list(cfg["mean"]), list(cfg["std"])

    def forward(self, images):
        """(B, 3, S, S) -> heatmap logits (B, classes, S/stride, S/stride), size and offset (B, 2, ., .)."""
        features = self.backbone(images)
        y = self.lateral[-1](features[-1])
        for f, lateral in zip(reversed(features[:-1]), reversed(self.lateral[:-1])):
            y = lateral(f) + F.interpolate(y, size=f.shape[-2:], mode="nearest")
        y = self.smooth(y)
        return self.heat(y), self.size(y), self.offset(y)

    def losses(self, outputs, batch):
        """Per image: CenterNet's penalty-reduced focal loss + L1 of size and offset at the centres, / objects."""
        heat, size, offset = (o.float() for o in outputs)
        gt, pos = batch["heat"], batch["heat"].eq(1).float()
        focal = -(F.logsigmoid(heat) * (1 - heat.sigmoid()) ** 2 * pos
                  + F.logsigmoid(-heat) * heat.sigmoid() ** 2 * (1 - gt) ** 4 * (1 - pos)).flatten(1).sum(1)
        mask, where = batch["mask"].unsqueeze(-1), batch["where"].unsqueeze(1).expand(-1, 2, -1)
        at = lambda m: m.flatten(2).gather(2, where).transpose(1, 2)  # noqa: E731 - (B, objects, 2)
        l1 = lambda p, t: ((p - t).abs() * mask).flatten(1).sum(1)  # noqa: E731
        regression = self.hparams.size_weight * l1(at(size), batch["size"]) + l1(at(offset), batch["offset"])
        return (focal + regression) / batch["mask"].sum(1).clamp(min=1)

    @torch.no_grad()
    def decode(self, outputs, sizes):
        """Per image {boxes (xyxy, original pixels), labels (class index), scores}: 3x3 peaks, top-k, NMS."""
        h = self.hparams
        heat, size, offset = (o.float() for o in outputs)
        heat = heat.sigmoid()
        peaks = heat * (F.max_pool2d(heat, 3, stride=1, padding=1) == heat)
        batch, classes, rows, cols = heat.shape
        scores, flat = peaks.flatten(1).topk(min(h.max_detections, classes * rows * cols))
        label, pixel = flat // (rows * cols), flat % (rows * cols)
        pick = lambda m: m.flatten(2).gather(2, pixel.unsqueeze(1).expand(-1, 2, -1))  # noqa: E731 - (B, 2, k)
        wh, off = pick(size).clamp(min=0), pick(offset)
        cx, cy = pixel % cols + off[:, 0], pixel // cols + off[:, 1]
        boxes = torch.stack([cx - wh[:, 0] / 2, cy - wh[:, 1] / 2, cx + wh[:, 0] / 2, cy + wh[:, 1] / 2], -1) * self.stride
        out = []
        for b, (w, ht) in enumerate(sizes):
            keep = scores[b] > h.score_threshold
            bx, sc, lb = boxes[b][keep], scores[b][keep], label[b][keep]
            keep = batched_nms(bx, sc, lb, h.nms_iou)
            scale = torch.tensor([w / h.image_size, ht / h.image_size] * 2, device=bx.device)
            out.append({"boxes": clip_boxes_to_image(bx[keep] * scale, (ht, w)), "labels": lb[keep], "scores": sc[keep]})
        return out

    def training_step(self, batch, batch_idx):
        # the returned loss is logged by mlloop as train_loss_step / train_loss_epoch
        return self.losses(self(batch["images"]), batch).mean()

    def validation_step(self, batch, batch_idx):  # mAP needs every image at once: 03_eval.py computes it
        loss = self.losses(self(batch["images"]), batch).mean()
        self.log("val_loss", loss, on_epoch=True, sync_dist=True, batch_size=len(batch["boxes"]))

    def score_batch(self, batch):
        """The task metric on one batch (the learnability probe's check)."""
        index = {c: k for k, c in enumerate(self.hparams.classes)}  # an unseen class: an index never predicted
        truth = [{"boxes": torch.tensor(b, device=self.device).reshape(-1, 4),
                  "labels": torch.tensor([index.get(x, len(index)) for x in ls], dtype=torch.long, device=self.device)}
                 for b, ls in zip(batch["boxes"], batch["labels"])]
        metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox")
        metric.update(self.decode(self(batch["images"]), batch["sizes"]), truth)
        return {"map_50": max(0.0, float(metric.compute()["map_50"]))}

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)


def observe(model):
    """observed_* for the expected_* contract: one dummy forward pass, batch 1."""
    was_training, x = model.training, torch.zeros(1, 3, model.hparams.image_size, model.hparams.image_size)
    with torch.no_grad():
        features, (heat, _, _) = model.eval().backbone(x)[0], model(x)
    model.train(was_training)
    return {**feature_observations(features, x.shape), "num_classes": heat.shape[1],
            "input_size": list(x.shape[1:]), "output_shape": list(heat.shape)}


# ---- evaluation interface (called by 03_eval.py; docs/contracts.md) --------------------------------
_EVAL = {}  # load_for_eval keeps the checkpoint's preprocessing here, so make_batch matches training


def load_for_eval(checkpoint_path, device):
    ckpt = load_checkpoint(checkpoint_path)  # checked, then torch.load(weights_only=True); no fallback
    model = CenterNet(ckpt["hyper_parameters"])
    model.load_state_dict(ckpt["state_dict"])
    _EVAL.update(model=model.hparams, mean=model.mean, std=model.std, stride=model.stride)
    return model.eval().to(device)


def eval_records(prepdata_dir, split="valid"):
    # each record remembers its split: image and label paths are relative to the split's folder
    return [{**r, "_split": split} for r in read_index(prepdata_dir, split)]


def make_batch(records, prepdata_dir, device):
    h = _EVAL["model"]
    dataset = DetectionDataset(records, Path(prepdata_dir) / records[0].get("_split", "valid"), h.image_size,
                               _EVAL["mean"], _EVAL["std"])
    batch = collate([dataset[i] for i in range(len(records))], list(h.classes), _EVAL["stride"], h.image_size,
                    h.gaussian_alpha)
    return {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


def predict(model, batch):
    outputs, classes = model(batch["images"]), list(model.hparams.classes)
    found = model.decode(outputs, batch["sizes"])
    return [{"prediction": {"boxes": [[round(v, 2) for v in b] for b in f["boxes"].tolist()],
                            "labels": [classes[k] for k in f["labels"].tolist()],
                            "scores": [round(v, 4) for v in f["scores"].tolist()]},
             "target": {"boxes": boxes, "labels": labels}, "loss": loss}
            for f, boxes, labels, loss in zip(found, batch["boxes"], batch["labels"], model.losses(outputs, batch).tolist())]


def write_sample(record, result, folder, prepdata_dir, scale=4):
    folder = Path(folder)
    with Image.open(Path(prepdata_dir) / record.get("_split", "valid") / record["image_path"]) as image:
        image = image.convert("RGB")
    image.save(folder / "input.png")
    p, t = result["prediction"], result["target"]
    canvas = image.resize((image.width * scale, image.height * scale), Image.NEAREST)  # small images, readable
    draw = ImageDraw.Draw(canvas)
    for boxes, names, colour in ((t["boxes"], t["labels"], (60, 220, 60)), (p["boxes"], [  # green: truth, red: predicted
            f"{n} {v:.2f}" for n, v in zip(p["labels"], p["scores"])], (255, 60, 60))):
        for box, name in zip(boxes, names):
            draw.rectangle([v * scale for v in box], outline=colour, width=2)
            draw.text((box[0] * scale + 2, box[1] * scale + 1), name, fill=colour)
    canvas.save(folder / "output.png")
    (folder / "output.json").write_text(json.dumps(p) + "\n", encoding="utf-8")
    (folder / "gt.json").write_text(json.dumps(t) + "\n", encoding="utf-8")


# ---- Trainer options (forwarded to lightning.Trainer; the harness refuses the keys it owns) -------
def callbacks():
    """Extra Lightning callbacks for this version, e.g. [EarlyStopping("val_loss", patience=3)] or
    [StochasticWeightAveraging(swa_lrs=1e-4)] from lightning.pytorch.callbacks; [] for none."""
    return []


# ---- main -----------------------------------------------------------------------------------------
def main(argv=None) -> dict:
    run = start(__file__, globals(), argv, from_rules=FROM_RULES, task_types=TASK_TYPES)
    s = run.settings
    classes = class_names(run.prepdata_dir / "train", run.full_index("train"))
    model = CenterNet({"classes": classes, **{k.lower(): s[k] for k in (
        "BACKBONE", "PRETRAINED", "OUT_INDICES", "IMAGE_SIZE", "NECK_CHANNELS", "GAUSSIAN_ALPHA", "SIZE_WEIGHT",
        "SCORE_THRESHOLD", "NMS_IOU", "MAX_DETECTIONS", "LR", "WEIGHT_DECAY")}})
    data = DetectionData(run, classes, s["IMAGE_SIZE"], model.stride, s["GAUSSIAN_ALPHA"], model.mean, model.std,
                         s["HFLIP"], s["NUM_WORKERS"])
    run.save_asset("label_map.json", {c: i for i, c in enumerate(classes)})
    return run.fit(model, data, observe=observe)


if __name__ == "__main__":
    raise SystemExit(entry(main))
