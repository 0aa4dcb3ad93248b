"""What int8 quantisation costs in accuracy and buys in speed, on a trained model's val split.

    python benchmarks/quantization_accuracy.py CHECKPOINT --data DATASET [--split val]
        [--methods minmax,entropy,percentile] [--num-images 8] [--threads 2] [--out FILE]

Exports the checkpoint to fp32 ONNX (:func:`unetlab.export.onnx.export_onnx`), quantises it to
int8 with each calibration method (:func:`unetlab.export.quantize.quantize_onnx`, calibrated on
the first ``--num-images`` images of the TRAIN split), predicts every image of ``--split`` with
each model through :class:`~unetlab.export.onnx_runtime.OnnxPredictor` (the deployment path:
same padding and decision rule), scores them with :class:`unetlab.metrics.ConfusionMatrix`
(mIoU, mean Dice, per class) and prints the difference to fp32 in points. Then times each
model on one val-sized input, round-robin over the models so background load hits all alike,
and reports median latencies with the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np


def evaluate_onnx(path: Path, root: Path, split: str, threads: int) -> dict[str, Any]:
    """Confusion-matrix scores of an ONNX model over a split (whole images, no TTA)."""
    from unetlab.data.io import read_image, read_mask
    from unetlab.data.layouts import dataset_info
    from unetlab.inference.onnx_backend import OnnxPredictor
    from unetlab.metrics import ConfusionMatrix

    info = dataset_info(root)
    ids = info.ids(split)
    predictor = None
    matrix = None
    for sample_id in ids:
        image = read_image(info.images[sample_id][0])
        mask = read_mask(info.masks[sample_id][0])
        if predictor is None:  # one tile covers the largest side: whole-image prediction
            side = max(image.shape[:2])
            predictor = OnnxPredictor(path, threads=threads, tile=max(side, 64), progress=False)
            matrix = ConfusionMatrix(predictor.num_classes)
        matrix.update(predictor.predict(image).labels, mask)
    if matrix is None:
        raise SystemExit(f"split '{split}' of {root} has no images")
    scores = matrix.compute()
    return {
        "images": len(ids),
        "miou": scores["miou"],
        "mean_dice": scores["mean_dice"],
        "pixel_accuracy": scores["pixel_accuracy"],
        "iou": scores["iou"],
        "dice": scores["dice"],
        "class_names": predictor.class_names,
    }


def time_models(paths: dict[str, Path], shape: tuple[int, ...], threads: int, repeats: int):
    """Median seconds per forward pass of each model, measured round-robin."""
    import onnxruntime as ort

    sessions = {}
    x = np.random.default_rng(0).uniform(0, 255, shape).astype(np.float32)
    for name, path in paths.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        feed = {session.get_inputs()[0].name: x}
        session.run(None, feed)  # warm-up
        sessions[name] = (session, feed)
    times: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for r in range(repeats):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            session, feed = sessions[name]
            start = time.perf_counter()
            session.run(None, feed)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}, times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--data", required=True)
    parser.add_argument("--split", default="val")
    parser.add_argument("--calibration-split", default="train")
    parser.add_argument("--methods", default="minmax,entropy,percentile")
    parser.add_argument("--num-images", type=int, default=8)
    parser.add_argument("--calibration-size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", default=None, help="folder to keep the ONNX files in")
    parser.add_argument("--out", default="quantization_accuracy.json")
    args = parser.parse_args(argv)

    from unetlab.data.io import read_image
    from unetlab.data.layouts import dataset_info
    from unetlab.export.onnx import export_onnx
    from unetlab.export.quantize import quantize_onnx

    load_before = os.getloadavg()
    folder_context = tempfile.TemporaryDirectory(prefix="unetlab-qacc-")
    folder = Path(args.keep) if args.keep else Path(folder_context.name)
    folder.mkdir(parents=True, exist_ok=True)
    fp32 = folder / "model.onnx"
    report = export_onnx(args.checkpoint, fp32)
    print(f"exported {fp32} (ONNX Runtime vs torch max |diff| {report.max_abs_diff:.1e})")
    paths = {"fp32": fp32}
    quantize_s = {}
    for method in [m.strip() for m in args.methods.split(",") if m.strip()]:
        target = folder / f"model.int8.{method}.onnx"
        q = quantize_onnx(
            fp32,
            target,
            args.data,
            split=args.calibration_split,
            num_images=args.num_images,
            method=method,
            calibration_size=args.calibration_size,
        )
        quantize_s[method] = q.seconds
        paths[f"int8 {method}"] = target
        print(f"quantised ({method}, {q.num_images} images) in {q.seconds:.0f} s -> {target}")
    scores = {}
    for name, path in paths.items():
        scores[name] = evaluate_onnx(path, Path(args.data), args.split, args.threads)
        print(f"evaluated {name}: mIoU {scores[name]['miou']:.4f}")
    info = dataset_info(args.data)
    first = read_image(info.images[info.ids(args.split)[0]][0])
    channels = json.loads(_metadata(fp32))["model"]["in_channels"]
    shape = (1, channels, *first.shape[:2])
    load_timing = os.getloadavg()
    medians, times = time_models(paths, shape, args.threads, args.repeats)
    load_after = os.getloadavg()

    base = scores["fp32"]
    names = base["class_names"]
    header = (
        "| model | mIoU | Δ mIoU (points) | mean Dice | Δ Dice (points) | "
        + " | ".join(f"IoU {n}" for n in names)
        + f" | latency {shape[2]}x{shape[3]} | speed vs fp32 |"
    )
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for name, s in scores.items():
        lines.append(
            f"| {name} | {100 * s['miou']:.2f} | {100 * (s['miou'] - base['miou']):+.2f} | "
            f"{100 * s['mean_dice']:.2f} | {100 * (s['mean_dice'] - base['mean_dice']):+.2f} | "
            + " | ".join(f"{100 * v:.2f}" for v in s["iou"])
            + f" | {1000 * medians[name]:.0f} ms | {medians['fp32'] / medians[name]:.2f}x |"
        )
    table = "\n".join(lines)
    print()
    print(table)
    print(
        f"\n{args.split} split: {base['images']} images; threads {args.threads}; load average "
        f"before {load_before}, at timing {load_timing}, after {load_after}"
    )
    record = {
        "command": " ".join(["benchmarks/quantization_accuracy.py", *(argv or sys.argv[1:])]),
        "checkpoint": str(args.checkpoint),
        "data": str(args.data),
        "split": args.split,
        "calibration": {
            "split": args.calibration_split,
            "num_images": args.num_images,
            "size": args.calibration_size,
            "seconds": quantize_s,
        },
        "scores": scores,
        "latency_s": medians,
        "latency_runs_s": times,
        "input_shape": shape,
        "threads": args.threads,
        "loadavg": {"before": load_before, "timing": load_timing, "after": load_after},
        "table": table,
    }
    Path(args.out).write_text(json.dumps(record, indent=2, default=float))
    print(f"results: {args.out}")
    folder_context.cleanup()
    return 0


def _metadata(path: Path) -> str:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    return props["unetlab"]


if __name__ == "__main__":
    sys.exit(main())
