"""The run record: run.json and operative_config.gin, written here only.

    with run_record.RunRecord(workdir, experiment, strategy) as record:
      config = run_record.model_config(experiment, task.name, pipelines)
      record.check(config)           # the guard, before anything is built
      ...                            # build the model
      record.start(config)           # now the workdir's identity
      ...                            # train, evaluate
      record.write_operative_config()
      record.done()

run.json holds the latest invocation's command, versions, devices, status
('running', 'done', 'failed: ...', 'preempted: ...') and the model's identity
(`model_config`), plus every invocation's own record: a rerun (resume, more
evaluations) appends to `invocations` instead of replacing the first command
and its times. The model's identity is the guard: a rerun whose config would
change the model the workdir holds is refused before anything is written.
A config becomes the identity only once a model was built with it (`start`),
so a setting that fails to build (width 0) never refuses its own correction.
A run.json that exists but cannot be read is refused, never taken for none:
without it the guard would let any model in. Only the chief writes
(training/role.py); every worker applies the guard.
"""
import datetime
import json
import os
import platform
import subprocess
import sys
from typing import Dict, List, Mapping, Optional

import gin

from training import experiment as experiment_lib
from training import preemption
from training import role
from training import workdir as workdir_lib

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def model_config(experiment: experiment_lib.Experiment, task_name: str,
                 pipelines: Mapping[str, str]) -> Dict[str, str]:
  """What makes a workdir's model that model: a rerun must not change it.

  pipelines: the task's preprocessing pipeline of each mode (task.MODES).
  """
  config = {f"experiment.{k}": getattr(experiment, k)
            for k in ("task", "dataset", "seed")}
  config.update({f"get_model.{k}": repr(v)
                 for k, v in sorted(gin.get_bindings("get_model").items())})
  config.update({f"{task_name}.pp_{mode}": pp for mode, pp in pipelines.items()})
  return _without_defaults(config)


def _without_defaults(config: Mapping) -> Dict:
  """`config` less the get_model settings bound to their own default value.

  Binding `get_model.last_relu = True` builds the same model as leaving it
  out; recorded either way, the two must compare equal (older run.json files
  hold such bindings too).
  """
  try:
    configurable = gin.config._REGISTRY.get_match("get_model")  # pylint: disable=protected-access
    defaults = gin.config._get_default_configurable_parameter_values(  # pylint: disable=protected-access
        configurable.wrapped, configurable.allowlist, configurable.denylist)
  except (AttributeError, KeyError, ValueError):
    defaults = {}  # get_model not registered (nothing imported models/)
  return {k: v for k, v in config.items()
          if not (k.startswith("get_model.") and k[len("get_model."):] in defaults
                  and v == repr(defaults[k[len("get_model."):]]))}


def read_model_config(workdir) -> Optional[Dict]:
  """The identity recorded in a workdir's run.json; None when there is none.

  Raises:
    ValueError: run.json exists but is not a run record (truncated, or
      edited by hand), naming it and the ways out.
  """
  path = workdir_lib.of(workdir).run_json
  try:
    with open(path) as f:
      text = f.read()
  except FileNotFoundError:
    return None
  except OSError as e:
    raise ValueError(f"{path} cannot be read ({e.strerror}): it holds which "
                     f"model this workdir trains. Fix its permissions.") from None
  try:
    doc = json.loads(text)
    config = doc.get("model_config") if isinstance(doc, dict) else None
    if config is not None and not (
        isinstance(config, dict) and all(isinstance(k, str) for k in config)):
      raise ValueError("model_config is not a mapping of settings")
    if not isinstance(doc, dict):
      raise ValueError("not a JSON object")
  except ValueError as e:
    raise ValueError(
        f"{path} is damaged ({str(e).splitlines()[0]}): it records which model "
        f"this workdir holds, so no run can check against it. Restore it, or "
        f"rerun with --overwrite_config to record this config as the workdir's "
        f"model (its checkpoints must fit it).") from None
  return config


def check_model_config(workdir, config: Mapping, overwrite: bool = False
                       ) -> List[str]:
  """Refuses a config that would change the model a workdir holds.

  Returns the settings an allowed `overwrite` changes ([] when none).

  Raises:
    ValueError: listing each setting the workdir was made with and the new
      one; or run.json is damaged (without `overwrite`).
  """
  try:
    old = read_model_config(workdir)
  except ValueError:
    if not overwrite:
      raise
    old = None  # damaged and overwritten: nothing left to compare with
  if not old:
    return []
  old, config = _without_defaults(old), _without_defaults(config)
  if old == config:
    return []
  diff = [k for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)]
  if overwrite:
    return diff
  was = "; ".join(f"{k} = {old.get(k, '(default)')}" for k in diff)
  now = "; ".join(f"{k} = {config.get(k, '(default)')}" for k in diff)
  raise ValueError(
      f"{workdir} holds a model made with {was}, but this config says {now}. "
      f"Use another --workdir for another model, or pass --overwrite_config if "
      f"the change is deliberate (the checkpoints must still fit).")


def _now() -> str:
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str:
  try:
    out = subprocess.run(["git", "-C", _ROOT, "rev-parse", "HEAD"],
                         capture_output=True, text=True, timeout=10)
    commit = out.stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", _ROOT, "status", "--porcelain"],
                           capture_output=True, text=True, timeout=10).stdout
    return commit + ("-dirty" if dirty.strip() else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def _invocations(doc: Dict) -> List[Dict]:
  """run.json's invocations; a record from before they were kept holds one,
  its top-level command and times."""
  return doc.get("invocations") or (
      [dict(command=doc["command"], git_commit=doc.get("git_commit"),
            start_time=doc.get("start_time"), end_time=doc.get("end_time"))]
      if "command" in doc else [])


def _replace(path: str, doc: Dict) -> None:
  """Writes run.json atomically: a reader never sees half of it."""
  with open(path + ".tmp", "w") as f:
    json.dump(doc, f, indent=2)
  os.replace(path + ".tmp", path)


def now() -> str:
  """The time as run.json records it (UTC, ISO 8601, seconds)."""
  return _now()


def record_evaluation(workdir, started: str, status: str) -> None:
  """Appends one `python -m evaluation` invocation (command, commit, host,
  pid, times, status) to run.json's `invocations`, so the code behind every
  entry it adds is on record; the run's own fields stay as its training left
  them. A module's results folder gets a run.json of invocations alone.
  """
  if not role.is_chief():
    return
  path = workdir_lib.of(workdir).run_json
  try:
    with open(path) as f:
      doc = json.load(f)
  except FileNotFoundError:
    doc = {}
  if not isinstance(doc, dict):
    raise ValueError(f"{path} is not a run record (not a JSON object): restore it, "
                     f"or delete it to keep only this evaluation's record.")
  invocations = _invocations(doc)
  invocations.append(dict(
      command=" ".join([sys.executable] + sys.argv), kind="evaluation",
      git_commit=_git_commit(), host=platform.node(), pid=os.getpid(),
      start_time=started, end_time=_now(), status=status))
  doc["invocations"] = invocations
  _replace(path, doc)


def _blocks(config_str: str) -> Dict[str, str]:
  """gin's config text split into its '# Parameters for <name>:' blocks."""
  blocks = {}
  for block in config_str.split("# Parameters for ")[1:]:
    blocks[block.split(":", 1)[0]] = "# Parameters for " + block.rstrip() + "\n"
  return blocks


def operative_config() -> str:
  """gin's operative config plus the bindings of functions not called yet.

  A `--mode=train` run never calls `linear_eval` and friends, so gin's
  operative config alone would drop the evaluation settings its config states,
  and a later `python -m evaluation` on the workdir would use the defaults
  instead of the run's own (docs/running.md)."""
  operative = gin.operative_config_str()
  called = _blocks(operative)
  pending = [text for name, text in _blocks(gin.config_str()).items()
             if name not in called]
  if not pending:
    return operative
  return (operative.rstrip() + "\n\n# Bound by the config, not called by this run yet:\n\n"
          + "\n".join(pending))


class RunRecord:
  """One invocation's record of a run, from its start to its end.

  Leaving the block by preemption or divergence (a FloatingPointError from
  the loop's NaN guard) records 'preempted: ...' / 'failed: ...' and lets
  the exception through. Any other exception (bad input) leaves run.json as
  the last write left it.
  """

  def __init__(self, workdir, experiment: experiment_lib.Experiment, strategy,
               overwrite_config: bool = False):
    self.workdir = workdir_lib.of(workdir)
    self.experiment, self.strategy = experiment, strategy
    self.overwrite_config = overwrite_config
    self.started = None
    self._recorded = False  # start() wrote this invocation to run.json

  def __enter__(self) -> "RunRecord":
    self.started = _now()
    return self

  def __exit__(self, kind, error, traceback) -> bool:
    if kind is not None and issubclass(kind, preemption.Preempted):
      self._write(_now(), status=f"preempted: {error}")
    elif kind is not None and (issubclass(kind, FloatingPointError) or (
        self._recorded and issubclass(kind, Exception))):
      # Once the invocation is on record, any error ends it as failed: a
      # 'running' left behind would read as a live run to the next reader.
      # Before that (bad input), run.json stays as it was.
      self._write(_now(), status=f"failed: {error}")
    return False

  def check(self, config: Mapping[str, str]) -> None:
    """The model-config guard alone: call it before building anything."""
    check_model_config(self.workdir.path, config, self.overwrite_config)

  def start(self, config: Mapping[str, str]) -> List[str]:
    """Applies the model-config guard, then records the run as running with
    `config` as the workdir's identity: call it once the model is built.

    Returns the settings --overwrite_config changed (the caller sets aside
    the results they invalidate: evaluation/results.py set_aside)."""
    changed = check_model_config(self.workdir.path, config, self.overwrite_config)
    self._write(config=dict(config))
    self._recorded = True
    return changed

  def write_operative_config(self) -> None:
    """The gin settings the run has used so far (the chief's), then the ones
    its config binds for stages it has not run yet (see `operative_config`)."""
    if role.is_chief():
      with open(self.workdir.operative_config, "w") as f:
        f.write(operative_config())

  def done(self) -> None:
    """The last operative config, and status 'done'."""
    self.write_operative_config()
    self._write(_now(), status="done")

  def _write(self, finished: Optional[str] = None, status: str = "running",
             config: Optional[Dict] = None) -> None:
    import keras  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
    if not role.is_chief():
      return  # the chief records the run
    path, started = self.workdir.run_json, self.started
    try:
      with open(path) as f:
        old = json.load(f)
    except (OSError, ValueError):
      old = {}
    if not isinstance(old, dict):
      old = {}  # damaged, and overwritten on purpose (the guard refused it before)
    invocations = _invocations(old)
    this = dict(command=" ".join([sys.executable] + sys.argv),
                git_commit=_git_commit(), host=platform.node(), pid=os.getpid(),
                start_time=started, end_time=finished, status=status)
    invocations = [i for i in invocations
                   if (i.get("start_time"), i.get("pid")) != (started, os.getpid())]
    invocations.append(this)
    strategy = self.strategy
    doc = dict(
        command=this["command"],
        seed=self.experiment.seed, git_commit=this["git_commit"],
        versions=dict(python=platform.python_version(), tensorflow=tf.__version__,
                      keras=keras.__version__, tfds=tfds.__version__,
                      numpy=np.__version__, gin=gin.__version__
                      if hasattr(gin, "__version__") else "unknown"),
        device=dict(strategy=type(strategy).__name__,
                    replicas=strategy.num_replicas_in_sync,
                    devices=[d.name for d in tf.config.list_logical_devices()],
                    host=platform.node()),
        start_time=started, end_time=finished, status=status,
        model_config=config or old.get("model_config"),
        invocations=invocations)
    _replace(path, doc)
