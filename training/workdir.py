"""The workdir's layout: every path a run writes, named in one place.

    <workdir>/
      lock                     who runs here (training/workdir_lock.py)
      run.json                 invocations, status, the model's identity
      operative_config.gin     the gin settings the run used
      results.json             every number the run produced
      checkpoints/ckpt-<step>  the trained model (workers: *_temp copies)
      summaries/               TensorBoard events of the training
      features/                the feature cache (evaluation/feature_cache.py)
      export/hub/<step>/       TF-Hub modules (self_supervision/export.py)
      eval/<protocol>/<trunk>/<layer>-<pooling>-f<fraction>[-s<seed>]/
                               an SGD head's own run: checkpoints/,
                               summaries/, curve.json
      transfer/<dataset>/      the same eval/ tree for another dataset's heads

Nothing else in the project spells these names; the sweep driver's "is this
cell done" check and the report builder read through here too. TF-free, so
the report builder can use it without importing TensorFlow.
"""
import dataclasses
import os
import re
from typing import List, Tuple

CHECKPOINTS = "checkpoints"
SUMMARIES = "summaries"
FEATURES = "features"
LOCK = "lock"
RUN_JSON = "run.json"
RESULTS_JSON = "results.json"
OPERATIVE_CONFIG = "operative_config.gin"
CURVE_JSON = "curve.json"
HUB_EXPORTS = os.path.join("export", "hub")
EVAL = "eval"
TRANSFER = "transfer"

# The small files that describe a run (copied beside a report).
RUN_FILES = (RESULTS_JSON, RUN_JSON, OPERATIVE_CONFIG)
# Directories of bulk data a walk over runs need not enter.
BULK_DIRS = (CHECKPOINTS, FEATURES, SUMMARIES)
# What killed writers leave behind, relative to the workdir (`**` reaches the
# SGD heads' own checkpoints); only the lock holder may remove them.
LEFTOVERS = (f"**/{CHECKPOINTS}/*_temp*", f"{FEATURES}/.tmp-*", "*.tmp",
             "**/*.json.tmp")


def slug(text: str) -> str:
  """A trunk or layer name as one safe path component (at most 80 chars)."""
  return re.sub(r"[^A-Za-z0-9_.@-]+", "_", text).strip("_")[-80:]


def dataset_slug(name: str) -> str:
  """A dataset name ('tfds:name/config', a path) as one path component."""
  return str(name).replace(":", "_").replace("/", "_")


@dataclasses.dataclass(frozen=True)
class HeadDir:
  """An SGD evaluation head's own run directory (under eval/)."""
  path: str

  @property
  def checkpoints(self) -> str:
    return os.path.join(self.path, CHECKPOINTS)

  @property
  def summaries(self) -> str:
    return os.path.join(self.path, SUMMARIES)

  @property
  def curve(self) -> str:
    return os.path.join(self.path, CURVE_JSON)


@dataclasses.dataclass(frozen=True)
class Workdir:
  """A run's directory and the named paths inside it.

  `Workdir(path)` only names paths; nothing is created until a writer does.
  """
  path: str

  def __post_init__(self):
    if isinstance(self.path, Workdir):  # Workdir(Workdir(p)) is Workdir(p)
      object.__setattr__(self, "path", self.path.path)
    object.__setattr__(self, "path", os.fspath(self.path))

  def __fspath__(self) -> str:
    return self.path

  def __str__(self) -> str:
    return self.path

  # The run's files.
  @property
  def lock(self) -> str:
    return os.path.join(self.path, LOCK)

  @property
  def run_json(self) -> str:
    return os.path.join(self.path, RUN_JSON)

  @property
  def results_json(self) -> str:
    return os.path.join(self.path, RESULTS_JSON)

  @property
  def operative_config(self) -> str:
    return os.path.join(self.path, OPERATIVE_CONFIG)

  def run_files(self) -> List[Tuple[str, str]]:
    """(name, path) of each small file describing the run."""
    return [(name, os.path.join(self.path, name)) for name in RUN_FILES]

  # The run's directories.
  @property
  def checkpoints(self) -> str:
    return os.path.join(self.path, CHECKPOINTS)

  @property
  def summaries(self) -> str:
    return os.path.join(self.path, SUMMARIES)

  @property
  def features(self) -> str:
    return os.path.join(self.path, FEATURES)

  @property
  def hub_exports(self) -> str:
    return os.path.join(self.path, HUB_EXPORTS)

  def hub_export(self, step: int) -> str:
    """Where the TF-Hub module of `step` lives."""
    return os.path.join(self.hub_exports, str(int(step)))

  def head(self, protocol: str, trunk: str, layer: str, pooling: str,
           fraction: float, seed: int = 0) -> HeadDir:
    """An SGD head's directory. Seed 0 keeps the name runs had before seeds
    were part of it."""
    leaf = f"{slug(layer)}-{pooling}-f{fraction:g}" + (f"-s{seed}" if seed else "")
    return HeadDir(os.path.join(self.path, EVAL, protocol, slug(trunk), leaf))

  def transfer(self, dataset: str) -> "Workdir":
    """The tree another dataset's SGD heads train in (same names inside)."""
    return Workdir(os.path.join(self.path, TRANSFER, dataset_slug(dataset)))

  def exists(self) -> bool:
    return os.path.isdir(self.path)


def of(path) -> Workdir:
  """`path` (a str, a PathLike or a Workdir) as a Workdir."""
  return path if isinstance(path, Workdir) else Workdir(path)
