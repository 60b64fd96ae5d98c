"""Choosing MuJoCo's offscreen OpenGL backend, at run time and before mujoco is imported.

``MUJOCO_GL`` is respected when set; otherwise EGL is tried, then OSMesa, each in a throw-away
subprocess (MuJoCo fixes its backend when first imported, so a failed try cannot be undone
in-process). Call :func:`select_gl_backend` in ``main()`` or when building a simulator, never at
import time.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import weakref

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


def close_renderer(renderer) -> None:
    """Free a ``mujoco.Renderer`` in its own GL context.

    ``Renderer.close`` frees the MuJoCo render context (its framebuffers, textures and buffers) in
    whichever GL context is current, which is the context of the renderer that last rendered or was
    made. GL names are per context, so freeing renderer A while B's context is current deletes B's
    objects with the same names, and B renders garbage from then on. Making A's context current
    first keeps B intact (B makes its own context current again before it renders).
    """
    gl_context = getattr(renderer, "_gl_context", None)
    if gl_context is not None and getattr(renderer, "_mjr_context", None) is not None:
        gl_context.make_current()
    renderer.close()


_OPEN: weakref.WeakSet = weakref.WeakSet()  # renderers and simulators holding GL contexts


def _close_open() -> None:
    # Free GL contexts while the GL library and its display are still there: contexts freed during
    # interpreter shutdown make MuJoCo print "Exception ignored in Renderer.__del__" noise.
    for holder in list(_OPEN):
        holder.close()


def close_at_exit(holder) -> None:
    """Close ``holder`` (a renderer, a simulator or an environment holding GL contexts; anything
    with ``close()``) when the interpreter exits, before any GL display is torn down.

    MuJoCo's EGL module and dm_control's renderer each register the display's ``eglTerminate``
    with ``atexit`` (the first when its first context is made, the second when it is imported), and
    ``atexit`` runs the last registered first. This hook is registered again on every call, so it
    runs before every teardown registered until then: a D'Claw simulator made before a DM Control
    environment is closed before dm_control terminates the display they share.
    """
    _OPEN.add(holder)
    atexit.unregister(_close_open)
    atexit.register(_close_open)


def forget_at_exit(holder) -> None:
    """``holder`` was closed: nothing to close at exit."""
    _OPEN.discard(holder)
