#!/usr/bin/env bash
# Reproduces the paper's claims on Fashion-MNIST with the byol CLI: BYOL, then the linear
# evaluation of its online encoder, of a randomly initialised encoder of the same shape and of
# the raw pixels, then the Table 5a ablations (tau 0, tau 1, no predictor) on the same budget.
# Writes OUT/results.md (a markdown table) and OUT/*.json (every report).
#
# Budget and network, all overridable from the environment:
#   EPOCHS SUBSET WIDTH HIDDEN PROJECTION BATCH LR WARMUP  training
#   EVAL_EPOCHS TRAIN_IMAGES TEST_IMAGES                   linear evaluation
#   DATA (default: Debian's dataset-fashion-mnist, else the shipped sample), OUT, BYOL
set -euo pipefail

BYOL=${BYOL:-target/release/byol}
OUT=${OUT:-runs/fashion-mnist}
EPOCHS=${EPOCHS:-100}
SUBSET=${SUBSET:-0}
WIDTH=${WIDTH:-64}
HIDDEN=${HIDDEN:-4096}
PROJECTION=${PROJECTION:-256}
BATCH=${BATCH:-256}
LR=${LR:-1.0}
WARMUP=${WARMUP:-10}
EVAL_EPOCHS=${EVAL_EPOCHS:-80}
TRAIN_IMAGES=${TRAIN_IMAGES:-0}
TEST_IMAGES=${TEST_IMAGES:-0}
DATA_ARGS=()
if [[ -n "${DATA:-}" ]]; then DATA_ARGS=(--data "$DATA"); fi

[[ -x "$BYOL" ]] || cargo build --release
mkdir -p "$OUT"
limits=()
if [[ "$TRAIN_IMAGES" != 0 ]]; then limits+=(--train-images "$TRAIN_IMAGES"); fi
if [[ "$TEST_IMAGES" != 0 ]]; then limits+=(--test-images "$TEST_IMAGES"); fi

# train NAME [extra flags...]: one BYOL run of the shared budget.
train() {
  local name=$1; shift
  if [[ ! -d "$OUT/$name/checkpoints" ]]; then
    "$BYOL" train --preset small "${DATA_ARGS[@]}" --epochs "$EPOCHS" --subset "$SUBSET" \
      --width "$WIDTH" --hidden "$HIDDEN" --projection "$PROJECTION" --batch "$BATCH" \
      --lr "$LR" --warmup-epochs "$WARMUP" --out "$OUT/$name" "$@" 2> >(tee "$OUT/$name.log" >&2)
  elif ! "$BYOL" train --resume "$OUT/$name" 2>/dev/null; then
    true # already finished
  fi
}

# evaluate NAME [flags...]: linear evaluation, report to OUT/NAME.json.
evaluate() {
  local name=$1; shift
  "$BYOL" eval linear --json --epochs "$EVAL_EPOCHS" "${limits[@]}" "$@" > "$OUT/$name.json"
}

start=$(date +%s)
train byol
train tau0 --tau 0
train tau1 --tau 1 --target-init random
train no-predictor --no-predictor
evaluate byol --checkpoint "$OUT/byol"
evaluate random-init --checkpoint "$OUT/byol" --random-init
evaluate pixels --pixels "${DATA_ARGS[@]}"
for ablation in tau0 tau1 no-predictor; do
  evaluate "$ablation" --checkpoint "$OUT/$ablation"
done

adapter=$(sed -n 's/^adapter: //p' "$OUT/byol.log" | head -n 1)
{
  echo "Fashion-MNIST, $(date -u +%Y-%m-%d), adapter: ${adapter:-unknown}"
  echo "Budget: $EPOCHS epochs of $([[ $SUBSET == 0 ]] && echo 'all' || echo "$SUBSET") training images, ResNet-18 width $WIDTH (small stem), heads $HIDDEN/$PROJECTION, batch $BATCH, lr $LR, warm-up $WARMUP epochs; linear evaluation $EVAL_EPOCHS epochs."
  echo
  echo "| run | linear top-1 (%) | top-5 (%) | final collapse std | training wall time (s) |"
  echo "|---|---|---|---|---|"
  for name in byol random-init pixels tau0 tau1 no-predictor; do
    top1=$(grep -o '"top1":[0-9.]*' "$OUT/$name.json" | cut -d: -f2)
    top5=$(grep -o '"top5":[0-9.]*' "$OUT/$name.json" | cut -d: -f2)
    std="-"; wall="-"
    if [[ -f "$OUT/$name/metrics.jsonl" ]]; then
      last=$(tail -n 1 "$OUT/$name/metrics.jsonl")
      std=$(grep -o '"collapse_std":[0-9.e-]*' <<<"$last" | cut -d: -f2)
      wall=$(grep -o '"elapsed_s":[0-9.]*' <<<"$last" | cut -d: -f2 | cut -d. -f1)
    fi
    printf '| %s | %.2f | %.2f | %s | %s |\n' "$name" "$top1" "$top5" "$std" "$wall"
  done
  echo
  echo "Total wall time: $(( $(date +%s) - start )) s."
} > "$OUT/results.md"
cat "$OUT/results.md"
