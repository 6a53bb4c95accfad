"""Benchmark of the dissection engine (results in benchmarks/README.md, section "Dissection engine").

Measures, side by side in one run on the CPU:
  (a) a whole ``dissect`` of one layer vs the forward pass alone over the same images (JPEG decoding in both);
  (b) the exact vectorised tally vs a NetDissect-Lite-style loop (per image, per unit: Pillow resize,
      argwhere, bincount over the label layers) on the same activations and decoded segmentations; the
      numbering of each image's label combinations (done when segmentation batches are built) is timed
      apart and reported with and without;
  (c) peak resident memory of ``dissect`` at N and 4N images (each in a fresh subprocess).

    .venv/bin/python benchmarks/bench_dissect.py --images 64 --workdir /tmp/unitscope-bench
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from unitscope.activations import extract_batches
from unitscope.broden.loaders import batch_segmentations, image_loader
from unitscope.broden.reader import BrodenDataset
from unitscope.dissect import DissectSettings, dissect
from unitscope.models import load_model
from unitscope.probe.generate import generate
from unitscope.tally import Tally
from unitscope.thresholds import TopK, required_k

LEVEL = 0.995


def probe_set(workdir: Path, images: int) -> Path:
    root = workdir / f"probe{images}"
    if not root.exists():
        generate(root, images, size=224, seed=0, workers=1)
    return root


def forward_only(dataset: BrodenDataset, model, layer: str, batch_size: int) -> float:
    start = time.perf_counter()
    for _ in extract_batches(model.module, [layer], image_loader(dataset, range(len(dataset)), batch_size),
                             model.default_normalize, torch.device("cpu")):
        pass
    return time.perf_counter() - start


def whole_dissect(dataset: BrodenDataset, model, layer: str, batch_size: int, out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    dissect(dataset, model, [layer], out, DissectSettings(batch_size=batch_size, device="cpu"))
    return time.perf_counter() - start


def lite_tally(acts: np.ndarray, thresholds: np.ndarray, segmentations, primary: np.ndarray, categories: int):
    """NetDissect-Lite's ``tally_job`` loop (mask presence rule), Pillow upsampling as scipy.misc.imresize did."""
    units, labels = acts.shape[1], len(primary)
    inter = np.zeros((units, labels), np.int64)
    act_cat = np.zeros((units, categories), np.int64)
    for i, seg in enumerate(segmentations):
        sh, sw = seg.layers.shape[1:]
        for u in range(units):
            if acts[i, u].max() <= thresholds[u]:
                continue
            up = np.asarray(Image.fromarray(acts[i, u], mode="F").resize((sw, sh), Image.BILINEAR))
            mask = up > thresholds[u]
            positions = np.argwhere(mask)
            size = len(positions)
            present = np.zeros(categories, bool)
            for layer in seg.layers:
                counts = np.bincount(layer[positions[:, 0], positions[:, 1]], minlength=labels)
                counts[0] = 0
                inter[u] += counts
                present[primary[np.flatnonzero(counts)]] = True
            for label in seg.image_labels:
                inter[u, label] += size
                present[primary[label]] = True
            act_cat[u] += size * present
    return inter, act_cat


def tally_comparison(dataset: BrodenDataset, model, layer: str, batch_size: int, repeats: int, threads: int) -> dict:
    extracted = extract_batches(model.module, [layer], image_loader(dataset, range(len(dataset)), batch_size),
                                model.default_normalize, torch.device("cpu"))
    acts = torch.cat([b[1][layer] for b in extracted])
    units, h, w = acts.shape[1:]
    topk = TopK(units, required_k(len(acts) * h * w, LEVEL))
    topk.update(acts)
    thresholds = topk.threshold(LEVEL)
    segmentations = [dataset.segmentation(i) for i in range(len(dataset))]  # decoded once, outside both timings
    primary = dataset.primary

    def batches() -> tuple[float, list]:
        """Segmentation batches as the loader builds them (label combinations per image), timed."""
        start = time.perf_counter()
        built = [batch_segmentations(segmentations[s : s + batch_size], range(s, min(s + batch_size, len(acts))))
                 for s in range(0, len(acts), batch_size)]
        return time.perf_counter() - start, built

    def ours(threads: int, built: list) -> tuple[float, Tally]:
        torch.set_num_threads(threads)
        start = time.perf_counter()
        tally = Tally(thresholds, primary, len(dataset.categories), presence="mask")
        for s, batch in zip(range(0, len(acts), batch_size), built):
            tally.update(acts[s : s + batch_size], batch)
        seconds = time.perf_counter() - start
        torch.set_num_threads(1)
        return seconds, tally

    one, many, lite, combine = [], [], [], []
    for _ in range(repeats):  # interleaved, best of each
        seconds, built = batches()
        combine.append(seconds)
        one.append(ours(1, built)[0])
        many.append(ours(threads, built)[0])
        start = time.perf_counter()
        inter, act_cat = lite_tally(acts.numpy(), thresholds, segmentations, primary, len(dataset.categories))
        lite.append(time.perf_counter() - start)
    counts = ours(1, built)[1].counts()
    return {
        "units": units, "map": [h, w], "images": len(acts),
        "active_pairs": int((acts.amax(dim=(2, 3)) > torch.from_numpy(thresholds)).sum()),
        "mask_pixels": int(counts.activation.sum()), "lite_s": min(lite),
        "ours_1_thread_s": min(one), "speedup_1_thread": min(lite) / min(one),
        f"ours_{threads}_threads_s": min(many), f"speedup_{threads}_threads": min(lite) / min(many),
        "label_combinations_s": min(combine),
        "speedup_1_thread_with_label_combinations": min(lite) / (min(one) + min(combine)),
        "intersect_total": int(counts.intersect.sum()),
        "intersect_max_abs_diff_vs_lite": int(np.abs(counts.intersect - inter).max()),
        "act_cat_max_abs_diff_vs_lite": int(np.abs(counts.act_cat - act_cat).max()),
    }


def memory_child(dataset_dir: str, model_spec: str, layer: str, batch_size: int, out: str) -> None:
    dataset = BrodenDataset(dataset_dir)
    dissect(dataset, load_model(model_spec), [layer], out, DissectSettings(batch_size=batch_size, device="cpu"))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"images": len(dataset), "max_rss_mib": peak}))


def peak_memory(dataset_dir: Path, args, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    result = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(dataset_dir), "--model", args.model, "--layer", args.layer,
         "--batch-size", str(args.batch_size), "--workdir", str(out)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--model", default="efficientnet-lite0@imagenet")
    parser.add_argument("--layer", default="_swish:1", help="default: EfficientNet-Lite0's last feature map, 1280×7×7 (its _swish runs twice: stem and head)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/unitscope-bench"))
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # stable ratios on a shared machine; (b) is also timed with every thread
    if args.memory_child:
        memory_child(args.memory_child, args.model, args.layer, args.batch_size, str(args.workdir))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    small, large = probe_set(args.workdir, args.images), probe_set(args.workdir, 4 * args.images)
    dataset, model = BrodenDataset(small), load_model(args.model)
    forward, whole = [], []
    for _ in range(args.repeats):  # interleaved, best of each
        forward.append(forward_only(dataset, model, args.layer, args.batch_size))
        whole.append(whole_dissect(dataset, model, args.layer, args.batch_size, args.workdir / "out"))
    report = {
        "model": args.model, "layer": args.layer, "images": args.images, "cpu_threads": threads,
        "a_forward_s": min(forward), "a_dissect_s": min(whole), "a_ratio": min(whole) / min(forward),
        "b_tally": tally_comparison(dataset, model, args.layer, args.batch_size, args.repeats, threads),
        "c_memory": [peak_memory(small, args, args.workdir / "mem1"), peak_memory(large, args, args.workdir / "mem4")],
    }
    report["c_growth"] = report["c_memory"][1]["max_rss_mib"] / report["c_memory"][0]["max_rss_mib"]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
