"""One 2-replica MirroredStrategy shared by every test in the process.

Each MirroredStrategy numbers its collective ops from the same starting keys,
so two of them in one process can collide in TensorFlow's process-wide
collective executor ("Collective instance N expected type ..."), aborting all
later collectives. Tests therefore share this one.
"""
import tensorflow as tf

_STRATEGY = None


def two_replicas() -> tf.distribute.MirroredStrategy:
  global _STRATEGY
  if _STRATEGY is None:
    _STRATEGY = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  return _STRATEGY
