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
same way once its module is imported. What a task must provide is `Task`'s
docstring; docs/adding_a_task.md walks through adding one.
"""
import abc
import collections
import contextlib
import importlib
import pkgutil
import re
from typing import Callable, Dict, List, Mapping, Optional

import keras
import tensorflow as tf

from datasets import input_pipeline
from datasets import preprocess_registry
from models import layers as model_layers
from training import errors

_TASKS: Dict[str, Callable[..., "Task"]] = {}

# Modes a task gives a preprocessing string for.
TRAIN = "train"                    # pretext training, augmented
PRETEXT_EVAL = "pretext_eval"      # pretext accuracy on the held-out split
REPRESENTATION = "representation"  # images whose representation is evaluated
MODES = (TRAIN, PRETEXT_EVAL, REPRESENTATION)

# The metric every task reports: the run's recorded pretext accuracy, the
# progress line and the report read it under this name.
ACCURACY = "accuracy"
# The end point the exported module's default signature returns.
PRE_LOGITS = "pre_logits"
# A task's name is a config directory, a gin value and a report row.
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def register(name: str):
  """Class decorator: makes a Task subclass available as `get_task(name)`.

  Raises:
    ValueError: the name is taken by another class or is not lower_snake_case,
      the class is not a Task, or its declared `input_scaling` is not one the
      export can apply.
  """
  def wrap(cls):
    if not isinstance(name, str) or not _NAME.fullmatch(name):
      raise ValueError(
          f"Task name {name!r} must be lower_snake_case ([a-z][a-z0-9_]*): it "
          f"names the config directory configs/<task>/ and the gin value "
          f"experiment.task.")
    if not (isinstance(cls, type) and issubclass(cls, Task)):
      raise ValueError(f"register({name!r}) decorates a subclass of "
                       f"self_supervision.task.Task; got {cls!r}.")
    if name in _TASKS and _TASKS[name] is not cls:
      raise ValueError(f"Task {name!r} is registered twice.")
    _parse_scaling(cls.input_scaling, cls.__name__)
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
  """Base class of a pretext (or supervised) task, and the contract it keeps.

  A subclass:
    - registers under a lower_snake_case name, `@register('flip')` above
      `@gin.configurable('flip', denylist=['num_classes'])`;
    - takes the keyword `num_classes` (the dataset's label count; pretext
      tasks ignore it) and passes its three pipelines to `__init__`;
    - declares `input_scaling`, one op of `_SCALINGS` ('value_range(lo, hi)'
      or 'standardize'), with which `pp_representation` ends: the exported
      module takes images in [0, 1] and applies that op itself;
    - makes RGB images from `pp_representation`: [h, w, 3] per example, or a
      stack [n, h, w, 3] of patches;
    - implements `build_model(seed)`, the trained network, and overrides
      `trunk(model)` when that network wraps the trunk (a pretext head): the
      export and the evaluation read the trunk alone. A trunk is called as
      `trunk(images [B, h, w, 3], training) -> (logits, end_points)`, with
      end_points an ordered dict holding 'pre_logits' [B, D];
    - implements `compute_loss(model, batch, training)`, returning
      `(per_example_loss, outputs)`: float [N], one loss per network input
      (N = B * copies_per_example; the trainer averages over the global
      batch), and a dict for `update_metrics`; rows example-major (row
      b * copies + j from example b), with shapes fixed by the batch's (no
      shape may depend on the data: XLA on a TPU compiles from shapes);
    - in pretext evaluation, takes a batch padded to a fixed size whose
      'valid' int32 [B] marks the real examples: the trainer weighs each
      row's metrics by it (`update_metrics` updates each metric with one
      value per row), and a loss that couples rows (exemplar's mining) must
      keep padding rows out itself;
    - reports its pretext accuracy as the metric 'accuracy' of
      `make_metrics()` (other metrics may follow), which `update_metrics`
      updates from `outputs`;
    - sets `copies_per_example`, a positive int, when one example becomes
      several network inputs.

  What is checked, each with its own error: the name, the class and its
  declared scaling at registration; the scaling and the representation
  pipeline's last op at construction; everything else in `make_model` (the
  first build, before any training step), on zero batches shaped like the
  dataset's.
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
    training. The same two calls check the rest of the contract (see the
    class docstring). Call under the strategy's scope when there is one.

    Raises:
      ValueError: a pipeline's images are too small for the trunk, naming
        the binding and the shape; or the task breaks its contract, naming
        the method or binding to change.
    """
    copies = self.copies_per_example
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 1:
      raise ValueError(
          f"{type(self).__name__}.copies_per_example must be a positive int "
          f"(network inputs per dataset example); got {copies!r}.")
    keras.utils.set_random_seed(seed)
    model = self.build_model(seed)
    train = self._zero_batch(dataset, split, TRAIN)
    images = self._zero_batch(dataset, split, REPRESENTATION)["image"]
    self._check_rgb(images, dataset)
    with self._trunk_failure(TRAIN, train["image"], dataset):
      result = self.compute_loss(model, train, training=False)
    outputs = self._check_loss(result)
    self._check_metrics(outputs)
    with self._trunk_failure(REPRESENTATION, images, dataset):
      end_points = self.representation(model, images)
    self._check_trunk(model, images, end_points)
    return model

  # --- the contract, checked on the first build (make_model) ----------------

  @contextlib.contextmanager
  def _trunk_failure(self, mode: str, images: tf.Tensor, dataset):
    """Reports a ValueError of the network as a pipeline the trunk cannot take."""
    try:
      yield
    except ValueError as e:
      shape = "x".join(str(d) for d in images.shape[1:])
      raise ValueError(
          f"{self.name}.pp_{mode} = {self.preprocess(mode)!r} gives inputs "
          f"of {shape} on {dataset.name}, which the trunk cannot take: "
          f"{errors.root_message(e)}") from e

  def _check_rgb(self, images: tf.Tensor, dataset) -> None:
    """The module takes RGB images: [B, h, w, 3] or stacks [B, n, h, w, 3]."""
    if images.shape.rank not in (4, 5) or images.shape[-1] != 3:
      raise ValueError(
          f"{self.name}.pp_representation = "
          f"{self.preprocess(REPRESENTATION)!r} gives examples of shape "
          f"{images.shape[1:]} on {dataset.name}; a representation is read "
          f"from RGB images [h, w, 3] (or a stack of patches [n, h, w, 3]), "
          f"which the exported module takes in [0, 1]. Keep three channels "
          f"(decode gives RGB; to_gray keeps three).")

  def _check_loss(self, result) -> Mapping:
    """`compute_loss` gave (float [N], dict): returns the dict."""
    where = f"{type(self).__name__}.compute_loss"
    if not isinstance(result, (tuple, list)) or len(result) != 2:
      raise ValueError(
          f"{where} must return (per_example_loss [N], outputs); got "
          f"{type(result).__name__}.")
    loss, outputs = result
    loss = tf.convert_to_tensor(loss)
    if loss.shape.rank != 1 or not loss.dtype.is_floating:
      raise ValueError(
          f"{where} must return one float loss per network input, shape [N]; "
          f"got {loss.dtype.name} of shape {loss.shape}. Do not average it: "
          f"the trainer divides by the global batch across replicas.")
    if not isinstance(outputs, Mapping):
      raise ValueError(
          f"{where} must return (per_example_loss, outputs) with outputs a "
          f"dict for update_metrics; got {type(outputs).__name__}.")
    return outputs

  def _check_metrics(self, outputs: Mapping) -> None:
    """'accuracy' among `make_metrics()`, updated from `outputs`."""
    owner = type(self).__name__
    metrics = self.make_metrics()
    if not isinstance(metrics, Mapping) or ACCURACY not in metrics:
      names = list(metrics) if isinstance(metrics, Mapping) else metrics
      raise ValueError(
          f"{owner}.make_metrics() must return a dict holding {ACCURACY!r}, "
          f"the task's pretext accuracy (the run's results, the progress line "
          f"and the report read it); got {names!r}. Name the metric that measures "
          f"how well the pretext is solved {ACCURACY!r}.")
    for key, metric in metrics.items():
      if not isinstance(metric, keras.metrics.Metric):
        raise ValueError(f"{owner}.make_metrics()[{key!r}] must be a "
                         f"keras.metrics.Metric; got {type(metric).__name__}.")
    try:
      self.update_metrics(metrics, outputs)
    except (KeyError, TypeError) as e:
      raise ValueError(
          f"{owner}.update_metrics fails on the outputs of compute_loss "
          f"(keys {sorted(outputs)}): {e!r}. Return from compute_loss what "
          f"update_metrics reads.") from e

  def _check_trunk(self, model, images: tf.Tensor, end_points) -> None:
    """The trunk is what `trunk(model)` returns, and keeps the call convention.

    images: the REPRESENTATION pipeline's zero batch; end_points: what
    `representation` gave for it.
    """
    owner = type(self).__name__
    if not isinstance(end_points, Mapping) or not end_points:
      raise ValueError(
          f"{owner}.representation must return an ordered dict end point "
          f"name -> [B, ...]; got {type(end_points).__name__}.")
    trunk = self.trunk(model)
    if (isinstance(trunk, keras.layers.Layer)
        and not isinstance(trunk, model_layers.Trunk)):
      inner = [
          l for l in trunk._flatten_layers(include_self=False)  # pylint: disable=protected-access
          if isinstance(l, model_layers.Trunk)]
      if inner:
        raise ValueError(
            f"{owner}.build_model() returns {trunk.name!r}, which wraps the "
            f"trunk {inner[0].name!r}: override {owner}.trunk(model) to return "
            f"it (the export and the evaluation read the trunk without the "
            f"pretext head).")
    # One input of the trunk: an image, or one patch of a stack.
    try:
      outputs = trunk(tf.zeros([1, *images.shape[-3:]]), training=False)
    except (ValueError, TypeError) as e:
      outputs = e
    if (not isinstance(outputs, (tuple, list)) or len(outputs) != 2
        or not isinstance(outputs[1], Mapping)
        or PRE_LOGITS not in outputs[1]
        or outputs[1][PRE_LOGITS].shape.rank != 2):
      raise ValueError(
          f"{owner}.trunk(model) must give a trunk called as trunk(images "
          f"[B, h, w, 3], training) -> (logits, end_points) with end_points "
          f"holding {PRE_LOGITS!r} [B, D] (the exported module's output); "
          f"called on {images.shape[-3:]} inputs it gave {_describe(outputs)}. "
          f"Build it with models.get_model, or override trunk(model) when the "
          f"network wraps it.")

  @abc.abstractmethod
  def compute_loss(self, model: keras.Model, batch: Dict[str, tf.Tensor],
                   training: bool):
    """Returns `(per_example_loss [N], outputs)`; outputs feed update_metrics."""

  def make_metrics(self) -> Dict[str, keras.metrics.Metric]:
    """Name -> fresh metric; 'accuracy' (the pretext accuracy) is required."""
    return collections.OrderedDict(
        accuracy=keras.metrics.SparseCategoricalAccuracy(name=ACCURACY))

  def update_metrics(self, metrics, outputs):
    """Updates `make_metrics()`'s metrics from compute_loss's `outputs`.

    The default reads outputs['labels'] [N] and outputs['logits'] [N, classes].
    """
    metrics[ACCURACY].update_state(outputs["labels"], outputs["logits"])

  def trunk(self, model: keras.Model) -> keras.Model:
    """The trunk inside the trained network (what is exported and evaluated).

    The trunk maps trunk inputs [B,H,W,3] to (logits, end_points). Override
    it when `build_model`'s network wraps the trunk (a pretext head):
    `make_model` refuses a network that holds a trunk it does not return.
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



def _describe(value) -> str:
  """A short description of a trunk call's result, for an error message."""
  if isinstance(value, Exception):
    return f"{type(value).__name__}: {errors.root_message(value)}"
  if isinstance(value, (tuple, list)):
    return f"a {len(value)}-tuple of " + ", ".join(
        type(v).__name__ if not isinstance(v, Mapping) else f"dict {sorted(v)}"
        for v in value)
  return type(value).__name__
