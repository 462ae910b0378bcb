"""Exemplar (Dosovitskiy et al. 2014), in the triplet form of docs/protocol.md §2.

Every source image becomes n (8) independently augmented copies: grayscale
with probability 2/3 decided once for the image, then n inception-style crops,
then per-crop standardization. The trunk's logits are an embedding (1000-d);
the copies of one image are positives of each other and every other image of
its mining group (`mining_group_images` consecutive images of the replica's
batch, 8 by default: what one TPU core of the reference held) is a negative,
under a semi-hard triplet loss (margin 0.5).

Pretext evaluation applies the TRAINING augmentation to the held-out images
(seeded per example, so it is deterministic): with evaluation preprocessing the
n copies would be identical central crops and the pretext trivially solved.
Its `accuracy` is the fraction of copies whose nearest other copy in the batch
comes from the same source image (chance: (n-1) / (n*B - 1) for B images).
"""
import collections
from typing import Optional

import gin
import keras
import tensorflow as tf

import models
from datasets import preprocess_registry
from self_supervision import task as task_lib
from self_supervision import triplet_loss

NORMALIZATIONS = ("per_example", "across_batch", "none")


@preprocess_registry.register("as_training")
def get_as_training(pipeline: str, *, training: bool):
  """Op: runs `pipeline` with its training behaviour, also in evaluation.

  For pretext tasks defined by random augmentation (exemplar), whose held-out
  accuracy only means something on augmented copies. Randomness comes from
  features['_rng'], which the input pipeline sets from the example's position,
  so an evaluation pass still sees the same copies every time.
  """
  del training
  if not isinstance(pipeline, str):
    raise ValueError(f"as_training takes a pipeline string, e.g. "
                     f"as_training('inception_patches(8, 224)'); got {pipeline!r}.")
  return preprocess_registry.get_preprocess_fn(pipeline, training=True)


def _copies_in(pipeline: str):
  """n of the pipeline's `inception_patches(n, ...)` op, or None without one."""
  for name, args, kwargs in preprocess_registry.parse_pipeline(pipeline):
    if name == "inception_patches":
      return kwargs.get("n", args[0] if args else None)
  return None


def normalize_embeddings(embeddings: tf.Tensor, normalization: str,
                         valid=None) -> tf.Tensor:
  """[N, D] -> [N, D] under one of NORMALIZATIONS.

  'per_example': each row has unit L2 norm (docs/protocol.md). 'across_batch': each
  column (dimension) has unit L2 norm over the batch, as the reference code's
  `tf.nn.l2_normalize(logits, axis=0)` did; over the rows where `valid` (bool
  [N], False for padding) when given. 'none': unchanged.
  """
  if normalization == "per_example":
    return tf.math.l2_normalize(embeddings, axis=1)
  if normalization == "across_batch":
    if valid is None:
      return tf.math.l2_normalize(embeddings, axis=0)
    # tf.math.l2_normalize's own arithmetic, with the padding's squares left out.
    squares = tf.square(embeddings)
    squares = tf.where(tf.reshape(valid, [-1, 1]), squares, tf.zeros_like(squares))
    square_sum = tf.reduce_sum(squares, axis=0, keepdims=True)
    return embeddings * tf.math.rsqrt(tf.maximum(square_sum, 1e-12))
  if normalization == "none":
    return embeddings
  raise ValueError(f"Unknown exemplar normalization {normalization!r}; use one "
                   f"of {', '.join(NORMALIZATIONS)}.")


def fold_copies(images: tf.Tensor):
  """[B, n, H, W, C] copies -> ([B*n, H, W, C], labels int32 [B*n]).

  Row i*n + j is copy j of image i, labelled i: the image's position within
  this (per-replica) batch, so labels are only unique within the batch, which
  is exactly where triplets are mined.
  """
  if images.shape.rank != 5:
    raise ValueError(
        f"exemplar expects batches of copies [B, n, H, W, C]; got shape "
        f"{images.shape}. End exemplar.pp_train with a multi-copy op, e.g. "
        f"'decode|to_gray(2/3)|inception_patches(8, 224)|standardize'.")
  shape = tf.shape(images)
  folded = tf.reshape(images, tf.concat([[-1], shape[2:]], axis=0))
  labels = tf.repeat(tf.range(shape[0], dtype=tf.int32), shape[1])
  return folded, labels


@task_lib.register("exemplar")
@gin.configurable("exemplar", denylist=["num_classes"])
class Exemplar(task_lib.Task):
  """Exemplar task; gin configures it as `exemplar.<argument>`.

  pp_pretext_eval defaults to `as_training(<pp_train>)`; pp_representation is
  the representation pipeline, ending with `input_scaling` ('standardize':
  it ignores the value range, so [0, 1] module inputs map to exactly what the
  op gives the trunk; 'value_range(-1, 1)' with a matching pipeline is what the reference code
  fed at evaluation time, although it trained on standardized crops).
  """
  copies_per_example = 8

  def __init__(self, *, num_classes: int,
               pp_train: str = "decode|to_gray(2/3)|inception_patches(8, 224)|standardize",
               pp_representation: str = "decode|resize_small(256)|central_crop(224)|standardize",
               pp_pretext_eval: Optional[str] = None,
               input_scaling: str = "standardize",
               embedding_size: int = 1000, margin: float = 0.5,
               normalization: str = "per_example",
               distance: str = "squared_l2",
               mining_group_images: Optional[int] = 8):
    super().__init__(
        num_classes=num_classes, pp_train=pp_train,
        pp_pretext_eval=pp_pretext_eval or f"as_training({pp_train!r})",
        pp_representation=pp_representation, input_scaling=input_scaling)
    if normalization not in NORMALIZATIONS:
      raise ValueError(f"exemplar.normalization must be one of "
                       f"{', '.join(NORMALIZATIONS)}; got {normalization!r}.")
    if distance not in triplet_loss.DISTANCES:
      raise ValueError(f"exemplar.distance must be one of "
                       f"{', '.join(triplet_loss.DISTANCES)}; got {distance!r}.")
    if not isinstance(embedding_size, int) or embedding_size <= 0:
      raise ValueError(f"exemplar.embedding_size must be a positive int; got "
                       f"{embedding_size!r}.")
    if margin < 0:
      raise ValueError(f"exemplar.margin must be >= 0; got {margin!r}.")
    if mining_group_images is not None and (
        isinstance(mining_group_images, bool)
        or not isinstance(mining_group_images, int) or mining_group_images < 2):
      raise ValueError(
          f"exemplar.mining_group_images must be an int >= 2 (a group needs "
          f"negatives) or None (the whole per-replica batch); got "
          f"{mining_group_images!r}. docs/protocol.md §2: 8.")
    self.mining_group_images = mining_group_images
    copies = _copies_in(pp_train)
    if copies is not None:
      self.copies_per_example = copies
    self.embedding_size, self.margin = embedding_size, float(margin)
    self.normalization, self.distance = normalization, distance

  def build_model(self, seed=0):
    del seed  # Keras initialisers only
    return models.get_model(num_classes=self.embedding_size)

  def compute_loss(self, model, batch, training):
    """Batch 'image' [B, n, H, W, C] -> (per-copy loss shares [B*n], outputs).

    The shares average to this replica's triplet loss (see
    `triplet_loss.semihard_triplet_loss_per_anchor`), so the trainer's
    `tf.nn.compute_average_loss` gives the mean of the replicas' losses.
    A padded evaluation batch's 'valid' [B] (training/loop.py) keeps its
    padding images out of the mining and the nearest-neighbour search: they
    mine nothing and nobody mines them, and the real rows' shares average
    to the real rows' loss.
    """
    images, labels = fold_copies(batch["image"])
    if training and batch["image"].shape[0] == 1:
      raise ValueError(
          "exemplar needs at least 2 source images per replica to have "
          "negatives; raise train.batch_size to at least 2 x the replicas.")
    source_images = batch["image"].shape[0]
    if (training and self.mining_group_images is not None
        and source_images is not None
        and source_images < self.mining_group_images):
      # The groups are cut from each replica's rows: fewer rows than a group
      # would silently mine in smaller groups than the protocol's (16
      # replicas at batch 64 give groups of 4).
      raise ValueError(
          f"exemplar.mining_group_images = {self.mining_group_images}, but each "
          f"replica trains on only {source_images} source images: its mining "
          f"groups would shrink to {source_images}. Raise train.batch_size to "
          f"at least {self.mining_group_images} x the replicas, or set "
          f"exemplar.mining_group_images to at most {source_images} (None: the "
          f"whole per-replica batch).")
    copy_valid = None
    if "valid" in batch:
      copy_valid = tf.repeat(tf.cast(batch["valid"], tf.bool),
                             tf.shape(batch["image"])[1])
    logits, _ = model(images, training=training)
    embeddings = normalize_embeddings(logits, self.normalization, copy_valid)
    # Labels are the source image's position in the batch, so consecutive
    # images form the mining groups (docs/protocol.md §2: 8 images, as one TPU core of
    # the reference held), however many replicas share the global batch.
    groups = (None if self.mining_group_images is None
              else labels // self.mining_group_images)
    per_copy = triplet_loss.semihard_triplet_loss_per_anchor(
        labels, embeddings, self.margin, self.distance, groups=groups,
        valid=copy_valid)
    nn_correct = triplet_loss.nearest_neighbour_correct(
        labels, embeddings, self.distance, valid=copy_valid)
    return per_copy, {"labels": labels, "embeddings": embeddings,
                      "per_copy_loss": per_copy, "nn_correct": nn_correct}

  def make_metrics(self):
    return collections.OrderedDict(
        # 'accuracy' is the pretext accuracy every task reports.
        accuracy=keras.metrics.Mean(name="accuracy"),
        triplet_loss=keras.metrics.Mean(name="triplet_loss"))

  def update_metrics(self, metrics, outputs):
    metrics["accuracy"].update_state(outputs["nn_correct"])
    metrics["triplet_loss"].update_state(outputs["per_copy_loss"])
