#!/usr/bin/env bash
# The runs behind docs/claims.md, each a plain `focalcal reproduce` (a run already finished is
# skipped, so the script continues where it stopped). Every table of docs/claims.md is the
# comparison section of one of these folders' tables.md. About 1 h on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
# C1–C4, C6 and the γ rules: the default experiment, nine losses, three seeds.
python -m focalcal reproduce --seeds 3 --out runs/claims-default \
  --losses ce brier mmce ls-0.05 fl-3 flsd-53 flsd-532 fl-4.85 flsc-531
# C6, near OOD: trained on five classes, scored against the other five and the digits.
python -m focalcal reproduce --seeds 3 --out runs/claims-near-ood --losses ce fl-3 flsd-53 \
  --set 'classes=[0,1,2,3,4]' --ood heldout digits
# The signals regime: MNIST-1D with a 1-D CNN.
python -m focalcal reproduce --seeds 3 --out runs/claims-mnist1d --dataset mnist1d --model cnn1d
# A harder image regime: 10 000 images and a ResNet.
python -m focalcal reproduce --seeds 3 --out runs/claims-resnet8 --losses ce flsd-53 \
  --subset 10000 --model resnet8 --epochs 20 --set analysis_samples=2000
