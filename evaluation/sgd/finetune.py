"""The finetune protocol's trunk: a trainable copy, its rate and its variables.

The evaluated trunk stays frozen: a copy of it trains with the head, at
`trunk_lr_multiplier` times the head's learning rate (its gradient scaled in
the forward pass, its weight decay scaled in `FinetuneNet.losses`).
"""
from typing import Callable, List, NamedTuple

import keras
import tensorflow as tf


class TrainableCopy(NamedTuple):
  """A copy of a trunk to fine-tune (a tuple: task, model, owner, ...)."""
  task: object          # computes the representation (task or hub reader)
  model: object         # the task's model, None for a hub module
  owner: tf.Module      # what the checkpoint tracks for the trunk
  variables: List[tf.Variable]  # the trunk's trainable variables
  losses: Callable[[], list]    # the trunk's weight-decay terms


def trainable_copy(trunk, dataset, split: str, strategy) -> TrainableCopy:
  """A copy of `trunk` to fine-tune, so the evaluated trunk itself is left as is.

  A run's trunk (checkpoint or random init): the task's model built again and
  given the trunk's weights. A hub module: loaded again; its trainable
  variables train, its batch norm stays on the moving statistics (the
  exported signatures fix it).
  """
  if trunk.fingerprint.get("kind") == "hub":
    task = type(trunk.task)(trunk.fingerprint["path"],
                            preprocess=trunk.fingerprint.get("preprocess"))
    return TrainableCopy(task, None, task.module,
                         list(task.module.trainable_variables), lambda: [])
  with strategy.scope():
    model = trunk.task.make_model(dataset, 0, split)
  for dst, src in zip(model.weights, trunk.model.weights):
    dst.assign(src)
  net = trunk.task.trunk(model)
  return TrainableCopy(trunk.task, model, model, list(net.trainable_variables),
                       lambda: net.losses)


def scale_gradient(features: tf.Tensor, multiplier: float) -> tf.Tensor:
  """`features` unchanged, the gradient through them times `multiplier`.

  With the trunk's weight decay scaled alike (FinetuneNet.losses) and SGD's
  linear update, the trunk trains at `multiplier` x the head's learning rate.
  """
  return multiplier * features + (1.0 - multiplier) * tf.stop_gradient(features)


def used_variables(features_fn: Callable[[], tf.Tensor], variables):
  """The `variables` that `features_fn()` depends on: only they train (a patch
  task's head, a supervised logits layer, the blocks after the layer do not)."""
  with tf.GradientTape() as tape:
    used = tf.reduce_sum(features_fn())
  grads = tape.gradient(used, variables)
  return [v for v, g in zip(variables, grads) if g is not None]


class FinetuneNet(tf.Module):
  """The trunk being fine-tuned and its head, as one model for the loop.

  trainable_variables: the trunk's that the evaluated layer depends on, then
  the head's. losses: the trunk's weight decay times `trunk_lr_multiplier`
  (with the gradient scaling in the forward pass, the trunk's whole update is
  at that fraction of the head's learning rate), plus the head's.
  """

  def __init__(self, trunk_owner, head: keras.Model, trunk_variables,
               trunk_losses, trunk_lr_multiplier: float):
    super().__init__(name="finetune")
    self.trunk, self.head = trunk_owner, head  # tracked for checkpoints
    self._trunk_variables = list(trunk_variables)
    self._trunk_losses = trunk_losses
    self._multiplier = trunk_lr_multiplier

  @property
  def trainable_variables(self):
    return self._trunk_variables + list(self.head.trainable_variables)

  @property
  def losses(self):
    return ([self._multiplier * l for l in self._trunk_losses()]
            + list(self.head.losses))
