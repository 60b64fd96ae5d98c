#!/usr/bin/env bash
# Run on a GPU machine that has no network access, from a copy of the repository that includes
# the .gpu/ folder made by pack.sh:
#
#     OUT=/path/to/results bash benchmarks/learning/gpu/run.sh walker-walk 540
#
# One command does everything within BUDGET_S seconds (default 540) and leaves only what matters
# in $OUT (default /tmp/slac-gpu-out):
#   1. installs the packed simulators (.gpu/site.tar.xz) and GL loaders (.gpu/gl) into /tmp
#   2. measures one model + actor-critic update with the paper's networks on the GPU
#      (benchmarks/update_speed.py: about 30 s)
#   3. trains SLAC with the paper's networks on TASK (benchmarks/learning/run_experiment.py
#      --preset paper --device cuda) until BUDGET_S seconds after the script began, then stops it
#      with SIGINT (the trainer checkpoints, as on Ctrl-C) and writes the result JSON and curve
#      of what it reached (--report-only)
#   4. copies to $OUT: the result JSON and PNG, eval.csv, summary.json, metrics.jsonl, the update
#      timings and the log (7 files)
# Environment: GL_INSTALL=0 skips unpacking the GL loaders into / (for a trial run on a machine
# that has them), ENV_STEPS (default 100000), EVAL_EVERY (5000), SEED (0), EXTRA (more slac-train
# options; default: the CPU runs' model learning rate and a 2,000-update pre-training, since the
# paper's 100,000 pre-training updates alone outlast a short budget).
set -uo pipefail
TASK=${1:?usage: run.sh TASK [BUDGET_S]}
BUDGET_S=${2:-540}
START=$(date +%s)
OUT=${OUT:-/tmp/slac-gpu-out}
ENV_STEPS=${ENV_STEPS:-100000}
EVAL_EVERY=${EVAL_EVERY:-5000}
SEED=${SEED:-0}
EXTRA=${EXTRA:---lr-model 1e-3 --model-pretrain-steps 2000 --initial-collection-steps 2000}
cd "$(dirname "$0")/../../.."
mkdir -p "$OUT"
LOG="$OUT/run.log"
exec > >(tee -a "$LOG") 2>&1

echo "== setup $(date -u +%FT%TZ)"
[ -f .gpu/site.tar.xz ] || { echo "no .gpu/site.tar.xz: run benchmarks/learning/gpu/pack.sh on a connected machine and copy .gpu/ here"; exit 2; }
if [ "${GL_INSTALL:-1}" = 1 ] && [ "$(id -u)" = 0 ] && ls .gpu/gl/*.deb >/dev/null 2>&1; then
    for deb in .gpu/gl/*.deb; do dpkg -x "$deb" /; done
    ldconfig
fi
vendor=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json  # where the device mounts its driver
[ -z "${__EGL_VENDOR_LIBRARY_FILENAMES:-}" ] && [ -f "$vendor" ] && export __EGL_VENDOR_LIBRARY_FILENAMES="$vendor"
PY=${PYTHON:-python3}
UNPACKED=/tmp/slac-gpu  # the archive holds one folder, site/
# Python's own tarfile: the image need not have xz
"$PY" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" \
    .gpu/site.tar.xz "$UNPACKED" || exit 2
SITE="$UNPACKED/site"
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" MUJOCO_GL=${MUJOCO_GL:-egl} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "(no nvidia-smi)"
"$PY" - <<'PY' || exit 3
import mujoco, torch
from dm_control import suite
from slac_train.envs import make_env
env = make_env("walker-walk", seed=0)
frame, _ = env.reset()
print(f"torch {torch.__version__} cuda {torch.cuda.is_available()}  mujoco {mujoco.__version__}  "
      f"frame {frame.shape} mean {frame.mean():.1f}")
env.close()
PY

DEVICE=cpu
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && DEVICE=cuda
echo "== update timings on $DEVICE $(date -u +%FT%TZ)"
"$PY" benchmarks/update_speed.py --device "$DEVICE" --repeats 5 --no-baseline | tee "$OUT/update_speed.jsonl"

LEFT=$(( BUDGET_S - ($(date +%s) - START) - 45 ))  # 45 s for the SIGINT checkpoint and the report
echo "== training $TASK on $DEVICE for ${LEFT} s $(date -u +%FT%TZ)"
RUNS=/tmp/slac-runs
args=(benchmarks/learning/run_experiment.py --task "$TASK" --preset paper --device "$DEVICE"
      --env-steps "$ENV_STEPS" --eval-every "$EVAL_EVERY" --seeds "$SEED" --runs-root "$RUNS" --out "$OUT"
      --label gpu)
if [ "$LEFT" -gt 30 ]; then
    # timeout signals its whole process group: run_experiment.py and the slac-train it runs
    timeout -s INT -k 60 "$LEFT" "$PY" "${args[@]}" --extra --no-eval-video --no-reconstruction-video $EXTRA
    echo "run_experiment exited with $?"
else
    echo "no time left to train"
fi
"$PY" "${args[@]}" --report-only || echo "(no evaluation reached yet: nothing to report)"
RUN_DIR="$RUNS/$TASK-paper-$((ENV_STEPS / 1000))k-gpu-s$SEED"
for f in eval.csv summary.json metrics.jsonl; do
    [ -f "$RUN_DIR/$f" ] && cp "$RUN_DIR/$f" "$OUT/"
done
echo "== done after $(( $(date +%s) - START )) s; in $OUT: $(ls "$OUT" | tr '\n' ' ')"
