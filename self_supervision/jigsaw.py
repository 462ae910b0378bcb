"""Jigsaw puzzles (Noroozi & Favaro 2016), docs/protocol.md §2.

Each image's 9 patches are embedded by the trunk; for each of 8 permutations
drawn from a fixed set of 100 (the same 8 for the whole batch), the 9
embeddings are concatenated in permutation order and the head classifies
which of the 100 permutations it was. Pretext evaluation uses all 100.

The 8 permutations of a training step are a stateless function of the run's
seed and a step counter kept in the network (and so in its checkpoints): the
draws are deterministic for a seed, resume where they stopped, and are the
same on every replica.
"""
from typing import Optional

import gin
import numpy as np
import tensorflow as tf

from self_supervision import patch_task
from self_supervision import permutations as permutations_lib
from self_supervision import task as task_lib


def permute_embeddings(embeddings: tf.Tensor, perms: tf.Tensor) -> tf.Tensor:
  """Concatenates each image's patch embeddings in each permutation's order.

  Args:
    embeddings: [B, 9, D], patch p of image b at [b, p].
    perms: int [K, 9]; position k of permutation j holds patch perms[j, k].

  Returns:
    [B * K, 9 * D]; row b * K + j is concat_k embeddings[b, perms[j, k]].
  """
  gathered = tf.gather(embeddings, perms, axis=1)  # [B, K, 9, D]
  size = embeddings.shape[-1]
  if size is None:
    size = tf.shape(embeddings)[-1]
  return tf.reshape(gathered, [-1, patch_task.NUM_PATCHES * size])


def draw_classes(seed: tf.Tensor, num_permutations: int, count: int
                 ) -> tf.Tensor:
  """`count` distinct permutation indices in [0, num_permutations): int32 [count].

  A stateless function of `seed` (int64 [2]).
  """
  noise = tf.random.stateless_uniform([num_permutations], seed=seed)
  return tf.argsort(noise)[:count]


class JigsawNetwork(patch_task.PatchNetwork):
  """PatchNetwork plus the counter that seeds each step's permutation draw."""

  def __init__(self, trunk, head, draw_seed: int, **kwargs):
    super().__init__(trunk, head, **kwargs)
    self.draw_seed = int(draw_seed)
    # Counted once per step (not per replica): every replica reads the same
    # value, hence draws the same permutations.
    self.permutation_draws = self.add_weight(
        shape=(), dtype="int64", initializer="zeros", trainable=False,
        aggregation="only_first_replica", name="permutation_draws")

  def next_draw_seed(self) -> tf.Tensor:
    """The seed [2] of this step's draw; advances the counter."""
    count = tf.identity(self.permutation_draws.value)
    self.permutation_draws.assign_add(tf.constant(1, tf.int64))
    return tf.stack([tf.constant(self.draw_seed, tf.int64), count])


@task_lib.register("jigsaw")
@gin.configurable("jigsaw", denylist=["num_classes"])
class Jigsaw(patch_task.PatchTask):
  """Jigsaw task; gin configures it as `jigsaw.<argument>`.

  Args:
    num_classes: the dataset's label count (unused by the pretext).
    num_permutations: size of the permutation set (the pretext classes);
      a stored set must exist (scripts/make_permutations.py makes one).
    permutations_per_batch: permutations drawn per training step.
    pp_train, pp_pretext_eval, pp_representation: pipelines (see
      patch_task); pp_pretext_eval None runs pp_train in evaluation mode
      (central crops, colour).
    embedding_size: the trunk's logits size, one patch's embedding.
    head_hidden, head_dropout, head_weight_decay: the head (docs/protocol.md §2).
    patch_representation: 'average' or 'concat' over the 9 patches.
  """

  def __init__(self, *, num_classes: int,
               num_permutations: int = permutations_lib.DEFAULT_NUM_PERMUTATIONS,
               permutations_per_batch: int = 8,
               pp_train: str = patch_task.DEFAULT_PP_TRAIN,
               pp_pretext_eval: Optional[str] = None,
               pp_representation: str = patch_task.DEFAULT_PP_REPRESENTATION,
               embedding_size: int = 1000, head_hidden: int = 4096,
               head_dropout: float = 0.5, head_weight_decay: float = 5e-4,
               patch_representation: str = "average"):
    self.permutations = permutations_lib.load(num_permutations)
    if (isinstance(permutations_per_batch, bool)
        or not isinstance(permutations_per_batch, int)
        or not 1 <= permutations_per_batch <= num_permutations):
      raise ValueError(
          f"jigsaw.permutations_per_batch must be an int in 1.."
          f"{num_permutations}; got {permutations_per_batch!r} (protocol: 8).")
    self.num_pretext_classes = num_permutations
    self.permutations_per_batch = permutations_per_batch
    self.copies_per_example = permutations_per_batch
    super().__init__(
        num_classes=num_classes, pp_train=pp_train,
        pp_pretext_eval=pp_pretext_eval,
        pp_representation=pp_representation, embedding_size=embedding_size,
        head_hidden=head_hidden, head_dropout=head_dropout,
        head_weight_decay=head_weight_decay,
        patch_representation=patch_representation)

  def build_model(self, seed=0):
    # A function of the run's seed alone (numpy's global state would tie it to
    # whatever drew from it before); the same value the global state gave
    # right after keras.utils.set_random_seed(seed).
    draw_seed = np.random.RandomState(seed).randint(2**31 - 1)
    return JigsawNetwork(self.make_trunk(), self.make_head(), draw_seed,
                         name="jigsaw_network")

  def compute_loss(self, model, batch, training):
    """Loss per (image, permutation): [B * K]; K = 8 in training, 100 in eval."""
    embeddings = self.embed(model, batch["image"], training)  # [B, 9, D]
    if training:
      if not isinstance(model, JigsawNetwork):
        raise ValueError("Jigsaw training needs the network of "
                         "Jigsaw.build_model() (it counts the draws).")
      classes = draw_classes(model.next_draw_seed(), self.num_pretext_classes,
                             self.permutations_per_batch)
    else:
      classes = tf.range(self.num_pretext_classes, dtype=tf.int32)
    perms = tf.gather(tf.constant(self.permutations), classes)  # [K, 9]
    features = permute_embeddings(embeddings, perms)
    labels = tf.tile(classes, [tf.shape(embeddings)[0]])
    return self.classify(model, features, labels, training)
