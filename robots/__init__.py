"""Robot models and drivers. Each robot registers itself in the
``slac.robots`` entry-point group."""
