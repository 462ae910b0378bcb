"""One run of train_and_eval.py: train (resumable), export, evaluate, summarise.

    run(workdir, mode, strategy)   # after gin has parsed the run's configs

The stages, in order, inside the workdir lock and the run record
(training/run_record.py: run.json, operative_config.gin, the model guard):

  1. what would only fail after training fails now: the dataset, the task's
     pipelines, the model the workdir holds, the evaluated layers and splits;
  2. training (or, for --mode=eval, the latest checkpoint) and the TF-Hub
     export of the chief;
  3. the pretext accuracy on the held-out split;
  4. the evaluation campaign (evaluation/campaign.py) of the trained trunk,
     the random-init baseline and TF-Hub modules on every dataset;
  5. the summary table.

Rerunning on the same workdir resumes training and redoes nothing finished.
"""
import os
from typing import Dict, Optional

from datasets import registry as dataset_registry
from evaluation import campaign
from evaluation import knn_monitor
from evaluation import protocols as protocols_lib
from evaluation import representations
from evaluation import results as results_lib
from evaluation import trunks as trunks_lib
from self_supervision import export as export_lib
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from training import experiment as experiment_lib
from training import role
from training import run_record
from training import workdir as workdir_lib
from training import workdir_lock

MODES = ("train_and_eval", "train", "eval")


def run(workdir: str, mode: str, strategy, data_dir: Optional[str] = None,
        manual_dir: Optional[str] = None, overwrite_config: bool = False) -> Dict:
  """One run (`mode` of MODES); returns its results.json.

  One process per workdir (`training/workdir_lock.py`): a second refuses.
  Under several workers the chief holds the lock and writes every file;
  the others compute in lockstep and write nothing there but checkpoints
  into temporary directories they remove (training/role.is_chief).
  """
  wd = workdir_lib.of(workdir)
  if os.path.exists(wd.path) and not os.path.isdir(wd.path):
    raise NotADirectoryError(
        f"--workdir={wd.path} is a file, not a folder: name a folder (it is "
        f"made if missing) for the run's checkpoints and results.")
  os.makedirs(wd.path, exist_ok=True)
  experiment = experiment_lib.experiment_settings()
  campaign.check(experiment)  # an unknown protocol or dataset: before training
  with workdir_lock.Lock(wd.path), run_record.RunRecord(
      wd, experiment, strategy, overwrite_config) as record:
    return _stages(wd, mode, strategy, experiment, record, data_dir, manual_dir)


def _stages(wd, mode, strategy, experiment, record, data_dir, manual_dir):
  workdir = wd.path
  dataset = dataset_registry.get_dataset(
      experiment.dataset, data_dir=data_dir, manual_dir=manual_dir)
  dataset.prepare()
  task = task_lib.get_task(experiment.task, num_classes=dataset.num_classes)
  # What would only fail after training fails now: pipelines, a workdir made
  # by another model, the evaluated layers, the evaluation splits (transfer
  # datasets: checked when present).
  task.check_pipelines(dataset)
  model_config = run_record.model_config(
      experiment, task.name, {m: task.preprocess(m) for m in task_lib.MODES})
  record.check(model_config)

  trainer = trainer_lib.Trainer(
      task, dataset, workdir, strategy, seed=experiment.seed,
      # gin: knn_monitor.every_loops (off by default).
      monitor=lambda model: knn_monitor.make(task, model, dataset, strategy,
                                             print))
  protocols = list(experiment.evaluated_protocols)
  if mode != "train" and protocols:
    protocols_lib.check_settings(
        protocols, [dataset], task.end_point_names(trainer.model, dataset))
  # Only now, with a model built from it, is the config the workdir's
  # identity: a setting that cannot build (width 0) is never recorded.
  changed = record.start(model_config)
  if changed and role.is_chief():
    # No number made with the old settings is reported as the new ones'.
    counts = results_lib.set_aside(workdir, changed)
    print(results_lib.set_aside_line(counts, changed))
  if mode in ("train", "train_and_eval"):
    step = trainer.train()
    if role.is_chief():
      # gin: hub_export.enabled / hub_export.every_checkpoint. Built from
      # the checkpoint outside the strategy: no other worker takes part.
      export_lib.export_run(task, workdir, step,
                            info=dict(dataset=dataset.name))
  else:
    step = trainer.restore()
    if not trainer.manager.latest_checkpoint:
      raise FileNotFoundError(
          f"--mode=eval needs a checkpoint in {wd.checkpoints}; train first.")
  # What the trunk is, from the built object (not from gin, where a setting
  # left at its default has no binding to query).
  identity = task.trunk(trainer.model).identity()
  results = results_lib.update(workdir, run=dict(
      task=task.name, dataset=dataset.name,
      architecture=identity["architecture"], width=identity["width"],
      last_relu=identity["last_relu"],
      seed=experiment.seed, steps=step, total_steps=trainer.total_steps))
  record.write_operative_config()

  if mode in ("eval", "train_and_eval"):
    if results.get("pretext", {}).get("step") != step:
      print(f"Pretext evaluation on {trainer.eval_split} ...")
      pretext = trainer.evaluate_pretext()
      results = results_lib.update(workdir, pretext=dict(
          split=trainer.eval_split, step=step, **pretext))
      print(f"  pretext accuracy {100 * pretext['accuracy']:.2f}%")
    if protocols:
      datasets = [dataset] + campaign.present_datasets(
          experiment.transfer_datasets, data_dir, manual_dir)
      campaign.evaluate(
          _trunks(task, dataset, trainer, step, experiment, strategy), datasets,
          protocols=protocols, seeds=experiment.eval_seeds, workdir=workdir,
          strategy=strategy, label_free_split=trainer.eval_split)
    results = results_lib.load(workdir)
  record.done()
  _print_summary(results, workdir)
  return results


def _trunks(task, dataset, trainer, step, experiment, strategy):
  """Builders of the trunks a run evaluates: the trained one, then the
  random-init baseline (shaped by the run's dataset), the pixels control and
  the TF-Hub modules."""
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
  if experiment.evaluate_random_init:
    def random_trunk():
      with strategy.scope():
        model = task.make_model(dataset, experiment.seed, trainer.train_split)
      return trunks_lib.random_init(task, model, experiment.seed)
    trunks.append(random_trunk)
  if experiment.evaluate_pixels:
    trunks.append(lambda: trunks_lib.pixels(task))
  trunks += [lambda p=path: trunks_lib.from_hub(p)
             for path in experiment.hub_modules]
  return trunks


def _print_summary(results, workdir):
  print("\n" + "=" * 72)
  run_entry = results.get("run", {})
  print(f"Run: {run_entry.get('task')} on {run_entry.get('dataset')}, "
        f"{run_entry.get('architecture')} width {run_entry.get('width')}, "
        f"{run_entry.get('steps')} steps")
  pretext = results.get("pretext", {})
  if pretext:
    accuracy = pretext.get("accuracy", float("nan"))
    if isinstance(accuracy, bool) or not isinstance(accuracy, (int, float)):
      raise ValueError(
          f"{workdir_lib.of(workdir).results_json} holds pretext accuracy "
          f"{accuracy!r}, not a number: was it edited by hand? Restore it, or "
          f"delete the 'pretext' entry (a rerun recomputes it).")
    print(f"Pretext accuracy on {pretext.get('split')}: {100 * accuracy:.2f}%")
  if results.get("evaluations"):
    print(campaign.table(workdir, results["evaluations"]))
  print("=" * 72)
