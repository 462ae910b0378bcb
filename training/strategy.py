"""Choosing the tf.distribute strategy that drives the training loop."""
from typing import Optional

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker", "tpu")


def make_strategy(name: str = "auto", tpu: Optional[str] = None
                  ) -> tf.distribute.Strategy:
  """Returns the strategy called `name`.

  auto: TPU when `tpu` is given, MirroredStrategy with >1 GPU, else the
  default strategy (one GPU or the CPU). multi_worker reads TF_CONFIG.
  """
  if name not in STRATEGIES:
    raise ValueError(f"Unknown strategy {name!r}; use one of {STRATEGIES}.")
  if name == "auto":
    if tpu:
      name = "tpu"
    elif len(tf.config.list_physical_devices("GPU")) > 1:
      name = "mirrored"
    else:
      name = "default"
  if name == "tpu":
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or "")
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  if name == "mirrored":
    return tf.distribute.MirroredStrategy()
  if name == "multi_worker":
    return tf.distribute.MultiWorkerMirroredStrategy()
  return tf.distribute.get_strategy()
