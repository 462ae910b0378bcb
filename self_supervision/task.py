"""What a pretext task is, seen from the trainer, the export and the evaluator.

A task owns its three pipelines (`pp_train`, `pp_pretext_eval`,
`pp_representation`), the input scaling they end with, its network (trunk +
head), its loss, its metrics and how an image's representation is read from
the trained network. The training loop only drives steps; it never looks
inside a batch.

Tasks register themselves by name (`@register('rotation')`) so that a config
can say `experiment.task = 'rotation'`. Every module of this package is
imported on the first lookup, so adding a task is one new module here plus
one config; a task defined elsewhere (a test, a user's module) registers the
same way once its module is imported.
"""
import abc
import collections
import importlib
import pkgutil
from typing import Callable, Dict, List, Optional

import keras
import tensorflow as tf

from datasets import input_pipeline
from datasets import preprocess_registry
from training import errors

_TASKS: Dict[str, Callable[..., "Task"]] = {}

# Modes a task gives a preprocessing string for.
TRAIN = "train"                    # pretext training, augmented
PRETEXT_EVAL = "pretext_eval"      # pretext accuracy on the held-out split
REPRESENTATION = "representation"  # images whose representation is evaluated
MODES = (TRAIN, PRETEXT_EVAL, REPRESENTATION)


def register(name: str):
  """Class decorator: makes a Task subclass available as `get_task(name)`."""
  def wrap(cls):
    if name in _TASKS and _TASKS[name] is not cls:
      raise ValueError(f"Task {name!r} is registered twice.")
    _TASKS[name] = cls
    cls.name = name
    return cls
  return wrap


def task_names():
  _import_package_modules()
  return sorted(_TASKS)


def get_task(name: str, **kwargs) -> "Task":
  """Builds the task registered as `name` (its gin bindings apply)."""
  _import_package_modules()
  if name not in _TASKS:
    raise ValueError(
        f"Unknown task {name!r}. Known tasks: {', '.join(sorted(_TASKS))}.")
  return _TASKS[name](**kwargs)


def _import_package_modules():
  # At lookup time, not at import: every task module imports this one.
  package = importlib.import_module(__package__)
  for info in pkgutil.iter_modules(package.__path__):
    if not info.name.startswith("_"):
      importlib.import_module(f"{__package__}.{info.name}")


# Input scalings a task may declare: op name -> the same map applied to images
# in [0, 1] (the TF-Hub convention), [B, H, W, 3] -> [B, H, W, 3]. The op's own
# implementation is not reused because `value_range` maps from its `in_lo,
# in_hi` arguments, which a module input in [0, 1] must not depend on.
_SCALINGS = {
    "value_range": lambda images, lo, hi, in_lo=0.0, in_hi=1.0: (
        lo + (hi - lo) * (images - in_lo) / (in_hi - in_lo)),
    "standardize": tf.image.per_image_standardization,
}


class Task(abc.ABC):
  """Base class of a pretext (or supervised) task.

  Subclasses set `name` through `@register`, declare `input_scaling` (the op
  their representation pipeline ends with), pass their three pipelines to
  `__init__` and implement `build_model` and `compute_loss`.
  """
  name = "task"
  # The op the representation pipeline ends with, which maps [0, 1] images to
  # the trunk's input. The export applies it inside the module; what comes
  # before it is the pipeline to the module's [0, 1] input.
  input_scaling = "value_range(-1, 1)"
  # How many network inputs one dataset example becomes (4 for rotation): the
  # progress line reports images/s in source images and in network inputs.
  copies_per_example = 1

  def __init__(self, *, num_classes: int, pp_train: str,
               pp_pretext_eval: str, pp_representation: str,
               input_scaling: Optional[str] = None):
    """input_scaling: overrides the class's declaration (a task may expose it)."""
    # The dataset's label count: used by the supervised task; pretext tasks
    # ignore it.
    self.dataset_num_classes = num_classes
    if input_scaling is not None:
      self.input_scaling = input_scaling
    self._pp = {TRAIN: pp_train, PRETEXT_EVAL: pp_pretext_eval,
                REPRESENTATION: pp_representation}
    self._scaling = _parse_scaling(self.input_scaling, type(self).__name__)
    last = preprocess_registry.parse_pipeline(pp_representation)[-1:]
    if last != [self._scaling]:
      raise ValueError(
          f"{self.name}.pp_representation = {pp_representation!r} must end with "
          f"{self.input_scaling!r}, the {self.name} trunk's input scaling "
          f"(its training pipelines end the same way).")

  def preprocess(self, mode: str) -> str:
    """The pipeline string for `mode` (TRAIN, PRETEXT_EVAL or REPRESENTATION)."""
    if mode not in self._pp:
      raise ValueError(f"Unknown preprocessing mode {mode!r}; use one of {MODES}.")
    return self._pp[mode]

  def check_pipelines(self, dataset=None, split: str = "train") -> None:
    """Builds every pipeline once, so a typo fails now, not after training.

    With `dataset`, also traces each pipeline on its images: a crop or patch
    grid too large for them fails here. (Images too small for the trunk fail
    in `make_model`, also before any training.)

    Raises:
      ValueError: naming the binding (`rotation.pp_representation`) and the op.
    """
    # The representation first: the pretext-eval pipeline is often derived
    # from it, and the error should name the binding the user wrote.
    for mode in (REPRESENTATION, TRAIN, PRETEXT_EVAL):
      for training in (True, False):
        try:
          preprocess_registry.get_preprocess_ops(self.preprocess(mode),
                                                 training=training)
        except ValueError as e:
          raise ValueError(f"{self.name}.pp_{mode} = {self.preprocess(mode)!r}: "
                           f"{e}") from e
    if dataset is None:
      return
    for mode in (REPRESENTATION, TRAIN, PRETEXT_EVAL):
      try:
        self._zero_batch(dataset, split, mode)
      except ValueError as e:
        raise ValueError(f"{self.name}.pp_{mode} = {self.preprocess(mode)!r} "
                         f"on {dataset.name}: {errors.root_message(e)}") from e

  def end_point_names(self, model: keras.Model, dataset,
                      split: str = "train") -> List[str]:
    """The end points `representation` gives for `dataset`'s images, in order."""
    zeros = self._zero_batch(dataset, split, REPRESENTATION)
    return list(self.representation(model, zeros["image"]))

  def _zero_batch(self, dataset, split: str, mode: str) -> Dict[str, tf.Tensor]:
    """One all-zero example shaped like `mode`'s pipeline output on `dataset`."""
    spec = input_pipeline.make_dataset(
        dataset, split, self.preprocess(mode), 1, training=False,
        repeat=False).element_spec
    return {k: tf.zeros([1] + s.shape[1:].as_list(), s.dtype)
            for k, s in spec.items()}

  def unit_range_pipeline(self) -> str:
    """The representation pipeline without its scaling: images in [0, 1].

    `scale_images` of its output is exactly the representation pipeline's
    output, so a module fed these images sees what the evaluator's trunk sees.
    """
    ops = preprocess_registry.parse_pipeline(self.preprocess(REPRESENTATION))
    return preprocess_registry.format_pipeline(ops[:-1])

  def scale_images(self, images: tf.Tensor) -> tf.Tensor:
    """Images in [0, 1] -> the trunk's input: `input_scaling` applied.

    [B,H,W,3] -> [B,H,W,3]; per-image ops (standardize) act on each image.
    """
    name, args, kwargs = self._scaling
    return _SCALINGS[name](images, *args, **kwargs)

  @abc.abstractmethod
  def build_model(self, seed: int = 0) -> keras.Model:
    """The trained network; its trunk's end points give the representation.

    seed: for randomness of the task's own beyond Keras initialisers (which
    `make_model` seeds), e.g. jigsaw's permutation draws.
    """

  def make_model(self, dataset, seed: int, split: str = "train") -> keras.Model:
    """`build_model()` with its variables created, initialised from `seed`.

    Variables are created by one eager call on a zero batch shaped like the
    TRAIN pipeline's output on `dataset`, so checkpoints restore into the
    model at once; a second call on the REPRESENTATION pipeline's shape
    makes images too small for the trunk fail now rather than after
    training. Call under the strategy's scope when there is one.

    Raises:
      ValueError: a pipeline's images are too small for the trunk, naming
        the binding and the shape.
    """
    keras.utils.set_random_seed(seed)
    model = self.build_model(seed)
    for mode in (TRAIN, REPRESENTATION):
      batch = self._zero_batch(dataset, split, mode)
      try:
        if mode == TRAIN:
          self.compute_loss(model, batch, training=False)
        else:
          self.representation(model, batch["image"])
      except ValueError as e:
        shape = "x".join(str(d) for d in batch["image"].shape[1:])
        raise ValueError(
            f"{self.name}.pp_{mode} = {self.preprocess(mode)!r} gives inputs "
            f"of {shape} on {dataset.name}, which the trunk cannot take: "
            f"{errors.root_message(e)}") from e
    return model

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

  def representation(self, model: keras.Model, images: tf.Tensor,
                     training: bool = False):
    """End points of the trunk for preprocessed `images` [B,H,W,3].

    training: batch norm in training mode (the finetune protocol); False, the
    frozen trunk, everywhere else.

    Returns an ordered dict name -> tensor with leading batch dimension B.
    """
    _, end_points = model(images, training=training)
    return end_points


def _parse_scaling(op: str, owner: str):
  ops = preprocess_registry.parse_pipeline(op)
  if len(ops) != 1 or ops[0][0] not in _SCALINGS:
    raise ValueError(
        f"{owner}.input_scaling = {op!r} must be one op among "
        f"{', '.join(sorted(_SCALINGS))}.")
  return ops[0]

