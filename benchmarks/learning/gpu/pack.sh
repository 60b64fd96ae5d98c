#!/usr/bin/env bash
# Run on a machine with pip and apt access, to prepare a GPU machine that has no network access:
#
#     bash benchmarks/learning/gpu/pack.sh
#
# The GPU machine has Python 3.12, CUDA PyTorch, numpy, onnx, OpenCV and matplotlib, but not the
# simulators, and it cannot download anything. This packs what it lacks into .gpu/ (git-ignored),
# which travels to the GPU machine with the repository:
#   .gpu/site.tar.xz  the pinned versions (requirements/constraints.txt) of mujoco, dm_control, Ray
#                     (slac-sweep's scheduler) and their needs, built for CPython $PY_VERSION (3.12)
#                     on x86-64, without what the DM Control suite and slac-sweep do not use
#                     (dm_control's locomotion and dog assets, MuJoCo's experimental renderers,
#                     Ray's Java jars, RLlib, Serve, LLM and dashboard web client)
#   .gpu/gl/*.deb     the GL vendor-neutral loaders (libEGL, libOpenGL), which MuJoCo's EGL
#                     rendering needs and the image may lack; unpacked there with dpkg -x
set -euo pipefail
cd "$(dirname "$0")/../../.."
OUT=${GPU_DIR:-.gpu}
PY_VERSION=${PY_VERSION:-3.12}  # the GPU image's Python
NAMES='mujoco|dm_control|dm-env|dm-tree|labmaze|glfw|PyOpenGL|gymnasium|Farama-Notifications|cloudpickle|pyzmq|pyserial|dynamixel-sdk|ray|click|msgpack|PyYAML|jsonschema|jsonschema-specifications|referencing|rpds-py|attrs|requests|urllib3|idna|certifi|charset-normalizer'
mapfile -t PINS < <(grep -E "^(${NAMES})==" requirements/constraints.txt)
[ "${#PINS[@]}" -ge 10 ] || { echo "pack.sh: expected the simulator pins in requirements/constraints.txt, found: ${PINS[*]}" >&2; exit 1; }

rm -rf "$OUT/wheels" "$OUT/site" "$OUT/site.tar.xz" "$OUT/gl"
mkdir -p "$OUT/wheels" "$OUT/site" "$OUT/gl"
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_26_x86_64 manylinux_2_24_x86_64 \
           manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms+=(--platform "$tag")
done
python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "$PY_VERSION" --implementation cp \
    "${platforms[@]}" -d "$OUT/wheels" "${PINS[@]}" 2> >(grep -v "is ignored: it is neither" >&2)
for wheel in "$OUT"/wheels/*.whl; do
    python3 -m zipfile -e "$wheel" "$OUT/site"
done
rm -rf "$OUT/site/dm_control/locomotion" "$OUT/site/dm_control/suite/dog_assets" "$OUT/site/mujoco/experimental"
# Ray parts slac-sweep never loads: Java jars, RLlib, Serve, LLM, the dashboard's web client
rm -rf "$OUT/site/ray/jars" "$OUT/site/ray/rllib" "$OUT/site/ray/serve" "$OUT/site/ray/llm" "$OUT/site/ray/dashboard/client"
tar -C "$OUT" -cJf "$OUT/site.tar.xz" site
rm -rf "$OUT/wheels" "$OUT/site"

# GL loaders for amd64 (the GPU machine's processor), whatever this machine's is
lists=/tmp/slac-gpu-apt-lists
mkdir -p "$lists/partial"
apt_opts=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 "-oDir::State::Lists=$lists")
if apt-get "${apt_opts[@]}" update >/dev/null 2>&1 \
   && (cd "$OUT/gl" && apt-get "${apt_opts[@]}" download libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null); then
    :
else
    echo "pack.sh: could not download the GL loaders (apt); the run will rely on the image's own" >&2
fi
du -sh "$OUT"/site.tar.xz "$OUT"/gl
echo "packed $OUT: copy it to the GPU machine with the repository, then run benchmarks/learning/gpu/run.sh there"
