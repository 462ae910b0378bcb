"""What a pretext task is, seen from the trainer and the evaluator.

A task owns its preprocessing strings, its network (trunk + head), its loss, its
metrics and how an image's representation is read from the trained network. The
trainer (`trainer.py`) only drives steps; it never looks inside a batch.

Tasks register themselves by name so that a config can say
`experiment.task = 'rotation'` and adding a task touches one new file.
"""
import abc
import collections
from typing import Callable, Dict

import keras
import tensorflow as tf

_TASKS: Dict[str, Callable[..., "Task"]] = {}

# Modes a task gives a preprocessing string for.
TRAIN = "train"                    # pretext training, augmented
PRETEXT_EVAL = "pretext_eval"      # pretext accuracy on the held-out split
REPRESENTATION = "representation"  # images whose representation is evaluated


def register(name: str):
  """Class decorator: makes a Task subclass available as `get_task(name)`."""
  def wrap(cls):
    if name in _TASKS:
      raise ValueError(f"Task {name!r} is registered twice.")
    _TASKS[name] = cls
    cls.name = name
    return cls
  return wrap


def task_names():
  _import_builtin_tasks()
  return sorted(_TASKS)


def get_task(name: str, **kwargs) -> "Task":
  """Builds the task registered as `name` (its gin bindings apply)."""
  _import_builtin_tasks()
  if name not in _TASKS:
    raise ValueError(
        f"Unknown task {name!r}. Known tasks: {', '.join(sorted(_TASKS))}.")
  return _TASKS[name](**kwargs)


def _import_builtin_tasks():
  # Imported here, not at module top, because each task module imports this one.
  from self_supervision import rotation  # pylint: disable=g-import-not-at-top,unused-import
  from self_supervision import exemplar  # pylint: disable=g-import-not-at-top,unused-import
  from self_supervision import supervised  # pylint: disable=g-import-not-at-top,unused-import
  from self_supervision import jigsaw  # pylint: disable=g-import-not-at-top,unused-import
  from self_supervision import relative_patch_location  # pylint: disable=g-import-not-at-top,unused-import
  del rotation


class Task(abc.ABC):
  """Base class of a pretext (or supervised) task.

  Subclasses set `name` through `@register` and implement the abstract methods.
  """
  name = "task"
  # How many network inputs one dataset example becomes (4 for rotation): the
  # trainer reports images/s in source images and in network inputs.
  copies_per_example = 1

  def __init__(self, *, num_classes: int):
    # The dataset's label count: used by the supervised task; pretext tasks
    # ignore it.
    self.dataset_num_classes = num_classes

  @abc.abstractmethod
  def preprocess(self, mode: str) -> str:
    """The pipeline string for `mode` (TRAIN, PRETEXT_EVAL or REPRESENTATION)."""

  @abc.abstractmethod
  def build_model(self) -> keras.Model:
    """The trained network; its trunk's end points give the representation."""

  @abc.abstractmethod
  def compute_loss(self, model: keras.Model, batch: Dict[str, tf.Tensor],
                   training: bool):
    """Returns `(per_example_loss [N], outputs)`; outputs feed update_metrics."""

  def make_metrics(self) -> Dict[str, keras.metrics.Metric]:
    return collections.OrderedDict(
        accuracy=keras.metrics.SparseCategoricalAccuracy(name="accuracy"))

  def update_metrics(self, metrics, outputs):
    metrics["accuracy"].update_state(outputs["labels"], outputs["logits"])

  def trunk(self, model: keras.Model) -> keras.Model:
    """The trunk inside the trained network (what is exported and evaluated).

    The trunk maps trunk inputs [B,H,W,3] to (logits, end_points).
    """
    return model

  def scale_images(self, images: tf.Tensor) -> tf.Tensor:
    """Images in [0, 1] (TF-Hub convention) -> the trunk's input scaling.

    [B,H,W,3] -> [B,H,W,3]. The default matches `value_range(-1, 1)`; tasks
    whose pipelines scale differently (e.g. per-patch standardization)
    override it, so an exported module applies the same scaling as training.
    """
    return images * 2.0 - 1.0

  def representation(self, model: keras.Model, images: tf.Tensor):
    """End points of the frozen trunk for preprocessed `images` [B,H,W,3].

    Returns an ordered dict name -> tensor with leading batch dimension B.
    """
    _, end_points = model(images, training=False)
    return end_points
