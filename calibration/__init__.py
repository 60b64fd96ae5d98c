"""Joint and camera calibration for robots (reads and writes calibration files)."""

PROG = "slac-calibrate"  # the command, as its messages name it
