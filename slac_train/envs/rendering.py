"""Offscreen MuJoCo rendering: choosing the GL backend and rendering small RGB frames fast.

The backend is chosen when an environment is built (never at import), by
:func:`robots.mujoco_gl.select_gl_backend`.
"""

from __future__ import annotations

from robots.mujoco_gl import close_at_exit, close_renderer, forget_at_exit, select_gl_backend

__all__ = ["FrameRenderer", "close_at_exit", "select_gl_backend"]


class FrameRenderer:
    """Renders ``uint8[size, size, 3]`` RGB frames of one camera of a MuJoCo model.

    ``fast=True`` turns off shadows, reflections and multisampling, which costs a 64x64 render
    3-6 ms instead of 11-40 ms on a CPU-only machine, and changes frames by up to 169/255 where
    reflections were. A training run chooses it with ``TrainConfig.fast_render`` (recorded in the
    run's config.json); the official implementation renders with dm_control's full quality.
    """

    def __init__(self, model, data, camera: int | str = -1, size: int = 64, fast: bool = True):
        select_gl_backend()
        import mujoco

        self._mujoco = mujoco
        self.model = model
        self.data = data
        self.camera = camera
        self.size = size
        self.fast = fast
        if fast:
            model.vis.quality.offsamples = 0
        self._renderer = mujoco.Renderer(model, height=size, width=size)
        if fast:
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
            self._renderer.scene.flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 1
        self.scene_option = mujoco.MjvOption()
        self._closed = False
        close_at_exit(self)

    def render(self):
        self._renderer.update_scene(self.data, camera=self.camera, scene_option=self.scene_option)
        if self.fast:
            flags = self._renderer.scene.flags
            flags[self._mujoco.mjtRndFlag.mjRND_SHADOW] = 0
            flags[self._mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        return self._renderer.render().copy()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            close_renderer(self._renderer)
            forget_at_exit(self)

    def __del__(self) -> None:
        # Dropped without close(): free the GL objects in their own context (mujoco.Renderer's own
        # __del__ would free them in whichever context is current, another renderer's).
        if not getattr(self, "_closed", True):
            self.close()
