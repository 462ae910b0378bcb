"""A trained trunk as a TF-Hub module: a reusable TF2 SavedModel (SPEC §6).

The module takes float32 images [B, H, W, 3] in [0, 1] (TF-Hub's image
convention), of any batch size and, for resolution-free trunks, any size; it
applies the task's own input scaling (`Task.scale_images`) itself. It offers:

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

`assets/metadata.json` and `assets/README.md` record the input range and
sizes, end point names and shapes, task, architecture and width.

Exports of a run live in `<workdir>/export/hub/<step>/`; `export_run` makes
them at the end of training (gin: `hub_export.*`) and scripts/export_hub.py
for any checkpoint later.
"""
import dataclasses
import datetime
import glob
import json
import os
import re
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import gin
import keras
import numpy as np
import tensorflow as tf

from datasets import preprocess_registry
from models import vgg
from self_supervision import task as task_lib

HUB_SUBDIR = os.path.join("export", "hub")
ASSETS_SUBDIR = "assets"
METADATA_FILE = "metadata.json"
README_FILE = "README.md"

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
# Two pipelines "agree" when their outputs differ by less than this.
_PROBE_ATOL = 1e-5
# How far outside [0, 1] a pipeline's output may stray (resampling rounding)
# and still count as an image in the module's input range.
_RANGE_SLACK = 1e-3


def hub_export_dir(workdir: str, step: int) -> str:
  """Where the module of `step` lives in a run's workdir."""
  return os.path.join(workdir, HUB_SUBDIR, str(int(step)))


def is_exported(path: str) -> bool:
  """True when `path` holds a finished export (exports are renamed into place)."""
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


# --- what the task's representation pipeline makes ---------------------------


@dataclasses.dataclass(frozen=True)
class InputInfo:
  """What the module's trunk sees, learnt from the task's pipelines.

  Attributes:
    representation_pipeline: the task's REPRESENTATION pipeline string.
    patches: whether that pipeline makes a stack of patches per image.
    num_patches: stack size for patch pipelines, else None.
    input_size: (h, w) of the trunk's input (one image, or one patch); None
      when it follows the size of the source image.
    unit_range_pipeline: a prefix of the representation pipeline whose
      output, in [0, 1], gives the module the evaluator's exact trunk input
      (for patch pipelines: the [n, h, w, 3] stack); None if there is none.
  """
  representation_pipeline: str
  patches: bool
  num_patches: Optional[int]
  input_size: Optional[Tuple[int, int]]
  unit_range_pipeline: Optional[str]


def _format_ops(ops) -> str:
  """Parsed (name, args, kwargs) ops back to a pipeline string."""
  texts = []
  for name, args, kwargs in ops:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    texts.append(f"{name}({', '.join(parts)})" if parts else name)
  return "|".join(texts)


def _run_pipeline(pipeline: str, image: tf.Tensor) -> tf.Tensor:
  fn = preprocess_registry.get_preprocess_fn(pipeline, training=False)
  return tf.convert_to_tensor(fn({"image": image})["image"])


def _scale_example(task: task_lib.Task, example: tf.Tensor) -> tf.Tensor:
  """`task.scale_images` on one example: an image [h,w,3] or patches [n,h,w,3]."""
  if example.shape.rank == 3:
    return task.scale_images(example[None])[0]
  return task.scale_images(example)


def describe_input(task: task_lib.Task) -> InputInfo:
  """Runs the task's REPRESENTATION pipeline on probe images; see InputInfo.

  Raises:
    ValueError: if the pipeline fails on the probes or makes neither an image
      [h, w, 3] nor a stack [n, h, w, 3] per example.
  """
  pipeline = task.preprocess(task_lib.REPRESENTATION)
  probes = [tf.random.stateless_uniform(shape, seed=[7, i])
            for i, shape in enumerate(_PROBE_SHAPES)]
  try:
    full = [_run_pipeline(pipeline, p) for p in probes]
  except (ValueError, tf.errors.InvalidArgumentError) as e:
    raise ValueError(
        f"Cannot export {task.name}: its representation pipeline {pipeline!r} "
        f"fails on a {_PROBE_SHAPES[0][0]}x{_PROBE_SHAPES[0][1]} image in "
        f"[0, 1]: {e}") from e
  rank = full[0].shape.rank
  if rank not in (3, 4) or full[0].shape[-1] != 3:
    raise ValueError(
        f"Cannot export {task.name}: its representation pipeline {pipeline!r} "
        f"makes examples of shape {full[0].shape}; a module needs one RGB "
        f"image [h, w, 3] or a stack of patches [n, h, w, 3] per image.")
  patches = rank == 4
  shapes = {tuple(f.shape.as_list()) for f in full}
  input_size = tuple(full[0].shape[-3:-1]) if len(shapes) == 1 else None

  ops = preprocess_registry.parse_pipeline(pipeline)
  # The evaluator feeds dataset images (uint8) to the pipeline; a prefix that
  # drops `decode` would hand the module integers.
  shortest = 1 if ops and ops[0][0] == "decode" else 0
  unit_range = None
  for k in range(len(ops), shortest - 1, -1):
    prefix = _format_ops(ops[:k])
    try:
      outs = [_run_pipeline(prefix, p) for p in probes]
    except (ValueError, tf.errors.InvalidArgumentError):
      continue
    if all(o.shape == f.shape
           and float(tf.reduce_min(o)) >= INPUT_RANGE[0] - _RANGE_SLACK
           and float(tf.reduce_max(o)) <= INPUT_RANGE[1] + _RANGE_SLACK
           and np.allclose(_scale_example(task, o), f, atol=_PROBE_ATOL)
           for o, f in zip(outs, full)):
      unit_range = prefix
      break
  return InputInfo(
      representation_pipeline=pipeline, patches=patches,
      num_patches=int(full[0].shape[0]) if patches else None,
      input_size=input_size, unit_range_pipeline=unit_range)


# --- the module ----------------------------------------------------------------


class HubModule(tf.__internal__.tracking.AutoTrackable):
  """The exportable object: a trunk behind the reusable SavedModel interface.

  Holds only the trunk's variables (a pretext head is not exported). Its
  functions are traced on construction; `signatures` is what
  `tf.saved_model.save` should be given.
  """

  def __init__(self, task: task_lib.Task, model: keras.Model,
               input_info: Optional[InputInfo] = None):
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
      signatures[IMAGE_REPRESENTATION_SIGNATURE] = (
          image_representation.get_concrete_function())
      signatures[PATCHES_REPRESENTATION_SIGNATURE] = (
          patches_representation.get_concrete_function())
    # Not saved: a plain object is invisible to the SavedModel's object graph.
    self._export = _ExportState(signatures, info, image_spec.shape.as_list(),
                                lambda: _describe_outputs(task, model, info))

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
  probe = tf.random.stateless_uniform(_PROBE_SHAPES[0], seed=[7, 0])
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


# --- saving --------------------------------------------------------------------


def _trunk_identity(trunk) -> Dict:
  return dict(
      architecture=trunk.name,
      width=getattr(trunk, "width", None),
      last_relu=getattr(trunk, "last_relu", None),
      patch_mode=getattr(trunk, "patch_mode", None),
      representation_size=getattr(trunk, "representation_size", None))


def _metadata(task, model, module: HubModule, step, info) -> Dict:
  input_info = module.input_info
  outputs = module.describe_outputs()
  size = list(input_info.input_size) if input_info.input_size else None
  fixed = module.input_shape
  inputs = {
      DEFAULT_SIGNATURE: dict(images=fixed),
      REPRESENTATION_SIGNATURE: dict(images=fixed)}
  if input_info.patches:
    inputs[IMAGE_REPRESENTATION_SIGNATURE] = dict(images=[None, None, None, 3])
    inputs[PATCHES_REPRESENTATION_SIGNATURE] = dict(
        patches=[None, input_info.num_patches, *size, 3])
  return dict(
      format="TF2 SavedModel, reusable SavedModel interface (TF-Hub)",
      task=task.name,
      **_trunk_identity(task.trunk(model)),
      step=None if step is None else int(step),
      input=dict(
          dtype="float32", range=list(INPUT_RANGE),
          shape=fixed,
          size=size,
          scaling=f"{type(task).__name__}.scale_images, applied by the module",
          patches=(dict(num_patches=input_info.num_patches, patch_size=size,
                        order="row-major")
                   if input_info.patches else None)),
      representation_preprocess=input_info.representation_pipeline,
      input_preprocess=input_info.unit_range_pipeline,
      end_points=list(outputs[REPRESENTATION_SIGNATURE]),
      signatures={name: dict(inputs=inputs[name], outputs=outputs[name])
                  for name in outputs},
      num_variables=len(module.variables),
      num_parameters=int(sum(np.prod(v.shape) for v in module.variables)),
      has_regularization_losses=bool(module.regularization_losses),
      tensorflow=tf.__version__,
      keras=keras.__version__,
      created=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      run=dict(info or {}))


def _readme(meta: Dict) -> str:
  """The module's assets/README.md, from its metadata."""
  patches = meta["input"]["patches"]
  shape = meta["input"]["shape"]
  lines = [
      f"# {meta['task']} trunk: {meta['architecture']}, width {meta['width']}",
      "",
      "A TF2 SavedModel implementing TF-Hub's reusable SavedModel interface,",
      "exported by self_supervision/export.py"
      + (f" at training step {meta['step']}." if meta["step"] is not None
         else "."),
      "",
      "## Input",
      f"float32 images {shape} with values in [0, 1]; the module applies the "
      "trunk's own input scaling.",
  ]
  if meta["input"]["size"]:
    lines.append(f"Size the trunk was evaluated at: {meta['input']['size']}.")
  if patches:
    lines += [
        f"This is a patch model: the trunk sees one {patches['patch_size']} "
        "patch at a time. `image_representation` takes whole images of any "
        "size and returns the 9-patch representation; `patches_representation`"
        f" takes [B, {patches['num_patches']}, h, w, 3] patch stacks "
        f"({patches['order']}).",
    ]
  lines += [
      f"Evaluation preprocessing of the run: `{meta['representation_preprocess']}`.",
  ]
  if meta["input_preprocess"]:
    lines.append(f"The same images in [0, 1], as this module takes them: "
                 f"`{meta['input_preprocess']}`.")
  lines += ["", "## Outputs", ""]
  for name, sig in meta["signatures"].items():
    lines.append(f"- signature `{name}`:")
    for out, out_shape in sig["outputs"].items():
      lines.append(f"  - `{out}`: {out_shape}")
  lines += [
      "- `obj(images, training=False)`: pre_logits; `training=True` uses batch",
      "  statistics in BN and updates its moving averages.",
      "",
      "## Use",
      "",
      "```python",
      "import tensorflow_hub as hub",
      "obj = hub.load(path)",
      "features = obj(images)                      # pre_logits",
      "end_points = obj.signatures['representation'](images)",
      "",
      "import tf_keras",
      "layer = hub.KerasLayer(path, trainable=True)  # fine-tuning",
      "model = tf_keras.Sequential([layer, tf_keras.layers.Dense(10)])",
      "",
      "import keras",
      "layer = keras.layers.TFSMLayer(path, call_endpoint='default')",
      "features = layer(images)['default']",
      "```",
      "",
      "`metadata.json` beside this file holds the same facts in JSON.",
  ]
  return "\n".join(lines) + "\n"


def export_module(task: task_lib.Task, model: keras.Model, output_dir: str, *,
                  step: Optional[int] = None, info: Optional[Dict] = None,
                  overwrite: bool = False) -> str:
  """Saves `task.trunk(model)` as a TF-Hub module in `output_dir`.

  The SavedModel is written next to `output_dir` and renamed into place, so an
  interrupted export never looks finished.

  Args:
    task: the task the model was trained with (pipelines, scaling,
      representation).
    model: the trained network, `task.build_model()` with trained weights.
    output_dir: the module's directory; must not exist unless `overwrite`.
    step: training step, recorded in the metadata.
    info: extra JSON-able facts about the run (e.g. dataset), recorded as
      metadata.json's 'run'.
    overwrite: replace an existing export.

  Returns:
    output_dir.
  """
  output_dir = os.path.abspath(output_dir)
  if os.path.exists(output_dir) and not overwrite:
    raise FileExistsError(
        f"{output_dir} exists; pass overwrite=True (--overwrite) to replace it "
        f"or choose another output directory.")
  module = HubModule(task, model)
  meta = _metadata(task, model, module, step, info)
  tmp = f"{output_dir}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(os.path.dirname(output_dir), exist_ok=True)
  tf.saved_model.save(module, tmp, signatures=module.signatures)
  assets = os.path.join(tmp, ASSETS_SUBDIR)
  os.makedirs(assets, exist_ok=True)
  with open(os.path.join(assets, METADATA_FILE), "w") as f:
    json.dump(meta, f, indent=2)
  with open(os.path.join(assets, README_FILE), "w") as f:
    f.write(_readme(meta))
  if os.path.exists(output_dir):
    shutil.rmtree(output_dir)
  os.rename(tmp, output_dir)
  return output_dir


def read_metadata(path: str) -> Dict:
  """The assets/metadata.json of an exported module."""
  file = os.path.join(path, ASSETS_SUBDIR, METADATA_FILE)
  if not os.path.isfile(file):
    raise FileNotFoundError(
        f"{path} has no {ASSETS_SUBDIR}/{METADATA_FILE}: it is not a module "
        f"exported by self_supervision/export.py (export it with "
        f"scripts/export_hub.py).")
  with open(file) as f:
    return json.load(f)


# --- checkpoints -----------------------------------------------------------------


def checkpoint_steps(workdir: str) -> Dict[int, str]:
  """Step -> checkpoint prefix of every checkpoint on disk in workdir/checkpoints.

  Includes the ones kept every few hours, which the CheckpointManager no
  longer lists.
  """
  found = {}
  for index in glob.glob(os.path.join(workdir, "checkpoints", "ckpt-*.index")):
    match = re.fullmatch(r"ckpt-(\d+)\.index", os.path.basename(index))
    if match:
      found[int(match.group(1))] = index[:-len(".index")]
  return dict(sorted(found.items()))


def restore_trained_model(task: task_lib.Task, checkpoint: str) -> keras.Model:
  """`task.build_model()` with the trunk's weights of a training checkpoint.

  Needs no data: only the trunk must be restored, so the parts of the network
  that are built by their first call (a pretext head) may stay unbuilt.
  Builds under gin's current bindings (architecture, width), which must be the
  run's.
  """
  model = task.build_model()
  trunk = task.trunk(model)
  if not trunk.built:
    size = describe_input(task).input_size
    if size is None:
      raise ValueError(
          f"Cannot build {trunk.name}: the representation pipeline of "
          f"{task.name} has no fixed output size.")
    trunk.build((None, *size, 3))
  status = tf.train.Checkpoint(model=model).restore(checkpoint)
  status.expect_partial()
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise ValueError(
        f"{checkpoint} does not hold every variable of the {task.name} network "
        f"built from the current gin bindings (architecture, width, task "
        f"options must be the run's; scripts/export_hub.py reads them from the "
        f"run's operative_config.gin): {e}") from e
  return model


def pending_exports(workdir: str, step: int, every_checkpoint: bool = False
                    ) -> List[Tuple[int, str]]:
  """(step, checkpoint) pairs still to export: `step`, or every checkpoint.

  Steps whose module already exists are left out, so a resumed or finished
  run exports nothing twice.
  """
  checkpoints = checkpoint_steps(workdir)
  if step not in checkpoints:
    raise FileNotFoundError(
        f"No checkpoint of step {step} in {workdir}/checkpoints (found steps "
        f"{sorted(checkpoints)}).")
  steps = sorted(checkpoints) if every_checkpoint else [step]
  return [(s, checkpoints[s]) for s in steps
          if not is_exported(hub_export_dir(workdir, s))]


@gin.configurable("hub_export", denylist=["task", "workdir", "step", "info",
                                          "log"])
def export_run(task: task_lib.Task, workdir: str, step: int, *,
               enabled: bool = True, every_checkpoint: bool = False,
               info: Optional[Dict] = None,
               log: Callable[[str], None] = print) -> List[str]:
  """Exports a run's trunk to workdir/export/hub/<step>/ after training.

  Each module is built from its checkpoint on disk (not from the training
  model, whose variables may be mirrored across replicas), so it is the same
  module scripts/export_hub.py would make later.

  Args:
    task: the run's task.
    workdir: the run's directory.
    step: the final step (its checkpoint must exist).
    enabled: gin switch; False exports nothing.
    every_checkpoint: also export every other checkpoint kept on disk.
    info: extra facts for the metadata (e.g. dataset name).
    log: progress messages.

  Returns:
    The directories exported by this call.
  """
  if not enabled:
    return []
  done = []
  for s, checkpoint in pending_exports(workdir, step, every_checkpoint):
    model = restore_trained_model(task, checkpoint)
    path = export_module(task, model, hub_export_dir(workdir, s), step=s,
                         info=info, overwrite=True)
    log(f"Exported the trunk of step {s} as a TF-Hub module: {path}")
    done.append(path)
  return done


def exported_steps(workdir: str) -> Sequence[int]:
  """Steps with a finished export under workdir/export/hub/, ascending."""
  root = os.path.join(workdir, HUB_SUBDIR)
  if not os.path.isdir(root):
    return []
  return sorted(int(d) for d in os.listdir(root)
                if d.isdigit() and is_exported(os.path.join(root, d)))
