"""The virtual D'Claw's wide camera: a view wider than the task camera's, rolled and cut
off-centre, optionally through a distorting lens, as a webcam placed by hand sees the robot; and the
calibration that maps it back onto the task camera (the ground truth calibration tests compare
with)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from robots.virtual_camera import Lens, LensWarp


@dataclass(frozen=True)
class WideView:
    """A camera that sees more than the task camera: wider lens, rolled, and cut off-centre.

    The frame is rendered at ``render_width x render_height`` from the task camera's position with a
    vertical field of view ``fovy_deg`` and a roll of ``roll_deg`` about the optical axis, then a
    ``width x height`` window whose centre is ``shift_px`` from the render's centre is published.
    With a ``lens`` that distorts, that window is what the lens shows: the camera matrix stays the
    window's (:meth:`camera_matrix`), and each pixel sees the ray the lens model gives it
    (:class:`~robots.virtual_camera.LensWarp`).
    """

    fovy_deg: float = 60.0
    roll_deg: float = 3.0
    shift_px: tuple[int, int] = (12, -8)
    width: int = 320
    height: int = 240
    lens: Lens = Lens()

    @property
    def render_size(self) -> tuple[int, int]:
        return self.width + 2 * abs(self.shift_px[0]), self.height + 2 * abs(self.shift_px[1])

    def camera_matrix(self) -> np.ndarray:
        """The published frame's camera matrix ``K`` (square pixels, pixel centres at integers):
        the principal point is the render's centre, ``shift_px`` from the window's."""
        f = self.render_size[1] / 2.0 / math.tan(math.radians(self.fovy_deg) / 2.0)
        cx = (self.width - 1) / 2.0 - self.shift_px[0]
        cy = (self.height - 1) / 2.0 - self.shift_px[1]
        return np.array([[f, 0.0, cx], [0.0, f, cy], [0.0, 0.0, 1.0]])

    def lens_warp(self) -> LensWarp:
        """The rays of this view's pixels and the render that holds them."""
        matrix = self.camera_matrix()
        return LensWarp(
            self.width, self.height, matrix[0, 0], (matrix[0, 2], matrix[1, 2]), self.lens
        )

    def aim(self, sim) -> LensWarp | None:
        """Make this view ``sim``'s nominal task camera (visual randomisation jitters around it):
        rolled, and as wide as the frame needs; with a lens that distorts, the
        :class:`~robots.virtual_camera.LensWarp` that turns its pinhole render into the frame."""
        import mujoco

        m = sim.model
        cam = m.camera("task").id
        roll = math.radians(self.roll_deg)
        # Roll about the camera's optical axis (its -z axis looks forward): positive roll turns the
        # image clockwise on screen, so that rotating the frame counter-clockwise undoes it.
        quat = m.cam_quat[cam].copy()
        roll_quat = np.array([math.cos(roll / 2), 0.0, 0.0, math.sin(roll / 2)])
        mujoco.mju_mulQuat(quat, quat, roll_quat)
        fovy_deg, warp = self.fovy_deg, None
        if not self.lens.is_pinhole:
            # A pinhole render wide enough for every ray the lens sees, warped onto the frame.
            warp = self.lens_warp()
            fovy_deg = warp.render_fovy_deg
            render_w, render_h = warp.render_size
            m.vis.global_.offwidth = max(int(m.vis.global_.offwidth), render_w)
            m.vis.global_.offheight = max(int(m.vis.global_.offheight), render_h)
        sim.set_task_camera(quat=quat, fovy_deg=fovy_deg)
        return warp

    def window(self, render: np.ndarray) -> np.ndarray:
        """The published ``width x height`` window of a pinhole render of :attr:`render_size`."""
        render_w, render_h = self.render_size
        x0 = (render_w - self.width) // 2 + self.shift_px[0]
        y0 = (render_h - self.height) // 2 + self.shift_px[1]
        return np.ascontiguousarray(render[y0 : y0 + self.height, x0 : x0 + self.width])

    def expected_calibration(self, task_fovy_deg: float, output_size: int = 64):
        """The camera calibration that maps this view back onto the task camera's (ground truth):
        with a lens, the true intrinsics and the crop in their pinhole view."""
        from slac_runtime.lens import LensIntrinsics

        if not self.lens.is_pinhole:
            lens = LensIntrinsics.from_camera(
                self.camera_matrix(), self.lens.coefficients(), (self.width, self.height)
            )
            side = 2.0 * lens.pinhole_focal_px * math.tan(math.radians(task_fovy_deg) / 2)
            return self._task_view(lens.pinhole_principal_point_px, side, output_size, lens)
        render_w, render_h = self.render_size
        side = (
            render_h
            * math.tan(math.radians(task_fovy_deg) / 2)
            / math.tan(math.radians(self.fovy_deg) / 2)
        )
        # Window origin inside the render, then the task view's centre inside the window.
        x0 = (render_w - self.width) // 2 + self.shift_px[0]
        y0 = (render_h - self.height) // 2 + self.shift_px[1]
        centre = ((render_w - 1) / 2 - x0, (render_h - 1) / 2 - y0)
        return self._task_view(centre, side, output_size)

    def _task_view(self, centre, side: float, output_size: int, intrinsics=None):
        """The calibration whose square crop of ``side`` pixels is centred on ``centre``."""
        from slac_runtime.preprocessing import CameraCalibration

        (cx, cy), s = centre, int(round(side))
        return CameraCalibration(
            crop=(int(round(cx - (s - 1) / 2)), int(round(cy - (s - 1) / 2)), s, s),
            rotation_deg=self.roll_deg,
            output_size=output_size,
            source_size=(self.width, self.height),
            intrinsics=intrinsics,
        )
