"""Status packets lost or damaged on their way out of an emulated bus: the planted reply faults.

By count (the next N replies, of one servo or of any) and by probability (every reply, from a
seeded random source, so a run is repeatable). A dropped reply never leaves; a corrupted one leaves
with a wrong CRC. Not thread-safe: the emulator calls it under its lock.
"""

from __future__ import annotations

import collections
import random


class ReplyFaults:
    """The reply faults in force, and what they did (``dropped_replies``, ``corrupted_replies``
    and ``replies`` in ``counters``)."""

    def __init__(self, seed: int, counters: collections.Counter[str]):
        self._rng = random.Random(seed)
        self._counters = counters
        # servo ID, or None for any servo -> how many of its next replies
        self._pending_drops: collections.Counter = collections.Counter()
        self._pending_corruptions: collections.Counter = collections.Counter()
        self._drop_probability = 0.0
        self._corrupt_probability = 0.0

    def drop(self, count: int, servo_id: int | None = None) -> None:
        """Swallow the next ``count`` status packets (of ``servo_id``, or of any servo)."""
        self._pending_drops[servo_id] += int(count)

    def corrupt(self, count: int, servo_id: int | None = None) -> None:
        """Send the next ``count`` status packets (of ``servo_id``, or of any servo) with a
        wrong CRC."""
        self._pending_corruptions[servo_id] += int(count)

    def set_probabilities(self, drop_probability: float, corrupt_probability: float) -> None:
        """Drop / corrupt every status packet with these probabilities."""
        for p in (drop_probability, corrupt_probability):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"probability {p} outside [0, 1]")
        self._drop_probability = float(drop_probability)
        self._corrupt_probability = float(corrupt_probability)

    def clear(self) -> None:
        """Forget pending drops and corruptions and the probabilities."""
        self._pending_drops.clear()
        self._pending_corruptions.clear()
        self._drop_probability = self._corrupt_probability = 0.0

    def pass_on(self, servo_id: int, statuses: list[bytes]) -> bytes:
        """A servo's status packets as they leave: some dropped, some corrupted."""
        out = []
        for status in statuses:
            if (
                self._take(self._pending_drops, servo_id)
                or self._rng.random() < self._drop_probability
            ):
                self._counters["dropped_replies"] += 1
                continue
            if (
                self._take(self._pending_corruptions, servo_id)
                or self._rng.random() < self._corrupt_probability
            ):
                self._counters["corrupted_replies"] += 1
                status = status[:-1] + bytes([status[-1] ^ 0xFF])
            self._counters["replies"] += 1
            out.append(status)
        return b"".join(out)

    @staticmethod
    def _take(pending: collections.Counter, servo_id: int) -> bool:
        for key in (servo_id, None):
            if pending[key] > 0:
                pending[key] -= 1
                return True
        return False
