r"""Runs any evaluation protocol on a finished run or on a TF-Hub module.

  # more protocols / layers / a low-data fraction on a run's latest checkpoint
  python -m evaluation --workdir=/tmp/demo --protocol=linear_lbfgs,mlp_sgd_features \
      --layers=pre_logits,block3 --fraction=0.1

  # a module this project exported (any run's export/hub/<step>; a SavedModel
  # made elsewhere names no end points or input pipeline, and is refused)
  python -m evaluation --hub_module=/tmp/demo/export/hub/860 \
      --dataset=fashion_mnist --workdir=/tmp/hub_eval --protocol=linear_lbfgs

A run is rebuilt from its own operative_config.gin and results.json; --config
and --gin_bindings are applied on top (e.g. 'sgd_eval.first_decay_epochs = 120').
Features are cached in <workdir>/features, entries land in
<workdir>/results.json, and a protocol already there is not run again.
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from datasets import registry as dataset_registry  # noqa: E402
from evaluation import campaign  # noqa: E402
from evaluation import hub_trunk  # noqa: E402
from evaluation import knn_monitor  # noqa: E402,F401  (gin names of a run)
from evaluation import protocols as protocols_lib  # noqa: E402
from evaluation import results as results_lib  # noqa: E402
from evaluation import trunks as trunks_lib  # noqa: E402
from models import registry as models_registry  # noqa: E402,F401  (gin names)
from self_supervision import export as export_lib  # noqa: E402,F401  (gin names)
from self_supervision import task as task_lib  # noqa: E402
from self_supervision import trainer  # noqa: E402,F401  (gin names of a run)
from training import checkpoints as checkpoints_lib  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import errors  # noqa: E402
from training import experiment  # noqa: E402,F401  (gin names of a run)
from training import preemption  # noqa: E402
from training import run_record  # noqa: E402
from training import workdir as workdir_lib  # noqa: E402
from training import workdir_lock  # noqa: E402
from training import strategy as strategy_lib  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("workdir", None, "A run's workdir, or (with --hub_module) "
                    "where results and cached features go.")
flags.DEFINE_string("hub_module", None, "Evaluate this exported module.")
flags.DEFINE_string("dataset", None, "Dataset (default: the run's).")
flags.DEFINE_list("protocol", ["linear_lbfgs"],
                  f"Protocols: {', '.join(protocols_lib.PROTOCOLS)}.")
flags.DEFINE_list("layers", None, "End points (default: the protocol's gin "
                  "setting, else pre_logits).")
flags.DEFINE_string("pooling", None, "adaptive_max, adaptive_avg, max or avg.")
flags.DEFINE_float("fraction", None, "Low-data regime: class-balanced fraction "
                   "of the training split, e.g. 0.1.")
flags.DEFINE_list("seeds", ["0"], "Evaluation seeds (e.g. 0,1,2): each is an entry; "
                  "tables show mean ± standard deviation. They set the SGD heads' "
                  "initialisation and shuffling and the low-data subset.")
flags.DEFINE_enum("trunk", "trained", ["trained", "random_init", "pixels"],
                  "For a run: its checkpoint, its initialisation, or the pixels "
                  "control (the images its representation pipeline gives); with "
                  "--hub_module, 'pixels' scores the module's input images.")
flags.DEFINE_string("checkpoint", None, "For a run: this checkpoint prefix "
                    "instead of the latest one.")
flags.DEFINE_multi_string("config", [], "Extra gin files applied on top.")
flags.DEFINE_multi_string("gin_bindings", [], "Extra gin bindings.")
flags.DEFINE_enum("strategy", "auto", list(strategy_lib.STRATEGIES),
                  "tf.distribute strategy.")
flags.DEFINE_string("tpu", None, "TPU name or address.")
flags.DEFINE_string("data_dir", None, "tfds data_dir.")
flags.DEFINE_string("manual_dir", None, "Manually downloaded dataset files.")
flags.DEFINE_bool("debug", False, "Show the traceback of a bad-input error.")


def _run_trunk(workdir, dataset, strategy, which, checkpoint, data_dir=None,
               manual_dir=None):
  """Rebuilds the run's task and model and returns the requested Trunk.

  On another dataset than the run's (a transfer evaluation) the model still
  has the run's shapes: a supervised trunk keeps its own number of classes.
  """
  run = results_lib.load(workdir).get("run", {})
  if not run.get("task"):
    raise FileNotFoundError(
        f"{workdir} has no results.json naming its task: it is not a "
        f"train_and_eval.py workdir. Pass --hub_module to evaluate a module.")
  num_classes = dataset.num_classes
  if run.get("dataset") and run["dataset"] != dataset.name:
    num_classes = dataset_registry.get_dataset(
        run["dataset"], data_dir=data_dir, manual_dir=manual_dir).num_classes
  task = task_lib.get_task(run["task"], num_classes=num_classes)
  if which == "pixels":
    return trunks_lib.pixels(task)
  seed = int(run.get("seed", 0))
  with strategy.scope():
    model = task.make_model(dataset, seed)
  if which == "random_init":
    return trunks_lib.random_init(task, model, seed)
  ckpt_dir = checkpoints_lib.directory(workdir)
  checkpoint = checkpoint or checkpoints_lib.latest(ckpt_dir)
  if not checkpoint:
    raise FileNotFoundError(f"No checkpoint in {ckpt_dir}; train the run first "
                            f"or pass --trunk=random_init.")
  checkpoints_lib.restore(checkpoint, partial=True, model=model)
  return trunks_lib.from_checkpoint(task, model, checkpoint,
                                    checkpoints_lib.step_of(checkpoint))


def main(argv):
  if len(argv) > 1:
    errors.usage(f"Unexpected arguments: {argv[1:]} (flags are --name=value).")
  if not FLAGS.workdir:
    errors.usage("--workdir is required (a run's workdir, or where a module's "
                 "results go), e.g. --workdir=/tmp/demo.")
  sys.stdout.reconfigure(line_buffering=True)
  logging.set_verbosity(logging.WARNING)
  preemption.install()
  errors.run_cli(_main, FLAGS.debug)


def _main():
  protocols = protocols_lib.check_protocols(FLAGS.protocol)
  campaign.seeds(FLAGS.seeds)  # a typo fails before any data is read
  workdir = workdir_lib.Workdir(FLAGS.workdir)
  if os.path.exists(workdir.path) and not workdir.exists():
    raise NotADirectoryError(f"--workdir={workdir.path} is a file, not a folder: "
                             f"name a run's workdir, or a folder for a module's "
                             f"results.")
  if FLAGS.hub_module:
    # A path that is not there, before TensorFlow looks for a module in it.
    hub_trunk.check_path(FLAGS.hub_module)
    # A module names no dataset: refused before its results folder is made.
    if not (FLAGS.dataset or results_lib.load(workdir.path)["run"].get("dataset")):
      raise ValueError("--dataset is required with --hub_module, e.g. "
                       "--dataset=fashion_mnist: a module names none.")
  if not FLAGS.hub_module and not workdir.exists():
    raise FileNotFoundError(
        f"No run workdir {workdir}: train one there with train_and_eval.py, or "
        f"pass --hub_module to evaluate an exported module into a new workdir.")
  task_lib.task_names()  # registers every task's gin names
  dataset_registry.dataset_names()  # and every dataset's
  if os.path.exists(workdir.operative_config) and not FLAGS.hub_module:
    # The run's own bindings first (every module that configures a run is
    # imported above), then the user's.
    config_lib.parse([workdir.operative_config], finalize=False)
  config_lib.parse(FLAGS.config, FLAGS.gin_bindings)
  strategy = strategy_lib.make_strategy(FLAGS.strategy, FLAGS.tpu)

  os.makedirs(workdir.path, exist_ok=True)  # --hub_module: a new results folder
  # The lock first: a workdir whose run is still training has no results yet,
  # and "in use by pid N" is what its user needs to hear.
  with workdir_lock.Lock(workdir.path):
    run = results_lib.load(workdir.path).get("run", {})
    if not FLAGS.hub_module and not run.get("task"):
      raise FileNotFoundError(
          f"{workdir.path} holds no trained run (its results.json names no task): "
          f"train it first with train_and_eval.py (its --mode=train stops after "
          f"training), or pass --hub_module to evaluate an exported module.")
    if FLAGS.checkpoint and not FLAGS.hub_module:
      _check_checkpoint(workdir.path, FLAGS.checkpoint)
    dataset_name = FLAGS.dataset or run.get("dataset")
    if not dataset_name:
      raise ValueError(f"{workdir.path}/results.json names no dataset: pass "
                       f"--dataset, e.g. --dataset=fashion_mnist.")
    dataset = dataset_registry.first_present(
        dataset_name.split("|"), data_dir=FLAGS.data_dir,
        manual_dir=FLAGS.manual_dir)
    _evaluate(workdir.path, run, dataset, strategy, protocols)


def _check_checkpoint(workdir, prefix):
  """--checkpoint names a checkpoint there is (its .index file), or one line."""
  if os.path.exists(prefix + ".index"):
    return
  ckpt_dir = checkpoints_lib.directory(workdir)
  there = [os.path.join(ckpt_dir, os.path.basename(p))
           for p in checkpoints_lib.steps(ckpt_dir).values()] if os.path.isdir(
               ckpt_dir) else []
  raise FileNotFoundError(
      f"--checkpoint={prefix}: no such checkpoint (no {prefix}.index); pass a "
      f"prefix like {ckpt_dir}/ckpt-<step>"
      + (f", one of {', '.join(there[-3:])}" if there else "")
      + ", or leave the flag out for the newest.")


def _evaluate(workdir, run, dataset, strategy, protocols):
  if FLAGS.hub_module:
    trunk = trunks_lib.from_hub(FLAGS.hub_module)
    if FLAGS.trunk == "pixels":
      trunk = trunks_lib.pixels(trunk.task)
    if not run:
      results_lib.update(workdir, run=dict(hub_module=FLAGS.hub_module,
                                           dataset=dataset.name))
  else:
    trunk = _run_trunk(workdir, dataset, strategy, FLAGS.trunk, FLAGS.checkpoint,
                       FLAGS.data_dir, FLAGS.manual_dir)
  overrides = dict(layers=FLAGS.layers, pooling=FLAGS.pooling,
                   fraction=FLAGS.fraction)
  t0, started = time.time(), run_record.now()
  try:
    campaign.evaluate([lambda: trunk], [dataset], protocols=protocols,
                      seeds=campaign.seeds(FLAGS.seeds), workdir=workdir,
                      strategy=strategy, overrides=overrides)
  except preemption.Preempted as e:
    run_record.record_evaluation(workdir, started, f"preempted: {e}")
    raise
  except Exception as e:
    # Entries written before the error stay: their code is on record too.
    run_record.record_evaluation(workdir, started, f"failed: {e}")
    raise
  run_record.record_evaluation(workdir, started, "done")
  evaluations = [e for e in results_lib.load(workdir)["evaluations"]
                 if e["trunk"] == trunk.name]
  print("\n" + campaign.table(workdir, evaluations))
  print(f"Evaluation took {time.time() - t0:.0f}s. Results: "
        f"{workdir_lib.of(workdir).results_json}")


if __name__ == "__main__":
  app.run(main)
