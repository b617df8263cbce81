"""One epoch of augmented Fashion-MNIST batches: our tensor-resident loader against a
``DataLoader`` over a ``Dataset`` doing the same transforms per sample (the paper code's
pipeline, torchvision-style ops on tensors), side by side in one process.

    python benchmarks/bench_data.py

The training split (54 000 images), batch 128, random crop with padding 4 and horizontal flip,
normalisation. Ratios are medians over rounds of paired epoch times (see _timing.py). The goal of
issue 4 (ours >= 5x faster than the best DataLoader configuration) is checked at the end; the
exit status is 1 if it is missed.
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from _timing import Goals, machine, paired_times, ratio
from torch.utils.data import DataLoader

from focalcal.data import BatchLoader, load_dataset


class PerSampleDataset(torch.utils.data.Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """RandomCrop(padding=4) + RandomHorizontalFlip + ToTensor + Normalize, one image at a time."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        mean: float | torch.Tensor,
        std: float | torch.Tensor,
    ):
        self.images, self.labels, self.mean, self.std = images, labels, mean, std

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.pad(self.images[i], (4, 4, 4, 4))
        top, left = torch.randint(0, 9, (2,)).tolist()
        height, width = self.images.shape[-2:]
        image = image[:, top : top + height, left : left + width]
        if torch.rand(1).item() < 0.5:
            image = image.flip(-1)
        return (image.float() / 255 - self.mean) / self.std, self.labels[i]


def epoch(batches: object) -> int:
    return sum(len(y) for _, y in batches)  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = load_dataset("fashion-mnist", split="train")
    ours = BatchLoader(data, 128, shuffle=True, augment=True, seed=0)
    per_sample = PerSampleDataset(data.inputs, data.labels, data.mean[0], data.std[0])  # type: ignore[index]
    loaders = {
        "focalcal BatchLoader": ours,
        "DataLoader, 0 workers": DataLoader(per_sample, 128, shuffle=True, num_workers=0),
        "DataLoader, 2 workers": DataLoader(per_sample, 128, shuffle=True, num_workers=2,
                                            persistent_workers=True),
    }  # fmt: skip
    counts = {name: epoch(loader) for name, loader in loaders.items()}
    assert len(set(counts.values())) == 1, counts
    times = paired_times({n: lambda b=b: epoch(b) for n, b in loaders.items()}, args.rounds, 0.0)
    print(machine("cpu"), end="")
    print(f"# one epoch of {counts['focalcal BatchLoader']} images, batch 128, crop+flip\n")
    print("| loader | seconds per epoch | images/s | ours is x faster |")
    print("|---|---:|---:|---:|")
    for name, seconds in times.items():
        median = sorted(seconds)[len(seconds) // 2]
        speedup = ratio(times, name, "focalcal BatchLoader")
        print(f"| {name} | {median:.3f} | {len(data) / median:,.0f} | {speedup:.1f} |")
    goals = Goals()
    best = min(ratio(times, n, "focalcal BatchLoader") for n in loaders if n.startswith("Data"))
    goals.check(best >= 5, f"ours >= 5x faster than the best DataLoader: {best:.1f}x")
    sys.exit(1 if goals.missed else 0)


if __name__ == "__main__":
    main()
