"""``slac-sweep``: grids of ``slac-train`` runs scheduled by Ray, and their results table.

:mod:`~slac_train.sweep.grid` defines suites, trials and the published returns;
:mod:`~slac_train.sweep.trial` runs one trial (as a Ray task); :mod:`~slac_train.sweep.report`
writes the results; :mod:`~slac_train.sweep.cli` is the command.
"""

from slac_train.sweep.grid import PUBLISHED, SUITES, Suite, Trial, build_trials

__all__ = ["PUBLISHED", "SUITES", "Suite", "Trial", "build_trials"]
