"""SLAC training in simulation: environments, learner, trainer, ONNX export."""
