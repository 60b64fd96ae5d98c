#!/usr/bin/env bash
# Run on a GPU machine that has no network access, from a copy of the repository that includes
# the .gpu/ folder made by pack.sh:
#
#     OUT=/path/to/results bash benchmarks/learning/gpu/run.sh paper-dmc 540
#
# One command does everything within BUDGET_S seconds (default 540) and leaves only what matters
# in $OUT (default /tmp/slac-gpu-out):
#   1. installs the packed simulators and Ray (.gpu/site.tar.xz) and GL loaders (.gpu/gl) into /tmp
#   2. measures one model + actor-critic update with the paper's networks on the GPU
#      (benchmarks/update_speed.py: about 30 s)
#   3. runs the slac-sweep SUITE (default paper-dmc: the paper's 6 DM Control tasks x 10 seeds) on
#      a local Ray instance, GPUS_PER_TRIAL of the GPU and CPUS_PER_TRIAL cores per trial, until
#      BUDGET_S seconds after the script began, then stops it with SIGINT (every trial checkpoints)
#      and writes the results table and curves of what the trials reached (--report-only);
#      running the script again on the same SWEEP_DIR resumes the trials
#   4. copies to $OUT: results.md, results.json, curves/, the trials' eval.csv and summary.json,
#      the update timings and the log
# Environment: GL_INSTALL=0 skips unpacking the GL loaders into / (for a trial run on a machine
# that has them), ENV_STEPS (default 100000), TASKS and SEEDS (default: the suite's, e.g.
# TASKS="walker-walk cheetah-run" SEEDS="0 1"), GPUS_PER_TRIAL (0.25), CPUS_PER_TRIAL (2),
# SWEEP_DIR (/tmp/slac-sweeps/SUITE), SETS (more --set KEY=VALUE options; default: the CPU runs'
# model learning rate and a 2,000-update pre-training, since the paper's 100,000 pre-training
# updates alone outlast a short budget).
set -uo pipefail
SUITE=${1:-paper-dmc}
BUDGET_S=${2:-540}
START=$(date +%s)
OUT=${OUT:-/tmp/slac-gpu-out}
ENV_STEPS=${ENV_STEPS:-100000}
GPUS_PER_TRIAL=${GPUS_PER_TRIAL:-0.25}
CPUS_PER_TRIAL=${CPUS_PER_TRIAL:-2}
SWEEP_DIR=${SWEEP_DIR:-/tmp/slac-sweeps/$SUITE}
SETS=${SETS:---set lr_model=1e-3 --set model_pretrain_steps=2000 --set initial_collection_steps=2000}
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
import mujoco, ray, torch
from dm_control import suite
from slac_train.envs import make_env
env = make_env("walker-walk", seed=0)
frame, _ = env.reset()
print(f"torch {torch.__version__} cuda {torch.cuda.is_available()}  mujoco {mujoco.__version__}  "
      f"ray {ray.__version__}  "
      f"frame {frame.shape} mean {frame.mean():.1f}")
env.close()
PY

DEVICE=cpu
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" && DEVICE=cuda
echo "== update timings on $DEVICE $(date -u +%FT%TZ)"
"$PY" benchmarks/update_speed.py --device "$DEVICE" --repeats 5 --no-baseline | tee "$OUT/update_speed.jsonl"

LEFT=$(( BUDGET_S - ($(date +%s) - START) - 60 ))  # 60 s for the SIGINT checkpoints and the report
GPUS=0
[ "$DEVICE" = cuda ] && GPUS=$GPUS_PER_TRIAL
sweep=("$PY" -m slac_train.sweep.cli --suite "$SUITE" --env-steps "$ENV_STEPS" --sweep-dir "$SWEEP_DIR")
[ -n "${TASKS:-}" ] && sweep+=(--tasks $TASKS)
[ -n "${SEEDS:-}" ] && sweep+=(--seeds $SEEDS)
echo "== sweep $SUITE on $DEVICE for ${LEFT} s $(date -u +%FT%TZ)"
if [ "$LEFT" -gt 30 ]; then
    # timeout signals its whole process group: slac-sweep stops its trials, each checkpoints
    timeout -s INT -k 90 "$LEFT" "${sweep[@]}" --gpus-per-trial "$GPUS" --cpus-per-trial "$CPUS_PER_TRIAL" \
        --set eval_video=false --set reconstruction_video=false $SETS
    echo "slac-sweep exited with $?"
else
    echo "no time left to train"
fi
"${sweep[@]}" --report-only --set eval_video=false --set reconstruction_video=false $SETS \
    || echo "(the sweep's report failed)"
cp -r "$SWEEP_DIR"/results.md "$SWEEP_DIR"/results.json "$SWEEP_DIR"/curves "$OUT/" 2>/dev/null
for run in "$SWEEP_DIR"/runs/*/; do
    name=$(basename "$run")
    for f in eval.csv summary.json; do
        [ -f "$run/$f" ] && mkdir -p "$OUT/runs/$name" && cp "$run/$f" "$OUT/runs/$name/"
    done
done
echo "== done after $(( $(date +%s) - START )) s; in $OUT: $(ls "$OUT" | tr '\n' ' ')"
