"""What is evaluated: a frozen trunk and the fingerprint that names its features.

Every protocol takes a `Trunk`: a task-like object (`preprocess(mode)`,
`representation(model, images)`), the model it reads, a display name written
into results.json, and a fingerprint that changes whenever the weights could
have (it keys the feature cache).
"""
import dataclasses
import glob
import hashlib
import os
from typing import Any, Dict, Optional

import numpy as np

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
  """
  name: str
  task: Any
  model: Any
  fingerprint: Dict


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
