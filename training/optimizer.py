"""The optimizers a config can name (docs/protocol.md §4: SGD with momentum 0.9, Adam optional)."""
import keras
import tensorflow as tf

OPTIMIZERS = ("sgd", "adam")


def make_optimizer(name: str, learning_rate, momentum: float = 0.9):
  """`keras.optimizers.SGD` (with `momentum`) or `Adam` on `learning_rate`."""
  if name == "sgd":
    return keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum)
  if name == "adam":
    return keras.optimizers.Adam(learning_rate=learning_rate)
  raise ValueError(f"Unknown optimizer {name!r}; use one of {OPTIMIZERS}.")


def build(optimizer, variables, strategy: tf.distribute.Strategy) -> None:
  """Creates the optimizer's slots for `variables` under `strategy`'s scope.

  apply_gradients inside a tf.function under a strategy fails unless the
  slots exist before the function is traced.
  """
  with strategy.scope():
    optimizer.build(variables)
