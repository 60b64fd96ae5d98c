"""A scripted, state-based Turn controller: the teacher the shipped Turn policy imitates.

It sees the state (the valve's angle error), not pixels, so it cannot run on the robot as it is;
``slac_train.imitation`` distils it into the encoder + actor the runtime runs.

The gait, all three fingers together, is a stroke:

    lifted at -a  ->  lowered at -a  ->  swept to +a (the fingertips push the spokes)  ->  lifted at +a

where ``a`` is the top (abduction) joint's angle, signed by the direction the valve must turn and
scaled with the remaining error (``gain * |error|``, within ``[min_amplitude, amplitude]``) so
that the last strokes are short. Once ``|error| < tolerance`` at a stroke's start the claw goes
to the reset pose and waits. The poses and step counts come from a random search over the nominal
simulation (valve 0 -> pi), refined by a local search for success under action noise and dynamics
randomisation; docs/results.md gives its success rates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from robots.dclaw.description import DCLAW, RESET_POSE


@dataclass
class TurnStrokeController:
    amplitude: float = 0.35  # rad, largest top-joint sweep (each side of 0)
    lowered: tuple[float, float] = (0.65, 0.81)  # (middle, bottom) joints with the tip among the spokes
    lifted: tuple[float, float] = (-0.60, 1.48)  # (middle, bottom) joints with the tip above/outside them
    steps: tuple[int, int, int, int] = (3, 3, 2, 3)  # agent steps: to -a lifted, lower, sweep, lift
    gain: float = 0.87  # stroke amplitude per rad of error
    min_amplitude: float = 0.05  # rad
    tolerance: float = 0.06  # rad of valve error at which the claw stops turning
    _plan: list = field(default_factory=list, repr=False)

    def reset(self) -> None:
        self._plan = []

    def _stroke(self, error: float) -> list[np.ndarray]:
        sign = 1.0 if error < 0 else -1.0  # +a sweeps turn the valve clockwise (negative)
        a = sign * float(np.clip(self.gain * abs(error), self.min_amplitude, self.amplitude))
        corners = ((-a, *self.lifted), (-a, *self.lowered), (a, *self.lowered), (a, *self.lifted))
        plan = []
        for corner, n in zip(corners, self.steps):
            plan += [np.array(corner * 3)] * int(n)
        return plan

    def joint_targets(self, angle_error: float) -> np.ndarray:
        """The nine joint targets (rad) for this step, from ``wrap(target - valve)`` (rad)."""
        if not self._plan:
            self._plan = [np.array(RESET_POSE)] if abs(angle_error) < self.tolerance else self._stroke(angle_error)
        return self._plan.pop(0)

    def act(self, angle_error: float) -> np.ndarray:
        """The action in [-1, 1] (the inverse of ``DCLAW.action_to_joint_goal``'s linear map)."""
        target = self.joint_targets(angle_error)
        return (2.0 * (target - DCLAW.low) / (DCLAW.high - DCLAW.low) - 1.0).astype(np.float32)
