"""Tiny tasks for evaluation tests: a real trunk calling convention, no cost."""
import collections

import keras
import tensorflow as tf

from self_supervision import task as task_lib


class TinyTrunk(keras.Model):
  """conv3x3-BN-ReLU, global pool, logits: the calling convention of a trunk."""

  def __init__(self, num_classes, **kwargs):
    super().__init__(name="tiny_trunk", **kwargs)
    self.conv = keras.layers.Conv2D(
        4, 3, padding="same", use_bias=False,
        kernel_regularizer=keras.regularizers.L2(5e-5), name="conv")
    self.bn = keras.layers.BatchNormalization(name="bn")
    self.logits = keras.layers.Dense(num_classes, name="logits")
    # Variables exist at once, as for the real trunks, so checkpoints restore.
    self(tf.zeros([1, 8, 8, 3]))

  def call(self, images, training=False):
    x = tf.nn.relu(self.bn(self.conv(images), training=training))
    pre_logits = tf.reduce_mean(x, axis=[1, 2])
    logits = self.logits(pre_logits)
    return logits, collections.OrderedDict(
        after_root=x, pre_logits=pre_logits, logits=logits)


class TinySupervised(task_lib.Task):
  """Labels through a tiny trunk; scales images to [-1, 1] like the default."""
  name = "tiny_supervised"

  def __init__(self, *, num_classes, pp="decode|resize(8)|value_range(-1, 1)"):
    super().__init__(num_classes=num_classes, pp_train=pp, pp_pretext_eval=pp,
                     pp_representation=pp)

  def build_model(self, seed=0):
    del seed  # Keras initialisers only
    return TinyTrunk(self.dataset_num_classes)

  def compute_loss(self, model, batch, training):
    logits, _ = model(batch["image"], training=training)
    per_example = keras.losses.sparse_categorical_crossentropy(
        batch["label"], logits, from_logits=True)
    return per_example, {"labels": batch["label"], "logits": logits}


class PatchIndexTrunk(keras.layers.Layer):
  """A trunk whose 2-d embedding of a constant patch is (value, -value)."""

  def call(self, images, training=False):
    value = tf.reduce_mean(images, axis=[1, 2, 3])
    logits = tf.stack([value, -value], axis=1)
    return logits, {"pre_logits": logits}


class RecordingHead(keras.layers.Layer):
  """Records the head input; zero logits, so the loss is log(num_classes)."""

  def __init__(self, num_classes):
    super().__init__()
    self.num_classes = num_classes
    self.inputs = []

  def call(self, features, training=False):
    self.inputs.append(features.numpy())
    return tf.zeros([tf.shape(features)[0], self.num_classes])


class PixelTask:
  """A task-like reader whose 'trunk' is the identity: features are pixels.

  End points: 'pixels' [B, H*W] (flattened first channel) and 'image'
  [B, H, W, 3] (spatial, pooled when over the budget). Protocol tests use it
  so that what is learned depends on the protocol alone.
  """
  name = "pixels"

  def __init__(self, pp="decode|value_range(-1, 1)"):
    self.pp = pp

  def preprocess(self, mode):
    del mode
    return self.pp

  def representation(self, model, images, training=False):
    del model, training
    return collections.OrderedDict(
        pixels=tf.reshape(images[..., 0], [tf.shape(images)[0], -1]),
        image=images)


def pixel_trunk():
  """A `trunks.Trunk` of PixelTask: the protocols' tests evaluate pixels."""
  from evaluation import trunks  # pylint: disable=g-import-not-at-top
  return trunks.Trunk("pixels", PixelTask(), None, dict(kind="test"))
