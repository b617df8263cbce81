#!/usr/bin/env bash
# Everything focalcal needs on a fresh Debian machine with Python >= 3.10: PyTorch (the CPU
# build, 2.13.0), focalcal with its test extras, and Debian's Fashion-MNIST files.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet --disable-pip-version-check torch==2.13.0
python -m pip install --quiet --disable-pip-version-check -e '.[test]'
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq dataset-fashion-mnist
fi
