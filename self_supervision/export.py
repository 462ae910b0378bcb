"""Exporting a run's trunk as a TF-Hub module (docs/protocol.md §6): where, when, from
which checkpoint.

The pieces live in files of their own, one job each:
  self_supervision/hub_module.py    the exported object (`HubModule`) and
      what it learns of the task's input (`describe_input`);
  self_supervision/hub_metadata.py  assets/metadata.json and README.md;
  training/checkpoints.py           finding and restoring checkpoints.
This file joins them: `export_module` saves one module, `export_run` exports
a run's checkpoints to `Workdir.hub_export(step)` at the end of training
(gin: `hub_export.*`), and scripts/export_hub.py exports any checkpoint later
through `restore_trained_model` and `export_module`. The names other code
reads (signature names, `HubModule`, `read_metadata`, ...) are re-exported
here so that callers import one module.
"""
import os
import shutil
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import gin
import keras
import tensorflow as tf

from self_supervision import hub_metadata
from self_supervision import hub_module
from self_supervision import task as task_lib
from training import checkpoints
from training import workdir as workdir_lib

# Re-exported: callers (train_and_eval.py, evaluation/, scripts/, tests) use
# them as `export.<name>`.
HubModule = hub_module.HubModule
InputInfo = hub_module.InputInfo
describe_input = hub_module.describe_input
DEFAULT_SIGNATURE = hub_module.DEFAULT_SIGNATURE
REPRESENTATION_SIGNATURE = hub_module.REPRESENTATION_SIGNATURE
IMAGE_REPRESENTATION_SIGNATURE = hub_module.IMAGE_REPRESENTATION_SIGNATURE
PATCHES_REPRESENTATION_SIGNATURE = hub_module.PATCHES_REPRESENTATION_SIGNATURE
INPUT_RANGE = hub_module.INPUT_RANGE
read_metadata = hub_metadata.read


def hub_export_dir(workdir, step: int) -> str:
  """Where the module of `step` lives in a run's workdir (a path or Workdir)."""
  return workdir_lib.of(workdir).hub_export(step)


def is_exported(path: str) -> bool:
  """True when `path` holds a finished export (exports are renamed into place)."""
  return os.path.isfile(os.path.join(path, "saved_model.pb"))


def exported_steps(workdir) -> Sequence[int]:
  """Steps with a finished export in a run's workdir, ascending."""
  run = workdir_lib.of(workdir)
  if not os.path.isdir(run.hub_exports):
    return []
  return sorted(int(d) for d in os.listdir(run.hub_exports)
                if d.isdigit() and is_exported(run.hub_export(int(d))))


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
  meta = hub_metadata.make(task, model, module, step=step, run=info)
  tmp = f"{output_dir}.tmp-{os.getpid()}"
  shutil.rmtree(tmp, ignore_errors=True)
  os.makedirs(os.path.dirname(output_dir), exist_ok=True)
  tf.saved_model.save(module, tmp, signatures=module.signatures)
  hub_metadata.write(tmp, meta)
  if os.path.exists(output_dir):
    shutil.rmtree(output_dir)
  os.rename(tmp, output_dir)
  return output_dir


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
  try:
    # partial: the checkpoint also holds the optimizer (and maybe the head).
    checkpoints.restore(checkpoint, partial=True, model=model)
  except AssertionError as e:
    raise ValueError(
        f"{checkpoint} does not hold every variable of the {task.name} network "
        f"built from the current gin bindings (architecture, width, task "
        f"options must be the run's; scripts/export_hub.py reads them from the "
        f"run's {workdir_lib.OPERATIVE_CONFIG}): {e}") from e
  return model


def pending_exports(workdir: str, step: int, every_checkpoint: bool = False
                    ) -> List[Tuple[int, str]]:
  """(step, checkpoint) pairs still to export: `step`, or every checkpoint.

  Steps whose module already exists are left out, so a resumed or finished
  run exports nothing twice.
  """
  ckpt_dir = checkpoints.directory(workdir)
  on_disk = checkpoints.steps(ckpt_dir)
  if step not in on_disk:
    raise FileNotFoundError(
        f"No checkpoint of step {step} in {ckpt_dir} (found steps "
        f"{sorted(on_disk)}).")
  steps = sorted(on_disk) if every_checkpoint else [step]
  return [(s, on_disk[s]) for s in steps
          if not is_exported(hub_export_dir(workdir, s))]


@gin.configurable("hub_export", denylist=["task", "workdir", "step", "info",
                                          "log"])
def export_run(task: task_lib.Task, workdir: str, step: int, *,
               enabled: bool = True, every_checkpoint: bool = False,
               info: Optional[Dict] = None,
               log: Callable[[str], None] = print) -> List[str]:
  """Exports a run's trunk to its workdir's `hub_export(step)` after training.

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
