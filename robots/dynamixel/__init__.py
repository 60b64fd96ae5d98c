"""Generic Dynamixel X-series support: Protocol 2.0 packets, the control table, joint calibration
files, a bus client built on ROBOTIS's ``dynamixel_sdk``, and a servo-bus emulator on a
pseudo-terminal.

Nothing here is specific to one robot, and nothing here imports torch or mujoco. Submodules are
imported on demand (``from robots.dynamixel.protocol import ...``); importing this package has no
side effects.
"""
