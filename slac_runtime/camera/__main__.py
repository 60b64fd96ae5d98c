"""``python -m slac_runtime.camera``: the ``slac-camera`` command."""

import sys

from slac_runtime.camera.cli import main

sys.exit(main())
