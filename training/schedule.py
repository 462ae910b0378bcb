"""Learning-rate schedule and the one place where epochs become steps.

Configs state durations in epochs (docs/protocol.md §4: warm-up 5, decays at 15 and 25, 35 in
total); everything below the config works in optimizer steps.
"""
import math
from typing import Sequence

import gin
import keras
import tensorflow as tf


def epochs_to_steps(epochs: float, num_examples: int, global_batch_size: int) -> int:
  """Number of optimizer steps that `epochs` passes over `num_examples` take.

  Rounded up so that a positive duration is never zero steps.
  """
  if epochs < 0:
    raise ValueError(f"A duration in epochs must be >= 0, got {epochs}.")
  if global_batch_size <= 0 or num_examples <= 0:
    raise ValueError(
        f"Need a positive dataset size and batch size, got num_examples="
        f"{num_examples}, global_batch_size={global_batch_size}.")
  return int(math.ceil(epochs * num_examples / global_batch_size))


def linear_scaling(base_lr: float, global_batch_size: int,
                   base_batch_size: int) -> float:
  """`base_lr` is the LR of a batch of `base_batch_size`; it scales linearly."""
  return base_lr * global_batch_size / base_batch_size


@gin.configurable(denylist=["global_batch_size"])
def scaled_learning_rate(global_batch_size: int, base_lr: float = 0.1,
                         base_batch_size: int = 256) -> float:
  """docs/protocol.md §4: the pretext LR is 0.1 for a batch of 256, scaled linearly."""
  return linear_scaling(base_lr, global_batch_size, base_batch_size)


class WarmupPiecewiseConstant(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 to `peak_lr`, then multiply by `factor` at each boundary.

  All arguments are in steps. At step s < warmup_steps the LR is
  peak_lr * s / warmup_steps; afterwards peak_lr * factor**(boundaries passed),
  where a boundary b counts as passed once s >= b.
  """

  def __init__(self, peak_lr: float, warmup_steps: int,
               decay_boundaries: Sequence[int], factor: float = 0.1):
    super().__init__()
    self.peak_lr = float(peak_lr)
    self.warmup_steps = int(warmup_steps)
    self.decay_boundaries = [int(b) for b in decay_boundaries]
    self.factor = float(factor)

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    lr = tf.constant(self.peak_lr, tf.float32)
    for boundary in self.decay_boundaries:
      lr = tf.where(step >= boundary, lr * self.factor, lr)
    if self.warmup_steps > 0:
      warm = self.peak_lr * step / self.warmup_steps
      lr = tf.where(step < self.warmup_steps, warm, lr)
    return lr

  def get_config(self):
    return dict(peak_lr=self.peak_lr, warmup_steps=self.warmup_steps,
                decay_boundaries=self.decay_boundaries, factor=self.factor)


def make_schedule(*, peak_lr: float, num_examples: int, global_batch_size: int,
                  warmup_epochs: float, decay_epochs: Sequence[float],
                  factor: float = 0.1) -> WarmupPiecewiseConstant:
  """The docs/protocol.md §4 schedule from durations in epochs."""
  to_steps = lambda e: epochs_to_steps(e, num_examples, global_batch_size)
  return WarmupPiecewiseConstant(
      peak_lr, to_steps(warmup_epochs), [to_steps(e) for e in decay_epochs],
      factor)
