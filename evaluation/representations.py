"""Reading frozen representations of a whole split, any end points, in one pass."""
import time
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from datasets import input_pipeline
from evaluation import pooling as pooling_lib
from self_supervision import task as task_lib


class Extractor:
  """Pooled, flattened end points of a frozen trunk, one compiled function.

  Reused for every split so the trunk is traced once per input shape.
  """

  def __init__(self, task: task_lib.Task, model, layers: Sequence[str], *,
               pooling: str = "adaptive_max",
               strategy: tf.distribute.Strategy = None):
    self.task, self.model, self.layers = task, model, list(layers)
    self.pooling = pooling
    self.strategy = strategy or tf.distribute.get_strategy()
    self._fn = tf.function(self._features, reduce_retracing=True)
    # tf.function keys Python arguments by identity: one BatchOps object per
    # distinct pipeline keeps every split on the same trace.
    self._batch_ops = {}

  def _replica_fn(self, batch, finish):
    # The pipeline's per-batch ops run here, in the trunk's own step (see
    # input_pipeline.make_eval_batches for why).
    images = finish(batch)["image"]
    end_points = self.task.representation(self.model, images)
    missing = [l for l in self.layers if l not in end_points]
    if missing:
      raise ValueError(f"Unknown layer(s) {missing}; this model has end points "
                       f"{list(end_points)}.")
    return [pooling_lib.pool_and_flatten(end_points[l], self.pooling)
            for l in self.layers]

  def _features(self, batch, finish):
    out = self.strategy.run(lambda images: self._replica_fn(images, finish),
                            args=({"image": batch["image"]},))
    # Batches were split between replicas in order, so gathering restores it.
    return ([self.strategy.gather(o, axis=0) for o in out],
            self.strategy.gather(batch["label"], axis=0),
            self.strategy.gather(batch["valid"], axis=0))

  def batches(self, dataset, split: str, *, batch_size: int = 256,
              log: Callable[[str], None] = print
              ) -> Iterator[Tuple[List[np.ndarray], np.ndarray]]:
    """Yields ([float32 [b, D_layer] per layer], int64 labels [b]) in order.

    Logs progress every 20 s. Raises if the split yields a different number
    of examples than the dataset promises (a truncated or corrupt split).
    """
    replicas = self.strategy.num_replicas_in_sync
    if batch_size < replicas:
      raise ValueError(f"Extraction batch size {batch_size} is smaller than "
                       f"the {replicas} replicas; use a batch size of at "
                       f"least {replicas} (e.g. linear_eval.batch_size).")
    pp = self.task.preprocess(task_lib.REPRESENTATION)
    ds, finish = input_pipeline.make_eval_batches(dataset, split, pp,
                                                  batch_size)
    finish = self._batch_ops.setdefault(finish, finish)
    # One static shape (one trace of the trunk) and no replica left without
    # rows by a short last batch; see input_pipeline.pad_batches.
    ds = input_pipeline.pad_batches(ds, batch_size)
    total = dataset.num_examples(split)
    done = 0
    t0 = last_log = time.time()
    for batch in self.strategy.experimental_distribute_dataset(ds):
      feats, lab, valid = self._fn(batch, finish)
      n = int(np.count_nonzero(valid.numpy()))  # the padding is at the end
      labels = lab.numpy()[:n].astype(np.int64)
      done += n
      yield [f.numpy()[:n] for f in feats], labels
      if time.time() - last_log > 20:
        log(f"  features of {split}: {done}/{total} images "
            f"({done / (time.time() - t0):.0f} img/s)")
        last_log = time.time()
    if done != total:
      raise RuntimeError(f"Read {done} examples of {split}, expected {total}.")
    log(f"  features of {split}: {total} images in {time.time() - t0:.1f}s "
        f"({total / max(time.time() - t0, 1e-9):.0f} img/s)")

  def __call__(self, dataset, split: str, *, batch_size: int = 256,
               log: Callable[[str], None] = print
               ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
    """Features of every example of `split`, in dataset order, in memory.

    Returns:
      ({layer: float32 [N, D_layer]}, labels int64 [N]). Spatial end points
      are pooled to about 9000 values (SPEC §5).
    """
    chunks = [[] for _ in self.layers]
    labels = []
    for feats, lab in self.batches(dataset, split, batch_size=batch_size,
                                   log=log):
      for c, f in zip(chunks, feats):
        c.append(f)
      labels.append(lab)
    features = {l: np.concatenate(c).astype(np.float32)
                for l, c in zip(self.layers, chunks)}
    return features, np.concatenate(labels)


def extract(task: task_lib.Task, model, dataset, split: str,
            layers: Sequence[str], *, batch_size: int = 256,
            pooling: str = "adaptive_max",
            strategy: tf.distribute.Strategy = None,
            log: Callable[[str], None] = print
            ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """One-off `Extractor(...)(dataset, split)`; see Extractor for shapes."""
  return Extractor(task, model, layers, pooling=pooling, strategy=strategy)(
      dataset, split, batch_size=batch_size, log=log)
