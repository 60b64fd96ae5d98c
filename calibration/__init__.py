"""Joint and camera calibration for robots (reads and writes calibration files)."""
