#!/usr/bin/env bash
# Train the candidate default models on one GPU, in parallel, from a zipped prepared dataset.
# Usage (on the GPU machine, repo root): bash scripts/gpu_train.sh DATA.zip OUTDIR [EPOCH_SCALE]
# Produces OUTDIR/<name>.tar with best.safetensors, last.safetensors, history.json, args.json per run.
# The same recipes run on a CPU (slowly) with `agegender train` and the flags below.
# These are the from-scratch recipes of the 2026-11 UTKFace-only default, kept to reproduce it. Today's default
# is a fine-tune of faceres-deep: on a GPU run its card's `agegender train` command without --freeze and
# --cache-views: scripts/device_pack.py and scripts/device_finetune.sh (docs/training-at-scale.md).
set -u
zip=$1; out=$2; scale=${3:-1}; budget=${BUDGET_S:-430}
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
work=/tmp/agegender-gpu; mkdir -p "$work" "$out"
python3 -m zipfile -e "$zip" "$work/data" || exit 1
data="$work/data"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
ep() { python3 -c "print(max(1, int($1 * $scale)))"; }
run() {  # name, then train flags
  local name=$1; shift
  timeout "$budget" python3 -m agegender.cli train "$data" -o "$work/$name" --no-progress "$@" > "$out/$name.log" 2>&1
  echo "$name exit $?" >> "$out/$name.log"
  python3 - "$work/$name" <<'PY' >> "$out/$name.log" 2>&1
import sys
from safetensors import safe_open
from safetensors.torch import save_file
d = sys.argv[1]
with safe_open(f"{d}/best.safetensors", "pt") as f:  # half precision for the trip back
    save_file({k: f.get_tensor(k).half() for k in f.keys()}, f"{d}/best16.safetensors", f.metadata())
PY
  cp "$out/$name.log" "$work/$name/train.log"
  tar -cf "$out/$name.tar" -C "$work/$name" best16.safetensors history.json args.json train.log && rm "$out/$name.log"
}
common="${EXTRA:-} --time-budget $((budget - 60)) --batch-size 256 --lr 3e-3 --weight-decay 0.05 --ema 0.999 --balance 0.3 --erase 0.25"
run s96 --image-size 96 --epochs "$(ep 120)" $common --arch-kwargs '{"widths":[32,64,128,256],"blocks":[1,2,2,1]}' &
run s112 --image-size 112 --epochs "$(ep 100)" $common --arch-kwargs '{"widths":[32,64,128,256],"blocks":[1,2,2,1]}' &
run d96 --image-size 96 --epochs "$(ep 100)" $common --arch-kwargs '{"widths":[32,64,128,256],"blocks":[2,2,2,2]}' &
run m96 --image-size 96 --epochs "$(ep 90)" $common --arch-kwargs '{"widths":[40,80,160,320],"blocks":[1,2,2,2]}' &
wait
ls -la "$out"
