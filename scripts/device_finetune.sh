#!/usr/bin/env bash
# The default's recipe with every layer trained, on a lent GPU, from parts packed by scripts/device_pack.py
# (docs/training-at-scale.md; the calls in order: device/plan.md). Run from the repo root.
#   bash scripts/device_finetune.sh unpack device/partK   # on the device: unzip one part into the repo root
#   bash scripts/device_finetune.sh train                 # on the device: the runs, results to $OUT/NAME.tar
#   bash scripts/device_finetune.sh receive FILES_AT      # here: each NAME.tar to runs/gpu-NAME
# train runs three runs side by side: the default card's command without --freeze and --cache-views, with
# --distill 0.5 (the best CPU recipe so far) at seeds 2 and 3, and seed 2 at a third of the learning rate.
# EPOCHS, BUDGET_S (each run's --time-budget), DEVICE, RUNS (names: s2 s3 lr1) and EXTRA (more train flags)
# override; a run's weights come back as float16 (half the transfer).
set -u
mode=${1:-}
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1
case "$mode" in
unpack)
  python3 -m zipfile -e "$2/part.zip" . || exit 1
  du -sh data runs 2>/dev/null
  ;;
train)
  out=${OUT:-runs/device-out}; mkdir -p "$out"
  plan=runs/device.json
  [ -f "$plan" ] || { echo "no $plan: unpack every part first" >&2; exit 1; }
  get() { python3 -c "import json,sys; v=json.load(open('$plan'))[sys.argv[1]]; print(' '.join(v) if isinstance(v, list) else v)" "$1"; }
  data=$(get data); init=$(get init); teacher=$(get teacher); answers=$(get answers)
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
  one() {  # name, then the flags that differ
    local name=$1; shift
    local dir=runs/gpu-$name
    mkdir -p "$dir" && cp "$answers" "$dir/teacher.npz"
    # shellcheck disable=SC2086
    python3 -m agegender.cli train $data -o "$dir" --init "$init" --teacher "$teacher" \
      --image-size 140 --margin 0.0 --camera --distill 0.5 --balance 0.5 --balance-sources \
      --epochs "${EPOCHS:-8}" --batch-size 64 --warmup-epochs 0.3 --weight-decay 0.01 \
      --device "${DEVICE:-cuda}" --workers 4 --threads 2 --time-budget "${BUDGET_S:-420}" --no-progress \
      ${EXTRA:-} "$@" > "$dir/train.log" 2>&1
    echo "$name exit $?" >> "$dir/train.log"
    python3 - "$dir" <<'PY' >> "$dir/train.log" 2>&1
import sys
from safetensors import safe_open
from safetensors.torch import save_file
d = sys.argv[1]
with safe_open(f"{d}/last.safetensors", "pt") as f:
    save_file({k: f.get_tensor(k).half() if f.get_tensor(k).is_floating_point() else f.get_tensor(k)
               for k in f.keys()}, f"{d}/last16.safetensors", f.metadata())
PY
    tar -cf "$out/$name.tar" -C "$dir" last16.safetensors history.json args.json train.log
    tail -n 3 "$dir/train.log"
  }
  for name in ${RUNS:-s2 s3 lr1}; do
    case "$name" in
      s2) one s2 --seed 2 --lr 3e-4 & ;;
      s3) one s3 --seed 3 --lr 3e-4 & ;;
      lr1) one lr1 --seed 2 --lr 1e-4 & ;;
      *) echo "unknown run $name" >&2 ;;
    esac
  done
  wait
  ls -la "$out"
  ;;
receive)
  for t in "$2"/*.tar; do
    name=$(basename "$t" .tar); dir=runs/gpu-$name
    mkdir -p "$dir" && tar -xf "$t" -C "$dir" && mv "$dir/last16.safetensors" "$dir/last.safetensors"
    echo "$dir: $(grep -c '^epoch' "$dir/train.log") epochs; $(grep 'exit' "$dir/train.log")"
  done
  ;;
*)
  sed -n 2,11p "$0" >&2; exit 2
  ;;
esac
