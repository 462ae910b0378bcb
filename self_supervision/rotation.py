"""Rotation prediction (Gidaris et al. 2018), docs/protocol.md §2.

Every image becomes 4 copies rotated by 0, 90, 180 and 270 degrees
counter-clockwise (copy r == numpy.rot90(image, k=r) on the H, W axes), labelled
r; the trunk's own logits layer classifies the rotation with softmax
cross-entropy.
"""
from typing import Optional

import gin
import keras
import tensorflow as tf

import models
from datasets import preprocess_registry
from self_supervision import task as task_lib

NUM_ROTATIONS = 4


def rotate_copies(image: tf.Tensor) -> tf.Tensor:
  """[H,W,C] square image -> [4,H,W,C], copy r rotated by r*90 degrees CCW."""
  return tf.stack([tf.image.rot90(image, k=r) for r in range(NUM_ROTATIONS)])


@preprocess_registry.register("rotate")
def get_rotate(*, training: bool):
  """Op: 'image' [H,W,C] -> [4,H,W,C]; adds 'rotation_label' [4] = 0, 1, 2, 3.

  The same in training and evaluation: the pretext is defined by all 4 copies.
  """
  del training

  def _rotate(features):
    image = features["image"]
    shape = tf.shape(image)
    tf.debugging.assert_equal(
        shape[0], shape[1],
        message="rotate needs square images: put a crop or resize to a square "
                "size before 'rotate' in the pipeline string.")
    features = dict(features)
    features["image"] = rotate_copies(image)
    features["rotation_label"] = tf.range(NUM_ROTATIONS, dtype=tf.int32)
    return features
  return _rotate


@task_lib.register("rotation")
@gin.configurable("rotation", denylist=["num_classes"])
class Rotation(task_lib.Task):
  """Rotation task; gin configures its pipelines (`rotation.pp_train = ...`)."""
  copies_per_example = NUM_ROTATIONS

  def __init__(self, *, num_classes: int,
               pp_train: str = "decode|inception_preprocess(224)|rotate",
               pp_representation: str = "decode|resize_small(256)|central_crop(224)|value_range(-1,1)",
               pp_pretext_eval: Optional[str] = None):
    """pp_pretext_eval None: the representation pipeline, then `rotate`."""
    if "rotate" not in pp_train.replace(" ", "").split("|")[-1]:
      raise ValueError(
          f"rotation.pp_train must end with the 'rotate' op, got {pp_train!r}.")
    super().__init__(
        num_classes=num_classes, pp_train=pp_train,
        pp_pretext_eval=pp_pretext_eval or pp_representation + "|rotate",
        pp_representation=pp_representation)

  def build_model(self, seed=0):
    del seed  # Keras initialisers only
    return models.get_model(num_classes=NUM_ROTATIONS)

  def compute_loss(self, model, batch, training):
    images = batch["image"]  # [B, 4, H, W, C]
    shape = tf.shape(images)
    images = tf.reshape(images, tf.concat([[-1], shape[2:]], axis=0))
    labels = tf.reshape(batch["rotation_label"], [-1])
    logits, _ = model(images, training=training)
    per_example = keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)
    return per_example, {"labels": labels, "logits": logits}
