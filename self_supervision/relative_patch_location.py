"""Relative patch location (Doersch et al. 2015), docs/protocol.md §2.

Of each image's 3x3 grid of patches, the 8 pairs (neighbour i, centre 4) for
i in 0..8 except 4 are labelled 0..7 in that order; each pair's two
embeddings are concatenated (neighbour first) and the head classifies where
the neighbour sits. The same 8 pairs serve training and evaluation.
"""
from typing import Optional

import gin
import tensorflow as tf

from self_supervision import patch_task
from self_supervision import task as task_lib

NEIGHBOURS = tuple(i for i in range(patch_task.NUM_PATCHES)
                   if i != patch_task.CENTER)
NUM_LOCATIONS = len(NEIGHBOURS)


def pair_embeddings(embeddings: tf.Tensor) -> tf.Tensor:
  """[B, 9, D] -> [B * 8, 2 * D]; row b * 8 + j is [emb[b, NEIGHBOURS[j]], emb[b, 4]]."""
  neighbours = tf.gather(embeddings, NEIGHBOURS, axis=1)  # [B, 8, D]
  centre = tf.repeat(embeddings[:, patch_task.CENTER:patch_task.CENTER + 1],
                     NUM_LOCATIONS, axis=1)  # [B, 8, D]
  pairs = tf.concat([neighbours, centre], axis=-1)  # [B, 8, 2D]
  size = embeddings.shape[-1]
  if size is None:
    size = tf.shape(embeddings)[-1]
  return tf.reshape(pairs, [-1, 2 * size])


def location_labels(batch_size) -> tf.Tensor:
  """int32 [batch_size * 8]: 0..7 for each image, matching `pair_embeddings`."""
  return tf.tile(tf.range(NUM_LOCATIONS, dtype=tf.int32), [batch_size])


@task_lib.register("relative_patch_location")
@gin.configurable("relative_patch_location", denylist=["num_classes"])
class RelativePatchLocation(patch_task.PatchTask):
  """Relative patch location; gin: `relative_patch_location.<argument>`.

  Args:
    num_classes: the dataset's label count (unused by the pretext).
    pp_train, pp_pretext_eval, pp_representation: pipelines (see
      patch_task); pp_pretext_eval None runs pp_train in evaluation mode
      (central crops, colour).
    embedding_size: the trunk's logits size, one patch's embedding.
    head_hidden, head_dropout, head_weight_decay: the head (docs/protocol.md §2).
    patch_representation: 'average' or 'concat' over the 9 patches.
  """
  copies_per_example = NUM_LOCATIONS
  num_pretext_classes = NUM_LOCATIONS

  def __init__(self, *, num_classes: int,
               pp_train: str = patch_task.DEFAULT_PP_TRAIN,
               pp_pretext_eval: Optional[str] = None,
               pp_representation: str = patch_task.DEFAULT_PP_REPRESENTATION,
               embedding_size: int = 1000, head_hidden: int = 4096,
               head_dropout: float = 0.5, head_weight_decay: float = 5e-4,
               patch_representation: str = "average"):
    super().__init__(
        num_classes=num_classes, pp_train=pp_train,
        pp_pretext_eval=pp_pretext_eval,
        pp_representation=pp_representation, embedding_size=embedding_size,
        head_hidden=head_hidden, head_dropout=head_dropout,
        head_weight_decay=head_weight_decay,
        patch_representation=patch_representation)

  def compute_loss(self, model, batch, training):
    """Loss per (image, neighbour): [B * 8]."""
    embeddings = self.embed(model, batch["image"], training)  # [B, 9, D]
    features = pair_embeddings(embeddings)
    labels = location_labels(tf.shape(embeddings)[0])
    return self.classify(model, features, labels, training)
