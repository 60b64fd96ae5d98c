"""Torch-free runtime for SLAC policies on a robot computer.

Only numpy, onnxruntime, pyzmq and OpenCV are used here, plus imageio-ffmpeg's ffmpeg for replay
videos and, optionally, rerun-sdk for ``slac-replay --rerun``; robots are found by name through
the ``slac.robots`` entry-point group, never imported directly.
"""

__version__ = "0.1.0"
