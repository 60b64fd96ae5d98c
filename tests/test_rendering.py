"""Offscreen rendering: backend choice at construction (not import) and RGB channel order."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np

RED_BOX = """
<mujoco>
  <visual><headlight ambient="1 1 1" diffuse="0 0 0" specular="0 0 0"/></visual>
  <worldbody>
    <camera name="cam" pos="0 0 1" xyaxes="1 0 0 0 1 0" fovy="30"/>
    <geom type="box" size="1 1 0.01" rgba="1 0 0 1"/>
  </worldbody>
</mujoco>
"""


def test_frames_are_rgb():
    import mujoco

    from slac_train.envs.rendering import FrameRenderer

    model = mujoco.MjModel.from_xml_string(RED_BOX)
    data = mujoco.MjData(model)
    mujoco.mj_forward(model, data)
    renderer = FrameRenderer(model, data, camera="cam", size=64)
    try:
        frame = renderer.render()
    finally:
        renderer.close()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    r, g, b = frame.reshape(-1, 3).mean(axis=0)
    assert r > 200 and g < 30 and b < 30, (r, g, b)


def test_freeing_one_renderer_leaves_another_intact():
    """Freeing (or dropping) a renderer while another's GL context is current must not delete the
    other's framebuffers: MuJoCo frees in the current context, and GL names are per context."""
    import gc

    import mujoco

    from robots.dclaw.sim import DClawSim
    from slac_train.envs.rendering import FrameRenderer

    def box(colour: str) -> FrameRenderer:
        model = mujoco.MjModel.from_xml_string(
            RED_BOX.replace('rgba="1 0 0 1"', f'rgba="{colour} 1"')
        )
        data = mujoco.MjData(model)
        mujoco.mj_forward(model, data)
        return FrameRenderer(model, data, camera="cam", size=64)

    red, green = box("1 0 0"), box("0 1 0")
    try:
        red.render()
        expected = green.render()  # green's context is now the current one
        red.close()
        assert np.array_equal(green.render(), expected)
        blue = box("0 0 1")
        blue.render()
        green.render()  # green's context is current when blue is dropped without close()
        del blue
        gc.collect()
        assert np.array_equal(green.render(), expected)
    finally:
        green.close()

    first, second = DClawSim("valve", render_size=64), DClawSim("valve", render_size=64)
    try:
        first.render()
        expected = second.render()
        first.close()
        assert np.array_equal(second.render(), expected)
    finally:
        second.close()


def run_without_gl_choice(code: str) -> subprocess.CompletedProcess:
    """``python -c code`` with neither MUJOCO_GL nor PYOPENGL_PLATFORM set."""
    env = {k: v for k, v in os.environ.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_import_chooses_no_backend_and_make_env_does():
    code = (
        "import os, sys\n"
        "import slac_train.envs as envs\n"
        "assert 'mujoco' not in sys.modules, 'importing slac_train.envs imported mujoco'\n"
        "assert 'MUJOCO_GL' not in os.environ\n"
        "env = envs.make_env('cartpole-swingup', seed=0)\n"
        "obs, _ = env.reset()\n"
        "print(os.environ['MUJOCO_GL'], obs.shape)\n"
        "env.close()\n"
    )
    out = run_without_gl_choice(code)
    assert out.returncode == 0, out.stderr
    backend, shape = out.stdout.split(maxsplit=1)
    assert backend in ("egl", "osmesa")
    assert shape.strip() == "(64, 64, 3)"


def test_no_backend_gives_install_hint():
    code = (
        "import os\n"
        "import robots.mujoco_gl as r\n"
        "r._BACKENDS = ('no-such-backend',)\n"
        "try:\n"
        "    r.select_gl_backend()\n"
        "except RuntimeError as e:\n"
        "    print(e)\n"
    )
    out = run_without_gl_choice(code)
    assert "apt-get install" in out.stdout and "libosmesa6" in out.stdout, out.stdout + out.stderr


def test_an_unclosed_dclaw_env_exits_without_gl_errors():
    # The GL contexts must be freed before MuJoCo's EGL display is torn down at exit.
    code = (
        "from slac_train.envs import make_env\n"
        "e = make_env('dclaw-turn', seed=0)\n"
        "e.reset()\n"
        "print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr
    assert "Exception ignored" not in result.stderr and "EGLError" not in result.stderr, (
        result.stderr
    )
