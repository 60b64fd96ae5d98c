import os

# Tests render offscreen; EGL works on the CI machine. The toolkit itself never sets this at import:
# make_env() probes a backend when MUJOCO_GL is unset, which tests/test_rendering.py covers.
os.environ.setdefault("MUJOCO_GL", "egl")
