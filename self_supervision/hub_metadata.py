"""What an exported module says about itself: assets/metadata.json and
assets/README.md.

A module's user (a person, or evaluation/hub_trunk.py) needs to know what it
takes and gives without the project's code: the input range and sizes, every
signature's output names and shapes, the task, architecture, width and step,
and the two preprocessing strings (the run's evaluation pipeline, and the one
that gives the module the same images in [0, 1]). This file renders those
facts from a built `HubModule`, writes them beside a SavedModel and reads them
back.
"""
import datetime
import json
import os
from typing import Dict, Optional

import keras
import numpy as np
import tensorflow as tf

from models import layers as model_layers
from self_supervision import hub_module as hub_module_lib
from self_supervision import task as task_lib

ASSETS_SUBDIR = "assets"
METADATA_FILE = "metadata.json"
README_FILE = "README.md"

_DEFAULT = hub_module_lib.DEFAULT_SIGNATURE
_REPRESENTATION = hub_module_lib.REPRESENTATION_SIGNATURE
_IMAGE_REPRESENTATION = hub_module_lib.IMAGE_REPRESENTATION_SIGNATURE
_PATCHES_REPRESENTATION = hub_module_lib.PATCHES_REPRESENTATION_SIGNATURE


def _trunk_identity(trunk) -> Dict:
  # The project's trunks say what they are; any other Keras model (a user's,
  # a test's) is known by its name only.
  if isinstance(trunk, model_layers.Trunk):
    return trunk.identity()
  return dict(architecture=trunk.name, width=None, last_relu=None,
              patch_mode=None, representation_size=None)


def make(task: task_lib.Task, model: keras.Model,
         module: hub_module_lib.HubModule, step: Optional[int] = None,
         run: Optional[Dict] = None) -> Dict:
  """The JSON-able metadata of `module`, built from `task` and `model`.

  Args:
    step: training step, or None.
    run: extra facts about the run (e.g. dataset), recorded as 'run'.
  """
  input_info = module.input_info
  outputs = module.describe_outputs()
  size = list(input_info.input_size) if input_info.input_size else None
  fixed = module.input_shape
  inputs = {
      _DEFAULT: dict(images=fixed),
      _REPRESENTATION: dict(images=fixed)}
  if input_info.patches:
    inputs[_IMAGE_REPRESENTATION] = dict(images=[None, None, None, 3])
    inputs[_PATCHES_REPRESENTATION] = dict(
        patches=[None, input_info.num_patches, *size, 3])
  return dict(
      format="TF2 SavedModel, reusable SavedModel interface (TF-Hub)",
      task=task.name,
      **_trunk_identity(task.trunk(model)),
      step=None if step is None else int(step),
      input=dict(
          dtype="float32", range=list(hub_module_lib.INPUT_RANGE),
          shape=fixed,
          size=size,
          scaling=f"{task.input_scaling}, applied by the module",
          patches=(dict(num_patches=input_info.num_patches, patch_size=size,
                        order="row-major")
                   if input_info.patches else None)),
      representation_preprocess=input_info.representation_pipeline,
      input_preprocess=input_info.unit_range_pipeline,
      end_points=list(outputs[_REPRESENTATION]),
      signatures={name: dict(inputs=inputs[name], outputs=outputs[name])
                  for name in outputs},
      num_variables=len(module.variables),
      num_parameters=int(sum(np.prod(v.shape) for v in module.variables)),
      has_regularization_losses=bool(module.regularization_losses),
      tensorflow=tf.__version__,
      keras=keras.__version__,
      created=datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      run=dict(run or {}))


def readme(meta: Dict) -> str:
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


def write(saved_model_dir: str, meta: Dict) -> None:
  """Writes `meta` and its README into `saved_model_dir`/assets/."""
  assets = os.path.join(saved_model_dir, ASSETS_SUBDIR)
  os.makedirs(assets, exist_ok=True)
  with open(os.path.join(assets, METADATA_FILE), "w") as f:
    json.dump(meta, f, indent=2)
  with open(os.path.join(assets, README_FILE), "w") as f:
    f.write(readme(meta))


def read(path: str) -> Dict:
  """The assets/metadata.json of the module exported at `path`."""
  file = os.path.join(path, ASSETS_SUBDIR, METADATA_FILE)
  if not os.path.isfile(file):
    raise FileNotFoundError(
        f"{path} has no {ASSETS_SUBDIR}/{METADATA_FILE}: it is not a module "
        f"exported by self_supervision/export.py (export it with "
        f"scripts/export_hub.py).")
  with open(file) as f:
    return json.load(f)
