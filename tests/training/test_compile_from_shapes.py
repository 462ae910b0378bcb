"""Every per-replica step compiles with XLA from shapes alone, and computes
what plain TensorFlow computes: the CPU stand-in for TPU compilation.

TPUStrategy compiles each step `strategy.run` runs with XLA from tensor
shapes alone; a shape that depends on the data fails to compile there or,
worse, compiles to something else. Each step below is compiled with
`jit_compile=True` from `TensorSpec`s only (`experimental_get_compiler_ir`),
an evaluation batch's real-row count being an input ('valid') the compiler
cannot see, then run on a padded last batch (3 real rows of 4) and compared
with plain TensorFlow: every task's train step and pretext-evaluation step,
feature extraction, the SGD heads' train and evaluation steps (linear, MLP,
on features and on images, fine-tuning) and the kNN monitor. What only a
real TPU can confirm is listed in docs/scale_out.md.
"""
import gin
import numpy as np
import pytest
import tensorflow as tf

import fake_data
import strategies
import models
import tiny_tasks
from evaluation import knn
from evaluation import knn_monitor
from evaluation import representations
from evaluation import trunks
from evaluation.sgd import driver as driver_lib
from evaluation.sgd import finetune as finetune_lib
from evaluation.sgd import heads as heads_lib
from evaluation.sgd import inputs as inputs_lib
from datasets import input_pipeline
from self_supervision import jigsaw
from self_supervision import task as task_lib
from self_supervision import trainer as trainer_lib
from training import loop as loop_lib
from training import workdir as workdir_lib

BATCH, REAL = 4, 3  # per-replica rows of the last batch, of which real
PATCHES = ("decode|resize(24)|crop_patches(3, patch_size=8)|standardize")
TASK_GIN = {
    "rotation": """
        rotation.pp_train = 'decode|resize(16)|value_range(-1, 1)|rotate'
        rotation.pp_representation = 'decode|resize(16)|value_range(-1, 1)'
    """,
    "supervised": """
        supervised.pp_train = 'decode|resize(16)|value_range(-1, 1)'
        supervised.pp_representation = 'decode|resize(16)|value_range(-1, 1)'
    """,
    "exemplar": """
        exemplar.pp_train = 'decode|inception_patches(2, 16, area_min=50)|standardize'
        exemplar.pp_representation = 'decode|resize(16)|standardize'
        exemplar.embedding_size = 8
        exemplar.mining_group_images = 2
    """,
    "jigsaw": f"""
        jigsaw.pp_train = '{PATCHES}'
        jigsaw.pp_representation = '{PATCHES}'
        jigsaw.embedding_size = 8
        jigsaw.head_hidden = 16
        jigsaw.permutations_per_batch = 2
        jigsaw.head_dropout = 0.0
    """,
    "relative_patch_location": f"""
        relative_patch_location.pp_train = '{PATCHES}'
        relative_patch_location.pp_representation = '{PATCHES}'
        relative_patch_location.embedding_size = 8
        relative_patch_location.head_hidden = 16
        relative_patch_location.head_dropout = 0.0
    """,
}

# Network inputs per example in pretext evaluation (jigsaw: all 100
# permutations).
EVAL_COPIES = dict(rotation=4, supervised=1, exemplar=2, jigsaw=100,
                   relative_patch_location=8)


@pytest.fixture(scope="module")
def dataset():
  return fake_data.InMemoryDataset(num_train=8, num_val=REAL, num_test=4)


def _specs(batch):
  return tf.nest.map_structure(tf.TensorSpec.from_tensor, batch)


def _compile_from_shapes(fn, specs):
  """`fn` with jit_compile=True, after lowering it to HLO from `specs` alone.

  experimental_get_compiler_ir takes TensorSpecs as positional arguments
  only: the batch dict travels flattened.
  """
  def flat_fn(*flat):
    return fn(tf.nest.pack_sequence_as(specs, flat))
  xla = tf.function(flat_fn, jit_compile=True)
  hlo = xla.experimental_get_compiler_ir(*tf.nest.flatten(specs))(stage="hlo")
  assert "ENTRY" in hlo
  return lambda batch: xla(*tf.nest.flatten(batch))


def _padded(ds):
  """The first batch of `ds` (REAL rows) padded to BATCH rows, with 'valid'."""
  batch = next(iter(loop_lib.pad_batches(ds.take(1), BATCH)))
  assert batch["valid"].numpy().tolist() == [1] * REAL + [0] * (BATCH - REAL)
  return batch


def _plain_and_xla(fn, batch, variables, reset=()):
  """(plain outputs, XLA outputs, variables after each): both runs start from
  the same variable values and with `reset` metrics emptied."""
  xla = _compile_from_shapes(fn, _specs(batch))
  start = [v.numpy() for v in variables]
  results = []
  for run in (fn, xla):
    for v, x in zip(variables, start):
      v.assign(x)
    for m in reset:
      m.reset_state()
    out = tf.nest.map_structure(np.asarray, run(batch))
    results.append((out, [v.numpy() for v in variables]))
  (plain, plain_vars), (compiled, xla_vars) = results
  return plain, compiled, plain_vars, xla_vars


def _assert_close(a, b, rtol=1e-4):
  for x, y in zip(tf.nest.flatten(a), tf.nest.flatten(b)):
    # XLA reorders reductions; the scale of the largest entry sets the floor.
    np.testing.assert_allclose(
        x, y, rtol=rtol, atol=rtol * max(1.0, float(np.max(np.abs(x), initial=0))))


@pytest.fixture(autouse=True)
def tiny_trunks(monkeypatch, clean_gin):
  """Every task builds tiny_tasks.TinyTrunk: XLA's CPU code generation for
  a ResNet50 step takes half a minute; the tasks' own ops are what is
  tested here (tests/training/test_precision.py compiles a real trunk's
  whole step)."""
  del clean_gin
  monkeypatch.setattr(
      models, "get_model",
      lambda num_classes=None, **kwargs: tiny_tasks.TinyTrunk(num_classes))


def _trainer(task_name, dataset, workdir):
  gin.parse_config(TASK_GIN[task_name])
  task = task_lib.get_task(task_name, num_classes=dataset.num_classes)
  return task, trainer_lib.Trainer(
      task, dataset, str(workdir), tf.distribute.get_strategy(), seed=0,
      batch_size=BATCH, eval_batch_size=BATCH, epochs=1, warmup_epochs=0,
      decay_epochs=[], steps_per_loop=1, checkpoint_secs=None,
      log=lambda _: None)


def test_jigsaw_draws_compile_but_xla_draws_other_permutations():
  # XLA's Philox turns the same key and counter into other numbers than
  # TensorFlow's CPU kernel: a TPU draws other (equally valid) permutations
  # than a CPU for the same seed and step (docs/scale_out.md).
  seed = tf.constant([12345, 0], tf.int64)
  draw = lambda s: jigsaw.draw_classes(s, 100, 8)  # noqa: E731
  xla = _compile_from_shapes(draw, tf.TensorSpec.from_tensor(seed))(seed)
  assert len(set(xla.numpy().tolist())) == 8
  assert 0 <= min(xla.numpy()) and max(xla.numpy()) < 100
  assert xla.numpy().tolist() != draw(seed).numpy().tolist()


@pytest.mark.parametrize("task_name", sorted(TASK_GIN))
def test_every_task_compiles_from_shapes_and_matches_plain_tf(
    task_name, dataset, tmp_path, monkeypatch):
  # The same draw under XLA as without (see the test above).
  monkeypatch.setattr(jigsaw, "draw_classes", lambda seed, n, count: tf.range(
      count, dtype=tf.int32) * 7 % n + tf.cast(seed[1], tf.int32) % 2)
  task, trainer = _trainer(task_name, dataset, tmp_path)
  loop = trainer.loop

  # The train step: forward, backward, update and metrics in one program.
  train_batch = next(iter(loop.dataset_fn(tf.distribute.InputContext(), 0)))
  metrics = list(loop.metrics.values())
  state = list(loop.model.variables) + list(loop.optimizer.variables)

  def train_step(batch):
    loop._replica_step(batch)  # pylint: disable=protected-access
    return {k: m.result() for k, m in loop.metrics.items()}
  plain, xla, plain_vars, xla_vars = _plain_and_xla(
      train_step, train_batch, state, metrics)
  _assert_close(plain, xla)
  for before, a, b in zip([v.numpy() for v in state], plain_vars, xla_vars):
    _assert_close(a - before, b - before, rtol=2e-3)  # the update itself

  # The pretext evaluation on a padded last batch.
  pp = task.preprocess(task_lib.PRETEXT_EVAL)
  real = input_pipeline.make_dataset(dataset, "val", pp, REAL, training=False,
                                     cache=False)
  batch = _padded(real)

  def eval_step(b):
    trainer.pretext_eval_step(b)
    return {k: m.result() for k, m in trainer.eval_metrics.items()}
  eval_metrics = list(trainer.eval_metrics.values())
  plain, xla, _, _ = _plain_and_xla(eval_step, batch, [], eval_metrics)
  _assert_close(plain, xla, rtol=1e-5)
  # Each real network input counted once; the padding not at all.
  assert int(trainer.eval_metrics["accuracy"].count.numpy()) == (
      REAL * EVAL_COPIES[task_name])
  # The unpadded batch without XLA, as the sliced evaluation computed it.
  for m in eval_metrics:
    m.reset_state()
  _, outputs = task.compute_loss(trainer.model, next(iter(real)), False)
  task.update_metrics(trainer.eval_metrics, outputs)
  for k, m in trainer.eval_metrics.items():
    assert xla[k] == pytest.approx(float(m.result()), rel=1e-5, abs=1e-7), k

  # Feature extraction of the representation pipeline's padded batch.
  extractor = representations.Extractor(task, trainer.model, ["pre_logits"])
  images = _padded(input_pipeline.make_dataset(
      dataset, "val", task.preprocess(task_lib.REPRESENTATION), REAL,
      training=False, cache=False))
  plain, xla, _, _ = _plain_and_xla(
      lambda b: extractor._replica_fn(b, lambda x: x),  # pylint: disable=protected-access
      {"image": images["image"]}, [])
  _assert_close(plain, xla)


@pytest.mark.parametrize("head,inputs,finetune", [
    ("linear", "features", False), ("mlp", "features", False),
    ("linear", "images", False), ("mlp", "images", False),
    ("linear", "images", True)])
def test_every_sgd_head_step_compiles_from_shapes_and_matches_plain_tf(
    head, inputs, finetune, dataset, tmp_path):
  gin.parse_config(TASK_GIN["rotation"])
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  strategy = tf.distribute.get_strategy()
  trunk = trunks.random_init(task, task.make_model(dataset, 0, "train"), 0)
  common = dict(layer="pre_logits", pooling="adaptive_max", train_split="train",
                eval_split="val", fraction=1.0, subset_seed=0)
  copy = None
  if inputs == "features":
    source = inputs_lib.CachedFeatures(trunk, dataset, batch_size=BATCH,
                                       cache=None, strategy=strategy,
                                       log=lambda _: None, **common)
  else:
    copy = (finetune_lib.trainable_copy(trunk, dataset, "train", strategy)
            if finetune else None)
    source = inputs_lib.Images(trunk, dataset, pp_train=None, copy=copy,
                               trunk_lr_multiplier=0.1, **common)
  # Dropout off: XLA draws other masks than the CPU kernel (see above).
  head_model = heads_lib.build_head(head, dataset.num_classes, hidden_units=8,
                                    dropout=0.0)
  head_model.build((None, source.dim))
  model = source.trained_model(head_model)
  plan = driver_lib.Plan.of(0.1, source.num_train, BATCH, first_decay_epochs=1,
                            second_decay_after=0, tail_epochs=1,
                            decay_factor=0.1)
  trainer = driver_lib.HeadTrainer(
      inputs=source, head=head_model, model=model, plan=plan,
      run_dir=workdir_lib.of(str(tmp_path)).head(head, "t", "pre_logits",
                                                 "adaptive_max", 1.0, 0),
      strategy=strategy, batch_size=BATCH, momentum=0.9, steps_per_loop=1,
      seed=0, log=lambda _: None, prefix="")
  loop = trainer.loop
  train_batch = next(iter(loop.dataset_fn(tf.distribute.InputContext(), 0)))
  # Everything the step writes: the head, the fine-tuned copy (its batch
  # norm statistics too) and the optimizer's slots.
  state = list({id(v): v for v in (
      list(head_model.variables) + list(model.trainable_variables)
      + (list(copy.model.variables) if copy else [])
      + list(loop.optimizer.variables))}.values())

  def train_step(batch):
    loop._replica_step(batch)  # pylint: disable=protected-access
    return {k: m.result() for k, m in loop.metrics.items()}
  plain, xla, plain_vars, xla_vars = _plain_and_xla(
      train_step, train_batch, state, list(loop.metrics.values()))
  _assert_close(plain["loss"], xla["loss"])
  for before, a, b in zip([v.numpy() for v in state], plain_vars, xla_vars):
    _assert_close(a - before, b - before, rtol=2e-3)

  evaluator = driver_lib.HeadEvaluator(inputs=source, head=head_model,
                                       num_classes=dataset.num_classes,
                                       strategy=strategy, eval_batch_size=BATCH)
  batch = _padded(source.eval_dataset(tf.distribute.InputContext(), REAL))
  top1 = evaluator._top1  # pylint: disable=protected-access

  def eval_step(b):
    evaluator._loop.replica_fn(b)  # pylint: disable=protected-access
    return top1.result(), top1.count
  plain, xla, _, _ = _plain_and_xla(eval_step, batch, [], [top1])
  assert plain[0] == xla[0] and xla[1] == REAL


def test_the_knn_monitor_compiles_from_shapes(dataset):
  gin.parse_config(TASK_GIN["rotation"])
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  model = task.make_model(dataset, 0, "train")
  monitor = knn_monitor.KnnMonitor(task, model, dataset, every_loops=1,
                                   train_examples=8, eval_examples=REAL,
                                   k=2, batch_size=BATCH)
  # Its per-replica step is feature extraction (the Extractor) ...
  images = _padded(input_pipeline.make_dataset(
      dataset, "val", task.preprocess(task_lib.REPRESENTATION), REAL,
      training=False, cache=False))
  extractor = monitor._extractor  # pylint: disable=protected-access
  plain, xla, _, _ = _plain_and_xla(
      lambda b: extractor._replica_fn(b, lambda x: x),  # pylint: disable=protected-access
      {"image": images["image"]}, [])
  _assert_close(plain, xla)
  # ... and the nearest-neighbour merge runs on fixed shapes too.
  rng = np.random.RandomState(0)
  args = dict(top_sims=tf.fill([REAL, 2], -np.inf),
              top_index=tf.zeros([REAL, 2], tf.int64),
              queries=tf.constant(rng.randn(REAL, 4), tf.float32),
              train=tf.constant(rng.randn(8, 4), tf.float32),
              train_index=tf.range(8, dtype=tf.int64))
  merge = knn._merge.python_function  # pylint: disable=protected-access
  plain, xla, _, _ = _plain_and_xla(lambda a: merge(**a), args, [])
  _assert_close(plain, xla)
  assert 0.0 <= monitor()["knn_top1"] <= 100.0


def test_jit_compile_refuses_several_mirrored_replicas_before_training():
  two = strategies.two_replicas()
  with pytest.raises(ValueError, match=(
      r"^train.jit_compile = True compiles each replica's whole step with XLA, "
      r"which MirroredStrategy cannot do with 2 replicas .*set "
      r"train.jit_compile = False")):
    loop_lib.check_jit_compile(True, two)
  assert loop_lib.check_jit_compile(False, two) is False
  assert loop_lib.check_jit_compile(True, tf.distribute.get_strategy()) is True
