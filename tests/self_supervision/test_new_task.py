"""A fifth task, written only here, through the whole pipeline: nothing else
in the project is edited for it (docs/adding_a_task.md).

The task predicts whether an image is upside down. It is registered and
gin-configured by this module alone, trained by the real Trainer on a thin
ResNet50 v2 at 16 px, evaluated on its pretext and by the linear protocol,
exported as a TF-Hub module, and the module is reloaded and evaluated again.
`finished_run` returns the workdir these steps leave, for whatever reads a
finished run (a report step appends there).
"""
import gin
import keras
import numpy as np
import pytest
import tensorflow as tf

import fake_data
import models
from evaluation import protocols
from evaluation import results as results_lib
from evaluation import trunks as trunks_lib
from self_supervision import export as export_lib
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from training import checkpoints as checkpoints_lib
from training import workdir as workdir_lib

NAME = "upside_down"
PP = "decode|resize(16)|value_range(-1, 1)"


@task_lib.register(NAME)
@gin.configurable(NAME, denylist=["num_classes"])
class UpsideDown(task_lib.Task):
  """Every image and its vertical flip, labelled 0 (upright) and 1 (flipped).

  The trunk's own 2-way logits layer classifies them with softmax
  cross-entropy; batches of [B, H, W, 3] images give 2B network inputs.
  """
  copies_per_example = 2

  def __init__(self, *, num_classes: int, pp_train: str = PP,
               pp_representation: str = PP):
    super().__init__(num_classes=num_classes, pp_train=pp_train,
                     pp_pretext_eval=pp_representation,
                     pp_representation=pp_representation)

  def build_model(self, seed=0):
    del seed  # Keras initialisers only
    return models.get_model(num_classes=2)

  def compute_loss(self, model, batch, training):
    """Batch 'image' [B, H, W, 3] -> (cross-entropy [2B], outputs)."""
    images = batch["image"]
    both = tf.concat([images, tf.reverse(images, axis=[1])], axis=0)
    labels = tf.repeat(tf.constant([0, 1]), tf.shape(images)[:1])
    logits, _ = model(both, training=training)
    per_example = keras.losses.sparse_categorical_crossentropy(
        labels, logits, from_logits=True)
    return per_example, {"labels": labels, "logits": logits}


# The task's one config: what configs/upside_down/<cell>.gin would hold.
CONFIG = f"""
get_model.name = 'resnet50_v2'
get_model.width = 1
{NAME}.pp_train = 'decode|resize(16)|value_range(-1, 1)'
"""
LINEAR = dict(layers=["pre_logits"], l2_grid=[1e-2, 1e-4], max_iter=50)
QUIET = dict(log=lambda _: None)


def _dataset():
  # Class c lights row c: the upright image is brighter at the top, so
  # "upside down" can be learned, and the labels are linearly separable.
  return fake_data.InMemoryDataset(num_train=48, num_val=16, num_test=16,
                                   size=16, separable=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
  """Trains, evaluates and exports the task once: a dict of what was made.

  Keys: workdir (a Workdir), task, dataset, trainer, step, pretext (the
  pretext metrics), linear (the trained trunk's linear_lbfgs entry), module
  (the export's directory).
  """
  task_lib.task_names()
  gin.clear_config()
  gin.parse_config(CONFIG)
  try:
    workdir = workdir_lib.Workdir(tmp_path_factory.mktemp("upside_down"))
    dataset = _dataset()
    task = task_lib.get_task(NAME, num_classes=dataset.num_classes)
    trainer = trainer_lib.Trainer(
        task, dataset, workdir.path, tf.distribute.get_strategy(), seed=0,
        batch_size=8, epochs=1, warmup_epochs=0, decay_epochs=[],
        steps_per_loop=3, checkpoint_secs=1e9, **QUIET)
    step = trainer.train()
    # What the run records, as train_and_eval.py records it.
    identity = task.trunk(trainer.model).identity()
    results_lib.update(workdir.path, run=dict(
        task=task.name, dataset=dataset.name,
        architecture=identity["architecture"], width=identity["width"],
        last_relu=identity["last_relu"], seed=0, steps=step,
        total_steps=trainer.total_steps))
    pretext = trainer.evaluate_pretext()
    results_lib.update(workdir.path, pretext=dict(
        split=trainer.eval_split, step=step, **pretext))
    trunk = trunks_lib.from_checkpoint(
        task, trainer.model, trainer.manager.latest_checkpoint, step)
    linear, = protocols.run("linear_lbfgs", trunk, dataset,
                            workdir=workdir.path, overrides=LINEAR, **QUIET)
    module, = export_lib.export_run(task, workdir.path, step,
                                    info=dict(dataset=dataset.name), **QUIET)
  finally:
    gin.clear_config()
  return dict(workdir=workdir, task=task, dataset=dataset, trainer=trainer,
              step=step, pretext=pretext, linear=linear, module=module)


@pytest.fixture(scope="module")
def finished_run(run):
  """The workdir of the new task's finished run: checkpoints, results
  (run, pretext, linear evaluation) and the exported module. The report
  step of a run appends here."""
  return run["workdir"]


def test_found_by_its_registered_name():
  assert NAME in task_lib.task_names()
  assert isinstance(task_lib.get_task(NAME, num_classes=3), UpsideDown)


def test_trains_and_evaluates_its_pretext(run, finished_run):
  assert run["step"] == 6  # 48 images / batch 8, one epoch
  ckpt_steps = checkpoints_lib.steps(finished_run.checkpoints)
  assert 6 in ckpt_steps
  # 16 val images, each upright and flipped.
  assert int(run["trainer"].eval_metrics["accuracy"].count) == 32
  assert 0.0 <= run["pretext"]["accuracy"] <= 1.0
  recorded = results_lib.load(finished_run.path)
  assert recorded["run"]["task"] == NAME
  assert recorded["run"]["architecture"] == "resnet50_v2"
  assert recorded["pretext"]["accuracy"] == run["pretext"]["accuracy"]


def test_linear_evaluation_of_its_trunk(run, finished_run):
  entry = run["linear"]
  assert entry["protocol"] == "linear_lbfgs"
  assert entry["trunk"] == "trained@6" and entry["layer"] == "pre_logits"
  assert 0.0 <= entry["top1"] <= 100.0
  assert results_lib.load(finished_run.path)["evaluations"] == [entry]


def test_its_export_reloads_and_gives_the_trained_trunk(run, finished_run):
  assert run["module"] == finished_run.hub_export(6)
  assert export_lib.exported_steps(finished_run) == [6]
  meta = export_lib.read_metadata(run["module"])
  assert meta["task"] == NAME and meta["input_preprocess"] == "decode|resize(16)"
  task, model = run["task"], run["trainer"].model
  images = tf.random.stateless_uniform([3, 16, 16, 3], seed=[1, 2])
  loaded = tf.saved_model.load(run["module"])
  expected = task.representation(model, task.scale_images(images))
  np.testing.assert_allclose(loaded(images).numpy(),
                             expected["pre_logits"].numpy(),
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      loaded.signatures["representation"](images)["after_root"].numpy(),
      expected["after_root"].numpy(), rtol=1e-5, atol=1e-5)


def test_the_reloaded_export_evaluates_like_the_trained_trunk(run, tmp_path):
  # The evaluator reads the module with its own metadata's preprocessing.
  hub = trunks_lib.from_hub(run["module"])
  entry, = protocols.run("linear_lbfgs", hub, run["dataset"],
                         workdir=str(tmp_path), overrides=LINEAR, **QUIET)
  assert entry["trunk"] == f"hub:{run['module']}"
  assert entry["top1"] == run["linear"]["top1"]


def test_the_report_shows_it_under_its_name(finished_run, tmp_path):
  from study.report import markdown as report_lib  # TF-free but for the gallery
  root = str(finished_run.path)
  built = report_lib.build_report(root, out=str(tmp_path), with_gallery=False)
  assert built["runs"] == 1
  text = open(built["report"]).read()
  assert NAME in text
  top1 = results_lib.load(root)["evaluations"][0]["top1"]  # in percent
  rows = [line for line in text.splitlines()
          if line.startswith("| linear_lbfgs |") and f"| {top1:.2f} |" in line]
  assert len(rows) == 1, text
  # A Table 1 column of its own, and its run's row with the pretext accuracy.
  assert f"| Trunk | {NAME} k=1 |" in text
  pretext = 100 * results_lib.load(root)["pretext"]["accuracy"]
  assert any(f"| {NAME} | ResNet50 v2 k=1 | {pretext:.1f} |" in line
             for line in text.splitlines()), text
