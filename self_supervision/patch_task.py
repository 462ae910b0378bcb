"""What jigsaw and relative patch location share (docs/protocol.md §2 and §5).

Both tasks cut each image into a row-major 3x3 grid of patches (index 4 is the
centre), map every patch to an embedding with the trunk in patch mode (the
trunk's own logits, 1000-d by default), combine embeddings of several patches
and classify the combination with the same kind of head. This file holds the
pieces that must be identical for the two: the pipelines, the network (trunk +
head), the per-patch trunk call and the 9-patch image representation.

Batches from the pipelines carry 'image' [B, 9, h, w, 3]: the 9 standardized
patches of each of B images. The trunk sees them folded into one batch of
B * 9 patches.
"""
import collections
from typing import Dict, Optional

import keras
import tensorflow as tf

import models
from datasets import preprocess_registry
from models import layers as model_layers
from self_supervision import task as task_lib

GRID = 3
NUM_PATCHES = GRID * GRID
CENTER = NUM_PATCHES // 2

# docs/protocol.md §2: resize to 292, crop 255 (random), a 3x3 grid of 85-pixel cells, a
# 64x64 patch per cell at a random offset (up to 21 px of jitter), each patch
# independently grayscale with p = 2/3, per-patch standardization. The same
# ops in evaluation mode are the pretext-evaluation pipeline: central crops,
# colour kept. The reference code's grayscale decided once per image:
# PP_TRAIN_GRAY_PER_IMAGE.
DEFAULT_PP_TRAIN = ("decode|resize(292)|crop(255)|"
                    "crop_patches(3, patch_size=64, jitter=21)|"
                    "to_gray(2/3, per_element=True)|standardize")
PP_TRAIN_GRAY_PER_IMAGE = ("decode|resize(292)|to_gray(2/3)|crop(255)|"
                           "crop_patches(3, patch_size=64, jitter=21)|standardize")
# docs/protocol.md §5: smaller side 224, central 192, 3x3 grid of 64x64 (cells are 64, so
# the patch is the whole cell), no jitter, standardized.
DEFAULT_PP_REPRESENTATION = ("decode|resize_small(224)|central_crop(192)|"
                             "crop_patches(3, patch_size=64)|standardize")

PATCH_REPRESENTATIONS = ("average", "concat")

# Head (docs/protocol.md §2, Jigsaw): as in the reference's fully connected layers.
HEAD_INIT_STDDEV = 0.005
HEAD_HIDDEN_BIAS = 0.1
HEAD_BN_MOMENTUM = 0.997
HEAD_BN_EPSILON = 1e-5


def check_patch_pipeline(pp: str, what: str) -> None:
  """Raises ValueError unless `pp` cuts a 3x3 grid with `crop_patches`.

  `what` names the gin binding in the message (e.g. 'jigsaw.pp_train').
  """
  ops = preprocess_registry.parse_pipeline(pp)
  for name, args, kwargs in ops:
    if name == "crop_patches":
      splits = kwargs.get("splits", args[0] if args else 3)
      if splits != GRID:
        raise ValueError(
            f"{what} must cut a {GRID}x{GRID} grid; its crop_patches has "
            f"splits={splits!r}. Use crop_patches({GRID}, patch_size=...).")
      return
  raise ValueError(
      f"{what} = {pp!r} has no crop_patches op; the patch tasks need "
      f"[{NUM_PATCHES}, h, w, 3] patches per image, e.g. "
      f"{DEFAULT_PP_TRAIN!r}.")


def fold_patches(images: tf.Tensor) -> tf.Tensor:
  """[B, 9, h, w, C] -> [B * 9, h, w, C], patch-major within each image."""
  if images.shape.rank != 5 or images.shape[1] != NUM_PATCHES:
    raise ValueError(
        f"Patch tasks expect 'image' of shape [batch, {NUM_PATCHES}, h, w, 3] "
        f"(the pipeline must end with crop_patches({GRID}, ...)|standardize); "
        f"got {images.shape}.")
  shape = tf.shape(images)
  return tf.reshape(images, tf.concat([[-1], shape[2:]], axis=0))


def unfold(x: tf.Tensor) -> tf.Tensor:
  """[B * 9, ...] -> [B, 9, ...], inverse of `fold_patches` on the batch axis."""
  return tf.reshape(x, tf.concat([[-1, NUM_PATCHES], tf.shape(x)[1:]], axis=0))


def head_layer_kwargs(weight_decay: float, bias: float):
  """Initialisers and decay of the head's fully connected layers."""
  return dict(
      kernel_initializer=keras.initializers.TruncatedNormal(
          stddev=HEAD_INIT_STDDEV),
      bias_initializer=keras.initializers.Constant(bias),
      kernel_regularizer=model_layers.weight_decay_regularizer(weight_decay))


class PatchHead(keras.layers.Layer):
  """fc(hidden) - BN - ReLU - dropout - fc(num_classes): [N, F] -> [N, classes].

  fc weights ~ truncated normal (std 0.005, cut at 2 std); biases 0.1 (hidden)
  and 0 (output); BN momentum 0.997, epsilon 1e-5, synchronised across
  replicas like the trunks' BN. Weight decay acts on the two kernels only,
  through their regularizers, so it appears in `model.losses`.
  """

  def __init__(self, num_classes: int, hidden: int = 4096,
               dropout: float = 0.5, weight_decay: float = 5e-4, **kwargs):
    super().__init__(**kwargs)
    model_layers.check_positive_int(num_classes, "num_classes",
                                    "it is the number of pretext classes.")
    model_layers.check_positive_int(hidden, "head hidden size",
                                    "the reference uses 4096.")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"head dropout is a rate in [0, 1); got {dropout!r}.")
    self.hidden = hidden
    self.fc1 = keras.layers.Dense(
        hidden, name="fc1", **head_layer_kwargs(weight_decay, HEAD_HIDDEN_BIAS))
    self.bn = model_layers.BatchNorm(
        momentum=HEAD_BN_MOMENTUM, epsilon=HEAD_BN_EPSILON, synchronized=True,
        name="bn")
    self.dropout = keras.layers.Dropout(dropout, name="dropout")
    self.fc2 = keras.layers.Dense(
        num_classes, name="fc2", **head_layer_kwargs(weight_decay, 0.0))

  def build(self, input_shape):
    # Explicit shapes: without them Keras would trace `call` to build.
    self.fc1.build((None, input_shape[-1]))
    self.bn.build((None, self.hidden))
    self.fc2.build((None, self.hidden))

  def call(self, features, training=False):
    x = self.fc1(features)
    x = tf.nn.relu(self.bn(x, training=training))
    x = self.dropout(x, training=training)
    # float32 logits for the loss under a mixed policy (training/precision.py).
    return tf.cast(self.fc2(x), tf.float32)


class PatchNetwork(keras.Model):
  """The trained network of a patch task: per-patch trunk + pretext head.

  `call(patches [B, 9, h, w, 3], training)` returns the per-patch embeddings
  [B, 9, D] (the trunk's logits) and the trunk's end points, each reshaped to
  [B, 9, ...]; the task combines embeddings and applies `head`.
  """

  def __init__(self, trunk: keras.Model, head: keras.layers.Layer, **kwargs):
    super().__init__(**kwargs)
    self.trunk = trunk
    self.head = head

  def build(self, input_shape):
    # The trunk is built by get_model and the head by its first call; this
    # stops Keras from tracing the whole network symbolically to build it.
    del input_shape

  def call(self, patches, training=False):
    logits, end_points = self.trunk(fold_patches(patches), training=training)
    if logits is None:
      raise ValueError("The patch trunk needs a logits layer (the embedding); "
                       "build it with num_classes=embedding_size.")
    return unfold(logits), collections.OrderedDict(
        (name, unfold(value)) for name, value in end_points.items())


def combine_patches(x: tf.Tensor, mode: str) -> tf.Tensor:
  """One image's value from its 9 patches' values: [B, 9, ...] -> [B, ...].

  'average': the mean over patches. 'concat': patches concatenated in
  row-major order on the last (channel) axis, [B, 9, D] -> [B, 9 * D] and
  [B, 9, h, w, C] -> [B, h, w, 9 * C], so spatial end points stay spatial
  and the evaluator can pool them as usual.
  """
  if mode == "average":
    return tf.reduce_mean(x, axis=1)
  if mode == "concat":
    rank = x.shape.rank
    # Move the patch axis next to the channels, then merge the two.
    x = tf.transpose(x, [0] + list(range(2, rank - 1)) + [1, rank - 1])
    static = x.shape.as_list()
    x = tf.reshape(x, tf.concat([tf.shape(x)[:-2], [-1]], axis=0))
    # The evaluator's pooling needs the static h, w and C.
    merged = (static[-2] * static[-1]
              if static[-2] is not None and static[-1] is not None else None)
    x.set_shape(static[:-2] + [merged])
    return x
  raise ValueError(f"Unknown patch_representation {mode!r}; use one of "
                   f"{PATCH_REPRESENTATIONS}.")


def patch_representation(trunk: keras.Model, patches: tf.Tensor,
                         mode: str = "average", training: bool = False
                         ) -> Dict[str, tf.Tensor]:
  """Every end point of `trunk` for [B, 9, h, w, 3] patches, combined per image.

  Returns an OrderedDict name -> [B, ...] (see `combine_patches`); spatial
  end points stay spatial: pooling to about 9000 features is the evaluator's.
  training: batch norm in training mode (the finetune protocol).
  """
  _, end_points = trunk(fold_patches(patches), training=training)
  return collections.OrderedDict(
      (name, combine_patches(unfold(value), mode))
      for name, value in end_points.items())


class PatchTask(task_lib.Task):
  """Base of the patch tasks: pipelines, network, representation.

  Subclasses set `num_pretext_classes` (the head's output size) and
  implement `compute_loss`, which combines the embeddings from `embed` into
  head inputs and hands them to `classify`.
  """
  num_pretext_classes = None
  # Per-patch standardization, as the pipelines' `standardize` op:
  # zero mean, unit variance per patch.
  input_scaling = "standardize"

  def __init__(self, *, num_classes: int, pp_train: str,
               pp_pretext_eval: Optional[str], pp_representation: str,
               embedding_size: int, head_hidden: int, head_dropout: float,
               head_weight_decay: float, patch_representation: str):
    """pp_pretext_eval None: pp_train in evaluation mode (central crops)."""
    pp_pretext_eval = pp_pretext_eval or pp_train
    for what, pp in (("pp_train", pp_train),
                     ("pp_pretext_eval", pp_pretext_eval),
                     ("pp_representation", pp_representation)):
      check_patch_pipeline(pp, f"{self.name}.{what}")
    super().__init__(num_classes=num_classes, pp_train=pp_train,
                     pp_pretext_eval=pp_pretext_eval,
                     pp_representation=pp_representation)
    if patch_representation not in PATCH_REPRESENTATIONS:
      raise ValueError(
          f"{self.name}.patch_representation must be one of "
          f"{PATCH_REPRESENTATIONS}; got {patch_representation!r}.")
    model_layers.check_positive_int(
        embedding_size, f"{self.name}.embedding_size",
        "it is the size of the trunk's logits (1000 in the paper).")
    self.embedding_size = embedding_size
    self.head_hidden = head_hidden
    self.head_dropout = head_dropout
    self.head_weight_decay = head_weight_decay
    self.patch_representation_mode = patch_representation

  def make_trunk(self) -> keras.Model:
    """The patch-mode trunk (architecture from gin's `get_model`)."""
    return models.get_model(num_classes=self.embedding_size, patch_mode=True)

  def make_head(self) -> PatchHead:
    return PatchHead(self.num_pretext_classes, hidden=self.head_hidden,
                     dropout=self.head_dropout,
                     weight_decay=self.head_weight_decay, name="head")

  def build_model(self, seed=0):
    del seed  # Keras initialisers only
    return PatchNetwork(self.make_trunk(), self.make_head(),
                        name=f"{self.name}_network")

  def trunk(self, model):
    """The per-patch trunk of a PatchNetwork; a bare trunk is returned as is."""
    return model.trunk if isinstance(model, PatchNetwork) else model

  def representation(self, model, images, training: bool = False):
    """[B, 9, h, w, 3] patches -> OrderedDict of [B, ...] end points.

    Every trunk end point, averaged (default) or concatenated over the 9
    patches (gin: `<task>.patch_representation`).
    """
    return patch_representation(self.trunk(model), images,
                                self.patch_representation_mode, training)

  def embed(self, model, images: tf.Tensor, training: bool) -> tf.Tensor:
    """[B, 9, h, w, 3] patches -> embeddings [B, 9, D], one trunk call."""
    embeddings, _ = model(images, training=training)
    return embeddings

  def classify(self, model, features: tf.Tensor, labels: tf.Tensor,
               training: bool):
    """Head + softmax cross-entropy: features [N, F], labels [N] -> loss [N]."""
    logits = model.head(features, training=training)
    per_example = keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)
    return per_example, {"labels": labels, "logits": logits}
