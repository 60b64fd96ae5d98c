"""Choosing MuJoCo's offscreen OpenGL backend, at run time and before mujoco is imported.

``MUJOCO_GL`` is respected when set; otherwise EGL is tried, then OSMesa, each in a throw-away
subprocess (MuJoCo fixes its backend when first imported, so a failed try cannot be undone
in-process). Call :func:`select_gl_backend` in ``main()`` or when building a simulator, never at
import time.
"""

from __future__ import annotations

import os
import subprocess
import sys

_PROBE = "import mujoco; c = mujoco.GLContext(64, 64); c.make_current(); c.free()"
_BACKENDS = ("egl", "osmesa")
_INSTALL_HINT = (
    "no working OpenGL backend for offscreen MuJoCo rendering. Install EGL "
    "(Debian/Ubuntu: `apt-get install libegl1 libgl1`) or OSMesa (`apt-get install libosmesa6`), "
    "or set MUJOCO_GL to a backend that works on this machine"
)


def select_gl_backend() -> str:
    """Make sure ``MUJOCO_GL`` names a working backend before mujoco is imported; return it."""
    chosen = os.environ.get("MUJOCO_GL")
    if chosen:
        return chosen
    if "mujoco" in sys.modules:
        # Already imported without MUJOCO_GL: MuJoCo picked its own default; nothing to change.
        return "default"
    for backend in _BACKENDS:
        env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
        try:
            probe = subprocess.run(
                [sys.executable, "-c", _PROBE], env=env, capture_output=True, timeout=60
            )
        except subprocess.TimeoutExpired:
            continue
        if probe.returncode == 0:
            os.environ["MUJOCO_GL"] = backend
            os.environ.setdefault("PYOPENGL_PLATFORM", backend)
            return backend
    raise RuntimeError(_INSTALL_HINT)
