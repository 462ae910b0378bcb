"""Reading frozen representations of a whole split, any end points, in one pass."""
import time
from typing import Callable, Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

from datasets import input_pipeline
from evaluation import pooling as pooling_lib
from self_supervision import task as task_lib


def extract(task: task_lib.Task, model, dataset, split: str,
            layers: Sequence[str], *, batch_size: int = 256,
            pooling: str = "adaptive_max",
            strategy: tf.distribute.Strategy = None,
            log: Callable[[str], None] = print
            ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """Features of every example of `split`, in dataset order.

  Returns:
    ({layer: float32 [N, D_layer]}, labels int64 [N]). Spatial end points are
    pooled to <= 9000 values (SPEC §5) with `pooling`.
  """
  strategy = strategy or tf.distribute.get_strategy()
  pp = task.preprocess(task_lib.REPRESENTATION)
  ds = input_pipeline.make_dataset(dataset, split, pp, batch_size,
                                   training=False)
  layers = list(layers)

  def replica_fn(images):
    end_points = task.representation(model, images)
    missing = [l for l in layers if l not in end_points]
    if missing:
      raise ValueError(f"Unknown layer(s) {missing}; this model has end points "
                       f"{list(end_points)}.")
    return [pooling_lib.pool_and_flatten(end_points[l], pooling) for l in layers]

  @tf.function
  def features_fn(batch):
    out = strategy.run(replica_fn, args=(batch["image"],))
    # Batches were split between replicas in order, so gathering restores it.
    return ([strategy.gather(o, axis=0) for o in out],
            strategy.gather(batch["label"], axis=0))

  total = dataset.num_examples(split)
  chunks = [[] for _ in layers]
  labels = []
  t0 = time.time()
  last_log = t0
  for batch in strategy.experimental_distribute_dataset(ds):
    feats, lab = features_fn(batch)
    for c, f in zip(chunks, feats):
      c.append(f.numpy())
    labels.append(lab.numpy())
    done = sum(len(l) for l in labels)
    if time.time() - last_log > 20:
      rate = done / (time.time() - t0)
      log(f"  features of {split}: {done}/{total} images ({rate:.0f} img/s)")
      last_log = time.time()
  labels = np.concatenate(labels).astype(np.int64)
  features = {l: np.concatenate(c).astype(np.float32)
              for l, c in zip(layers, chunks)}
  if len(labels) != total:
    raise RuntimeError(f"Read {len(labels)} examples of {split}, expected {total}.")
  log(f"  features of {split}: {total} images, "
      + ", ".join(f"{l} {f.shape[1]}-d" for l, f in features.items())
      + f" in {time.time() - t0:.1f}s")
  return features, labels
