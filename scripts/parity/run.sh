#!/usr/bin/env bash
# BYOL in byol-wgpu and in PyTorch at equal work on Fashion-MNIST, every encoder scored by one
# evaluator (evaluate.py: frozen features of the 60k/10k images, scikit-learn's logistic
# regression), with a random-init and a raw-pixels row, for SEEDS (default 0 1 2) on both
# sides and TORCH_SEEDS (default none) in PyTorch alone, which is cheap. Writes
# OUT/parity.json and prints each program's mean (summary.py).
#
# Work: the first 10,240 training images, 3 epochs (240 steps of 128), the quick preset's
# network and recipe (ResNet-18 width 8, small stem, heads 512/128, LARS lr 1.0 x 128/256,
# eta 0.02 clipped, wd 1e-5, warm-up 0.3 epoch then cosine, tau 0.99 -> 1, blur off).
# UNCLIPPED=1: both programs with LARS unclipped instead (the recipe before clipping), written
# under OUT/unclipped.
# Needs: Debian's dataset-fashion-mnist; pip install torch torchvision scikit-learn safetensors.
# About 14 minutes per byol-wgpu run and 1 per PyTorch run on 2 cores with lavapipe, and 1-2
# minutes per encoder to evaluate.
set -euo pipefail
cd "$(dirname "$0")"
BYOL=${BYOL:-../../target/release/byol}
OUT=${OUT:-../../runs/parity}
WORK=(--subset 10240 --epochs 3 --warmup-epochs 0.3)
TORCH_LARS=(--clip-lars)
if [[ -n ${UNCLIPPED:-} ]]; then
  OUT=$OUT/unclipped WORK+=(--lars-clip false) TORCH_LARS=()
fi
mkdir -p "$OUT"

wgpu() { # NAME [flags...]: a byol-wgpu run and its exported online encoder
  local name=$1; shift
  [[ -f "$OUT/$name.safetensors" ]] && return
  "$BYOL" train "${WORK[@]}" "$@" --out "$OUT/$name"
  "$BYOL" export --checkpoint "$OUT/$name" --out "$OUT/$name.safetensors"
}
torch() { # NAME [flags...]: a PyTorch run
  local name=$1; shift
  [[ -f "$OUT/$name.safetensors" ]] && return
  python3 torch_byol.py "${TORCH_LARS[@]}" "$@" --out "$OUT/$name.safetensors" --log "$OUT/$name.jsonl"
}

encoders=()
for seed in ${SEEDS:-0 1 2}; do
  wgpu "byol-wgpu-seed$seed" --seed "$seed"       # the quick preset's recipe
  torch "pytorch-seed$seed" --seed "$seed"
  encoders+=("byol-wgpu-seed$seed=$OUT/byol-wgpu-seed$seed.safetensors" "pytorch-seed$seed=$OUT/pytorch-seed$seed.safetensors")
done
for seed in ${TORCH_SEEDS:-}; do
  torch "pytorch-seed$seed" --seed "$seed"
  encoders+=("pytorch-seed$seed=$OUT/pytorch-seed$seed.safetensors")
done
if [[ -n ${PAPER_VIEWS:-} ]]; then # the paper's views as well (one more byol-wgpu run)
  wgpu byol-wgpu-paper-views --brightness additive --interpolation bicubic
  encoders+=("byol-wgpu-paper-views=$OUT/byol-wgpu-paper-views.safetensors")
fi
python3 evaluate.py "${encoders[@]}" --random-init random-init --pixels raw-pixels --json "$OUT/parity.json"
python3 summary.py "$OUT/parity.json"
