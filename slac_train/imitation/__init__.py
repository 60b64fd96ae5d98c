"""Behaviour cloning of state-based teachers into the pixel policy the robot runs
(``slac-imitate``).

config.py      ImitationConfig: every option of slac-imitate, with its help and default
dataset.py     recorded episodes and the actor's training windows
collection.py  recording a teacher (DART noise) and DAgger episodes
training.py    the loss, the weight average, and Imitation: one run in a slac-train run directory
cli.py         the slac-imitate command
teachers/      the teacher registry (entry point group ``slac.teachers``) and the D'Claw's teachers
"""
