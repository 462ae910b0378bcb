r"""Trains a self-supervised model and evaluates its representation.

  python train_and_eval.py --config=configs/demo_fashion_mnist.gin \
      --workdir=/tmp/demo [--gin_bindings="train.epochs = 2"]

Running it again on the same workdir resumes from the latest checkpoint; a
finished run is not retrained and finished evaluations are not redone.
"""
import datetime
import os
import platform
import subprocess
import sys
import time
from typing import Sequence

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import registry as dataset_registry  # noqa: E402
from evaluation import protocols as protocols_lib  # noqa: E402
from evaluation import representations  # noqa: E402
from evaluation import results as results_lib  # noqa: E402
from evaluation import trunks as trunks_lib  # noqa: E402
from self_supervision import export as export_lib  # noqa: E402
from self_supervision import task as task_lib  # noqa: E402
from self_supervision import trainer as trainer_lib  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import errors  # noqa: E402
from training import preemption  # noqa: E402
from training import strategy as strategy_lib  # noqa: E402
from training import workdir_lock  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_multi_string("config", [], "Gin config file(s), applied in order.")
flags.DEFINE_multi_string("gin_bindings", [],
                          "Extra gin bindings, e.g. 'train.epochs = 2'.")
flags.DEFINE_string("workdir", None, "Run directory (created if missing).")
flags.DEFINE_enum("mode", "train_and_eval", ["train_and_eval", "train", "eval"],
                  "What to run.")
flags.DEFINE_enum("strategy", "auto", list(strategy_lib.STRATEGIES),
                  "tf.distribute strategy; 'auto' picks TPU/mirrored/default.")
flags.DEFINE_string("tpu", None, "TPU name or grpc:// address (Cloud TPU).")
flags.DEFINE_string("data_dir", None, "tfds data_dir (default: tfds default).")
flags.DEFINE_string("manual_dir", None,
                    "Where manually downloaded dataset archives/files are.")
flags.DEFINE_bool("debug", False, "Show the traceback of a bad-input error.")
flags.DEFINE_bool("overwrite_config", False,
                  "Run on a workdir whose model was trained with another trunk, "
                  "pipeline, dataset or seed than the config says.")


@gin.configurable("experiment")
def experiment_settings(task: str = gin.REQUIRED, dataset: str = gin.REQUIRED,
                        seed: int = 0, linear_eval_enabled: bool = True,
                        evaluate_random_init: bool = False,
                        hub_modules: Sequence[str] = (),
                        protocols: Sequence[str] = ("linear_lbfgs",),
                        transfer_datasets: Sequence[str] = (),
                        eval_seeds: Sequence[int] = (0,)):
  """Top-level identity of a run: which task on which dataset, and its seed.

  evaluate_random_init: also evaluate the trunk at initialisation (the paper's
  "Rnd" baseline) with the same protocol, for comparison.
  hub_modules: exported TF-Hub module paths (any run's export/hub/<step>, or
  a module from elsewhere) to evaluate with the same protocol and dataset.
  protocols: evaluation protocols run on every trunk (evaluation/protocols.py:
  linear_lbfgs, linear_sgd, mlp_sgd, linear_sgd_features, mlp_sgd_features).
  transfer_datasets: other datasets every trunk is also evaluated on with the
  same protocols and splits, into the same results.json (entries name their
  dataset): the paper's Places evaluation of every model. One whose data is
  not there (FileNotFoundError from its prepare()) is skipped with a message;
  evaluate it later with `python -m evaluation --dataset=NAME`. 'a|b' names
  alternatives: the first whose data is there ('places205|places365': the
  paper's Places205 when its archives are there, else tfds's Places365).
  eval_seeds: every protocol runs once per seed (its entries say which); the
  summary shows mean ± standard deviation over them (protocols.seed_arguments
  says what a seed changes).
  """
  for names in transfer_datasets:
    for name in names.split("|"):
      dataset_registry.check_name(name)  # before hours of training, not after
  seeds = [int(s) for s in eval_seeds]
  if not seeds or min(seeds) < 0:
    raise ValueError(f"experiment.eval_seeds = {list(eval_seeds)}: give "
                     f"non-negative integers, e.g. [0, 1, 2].")
  return dict(task=task, dataset=dataset, seed=seed,
              linear_eval_enabled=linear_eval_enabled,
              evaluate_random_init=evaluate_random_init,
              hub_modules=list(hub_modules),
              protocols=protocols_lib.check_protocols(protocols),
              transfer_datasets=list(transfer_datasets),
              eval_seeds=list(dict.fromkeys(seeds)))


def _git_commit():
  try:
    root = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run(["git", "-C", root, "rev-parse", "HEAD"],
                         capture_output=True, text=True, timeout=10)
    commit = out.stdout.strip() or "unknown"
    dirty = subprocess.run(["git", "-C", root, "status", "--porcelain"],
                           capture_output=True, text=True, timeout=10).stdout
    return commit + ("-dirty" if dirty.strip() else "")
  except (OSError, subprocess.SubprocessError):
    return "unknown"


def model_config(settings, task):
  """What makes a workdir's model that model: a rerun must not change it."""
  config = {f"experiment.{k}": settings[k] for k in ("task", "dataset", "seed")}
  config.update({f"get_model.{k}": repr(v)
                 for k, v in sorted(gin.get_bindings("get_model").items())})
  config.update({f"{task.name}.pp_{mode}": task.preprocess(mode)
                 for mode in task_lib.MODES})
  return config


def check_model_config(workdir, config, overwrite=False):
  """Refuses a config that would change the model a workdir holds.

  Raises:
    ValueError: listing each setting the workdir was made with and the new one.
  """
  import json  # pylint: disable=g-import-not-at-top
  try:
    with open(os.path.join(workdir, "run.json")) as f:
      old = json.load(f).get("model_config")
  except (OSError, ValueError):
    old = None
  if not old or old == config or overwrite:
    return
  diff = [k for k in sorted(set(old) | set(config)) if old.get(k) != config.get(k)]
  was = "; ".join(f"{k} = {old.get(k, '(default)')}" for k in diff)
  now = "; ".join(f"{k} = {config.get(k, '(default)')}" for k in diff)
  raise ValueError(
      f"{workdir} holds a model made with {was}, but this config says {now}. "
      f"Use another --workdir for another model, or pass --overwrite_config if "
      f"the change is deliberate (the checkpoints must still fit).")


def _write_run_json(workdir, settings, strategy, started, finished=None,
                    status="running", config=None):
  """run.json: the latest invocation's fields, and every invocation's record.

  A rerun (resume, more evaluations) appends to `invocations` instead of
  replacing the first command and its times.
  """
  import json  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if not strategy_lib.is_chief():
    return  # the chief records the run
  path = os.path.join(workdir, "run.json")
  try:
    with open(path) as f:
      old = json.load(f)
  except (OSError, ValueError):
    old = {}
  invocations = old.get("invocations") or (
      [dict(command=old["command"], git_commit=old.get("git_commit"),
            start_time=old.get("start_time"), end_time=old.get("end_time"))]
      if "command" in old else [])
  this = dict(command=" ".join([sys.executable] + sys.argv),
              git_commit=_git_commit(), host=platform.node(), pid=os.getpid(),
              start_time=started, end_time=finished, status=status)
  invocations = [i for i in invocations
                 if (i.get("start_time"), i.get("pid")) != (started, os.getpid())]
  invocations.append(this)
  doc = dict(
      command=this["command"],
      seed=settings["seed"], git_commit=this["git_commit"],
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
  with open(path + ".tmp", "w") as f:
    json.dump(doc, f, indent=2)
  os.replace(path + ".tmp", path)


def _write_operative_config(workdir):
  if strategy_lib.is_chief():
    with open(os.path.join(workdir, "operative_config.gin"), "w") as f:
      f.write(gin.operative_config_str())


def _now():
  return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _print_summary(results):
  print("\n" + "=" * 72)
  run = results.get("run", {})
  print(f"Run: {run.get('task')} on {run.get('dataset')}, "
        f"{run.get('architecture')} width {run.get('width')}, "
        f"{run.get('steps')} steps")
  pretext = results.get("pretext", {})
  if pretext:
    print(f"Pretext accuracy on {pretext.get('split')}: "
          f"{100 * pretext.get('accuracy', float('nan')):.2f}%")
  if results.get("evaluations"):
    print(results_lib.format_table(results["evaluations"]))
  print("=" * 72)


def run(workdir, mode, strategy, data_dir=None, manual_dir=None,
        overwrite_config=False):
  """One run: train (resumable), pretext eval, linear eval; writes the workdir.

  One process per workdir (`training/workdir_lock.py`): a second refuses.
  Under several workers the chief holds the lock and writes every file;
  the others compute in lockstep and write nothing there but checkpoints
  into temporary directories they remove (training/strategy.is_chief).
  """
  os.makedirs(workdir, exist_ok=True)
  settings = experiment_settings()
  with workdir_lock.Lock(workdir):
    return _run(workdir, mode, strategy, settings, data_dir, manual_dir,
                overwrite_config)


def _run(workdir, mode, strategy, settings, data_dir, manual_dir,
         overwrite_config):
  started = _now()
  try:
    return _run_stages(workdir, mode, strategy, settings, data_dir, manual_dir,
                       started, overwrite_config)
  except preemption.Preempted as e:
    _write_run_json(workdir, settings, strategy, started, _now(),
                    status=f"preempted: {e}")
    raise
  except FloatingPointError as e:
    _write_run_json(workdir, settings, strategy, started, _now(),
                    status=f"failed: {e}")
    raise


def _run_stages(workdir, mode, strategy, settings, data_dir, manual_dir, started,
                overwrite_config):
  dataset = dataset_registry.get_dataset(
      settings["dataset"], data_dir=data_dir, manual_dir=manual_dir)
  dataset.prepare()
  task = task_lib.get_task(settings["task"], num_classes=dataset.num_classes)
  # What would only fail after training fails now: pipelines, a workdir made
  # by another model, the evaluated layers, the evaluation splits (transfer
  # datasets: checked when present).
  task.check_pipelines(dataset)
  config = model_config(settings, task)
  check_model_config(workdir, config, overwrite_config)
  _write_run_json(workdir, settings, strategy, started, config=config)

  trainer = trainer_lib.Trainer(task, dataset, workdir, strategy,
                                seed=settings["seed"])
  protocols = settings["protocols"] if settings["linear_eval_enabled"] else []
  if mode != "train" and protocols:
    protocols_lib.check_settings(
        protocols, [dataset], task.end_point_names(trainer.model, dataset))
  if mode in ("train", "train_and_eval"):
    step = trainer.train()
    if strategy_lib.is_chief():
      # gin: hub_export.enabled / hub_export.every_checkpoint. Built from
      # the checkpoint outside the strategy: no other worker takes part.
      export_lib.export_run(task, workdir, step,
                            info=dict(dataset=dataset.name))
  else:
    step = trainer.restore()
    if not trainer.manager.latest_checkpoint:
      raise FileNotFoundError(
          f"--mode=eval needs a checkpoint in {workdir}/checkpoints; train first.")
  # What the trunk is, from the built object (not from gin, where a setting
  # left at its default has no binding to query).
  identity = task.trunk(trainer.model).identity()
  results = results_lib.update(workdir, run=dict(
      task=task.name, dataset=dataset.name,
      architecture=identity["architecture"], width=identity["width"],
      last_relu=identity["last_relu"],
      seed=settings["seed"], steps=step, total_steps=trainer.total_steps))
  _write_operative_config(workdir)

  if mode in ("eval", "train_and_eval"):
    if results.get("pretext", {}).get("step") != step:
      print(f"Pretext evaluation on {trainer.eval_split} ...")
      pretext = trainer.evaluate_pretext()
      results = results_lib.update(workdir, pretext=dict(
          split=trainer.eval_split, step=step, **pretext))
      print(f"  pretext accuracy {100 * pretext['accuracy']:.2f}%")
    if protocols:
      datasets = [dataset] + present_datasets(settings["transfer_datasets"],
                                              data_dir, manual_dir)
      evaluate_trunks(task, datasets, trainer, step, settings, workdir, strategy,
                      protocols)
    results = results_lib.load(workdir)
  _write_operative_config(workdir)
  _write_run_json(workdir, settings, strategy, started, _now(), status="done")
  _print_summary(results)
  return results


def present_datasets(names, data_dir=None, manual_dir=None):
  """The datasets of `names` whose data is there (prepared, or preparable);
  of alternatives 'a|b', the first whose data is there."""
  present = [dataset_registry.first_present(
      alternatives.split("|"), data_dir=data_dir, manual_dir=manual_dir,
      required=False, what="Transfer dataset") for alternatives in names]
  return [ds for ds in present if ds is not None]


def evaluate_trunks(task, datasets, trainer, step, settings, workdir, strategy,
                    protocols):
  """Runs each protocol on the trained trunk, then the baselines and modules,
  on the run's dataset (`datasets[0]`, which also shapes the random trunk)
  and then on each transfer dataset."""
  dataset = datasets[0]
  cache = protocols_lib.make_cache(workdir)

  def trained_trunk():
    model = trainer.model
    if trainer.compute_dtype != "float32":
      # Representations are read in float32 whatever the training precision
      # (training/precision.py): a float32 twin takes the trained weights.
      model = representations.precision_twin(
          task, model, dataset, trainer.train_split, "float32", strategy)
    return trunks_lib.from_checkpoint(
        task, model, trainer.manager.latest_checkpoint, step)
  trunks = [trained_trunk]
  if settings["evaluate_random_init"]:
    def random_trunk():
      with strategy.scope():
        model = task.make_model(dataset, settings["seed"], trainer.train_split)
      return trunks_lib.random_init(task, model, settings["seed"])
    trunks.append(random_trunk)
  trunks += [lambda p=path: trunks_lib.from_hub(p)
             for path in settings["hub_modules"]]
  for make_trunk in trunks:
    trunk = make_trunk()
    for ds in datasets:
      for seed in settings["eval_seeds"]:
        for protocol in protocols:
          protocols_lib.run(protocol, trunk, ds, workdir=workdir, cache=cache,
                            strategy=strategy, seed=seed)
    # Label-free model selection (evaluation/label_free.py): RankMe of every
    # trunk's pre_logits (SPEC §1: all six have one) on the held-out split the
    # pretext accuracy is measured on.
    protocols_lib.record_label_free(trunk, dataset, trainer.eval_split,
                                    workdir=workdir, cache=cache,
                                    strategy=strategy)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  if not FLAGS.workdir:
    raise app.UsageError("--workdir is required (where checkpoints and results go).")
  if not FLAGS.config:
    raise app.UsageError("--config is required, e.g. configs/demo_fashion_mnist.gin.")
  # Progress lines must show up at once even when piped to tee or a log file.
  sys.stdout.reconfigure(line_buffering=True)
  logging.set_verbosity(logging.WARNING)
  preemption.install()

  def main_run():
    # Imports every task and dataset, so gin knows their configurables.
    task_lib.task_names()
    dataset_registry.dataset_names()
    config_lib.parse(FLAGS.config, FLAGS.gin_bindings)
    strategy = strategy_lib.make_strategy(FLAGS.strategy, FLAGS.tpu)
    t0 = time.time()
    run(FLAGS.workdir, FLAGS.mode, strategy, FLAGS.data_dir, FLAGS.manual_dir,
        FLAGS.overwrite_config)
    print(f"Total time {time.time() - t0:.0f}s. Workdir: {FLAGS.workdir}")
  errors.run_cli(main_run, FLAGS.debug)


if __name__ == "__main__":
  app.run(main)
