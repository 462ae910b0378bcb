"""A TF-Hub module read like a trained model: evaluation from a module path.

Every protocol reads features through two methods of a task, `preprocess(mode)` and `representation(model, images)`.
`HubTrunk` offers the same two for a module exported by
self_supervision/export.py, so every protocol that evaluates a checkpoint
also evaluates a module:

  trunk = trunks.from_hub('/tmp/demo/export/hub/1500')  # wraps a HubTrunk
  linear_eval.evaluate(trunk, dataset)

The module is a frozen trunk: its BN runs in inference mode and nothing is
trained. Patch modules are read through their `patches_representation`
signature, so the 9-patch representation is the exporting task's own.

Only modules this project exported can be read: their assets/metadata.json
names the end points, their order and the input pipeline, which a SavedModel
made elsewhere does not say (its default signature has no end points to
pick a layer from, nor an input range). Such a module is refused in one line.
"""
import collections
import os
from typing import Dict, Optional

import tensorflow as tf

from datasets import preprocess_registry
from self_supervision import export as export_lib
from self_supervision import hub_metadata
from self_supervision import task as task_lib


def check_path(path: str) -> None:
  """`path` is a module this project exported, or one line saying what it is.

  Raises:
    FileNotFoundError: no such path, or a folder that is no module, or a
      SavedModel made elsewhere (naming why it cannot be read).
  """
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(
        f"--hub_module={path}: no such file or directory. A run exports its "
        f"modules to <workdir>/export/hub/<step>.")
  metadata = os.path.join(path, hub_metadata.ASSETS_SUBDIR,
                          hub_metadata.METADATA_FILE)
  if (tf.io.gfile.exists(os.path.join(path, "saved_model.pb"))
      and not tf.io.gfile.exists(metadata)):
    raise FileNotFoundError(
        f"{path} is a SavedModel not exported by this project (it has no "
        f"{hub_metadata.ASSETS_SUBDIR}/"
        f"{hub_metadata.METADATA_FILE} naming its end points and "
        f"input pipeline): only modules of self_supervision/export.py "
        f"(scripts/export_hub.py) can be evaluated.")


class HubTrunk:
  """Task-like reader of an exported module's end points.

  Attributes:
    path: the module directory.
    metadata: its assets/metadata.json.
    name: 'hub', for messages.
  """
  name = "hub"

  def __init__(self, path: str, preprocess: Optional[str] = None):
    """Loads the module at `path`.

    Args:
      path: directory of a module exported by self_supervision/export.py.
      preprocess: pipeline string taking dataset images to the module's input
        (float32 in [0, 1]; for patch modules, [9, h, w, 3] patch stacks,
        e.g. '...|crop_patches(3, patch_size=64)'). None uses the one
        recorded at export, which reproduces the exporting run's evaluation
        preprocessing exactly.

    Raises:
      FileNotFoundError: `path` is not such a module.
      ValueError: no `preprocess` given and none recorded, or a bad string.
    """
    self.path = os.fspath(path)
    check_path(self.path)
    self.metadata = export_lib.read_metadata(self.path)
    if preprocess is None:
      preprocess = self.metadata.get("input_preprocess")
      if preprocess is None:
        raise ValueError(
            f"The module at {self.path} records no pipeline to its [0, 1] "
            f"input (its run's was {self.metadata['representation_preprocess']!r}"
            f"); pass preprocess=, a pipeline string ending in images in "
            f"[0, 1] of size {self.metadata['input']['size']}.")
    # Parsed now so a bad string fails here, not inside the input pipeline.
    preprocess_registry.get_preprocess_fn(preprocess, training=False)
    self._preprocess = preprocess
    self.patches = self.metadata["input"]["patches"] is not None
    self.end_points = list(
        self.metadata["signatures"][self._signature_name]["outputs"])
    self.module = tf.saved_model.load(self.path)

  @property
  def _signature_name(self) -> str:
    return (export_lib.PATCHES_REPRESENTATION_SIGNATURE if self.patches
            else export_lib.REPRESENTATION_SIGNATURE)

  def preprocess(self, mode: str) -> str:
    """The pipeline for `mode`; a module only has a representation mode."""
    if mode != task_lib.REPRESENTATION:
      raise ValueError(
          f"A hub module is a frozen trunk: it has no {mode!r} pipeline (only "
          f"{task_lib.REPRESENTATION!r}); train from a task's config instead.")
    return self._preprocess

  def representation(self, model, images: tf.Tensor,
                     training: bool = False) -> Dict[str, tf.Tensor]:
    """End points of the module for preprocessed `images`.

    Args:
      model: ignored (None): the module is the model. Kept so that callers
        treat a HubTrunk like a task.
      images: [B, H, W, 3] in [0, 1], or [B, 9, h, w, 3] for patch modules.
      training: ignored: the exported signatures run batch norm on its moving
        statistics (fine-tuning a module still trains its variables).

    Returns:
      OrderedDict end point name -> [B, ...], in network order.
    """
    del model, training
    outputs = self.module.signatures[self._signature_name](
        tf.convert_to_tensor(images, tf.float32))
    return collections.OrderedDict((k, outputs[k]) for k in self.end_points)
