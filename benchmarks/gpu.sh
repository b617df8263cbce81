#!/usr/bin/env bash
# Issue 18: what focalcal has to show on a GPU, in one script that writes its results as files.
#
#   bash benchmarks/gpu.sh OUT_DIR FASHION_MNIST_DIR [--device cuda|cpu] [--tiny]
#                          [--budget SECONDS] [--steps 1234] [--work DIR] [--model NAME]
#
# OUT_DIR (made if missing) receives every step's output. FASHION_MNIST_DIR holds Fashion-MNIST's
# four IDX files, gzip-compressed or not (Debian's dataset-fashion-mnist puts them in
# /usr/share/datasets/fashion-mnist): the GPU machine has no network, so they travel with the
# code. The steps run in order, each under `timeout`; a step that fails is recorded and the next
# one runs. A benchmark that runs but misses a goal is "goals missed", not a failure.
#
#   1. 1-sync.md, 1-sync.json (gpu_sync.py): every registered loss, forward and backward, every
#      metric and CalibrationAccumulator.update, at 128×10 and 8×21×64×64, under
#      torch.cuda.set_sync_debug_mode("error"); where a call syncs, every syncing line.
#   2. 2-losses.md (bench_losses.py --sync-debug), 2-metrics.md (bench_metrics.py) on the device:
#      losses against cross-entropy, metrics against a softmax and torchmetrics.
#   3. 3-train.md, 3-train.json (bench_train.py --compile): one epoch of the CIFAR ResNet-50,
#      batch 128, on 5 120 synthetic 32×32 images: bf16 autocast + channels-last, eager and
#      torch.compile, against the paper-style loop (DataLoader, per-sample transforms, fp32).
#   4. 4-plan.md, 4-plan.json (gpu_plan.py), 4-fashion-mnist/ (focalcal reproduce): the paper's
#      regime on the full Fashion-MNIST (54 000 / 6 000 / 10 000): the paper-cifar10 preset
#      (SGD 0.1, momentum 0.9, weight decay 5e-4, summed loss, gradient norm clipped at 2, crop +
#      flip, lr ÷ 10 at 150/350 and 250/350 of the run), 30 epochs, losses CE, FL-3, FLSD-53 and
#      dual-focal-5, T by the paper's ECE grid, with the per-epoch analysis; its tables.md,
#      figures and every run's log and evaluation, without the checkpoints. The model is the
#      deepest of ResNet-50, ResNet-20, ResNet-8 whose four runs fit the time left, by step 3's
#      throughput (gpu_plan.py); the four runs go side by side on the device, a failed one is
#      resumed once if time is left, and a last `reproduce` call writes the tables.
#   summary.md: each step's status, seconds and files. Exit status 1 if a step failed.
#
# --budget: seconds for the whole script (default 450, inside the 8 minutes issue 18 allows);
# steps 1–3 have fixed caps (120, 150 + 150, 240 s), step 4 gets what is left. --steps: which
# steps to run (default 1234; `--steps 4` reruns step 4 alone, probing the models itself if
# OUT_DIR has no 3-train.json). --work: where step 4's runs go (default a temporary folder,
# removed at the end); a folder given is kept, so a rerun with it resumes the runs.
# --model: step 4's model, planned or not. --tiny: the CPU test's sizes (tests/test_gpu_script.py):
# shapes 16×10 and 2×5×8×8, one round, bench_metrics' softmax-equivalents at 1 000 × 10 only,
# 128 images an epoch in bench_train; in step 4 256 training images, 1 epoch, small-cnn of width
# 8, CE and FLSD-53, no OOD sets (the full run scores the default ones: noise and the digits).
#
# For the lent machine (python3 there holds a CUDA torch; focalcal is found through PYTHONPATH),
# here, once: the files in an ignored folder (never committed), named in the call's carry:
#   mkdir -p data && cp -r /usr/share/datasets/fashion-mnist data/
#   echo /data/ >>.git/info/exclude
# there (its results come back as one archive):
#   bash benchmarks/gpu.sh /tmp/gpu data/fashion-mnist; tar -czf $OUT/gpu.tar.gz -C /tmp gpu
set -uo pipefail

usage() {
  sed -n '4,5p' "$0" >&2
  exit 2
}
[ $# -ge 2 ] || usage
OUT_DIR=$1 FMNIST=$2
shift 2
DEVICE=cuda TINY=0 BUDGET=450 STEPS=1234 WORK= MODEL=
while [ $# -gt 0 ]; do
  case $1 in
    --device) DEVICE=${2:?}; shift ;;
    --tiny) TINY=1 ;;
    --budget) BUDGET=${2:?}; shift ;;
    --steps) STEPS=${2:?}; shift ;;
    --work) WORK=${2:?}; shift ;;
    --model) MODEL=${2:?}; shift ;;
    *) usage ;;
  esac
  shift
done
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte \
  t10k-labels-idx1-ubyte; do
  if [ ! -f "$FMNIST/$name.gz" ] && [ ! -f "$FMNIST/$name" ]; then
    echo "gpu.sh: $FMNIST holds no $name(.gz): give Fashion-MNIST's folder" >&2
    exit 2
  fi
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FMNIST=$(cd "$FMNIST" && pwd)
mkdir -p "$OUT_DIR" && OUT_DIR=$(cd "$OUT_DIR" && pwd)
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export FOCALCAL_DATA=$FMNIST  # bench_train.py reads Fashion-MNIST from here
cd "$ROOT/benchmarks"
FAILED=0
SUMMARY=()

# step NUMBER WHAT OUTPUT COMMAND...: run COMMAND, its output to OUT_DIR/OUTPUT, and record its
# status and seconds.
step() {
  local number=$1 what=$2 output=$3 start=$SECONDS status rc
  shift 3
  echo "[gpu.sh] step $number: $what -> $output"
  "$@" >"$OUT_DIR/$output" 2>&1
  rc=$?
  if [ $rc -eq 0 ]; then
    status=ok
  elif [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
    status="timed out"
  elif [ $rc -eq 1 ] && grep -q '^- \[ \]' "$OUT_DIR/$output"; then
    status="goals missed"
  else
    status="failed (exit $rc)"
  fi
  case $status in ok | "goals missed") ;; *) FAILED=1; tail -5 "$OUT_DIR/$output" >&2 ;; esac
  echo "[gpu.sh] step $number: $status in $((SECONDS - start)) s"
  SUMMARY+=("| $number | $what | $status | $((SECONDS - start)) | $output |")
}
capped() {  # capped SECONDS COMMAND...: COMMAND under timeout (exit 124 when it runs out)
  timeout --kill-after=10 "$@"
}

if [ "$TINY" = 1 ]; then
  SYNC=(--tiny) LOSS_ARGS=(--rounds 1 --min-time 0)
  METRIC_ARGS=(--sizes 1000x10 --no-anchors --no-memory --rounds 1 --budget 0.1 --min-time 0)
  TRAIN=(--rounds 1 --subset 128 --workers 0 --synthetic 0)
  EPOCHS=1 TRAIN_IMAGES=256 EVAL_IMAGES=328 MODELS=(small-cnn) START=3 FINISH=20
  LOSSES=(ce flsd-53) DATA=(--subset 256 --set val_subset=128 --set analysis_samples=200
    --set 'model_options={width = 8}' --ood)
else
  SYNC=() LOSS_ARGS=(--rounds 5)
  METRIC_ARGS=(--no-memory --rounds 5 --budget 1 --limit 3)  # host memory: not the GPU's
  TRAIN=(--compile --synthetic 5120 --rounds 2)  # a multiple of 128: one compiled shape
  EPOCHS=30 TRAIN_IMAGES=54000 EVAL_IMAGES=16000 MODELS=(resnet50 resnet20 resnet8) START=20
  FINISH=40 LOSSES=(ce fl-3 flsd-53 dual-focal-5) DATA=()
fi
[ -z "$MODEL" ] || MODELS=("$MODEL")
SYNC_DEBUG=()
[ "$DEVICE" = cpu ] || SYNC_DEBUG=(--sync-debug)

case $STEPS in *1*)
  step 1 "host syncs" 1-sync.md capped 120 \
    "$PYTHON" gpu_sync.py --device "$DEVICE" "${SYNC[@]}" --json "$OUT_DIR/1-sync.json" ;;
esac
case $STEPS in *2*)
  step 2 "losses" 2-losses.md capped 150 \
    "$PYTHON" bench_losses.py --device "$DEVICE" "${SYNC_DEBUG[@]}" "${LOSS_ARGS[@]}"
  step 2 "metrics" 2-metrics.md capped 150 \
    "$PYTHON" bench_metrics.py --device "$DEVICE" "${METRIC_ARGS[@]}" ;;
esac
case $STEPS in *3*)
  step 3 "training epochs" 3-train.md capped 240 \
    "$PYTHON" bench_train.py --device "$DEVICE" "${TRAIN[@]}" --json "$OUT_DIR/3-train.json" ;;
esac

# Step 4: one `focalcal reproduce` in shards (a run each) side by side, then its tables; the runs
# (with their checkpoints) in WORK, all but the checkpoints copied to OUT_DIR/4-fashion-mnist.
fashion_mnist() {
  local reproduce=("$PYTHON" -m focalcal reproduce --preset paper-cifar10 --dataset fashion-mnist
    --model "$1" --epochs "$EPOCHS" --losses "${LOSSES[@]}" --device "$DEVICE"
    --set "root=\"$FMNIST\"" --out "$WORK" --quiet "${DATA[@]}")
  local runs=${#LOSSES[@]} threads=$(($(nproc) / ${#LOSSES[@]})) shard left rc=1 pids
  mkdir -p "$WORK/logs"
  for attempt in 1 2; do  # a failed run resumes from its last checkpoint
    left=$((BUDGET - SECONDS - FINISH))
    [ $rc != 0 ] && [ $left -gt 0 ] || break
    echo "$1, $runs runs side by side (attempt $attempt): at most $left s; logs in logs/"
    pids=()
    for ((shard = 0; shard < runs; shard++)); do
      OMP_NUM_THREADS=$((threads > 0 ? threads : 1)) capped "$left" "${reproduce[@]}" \
        --shard "$shard/$runs" >>"$WORK/logs/shard-$shard.log" 2>&1 &
      pids+=($!)
    done
    rc=0
    for shard in "${!pids[@]}"; do
      wait "${pids[$shard]}" || { rc=$?; echo "run $shard (${LOSSES[$shard]}): exit $rc"; }
    done
  done
  if [ $rc = 0 ]; then  # every run finished: the tables and figures
    capped $((BUDGET - SECONDS > FINISH ? BUDGET - SECONDS : FINISH)) "${reproduce[@]}"
    rc=$?
  fi
  mkdir -p "$OUT_DIR/4-fashion-mnist"
  tar -C "$WORK" --exclude=checkpoints -cf - . | tar -C "$OUT_DIR/4-fashion-mnist" -xf -
  return $rc
}
case $STEPS in *4*)
  step 4 "plan" 4-plan.md capped 120 "$PYTHON" gpu_plan.py --device "$DEVICE" \
    --seconds $((BUDGET - SECONDS - FINISH - 20)) --train-json "$OUT_DIR/3-train.json" \
    --models "${MODELS[@]}" --epochs "$EPOCHS" --train-images "$TRAIN_IMAGES" \
    --eval-images "$EVAL_IMAGES" --start-seconds "$START" --runs ${#LOSSES[@]} \
    --json "$OUT_DIR/4-plan.json"
  model=$(sed -n 's/^plan: //p' "$OUT_DIR/4-plan.md")
  model=${model:-${MODELS[-1]}}
  KEEP=1
  [ -n "$WORK" ] || { WORK=$(mktemp -d "${TMPDIR:-/tmp}/focalcal-gpu.XXXXXX"); KEEP=0; }
  step 4 "Fashion-MNIST, $model, ${#LOSSES[@]} losses x $EPOCHS epochs" 4-reproduce.md \
    fashion_mnist "$model"
  [ $KEEP = 1 ] || rm -rf "$WORK" ;;
esac

{
  echo "# benchmarks/gpu.sh on $DEVICE"
  echo
  echo "- machine: $("$PYTHON" -c 'import sys; from focalcal._machine import describe_machine
print(describe_machine(sys.argv[1]))' "$DEVICE" 2>&1)"
  echo "- command: bash benchmarks/gpu.sh $OUT_DIR $FMNIST --device $DEVICE$([ "$TINY" = 1 ] &&
    echo ' --tiny') --budget $BUDGET --steps $STEPS"
  echo "- total: $SECONDS s of a $BUDGET s budget; step 4's files: 4-fashion-mnist/"
  echo
  echo "| step | what | status | seconds | output |"
  echo "|---|---|---|---:|---|"
  printf '%s\n' "${SUMMARY[@]}"
} >"$OUT_DIR/summary.md"
cat "$OUT_DIR/summary.md"
exit $FAILED
