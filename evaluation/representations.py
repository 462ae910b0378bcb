"""Reading frozen representations of a whole split, any end points, in one pass.

The trunk computes in float32 unless `extraction.precision` (gin) asks for a
low-precision pass: then a twin of the model built under that Keras mixed
policy (float32 variables, the trained weights copied in) runs the forward,
and the features still leave it, and reach the feature cache, as float32.
"""
import time
from typing import Callable, Dict, Iterator, List, Sequence, Tuple

import gin
import numpy as np
import tensorflow as tf

from datasets import input_pipeline
from evaluation import pooling as pooling_lib
from self_supervision import task as task_lib
from training import loop as loop_lib
from training import precision as precision_lib
from training import strategy as strategy_lib

COMPUTE_DTYPES = ("float32", "bfloat16", "float16")


def can_run_in_low_precision(task, model) -> bool:
  """Whether `task`'s trunk can be rebuilt under a mixed policy.

  A task's own model can; a hub module (evaluation/hub_trunk.py: `model` is
  None, the module a frozen float32 graph), the pixels control (no model) or
  a task-like reader without `make_model` cannot, and is read in float32.
  """
  return model is not None and hasattr(task, "make_model")


@gin.configurable("extraction", denylist=["task", "model", "strategy", "log"])
def extraction_dtype(task, model, strategy: tf.distribute.Strategy = None,
                     log: Callable[[str], None] = print, *,
                     precision: str = "float32") -> str:
  """The dtype the trunk computes in while its features are extracted.

  precision: 'float32' (the default: what every number in the README was
  measured with), 'bfloat16', 'float16', or 'mixed' (the fast dtype of
  `strategy`'s device, as `train.precision`: training/precision.py). Only
  the forward pass is affected; features are float32 either way. Hub-module
  trunks stay float32 whatever is asked (see `can_run_in_low_precision`).

  Returns:
    'float32', 'bfloat16' or 'float16'.

  Raises:
    ValueError: `precision` is not one of precision_lib.PRECISIONS.
  """
  if precision not in precision_lib.PRECISIONS:
    raise ValueError(f"Unknown extraction.precision {precision!r}; use one of "
                     f"{', '.join(precision_lib.PRECISIONS)}.")
  if precision == "float32":
    return "float32"
  if not can_run_in_low_precision(task, model):
    log(f"  extraction.precision = {precision!r}: this trunk (a hub module, "
        f"frozen in float32, or the pixels) is read in float32.")
    return "float32"
  kind = precision_lib.device_kind(strategy or tf.distribute.get_strategy())
  return precision_lib.resolve(precision, kind, log=lambda m: log("  " + m),
                               binding="extraction.precision")


def precision_twin(task, model, dataset, split: str, dtype: str,
                   strategy: tf.distribute.Strategy = None):
  """`model` rebuilt to compute in `dtype`, holding `model`'s weights.

  Either way round: a bfloat16 twin of a float32 trunk for extraction, or a
  float32 twin of a trunk trained under a mixed policy (train_and_eval.py).

  Built by `task.make_model` under `strategy`'s scope and
  `precision.policy_scope(dtype)`, so its variables are float32 (an exact
  copy of `model`'s) and only the arithmetic is in `dtype`. `split` of
  `dataset` shapes the zero batch that creates the variables.
  make_model reseeds the global RNGs (keras.utils.set_random_seed(0)), as
  every model built during a run does.

  Raises:
    ValueError: the rebuilt model's variables differ from `model`'s (a model
      whose variables depend on the dataset, rebuilt on another one).
  """
  strategy = strategy or tf.distribute.get_strategy()
  with strategy.scope(), precision_lib.policy_scope(dtype):
    twin = task.make_model(dataset, 0, split)
  try:
    twin.set_weights(model.get_weights())
  except ValueError as e:
    raise ValueError(
        f"The {dtype} twin of the trunk, built on {dataset.name}, has other "
        f"variables than the trunk ({e}); set extraction.precision = "
        f"'float32'.") from e
  return twin


class Extractor:
  """Pooled, flattened end points of a frozen trunk, one compiled function.

  Reused for every split so the trunk is traced once per input shape.
  With `compute_dtype` 'bfloat16' or 'float16', the forward runs in a
  `precision_twin` of `model`, built on the first split read (a hub
  module cannot: it is refused); the features are float32 all the same.
  """

  def __init__(self, task: task_lib.Task, model, layers: Sequence[str], *,
               pooling: str = "adaptive_max",
               strategy: tf.distribute.Strategy = None,
               compute_dtype: str = "float32"):
    if compute_dtype not in COMPUTE_DTYPES:
      raise ValueError(f"Unknown compute dtype {compute_dtype!r}; use one of "
                       f"{COMPUTE_DTYPES}.")
    if compute_dtype != "float32" and not can_run_in_low_precision(task, model):
      raise ValueError(f"Only a task's own model can extract in "
                       f"{compute_dtype}; a hub module is read in float32.")
    self.task, self.model, self.layers = task, model, list(layers)
    self.pooling = pooling
    self.strategy = strategy or tf.distribute.get_strategy()
    self.compute_dtype = compute_dtype
    # The network the trace reads: `model`, or its twin once built (on the
    # first split read). Fixed before the first trace, so every split shares
    # that trace.
    self._net = model
    self._twin_pending = compute_dtype != "float32"
    self._fn = tf.function(self._features, reduce_retracing=True)
    # tf.function keys Python arguments by identity: one BatchOps object per
    # distinct pipeline keeps every split on the same trace.
    self._batch_ops = {}

  def _replica_fn(self, batch, finish):
    # The pipeline's per-batch ops run here, in the trunk's own step (see
    # input_pipeline.make_eval_batches for why).
    images = finish(batch)["image"]
    end_points = self.task.representation(self._net, images)
    missing = [l for l in self.layers if l not in end_points]
    if missing:
      raise ValueError(f"Unknown layer(s) {missing}; this model has end points "
                       f"{list(end_points)}.")
    # The trunks' end points are float32 already; a model that returns its
    # compute dtype is cast here (a no-op, not even a copy, for float32), so
    # what is stored never depends on the network's conventions.
    return [tf.cast(pooling_lib.pool_and_flatten(end_points[l], self.pooling),
                    tf.float32)
            for l in self.layers]

  def _features(self, batch, finish):
    out = self.strategy.run(lambda images: self._replica_fn(images, finish),
                            args=({"image": batch["image"]},))
    # Every worker gets every replica's rows: the chief writes them all.
    gather = lambda x: self.strategy.gather(x, axis=0)  # noqa: E731
    return ([gather(o) for o in out], gather(batch["label"]),
            gather(batch["valid"]),
            gather(batch["index"]) if "index" in batch else None)

  def batches(self, dataset, split: str, *, batch_size: int = 256,
              log: Callable[[str], None] = print
              ) -> Iterator[Tuple[List[np.ndarray], np.ndarray]]:
    """Yields ([float32 [b, D_layer] per layer], int64 labels [b]) in order.

    Logs progress every 20 s. Raises if the split yields a different number
    of examples than the dataset promises (a truncated or corrupt split).
    The first call of a low-precision extractor builds the twin on `dataset`.
    """
    batch_size = loop_lib.whole_rows_per_replica(batch_size, self.strategy)
    if self._twin_pending:
      log(f"  extracting in {self.compute_dtype} (a twin of the trunk with "
          f"its weights)")
      self._net = precision_twin(self.task, self.model, dataset, split,
                                     self.compute_dtype, self.strategy)
      self._twin_pending = False
    pp = self.task.preprocess(task_lib.REPRESENTATION)
    finishes = []

    def make_batches(ctx, per_replica):
      ds, finish = input_pipeline.make_eval_batches(
          dataset, split, pp, per_replica, input_context=ctx)
      finishes.append(finish)
      return ds

    total = dataset.num_examples(split)
    # Each worker reads its own shard; batches padded to one static shape
    # (one trace of the trunk), none left empty by a short last batch.
    batches = loop_lib.distribute_eval_batches(
        self.strategy, make_batches, total, batch_size,
        binding="the extraction batch size")
    finish = self._batch_ops.setdefault(finishes[0], finishes[0])
    done, last_index = 0, -1
    t0 = last_log = time.time()
    for batch in batches:
      feats, lab, valid, index = self._fn(batch, finish)
      rows = np.flatnonzero(valid.numpy())
      if index is not None:
        # Rows come grouped by replica; the split's order is their index's.
        index = index.numpy()[rows]
        order = np.argsort(index, kind="stable")
        rows, index = rows[order], index[order]
        if len(index) and (index[0] <= last_index
                           or np.any(np.diff(index) <= 0)):
          raise RuntimeError(
              f"The batches of {split} do not come in the split's order "
              f"(example indices {index[:8].tolist()}... after {last_index}): "
              f"each input pipeline must take every n-th example.")
        last_index = index[-1] if len(index) else last_index
      elif strategy_lib.num_workers(self.strategy) > 1:
        raise ValueError(
            f"{dataset.name} gives its examples no 'index', which several "
            f"workers need to put their features back in order.")
      labels = lab.numpy()[rows].astype(np.int64)
      done += len(rows)
      yield [f.numpy()[rows] for f in feats], labels
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
      are pooled to about 9000 values (docs/protocol.md §5).
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
            compute_dtype: str = "float32",
            log: Callable[[str], None] = print
            ) -> Tuple[Dict[str, np.ndarray], np.ndarray]:
  """One-off `Extractor(...)(dataset, split)`; see Extractor for shapes."""
  return Extractor(task, model, layers, pooling=pooling, strategy=strategy,
                   compute_dtype=compute_dtype)(
                       dataset, split, batch_size=batch_size, log=log)
