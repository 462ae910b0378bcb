"""What is evaluated: a frozen trunk and the fingerprint that names its features.

Every protocol takes a `Trunk`: a task-like object (`preprocess(mode)`,
`representation(model, images)`), the model it reads, a display name written
into results.json, and a fingerprint that changes whenever the weights could
have (it keys the feature cache).

Besides the trained trunk, two controls are trunks too (docs/protocol.md §9):
`random_init` (the same architecture untrained) and `pixels` (the evaluated
image itself), so every protocol scores them as it scores a trained one.
"""
import dataclasses
import glob
import hashlib
import os
from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf

from evaluation import feature_cache
from evaluation import hub_trunk
from self_supervision import task as task_lib


@dataclasses.dataclass
class Trunk:
  """A frozen trunk to evaluate.

  Attributes:
    name: 'trained@<step>', 'random_init' or 'hub:<path>' (results.json 'trunk').
    task: a `self_supervision.task.Task` or a `hub_trunk.HubTrunk`.
    model: the task's model (None for a hub module: the module is the model).
    fingerprint: JSON-able identity of the weights (feature cache key).
    end_points: the end points this trunk has when they are not the
      configured layers' names: ('pixels',) for the pixels control, which
      every protocol then scores in place of the layers it was given.
  """
  name: str
  task: Any
  model: Any
  fingerprint: Dict
  end_points: Optional[Tuple[str, ...]] = None


def from_checkpoint(task, model, checkpoint: str, step: int) -> Trunk:
  """The trained trunk restored from `checkpoint` (a tf.train checkpoint prefix)."""
  files = glob.glob(checkpoint + ".*")
  if not files:
    raise FileNotFoundError(f"No checkpoint files at {checkpoint}.*")
  return Trunk(f"trained@{step}", task, model, dict(
      kind="checkpoint", path=os.path.abspath(checkpoint), step=int(step),
      files=feature_cache.file_fingerprint(files)))


def random_init(task, model, seed: int) -> Trunk:
  """The trunk at initialisation (the paper's random baseline).

  Its fingerprint hashes the initial weights themselves: the same seed and
  architecture give the same weights, hence the same cached features.
  """
  digest = hashlib.sha256()
  for v in model.weights:
    digest.update(v.path.encode())
    digest.update(np.ascontiguousarray(v.numpy()).tobytes())
  return Trunk("random_init", task, model, dict(
      kind="random_init", seed=int(seed), weights_sha256=digest.hexdigest()))


def from_hub(path: str, preprocess: Optional[str] = None) -> Trunk:
  """An exported TF-Hub module (see self_supervision/export.py)."""
  reader = hub_trunk.HubTrunk(path, preprocess=preprocess)
  files = [f for f in glob.glob(os.path.join(path, "**"), recursive=True)
           if os.path.isfile(f) and (f.endswith(".pb") or "variables" in f)]
  return Trunk(f"hub:{path}", reader, None, dict(
      kind="hub", path=os.path.abspath(path),
      preprocess=reader.preprocess(task_lib.REPRESENTATION),
      files=feature_cache.file_fingerprint(files)))


PIXELS = "pixels"


class Pixels:
  """The pixels control: a trunk whose one end point is its input.

  `preprocess` is the wrapped task's (or hub module's), so the pixels are
  the very images the trunks are evaluated on, after the representation
  pipeline; `representation` returns them as the end point 'pixels'
  [B, H, W, C], which pooling.pool_and_flatten flattens, or pools to about
  9000 values when larger (a 224 x 224 x 3 ImageNet image: 55 x 55 x 3),
  like any spatial end point.
  """

  def __init__(self, reader):
    self._reader = reader

  def preprocess(self, mode: str) -> str:
    return self._reader.preprocess(mode)

  def representation(self, model, images: tf.Tensor, training: bool = False):
    del model, training  # nothing to run, nothing to train
    return {PIXELS: tf.cast(images, tf.float32)}


def pixels(reader) -> Trunk:
  """The pixels control of `reader` (a task or a hub_trunk.HubTrunk): the
  images its representation pipeline gives, as the features (Pixels)."""
  pp = reader.preprocess(task_lib.REPRESENTATION)
  return Trunk(PIXELS, Pixels(reader), None, dict(kind=PIXELS, preprocess=pp),
               end_points=(PIXELS,))
