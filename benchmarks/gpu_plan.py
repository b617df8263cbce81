"""Step 4's plan: the deepest model whose runs fit the time left, sized from step 3's
measured throughput.

    python benchmarks/gpu_plan.py --seconds 240 --train-json 3-train.json --device cuda

For each model, deepest first, one run's time is estimated as a fixed start
(``--start-seconds``: process, data, CUDA, the final evaluation) plus, per epoch, the training
images at the model's training throughput, the validation and analysis images at three times it
(a forward pass is about a third of a training step) and its checkpoint written twice
(``last.pt``, ``best.pt``: weights and momentum, 8 bytes a parameter, at 1 GB/s). The
throughput is step 3's ``bench_train`` figure for that model where it has one (the bf16
channels-last row on CUDA, as ``train()`` trains there), scaled from its image size to 28×28 by
the pixels (the convolutions' cost); otherwise it is measured here on a few batches of random
28×28 images through the same ``train_epoch``. The runs go one after another in the estimate;
``gpu.sh`` runs them side by side on the one device, which leaves the time they overlap for a
rerun. The first model whose runs fit ``--seconds`` is chosen (the last one if none fits). The
last line printed is ``plan: MODEL``; ``--json`` writes the estimates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from pathlib import Path
from typing import Any

import torch
from bench_train import BATCH, BF16, OURS, ours

from focalcal.data import BatchLoader, Dataset
from focalcal.models import build_model

IMAGE_SIZE = 28
WRITE_BYTES_PER_S = 1e9


def measured(train_json: Path | None, model: str) -> tuple[float, str] | None:
    """Images/s at 28×28 from step 3's file, and where it comes from, or ``None``."""
    if train_json is None or not train_json.is_file():
        return None
    for title, run in json.loads(train_json.read_text())["runs"].items():
        if run["model"] == model:
            row = BF16 if BF16 in run["rows"] else OURS
            scale = (run["image_size"] / IMAGE_SIZE) ** 2
            return float(run["rows"][row]["images_per_s"]) * scale, f"step 3: {title}, {row}"
    return None


def probe(model_name: str, device: str, batches: int = 10) -> float:
    """Images/s of ``train_epoch`` on ``batches`` batches of random 28×28 images."""
    cuda = device.startswith("cuda")
    generator = torch.Generator().manual_seed(0)
    count = batches * BATCH
    images = torch.randint(0, 256, (count, 1, IMAGE_SIZE, IMAGE_SIZE), dtype=torch.uint8,
                           generator=generator)  # fmt: skip
    data = Dataset(images, torch.randint(0, 10, (count,), generator=generator),
                   tuple("0123456789"), (0.286,), (0.353,))  # fmt: skip
    model = build_model(model_name, 10, 1, IMAGE_SIZE).to(device)
    if cuda:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    loader = BatchLoader(data, BATCH, shuffle=True, augment=True, device=device,
                         channels_last=cuda)  # fmt: skip
    autocast: contextlib.AbstractContextManager[Any] | None = None
    if cuda:
        autocast = torch.autocast("cuda", torch.bfloat16)
    epoch = ours(model, loader, autocast)
    epoch()  # warm-up: cuDNN's choice of algorithms, lazy initialisation
    start = time.perf_counter()
    epoch()  # returns the loss as a float: the device has finished
    return count / (time.perf_counter() - start)


def estimate(images_per_s: float, parameters: int, args: argparse.Namespace) -> float:
    """Seconds of all ``args.runs`` runs, one after another."""
    checkpoint = 2 * 8 * parameters / WRITE_BYTES_PER_S
    epoch = args.train_images / images_per_s + args.eval_images / (3 * images_per_s) + checkpoint
    return args.runs * (args.start_seconds + args.epochs * epoch)


def plan(args: argparse.Namespace) -> dict[str, Any]:
    """The estimate of every model tried, and the chosen one."""
    tried = []
    for model in args.models:
        found = measured(args.train_json, model)
        if found is None:
            found = probe(model, args.device, args.probe_batches), "measured here"
        images_per_s, source = found
        parameters = sum(p.numel() for p in build_model(model, 10, 1, IMAGE_SIZE).parameters())
        seconds = estimate(images_per_s, parameters, args)
        tried.append({"model": model, "images_per_s": images_per_s, "source": source,
                      "parameters": parameters, "seconds": seconds})  # fmt: skip
        if seconds <= args.seconds:
            break
    return {"seconds_available": args.seconds, "runs": args.runs, "epochs": args.epochs,
            "train_images": args.train_images, "eval_images": args.eval_images,
            "tried": tried, "model": tried[-1]["model"],
            "fits": tried[-1]["seconds"] <= args.seconds}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, required=True, help="time for step 4's runs")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--train-json", type=Path, help="bench_train.py --json's file (step 3)")
    parser.add_argument("--models", nargs="+", default=["resnet50", "resnet20", "resnet8"])
    parser.add_argument("--runs", type=int, default=4, help="one per loss")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--train-images", type=int, default=54_000)
    parser.add_argument("--eval-images", type=int, default=16_000, help="validation + analysis")
    parser.add_argument("--start-seconds", type=float, default=20.0, help="a run's fixed cost")
    parser.add_argument("--probe-batches", type=int, default=10)
    parser.add_argument("--json", type=Path, help="write the estimates to this file")
    args = parser.parse_args()
    chosen = plan(args)
    print(f"{chosen['runs']} runs x {chosen['epochs']} epochs, {args.seconds:.0f} s available:")
    for t in chosen["tried"]:
        print(f"- {t['model']}: {t['images_per_s']:,.0f} images/s at 28x28 ({t['source']}), "
              f"{t['seconds']:.0f} s")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(chosen, indent=2))
    if not chosen["fits"]:
        print(f"none fits: the last, {chosen['model']}, is planned anyway")
    print(f"plan: {chosen['model']}")


if __name__ == "__main__":
    main()
