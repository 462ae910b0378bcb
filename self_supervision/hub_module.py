"""The exported object: a trained trunk behind TF-Hub's reusable SavedModel
interface (docs/protocol.md §6), and what it learns of the task's input to build it.

The module takes float32 images [B, H, W, 3] in [0, 1] (TF-Hub's image
convention), of any batch size and, for resolution-free trunks, any size; it
applies the task's declared input scaling (`Task.scale_images`) itself. It
offers:

  obj(images, training=False)    pre_logits [B, D]; `training=True` runs BN on
                                 batch statistics and updates its averages.
  obj.variables, obj.trainable_variables, obj.regularization_losses
                                 the reusable SavedModel interface (hub.KerasLayer
                                 fine-tunes through it).
  signatures['default']          {'default': pre_logits [B, D]}
  signatures['representation']   {end point name: tensor}, every end point.

Patch models (whose representation pipeline cuts an image into a stack of
patches: jigsaw, relative patch location) export the per-patch trunk above,
plus
  signatures['image_representation']    whole images [B, H, W, 3] in [0, 1],
      any size -> {end point: [B, ...]}: the task's REPRESENTATION pipeline
      (e.g. resize, crop, 3x3 patches, standardize) and its 9-patch
      representation (average or concat), exactly as the evaluator reads it.
  signatures['patches_representation']  patches [B, 9, h, w, 3] in [0, 1]
      -> the same dict (the module standardizes each patch).

This file knows nothing of files on disk: saving, metadata and checkpoints
are export.py's and hub_metadata.py's.
"""
import dataclasses
from typing import Callable, Dict, List, Optional, Tuple

import keras
import tensorflow as tf

from datasets import preprocess_registry
from models import vgg
from self_supervision import task as task_lib

DEFAULT_SIGNATURE = "default"
REPRESENTATION_SIGNATURE = "representation"
IMAGE_REPRESENTATION_SIGNATURE = "image_representation"
PATCHES_REPRESENTATION_SIGNATURE = "patches_representation"

INPUT_RANGE = (0.0, 1.0)

# Random images on which a task's representation pipeline is run at export
# time to learn what it makes (one image or a stack of patches, and their
# size). Two aspect ratios tell a fixed output size from one that follows the
# input; both are large enough for the study's crops (224 and 192).
_PROBE_SHAPES = ((320, 384, 3), (384, 320, 3))


# --- what the task's representation pipeline makes ---------------------------


@dataclasses.dataclass(frozen=True)
class InputInfo:
  """What the module's trunk sees, from the task's pipeline and declaration.

  Attributes:
    representation_pipeline: the task's REPRESENTATION pipeline string.
    patches: whether that pipeline makes a stack of patches per image.
    num_patches: stack size for patch pipelines, else None.
    input_size: (h, w) of the trunk's input (one image, or one patch); None
      when it follows the size of the source image.
    unit_range_pipeline: the representation pipeline without the task's
      declared input scaling (`Task.unit_range_pipeline`): its output, in
      [0, 1], gives the module the evaluator's exact trunk input (for patch
      pipelines: the [n, h, w, 3] stack).
  """
  representation_pipeline: str
  patches: bool
  num_patches: Optional[int]
  input_size: Optional[Tuple[int, int]]
  unit_range_pipeline: str


def _run_pipeline(pipeline: str, image: tf.Tensor) -> tf.Tensor:
  fn = preprocess_registry.get_preprocess_fn(pipeline, training=False)
  return tf.convert_to_tensor(fn({"image": image})["image"])


def _probe(index: int = 0) -> tf.Tensor:
  return tf.random.stateless_uniform(_PROBE_SHAPES[index], seed=[7, index])


def describe_input(task: task_lib.Task) -> InputInfo:
  """What the task's REPRESENTATION pipeline makes; see InputInfo.

  The [0, 1] pipeline is the task's declaration; the pipeline is only run on
  probe images to learn the shape of its output.

  Raises:
    ValueError: if the pipeline fails on the probes or makes neither an image
      [h, w, 3] nor a stack [n, h, w, 3] per example.
  """
  pipeline = task.preprocess(task_lib.REPRESENTATION)
  try:
    outputs = [_run_pipeline(pipeline, _probe(i))
               for i in range(len(_PROBE_SHAPES))]
  except (ValueError, tf.errors.InvalidArgumentError) as e:
    raise ValueError(
        f"Cannot export {task.name}: its representation pipeline {pipeline!r} "
        f"fails on a {_PROBE_SHAPES[0][0]}x{_PROBE_SHAPES[0][1]} image in "
        f"[0, 1]: {e}") from e
  shape = outputs[0].shape
  if shape.rank not in (3, 4) or shape[-1] != 3:
    raise ValueError(
        f"Cannot export {task.name}: its representation pipeline {pipeline!r} "
        f"makes examples of shape {shape}; a module needs one RGB "
        f"image [h, w, 3] or a stack of patches [n, h, w, 3] per image.")
  patches = shape.rank == 4
  fixed = len({tuple(o.shape.as_list()) for o in outputs}) == 1
  return InputInfo(
      representation_pipeline=pipeline, patches=patches,
      num_patches=int(shape[0]) if patches else None,
      input_size=tuple(shape[-3:-1]) if fixed else None,
      unit_range_pipeline=task.unit_range_pipeline())


# --- the module ----------------------------------------------------------------


class HubModule(tf.Module):
  """The exportable object: a trunk behind the reusable SavedModel interface.

  Holds only the trunk's variables (a pretext head is not exported). Its
  functions are traced on construction; `signatures` is what
  `tf.saved_model.save` should be given.
  """

  # tf.Module computes these two by reflection in Python, and a computed
  # property is not part of the SavedModel: the loaded object would lack
  # them. The reusable SavedModel interface needs them as saved attributes of
  # these names, so they shadow tf.Module's properties with plain attributes,
  # set (and so tracked and saved) in __init__.
  variables = None
  trainable_variables = None

  def __init__(self, task: task_lib.Task, model: keras.Model,
               input_info: Optional[InputInfo] = None):
    super().__init__()
    info = input_info or describe_input(task)
    trunk = task.trunk(model)
    size = (None, None)
    if isinstance(trunk, vgg.VGG19BN):
      # fc6's kernel covers the final feature map of one input size only.
      if info.input_size is None:
        raise ValueError(
            f"vgg19_bn only runs at the size it was trained at, but the "
            f"representation pipeline {info.representation_pipeline!r} has no "
            f"fixed output size; end it with a crop or resize to that size.")
      size = info.input_size
    image_spec = tf.TensorSpec([None, *size, 3], tf.float32, name="images")

    def per_image_end_points(images):
      scaled = task.scale_images(images)
      if info.patches:
        _, end_points = trunk(scaled, training=False)
      else:
        end_points = task.representation(model, scaled)
      return dict(end_points)

    representation = tf.function(per_image_end_points,
                                 input_signature=[image_spec])

    def call(images, training=False):
      if training:
        _, end_points = trunk(task.scale_images(images), training=True)
        return end_points["pre_logits"]
      return representation(images)["pre_logits"]

    call = tf.function(call)
    call.get_concrete_function(image_spec, training=False)
    call.get_concrete_function(image_spec, training=True)

    @tf.function(input_signature=[image_spec])
    def default(images):
      return {DEFAULT_SIGNATURE: representation(images)["pre_logits"]}

    self.variables = list(trunk.variables)
    self.trainable_variables = list(trunk.trainable_variables)
    self.regularization_losses = []
    if trunk.losses:
      # One function for the whole weight decay, the term the trainer adds.
      @tf.function(input_signature=[])
      def weight_decay():
        return tf.add_n(trunk.losses)
      self.regularization_losses.append(weight_decay)
    self.__call__ = call
    self.representation = representation
    signatures = {DEFAULT_SIGNATURE: default.get_concrete_function(),
                  REPRESENTATION_SIGNATURE: representation.get_concrete_function()}
    if info.patches:
      signatures.update(self._add_patch_signatures(task, model, info))
    # Not saved: a plain object is invisible to the SavedModel's object graph
    # (the task and model it closes over must not be saved beside the trunk).
    self._export = _ExportState(signatures, info, image_spec.shape.as_list(),
                                lambda: _describe_outputs(task, model, info))

  def _add_patch_signatures(self, task, model, info: InputInfo):
    """The whole-image and patch-stack functions of a patch model."""
    if info.input_size is None:
      raise ValueError(
          f"The patches of {info.representation_pipeline!r} change size with "
          f"the image; a patch module needs one patch size (crop_patches "
          f"gives one).")
    example_shape = [info.num_patches, *info.input_size, 3]
    pipeline_fn = preprocess_registry.get_preprocess_fn(
        info.representation_pipeline, training=False)

    @tf.function(input_signature=[
        tf.TensorSpec([None, None, None, 3], tf.float32, name="images")])
    def image_representation(images):
      stacks = tf.map_fn(
          lambda image: pipeline_fn({"image": image})["image"], images,
          fn_output_signature=tf.TensorSpec(example_shape, tf.float32))
      return dict(task.representation(model, stacks))

    @tf.function(input_signature=[
        tf.TensorSpec([None, *example_shape], tf.float32, name="patches")])
    def patches_representation(patches):
      flat = tf.reshape(patches, [-1, *example_shape[1:]])
      scaled = tf.reshape(task.scale_images(flat), tf.shape(patches))
      return dict(task.representation(model, scaled))

    self.image_representation = image_representation
    self.patches_representation = patches_representation
    return {
        IMAGE_REPRESENTATION_SIGNATURE:
            image_representation.get_concrete_function(),
        PATCHES_REPRESENTATION_SIGNATURE:
            patches_representation.get_concrete_function()}

  @property
  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    return dict(self._export.signatures)

  @property
  def input_info(self) -> InputInfo:
    return self._export.info

  @property
  def input_shape(self) -> List[Optional[int]]:
    """[None, h, w, 3] of `__call__` and the per-image signatures."""
    return list(self._export.input_shape)

  def describe_outputs(self) -> Dict[str, Dict[str, List[Optional[int]]]]:
    """Signature name -> {output name: shape with batch None}, by eager runs."""
    return self._export.describe()


@dataclasses.dataclass
class _ExportState:
  signatures: Dict
  info: InputInfo
  input_shape: List[Optional[int]]
  describe: Callable[[], Dict]


def _shapes(tensors: Dict[str, tf.Tensor]) -> Dict[str, List[Optional[int]]]:
  return {k: [None] + v.shape.as_list()[1:] for k, v in tensors.items()}


def _describe_outputs(task, model, info: InputInfo):
  """Output shapes of every signature, from one eager run on a probe image."""
  trunk = task.trunk(model)
  probe = _probe()
  if info.input_size is not None:
    size = info.input_size
  else:
    size = tuple(_run_pipeline(info.representation_pipeline, probe).shape[-3:-1])
  image = tf.zeros([1, *size, 3])
  if info.patches:
    _, per_image = trunk(task.scale_images(image), training=False)
  else:
    per_image = task.representation(model, task.scale_images(image))
  outputs = {
      DEFAULT_SIGNATURE: {DEFAULT_SIGNATURE: _shapes(per_image)["pre_logits"]},
      REPRESENTATION_SIGNATURE: _shapes(per_image)}
  if info.patches:
    stack = _run_pipeline(info.representation_pipeline, probe)[None]
    combined = _shapes(task.representation(model, stack))
    outputs[IMAGE_REPRESENTATION_SIGNATURE] = combined
    outputs[PATCHES_REPRESENTATION_SIGNATURE] = combined
  return outputs
