"""How well the camera match score tells a correct camera calibration from a wrong one.

    python benchmarks/camera_match.py [--json camera_match.json]

The virtual D'Claw's wide camera (320x240, 60 degree field of view, rolled 3 degrees, off-centre)
is rendered once with the claw in its reset pose above the valve. Each case changes that frame as
a real webcam or room would -- colour gain, offset and gamma, brightness +-30 %, blur, noise,
JPEG, other lights and colours, and combinations -- and calibrates it either correctly (the view's
true crop, rotation and flip) or wrongly (crop 10 px off, rotated 5 degrees, flipped, and
combinations, under the same colour changes). The score of every case
(:func:`slac_runtime.view_match.match_score` between the calibrated 64x64 frame and the task
camera's render) is printed as a table, with the margins: the worst correct score and the best
wrong score on either side of :data:`~slac_runtime.view_match.MATCH_THRESHOLD`. ``--json``
writes the same numbers. tests/test_view_match.py checks the same cases.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from slac_runtime.preprocessing import CameraCalibration, preprocess_frame
from slac_runtime.view_match import MATCH_THRESHOLD, match_score

FrameChange = Callable[[np.ndarray], np.ndarray]  # uint8[H, W, 3] RGB -> the same, changed


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def gain(r: float, g: float, b: float) -> FrameChange:
    return lambda f: _to_uint8(f.astype(np.float32) * np.array([r, g, b], np.float32))


def offset(r: float, g: float, b: float) -> FrameChange:
    return lambda f: _to_uint8(f.astype(np.float32) + np.array([r, g, b], np.float32))


def gamma(exponent: float) -> FrameChange:
    return lambda f: _to_uint8(255.0 * (f.astype(np.float32) / 255.0) ** exponent)


def blur(sigma_px: float) -> FrameChange:
    return lambda f: cv2.GaussianBlur(f, (0, 0), sigma_px)


def noise(sigma: float, seed: int = 0) -> FrameChange:
    rng = np.random.default_rng(seed)
    return lambda f: _to_uint8(f.astype(np.float32) + rng.normal(0.0, sigma, f.shape))


def jpeg(quality: int) -> FrameChange:
    def change(f: np.ndarray) -> np.ndarray:
        ok, data = cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        return np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[:, :, ::-1])

    return change


def chain(*changes: FrameChange) -> FrameChange:
    def change(f: np.ndarray) -> np.ndarray:
        for c in changes:
            f = c(f)
        return f

    return change


def unchanged(f: np.ndarray) -> np.ndarray:
    return f


# Colour changes a webcam or a room makes, by name; "lights N" are other lights and colours drawn
# by the simulator's visual randomisation (seed N), with the camera where it is.
RECOLOURINGS: dict[str, FrameChange] = {
    "as rendered": unchanged,
    "gain (1.3, 0.9, 0.75)": gain(1.3, 0.9, 0.75),
    "gain (0.7, 0.85, 1.2)": gain(0.7, 0.85, 1.2),
    "offset +30": offset(30, 30, 30),
    "offset (-20, 10, 25)": offset(-20, 10, 25),
    "gamma 0.6": gamma(0.6),
    "gamma 1.6": gamma(1.6),
    "brightness -30%": gain(0.7, 0.7, 0.7),
    "brightness +30%": gain(1.3, 1.3, 1.3),
    "blur 1.5 px": blur(1.5),
    "noise 10": noise(10.0),
    "JPEG 60": jpeg(60),
    "JPEG 30": jpeg(30),
    "lights 1": unchanged,
    "lights 2": unchanged,
    "lights 3": unchanged,
    "lights 4": unchanged,
    "gain, offset, gamma 1.4": chain(gain(1.2, 0.9, 0.8), offset(15, 5, -10), gamma(1.4)),
    "-30%, blur, noise, JPEG 60": chain(gain(0.7, 0.7, 0.7), blur(1.0), noise(8.0), jpeg(60)),
    "lights 5, gamma 0.7, JPEG 50": chain(gamma(0.7), jpeg(50)),
    "lights 6, +30%, noise 6": chain(gain(1.3, 1.3, 1.3), noise(6.0, seed=1)),
    "gain, gamma 0.6, blur, noise, JPEG 40": chain(
        gain(0.8, 1.0, 1.25), gamma(0.6), blur(1.2), noise(6.0, seed=2), jpeg(40)
    ),
}


def lights_seed(recolouring: str) -> int | None:
    """The visual randomisation's seed a recolouring names ("lights N, ..."), if any."""
    if not recolouring.startswith("lights "):
        return None
    return int(recolouring.split(",")[0].split()[1])


def shifted(c: CameraCalibration, dx_px: int, dy_px: int) -> CameraCalibration:
    x, y, w, h = c.crop
    return dataclasses.replace(c, crop=(x + dx_px, y + dy_px, w, h))


def rotated(c: CameraCalibration, delta_deg: float) -> CameraCalibration:
    return dataclasses.replace(c, rotation_deg=c.rotation_deg + delta_deg)


def flipped(c: CameraCalibration, horizontal: bool, vertical: bool) -> CameraCalibration:
    return dataclasses.replace(c, flip_horizontal=horizontal, flip_vertical=vertical)


# Wrong calibrations, made from the true one.
MISTAKES: dict[str, Callable[[CameraCalibration], CameraCalibration]] = {
    "crop 10 px right": lambda c: shifted(c, 10, 0),
    "crop 10 px left": lambda c: shifted(c, -10, 0),
    "crop 10 px down": lambda c: shifted(c, 0, 10),
    "crop 10 px up": lambda c: shifted(c, 0, -10),
    "crop 7 px right and down": lambda c: shifted(c, 7, 7),
    "rotated +5 deg": lambda c: rotated(c, 5.0),
    "rotated -5 deg": lambda c: rotated(c, -5.0),
    "flipped left-right": lambda c: flipped(c, True, False),
    "flipped upside down": lambda c: flipped(c, False, True),
    "flipped both ways": lambda c: flipped(c, True, True),
    "crop 10 px right, rotated +5 deg": lambda c: rotated(shifted(c, 10, 0), 5.0),
    "crop 10 px up, rotated -5 deg": lambda c: rotated(shifted(c, 0, -10), -5.0),
    "crop 10 px left, flipped left-right": lambda c: flipped(shifted(c, -10, 0), True, False),
}
# The recolourings each mistake is tried under.
MISTAKE_RECOLOURINGS = ("as rendered", "gain, offset, gamma 1.4", "lights 3")


@dataclass(frozen=True)
class Case:
    name: str
    correct: bool
    frame_rgb: np.ndarray  # uint8[H, W, 3]: the wide camera's frame, recoloured
    calibration: CameraCalibration


@dataclass(frozen=True)
class Scene:
    """The expected task view and the wide camera's frames, each recolouring's, rendered once."""

    expected_rgb: np.ndarray  # uint8[64, 64, 3]: the task camera's render
    frames_rgb: dict[str, np.ndarray]  # recolouring -> the wide camera's uint8[240, 320, 3]
    truth: CameraCalibration


def render_scene() -> Scene:
    """The task camera's render and the wide camera's frames of the claw in its reset pose above
    the valve (mujoco; a program that renders offscreen chooses its GL backend first)."""
    from robots.dclaw.description import RESET_POSE
    from robots.dclaw.sim import TASK_CAMERA, DClawSim, VisualRanges
    from robots.dclaw.wide_view import WideView

    view = WideView()
    still_camera = VisualRanges(
        camera_pos_jitter_m=0.0, camera_angle_jitter_deg=0.0, camera_fovy_jitter_deg=0.0
    )
    with DClawSim("valve", render_size=64, show_goal=False) as sim:
        sim.reset(joint_positions=np.array(RESET_POSE))
        expected = sim.render()
        view.aim(sim)
        render_w, render_h = view.render_size
        frames = {}
        for name, change in RECOLOURINGS.items():
            seed = lights_seed(name)
            if seed is None:
                sim.restore_nominal_visuals()
            else:
                sim.randomize_visuals(np.random.default_rng(seed), still_camera)
            frames[name] = change(view.window(sim.render(height=render_h, width=render_w)))
    return Scene(expected, frames, view.expected_calibration(TASK_CAMERA.fovy_deg))


def cases(scene: Scene) -> list[Case]:
    """Every recolouring calibrated correctly, and every mistake under a few recolourings."""
    found = [Case(name, True, frame, scene.truth) for name, frame in scene.frames_rgb.items()]
    for mistake, wrong in MISTAKES.items():
        for recolouring in MISTAKE_RECOLOURINGS:
            found.append(
                Case(
                    f"{mistake} ({recolouring})",
                    False,
                    scene.frames_rgb[recolouring],
                    wrong(scene.truth),
                )
            )
    return found


def score(case: Case, expected_rgb: np.ndarray) -> float:
    return match_score(preprocess_frame(case.frame_rgb, case.calibration, bgr=False), expected_rgb)


def margins(scores: list[tuple[Case, float]]) -> dict[str, float]:
    """The worst correct score, the best wrong score, and their distances from the threshold."""
    worst_correct = min(s for c, s in scores if c.correct)
    best_wrong = max(s for c, s in scores if not c.correct)
    return {
        "threshold": MATCH_THRESHOLD,
        "worst_correct": round(worst_correct, 4),
        "best_wrong": round(best_wrong, 4),
        "correct_margin": round(worst_correct - MATCH_THRESHOLD, 4),
        "wrong_margin": round(MATCH_THRESHOLD - best_wrong, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    from robots.mujoco_gl import select_gl_backend

    select_gl_backend()
    scene = render_scene()
    scores = [(c, score(c, scene.expected_rgb)) for c in cases(scene)]
    width = max(len(c.name) for c, _ in scores)
    for correct in (True, False):
        print(f"\n{'correct' if correct else 'wrong'} calibrations")
        for c, s in sorted((p for p in scores if p[0].correct == correct), key=lambda p: p[1]):
            print(f"  {c.name.ljust(width)}  {s:.3f}")
    summary = margins(scores)
    print(
        f"\nworst correct {summary['worst_correct']:.3f} | threshold {MATCH_THRESHOLD:.2f} | "
        f"best wrong {summary['best_wrong']:.3f}  (margins {summary['correct_margin']:+.3f} and "
        f"{summary['wrong_margin']:+.3f})"
    )
    if args.json is not None:
        rows = [{"case": c.name, "correct": c.correct, "score": round(s, 4)} for c, s in scores]
        args.json.write_text(json.dumps({"margins": summary, "cases": rows}, indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
