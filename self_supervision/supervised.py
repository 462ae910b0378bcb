"""The supervised baseline (docs/protocol.md §2): the trunk trained on the dataset's labels.

Softmax cross-entropy on the trunk's own logits layer (one output per dataset
class), inception-style preprocessing in training; its "pretext accuracy" is
therefore the supervised top-1 accuracy on the held-out split. The random
baseline needs no task of its own: any task's trunk with `train.epochs = 0`
(see configs/random_init/).
"""
import collections
from typing import Optional

import gin
import keras

import models
from self_supervision import task as task_lib


@task_lib.register("supervised")
@gin.configurable("supervised", denylist=["num_classes"])
class Supervised(task_lib.Task):
  """Supervised task; gin configures its pipelines (`supervised.pp_train`)."""

  def __init__(self, *, num_classes: int,
               pp_train: str = "decode|inception_preprocess(224)",
               pp_representation: str = "decode|resize_small(256)|central_crop(224)|value_range(-1,1)",
               pp_pretext_eval: Optional[str] = None):
    """pp_pretext_eval None: the representation pipeline (held-out top-1)."""
    if (not isinstance(num_classes, int) or isinstance(num_classes, bool)
        or num_classes < 2):
      raise ValueError(f"The supervised task needs the dataset's number of "
                       f"classes (an int >= 2); got {num_classes!r}.")
    super().__init__(num_classes=num_classes, pp_train=pp_train,
                     pp_pretext_eval=pp_pretext_eval or pp_representation,
                     pp_representation=pp_representation)

  def build_model(self, seed=0):
    del seed  # Keras initialisers only
    return models.get_model(num_classes=self.dataset_num_classes)

  def compute_loss(self, model, batch, training):
    """Batch 'image' [B, H, W, C], 'label' [B] -> (cross-entropy [B], outputs)."""
    images = batch["image"]
    if images.shape.rank != 4:
      raise ValueError(
          f"supervised expects one image per example, [B, H, W, C]; got shape "
          f"{images.shape}. Remove multi-copy ops (rotate, inception_patches, "
          f"crop_patches) from supervised.pp_train / pp_representation.")
    labels = batch["label"]
    logits, _ = model(images, training=training)
    per_example = keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)
    return per_example, {"labels": labels, "logits": logits}

  def make_metrics(self):
    metrics = collections.OrderedDict(
        accuracy=keras.metrics.SparseCategoricalAccuracy(name="accuracy"))
    if self.dataset_num_classes > 5:
      metrics["top5_accuracy"] = keras.metrics.SparseTopKCategoricalAccuracy(
          k=5, name="top5_accuracy")
    return metrics

  def update_metrics(self, metrics, outputs):
    # The trainer adds its own entries ('loss', ...) to the same dict.
    for key in ("accuracy", "top5_accuracy"):
      if key in metrics:
        metrics[key].update_state(outputs["labels"], outputs["logits"])
