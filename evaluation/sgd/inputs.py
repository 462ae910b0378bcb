"""What an SGD head reads, behind one interface: cached features or images.

`CachedFeatures`: the trunk's pooled features of both splits, read from the
feature cache (or extracted) once; un-augmented, the fast variant.
`Images`: the trunk runs inside every step on augmented images (random crop
+ flip), frozen, or a trainable copy of it when fine-tuning.

The driver sees only `HeadInputs`: the features of a batch, the training and
evaluation pipelines, the number of examples, and the model the loop trains.
"""
import abc
import re
from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from datasets import input_pipeline
from datasets import low_data
from evaluation import feature_cache
from evaluation import pooling as pooling_lib
from evaluation.sgd import finetune as finetune_lib
from self_supervision import task as task_lib


def augmented_pipeline(pp: str) -> str:
  """The representation pipeline with its central crop made random + a flip.

  'decode|resize_small(256)|central_crop(224)|value_range(-1, 1)' becomes
  'decode|resize_small(256)|crop(224)|flip_lr|value_range(-1, 1)' (docs/protocol.md §5's
  training preprocessing): `crop` and `flip_lr` are random only in training,
  so the same string evaluates on the central crop, unflipped. A pipeline
  without a central crop is returned unchanged.
  """
  ops = pp.split("|")
  for i, op in enumerate(ops):
    m = re.fullmatch(r"\s*central_crop\((.*)\)\s*", op)
    if m:
      return "|".join(ops[:i] + [f"crop({m.group(1)})", "flip_lr"] + ops[i + 1:])
  return pp


class HeadInputs(abc.ABC):
  """The examples a head trains and is evaluated on.

  Attributes:
    num_train: training examples (after the low-data subset).
    num_eval: examples of the evaluation split.
    dim: D, the width of what the head reads.
    hyperparameters: what these inputs add to the entry's hyperparameters.
  """
  num_train: int
  num_eval: int
  dim: int
  hyperparameters: Dict

  @abc.abstractmethod
  def features(self, batch: Dict[str, tf.Tensor], training: bool = False
               ) -> tf.Tensor:
    """The head's input [B, D] for a batch {'image', 'label'} of a pipeline."""

  @abc.abstractmethod
  def train_dataset(self, ctx: tf.distribute.InputContext, start: int,
                    per_replica: int, seed: int) -> tf.data.Dataset:
    """Per-replica training batches, repeated, from the pipeline's `start`-th
    example, shuffled and augmented by `seed` (training.loop.Loop.dataset_fn)."""

  @abc.abstractmethod
  def eval_dataset(self, ctx: tf.distribute.InputContext, per_replica: int
                   ) -> tf.data.Dataset:
    """Per-replica batches of the evaluation split, once, in order."""

  def trained_model(self, head) -> tf.Module:
    """What the loop trains and checkpoints; call under the strategy's scope."""
    return head


class CachedFeatures(HeadInputs):
  """Pooled features of `layer`, read once from the feature cache."""

  def __init__(self, trunk, dataset, *, layer: str, pooling: str,
               train_split: str, eval_split: str, fraction: float,
               subset_seed: int, batch_size: int,
               cache: Optional[feature_cache.FeatureCache], strategy, log):
    splits = feature_cache.read_splits(
        trunk, dataset, [train_split, eval_split], [layer], pooling=pooling,
        batch_size=batch_size, cache=cache, strategy=strategy, log=log)
    train_x, train_y = splits[train_split][0][layer], splits[train_split][1]
    eval_x, self._eval_y = splits[eval_split][0][layer], splits[eval_split][1]
    if fraction < 1.0:
      keep = low_data.balanced_subset(train_y, fraction, subset_seed)
      train_x, train_y = train_x[keep], train_y[keep]
    self._train_x, self._train_y = np.asarray(train_x, np.float32), train_y
    self._eval_x = np.asarray(eval_x, np.float32)
    self.num_train, self.num_eval = len(train_y), len(self._eval_y)
    self.dim = self._train_x.shape[1]
    self.hyperparameters = {}

  def features(self, batch, training=False):
    return batch["image"]

  def train_dataset(self, ctx, start, per_replica, seed):
    ds = tf.data.Dataset.from_tensor_slices((self._train_x, self._train_y))
    ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    ds = input_pipeline.stream(
        ds, start=start, repeat=True,
        shuffle_buffer=min(self.num_train, 100_000), seed=seed,
        pipeline_id=ctx.input_pipeline_id)
    return ds.map(lambda _, xy: {"image": xy[0], "label": xy[1]}).batch(
        per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  def eval_dataset(self, ctx, per_replica):
    return tf.data.Dataset.from_tensor_slices(
        {"image": self._eval_x, "label": self._eval_y}).shard(
            ctx.num_input_pipelines, ctx.input_pipeline_id).batch(per_replica)


class Images(HeadInputs):
  """Images through the trunk inside every step: frozen, or `copy` fine-tuned
  at `trunk_lr_multiplier` times the head's learning rate."""

  def __init__(self, trunk, dataset, *, layer: str, pooling: str,
               train_split: str, eval_split: str, fraction: float,
               subset_seed: int, pp_train: Optional[str],
               copy: Optional[finetune_lib.TrainableCopy] = None,
               trunk_lr_multiplier: float = 1.0):
    self._copy, self._multiplier = copy, trunk_lr_multiplier
    self._task, self._model = ((copy.task, copy.model) if copy
                               else (trunk.task, trunk.model))
    self._layer, self._pooling = layer, pooling
    self._dataset, self._eval_split = dataset, eval_split
    self._train_split = train_split
    self._pp = self._task.preprocess(task_lib.REPRESENTATION)
    self._train_data = low_data.low_data(dataset, train_split, fraction,
                                         subset_seed)
    self._pp_train = pp_train or augmented_pipeline(self._pp)
    self.hyperparameters = dict(pp_train=self._pp_train)
    self.num_train = self._train_data.num_examples(train_split)
    self.num_eval = dataset.num_examples(eval_split)
    # One zero image shaped as the representation pipeline gives them: the
    # feature size now, and (finetune) which trunk variables the layer uses.
    self._probe = tf.zeros([1] + list(input_pipeline.make_dataset(
        dataset, eval_split, self._pp, 1, training=False, repeat=False
    ).element_spec["image"].shape[1:]))
    self.dim = int(self._features_of(self._probe).shape[-1])

  def _features_of(self, images, training=False):
    finetune = self._copy is not None
    end_points = self._task.representation(self._model, images,
                                           training=training and finetune)
    if self._layer not in end_points:
      raise ValueError(f"Unknown layer {self._layer!r}; the trunk has end "
                       f"points {list(end_points)}.")
    features = pooling_lib.pool_and_flatten(end_points[self._layer],
                                            self._pooling)
    if not finetune:
      return tf.stop_gradient(features)
    if not training:
      return features
    return finetune_lib.scale_gradient(features, self._multiplier)

  def features(self, batch, training=False):
    return self._features_of(batch["image"], training)

  def train_dataset(self, ctx, start, per_replica, seed):
    return input_pipeline.make_dataset(
        self._train_data, self._train_split, self._pp_train, per_replica,
        training=True, seed=seed, start=start, input_context=ctx)

  def eval_dataset(self, ctx, per_replica):
    return input_pipeline.make_dataset(self._dataset, self._eval_split,
                                       self._pp, per_replica, training=False,
                                       input_context=ctx)

  def trained_model(self, head):
    if self._copy is None:
      return head
    used = finetune_lib.used_variables(lambda: self._features_of(self._probe),
                                       self._copy.variables)
    return finetune_lib.FinetuneNet(self._copy.owner, head, used,
                                    self._copy.losses, self._multiplier)
