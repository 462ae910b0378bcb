"""Table 2 and MLP protocols: an evaluation head trained by SGD on a frozen trunk.

`head='linear'` is the literature protocol (SPEC §5, paper Sec. 4.7): a linear
layer on augmented images (random crop + flip), SGD with momentum 0.9, LR 0.1
for a batch of 2048 (scaled linearly), decayed by 0.1 after
`first_decay_epochs` (30, 120 or 480) and again `second_decay_after` (20)
epochs later, `tail_epochs` (40) after the first decay in total.
`head='mlp'` is Sec. 4.3's MLP (1000 ReLU units, dropout 0.5) trained alike.

`inputs='features'` trains the same heads on cached, un-augmented features
instead of images: orders of magnitude faster, the fast variant.

Steps are driven by the shared training loop (`training/loop.py`: compiled
loops, progress, NaN guard, resume seed, checkpoints of head and optimizer in
`<eval_dir>/checkpoints`); this file says what one step computes (frozen trunk
features -> head -> cross-entropy) and evaluates the head after every epoch:
top-1/top-5 on the eval split are logged, written to TensorBoard
(`<eval_dir>/summaries`) and to `<eval_dir>/curve.json`: the
accuracy-vs-epochs curve of paper Fig. 8.
"""
import json
import os
import re
import time
from typing import Callable, Dict, List, Optional

import gin
import keras
import numpy as np
import tensorflow as tf

from datasets import input_pipeline
from datasets import low_data
from evaluation import feature_cache
from evaluation import pooling as pooling_lib
from self_supervision import task as task_lib
from training import loop as loop_lib
from training import optimizer as optimizer_lib
from training import schedule as schedule_lib
from training import strategy as strategy_lib

HEADS = ("linear", "mlp")
INPUTS = ("images", "features")


FINETUNE = "finetune"


def protocol_name(head: str, inputs: str, finetune: bool = False) -> str:
  """'linear_sgd', 'mlp_sgd', 'linear_sgd_features', 'mlp_sgd_features' or
  'finetune'."""
  if finetune:
    return FINETUNE
  return f"{head}_sgd" + ("_features" if inputs == "features" else "")


class FinetuneNet(tf.Module):
  """The trunk being fine-tuned and its head, as one model for the loop.

  trainable_variables: the trunk's that the evaluated layer depends on, then
  the head's. losses: the trunk's weight decay times `trunk_lr_multiplier`
  (with the gradient scaling in the forward pass, the trunk's whole update is
  at that fraction of the head's learning rate), plus the head's.
  """

  def __init__(self, trunk_owner, head: keras.Model, trunk_variables,
               trunk_losses, trunk_lr_multiplier: float):
    super().__init__(name="finetune")
    self.trunk, self.head = trunk_owner, head  # tracked for checkpoints
    self._trunk_variables = list(trunk_variables)
    self._trunk_losses = trunk_losses
    self._multiplier = trunk_lr_multiplier

  @property
  def trainable_variables(self):
    return self._trunk_variables + list(self.head.trainable_variables)

  @property
  def losses(self):
    return ([self._multiplier * l for l in self._trunk_losses()]
            + list(self.head.losses))


def trainable_copy(trunk, dataset, split: str, strategy):
  """(task, model, variable owner, trunk variables, weight-decay losses fn) of a
  copy of `trunk` to fine-tune, so the evaluated trunk itself is left as is.

  A run's trunk (checkpoint or random init): the task's model built again and
  given the trunk's weights. A hub module: loaded again; its trainable
  variables train, its batch norm stays on the moving statistics (the
  exported signatures fix it).
  """
  if trunk.fingerprint.get("kind") == "hub":
    task = type(trunk.task)(trunk.fingerprint["path"],
                            preprocess=trunk.fingerprint.get("preprocess"))
    return (task, None, task.module, list(task.module.trainable_variables),
            lambda: [])
  with strategy.scope():
    model = trunk.task.make_model(dataset, 0, split)
  for dst, src in zip(model.weights, trunk.model.weights):
    dst.assign(src)
  net = trunk.task.trunk(model)
  return trunk.task, model, model, list(net.trainable_variables), lambda: net.losses


def augmented_pipeline(pp: str) -> str:
  """The representation pipeline with its central crop made random + a flip.

  'decode|resize_small(256)|central_crop(224)|value_range(-1, 1)' becomes
  'decode|resize_small(256)|crop(224)|flip_lr|value_range(-1, 1)' (SPEC §5's
  training preprocessing): `crop` and `flip_lr` are random only in training,
  so the same string evaluates on the central crop, unflipped. A pipeline
  without a central crop is returned unchanged.
  """
  ops = pp.split("|")
  for i, op in enumerate(ops):
    m = re.fullmatch(r"\s*central_crop\((.*)\)\s*", op)
    if m:
      return "|".join(ops[:i] + [f"crop({m.group(1)})", "flip_lr"] + ops[i + 1:])
  return pp


def build_head(head: str, num_classes: int, *, hidden_units: int = 1000,
               dropout: float = 0.5, weight_decay: float = 0.0,
               normalize: bool = True, seed: int = 0) -> keras.Model:
  """Features [B, D] -> logits [B, num_classes]; built on first call.

  normalize: standardise each feature first, with batch statistics in training
  and their moving average at test time (a BatchNormalization without scale
  or offset, so a linear head stays one affine map at test time). Why:
  features of different trunks and layers differ in scale by orders of
  magnitude (a random-init ResNet's pre_logits reach 1e3), and one SGD
  learning rate cannot suit them all; unnormalised, the MLP's ReLUs die at
  once on such features. False gives the paper's head literally.
  """
  if head not in HEADS:
    raise ValueError(f"Unknown evaluation head {head!r}; use one of {HEADS}.")
  reg = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
  init = lambda i: keras.initializers.GlorotUniform(seed=seed + i)
  layers = []
  if normalize:
    layers.append(keras.layers.BatchNormalization(
        center=False, scale=False, momentum=0.9, synchronized=True,
        name="normalize"))
  if head == "mlp":
    layers += [keras.layers.Dense(hidden_units, activation="relu",
                                  kernel_initializer=init(1),
                                  kernel_regularizer=reg, name="hidden"),
               keras.layers.Dropout(dropout, seed=seed, name="dropout")]
  layers.append(keras.layers.Dense(num_classes, kernel_initializer=init(2),
                                   kernel_regularizer=reg, name="logits"))
  return keras.Sequential(layers, name=f"{head}_head")


def _slug(text: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.@-]+", "_", text).strip("_")[-80:]


def _write_json(path, doc):
  if not strategy_lib.is_chief():
    return
  tmp = path + ".tmp"
  with open(tmp, "w") as f:
    json.dump(doc, f, indent=1)
  os.replace(tmp, path)


@gin.configurable("sgd_eval", denylist=["trunk", "dataset", "workdir",
                                        "strategy", "cache", "log"])
def evaluate(trunk, dataset, workdir: str, *, head: str = "linear",
             inputs: str = "images", layer: str = "pre_logits",
             pooling: str = "adaptive_max", train_split: str = "trainval",
             eval_split: str = "test", fraction: float = 1.0,
             subset_seed: int = 0, batch_size: int = 2048,
             base_lr: float = 0.1, base_batch_size: int = 2048,
             momentum: float = 0.9, first_decay_epochs: float = 30,
             second_decay_after: float = 20, tail_epochs: float = 40,
             decay_factor: float = 0.1, hidden_units: int = 1000,
             dropout: float = 0.5, weight_decay: float = 0.0,
             normalize: bool = True,
             pp_train: Optional[str] = None, eval_batch_size: int = 500,
             steps_per_loop: int = 100, seed: int = 0,
             finetune: bool = False, trunk_lr_multiplier: float = 0.1,
             cache: Optional[feature_cache.FeatureCache] = None,
             strategy: Optional[tf.distribute.Strategy] = None,
             log: Callable[[str], None] = print) -> List[Dict]:
  """Trains an evaluation head on `trunk`'s `layer`; returns one results entry.

  The run lives in `<workdir>/eval/<protocol>/<trunk>/<layer>-<pooling>-f<fraction>`
  and resumes from there; a finished one returns its entry without training.

  Returns:
    [entry] with protocol, trunk, layer, pooling, train_split, eval_split,
    fraction, top1, top5 (final epoch, percent), hyperparameters,
    curve [{epoch, step, top1, top5, train_loss}], fit_time_s.
  """
  if inputs not in INPUTS:
    raise ValueError(f"Unknown sgd_eval.inputs {inputs!r}; use one of {INPUTS}.")
  if finetune and (head != "linear" or inputs != "images"):
    raise ValueError("finetune trains the trunk with a linear head on images "
                     f"(got head {head!r}, inputs {inputs!r}).")
  if finetune and not 0 < trunk_lr_multiplier:
    raise ValueError(f"sgd_eval.trunk_lr_multiplier = {trunk_lr_multiplier}: the "
                     f"trunk's learning rate as a fraction of the head's, > 0.")
  fraction = low_data.check_fraction(fraction)
  strategy = strategy or tf.distribute.get_strategy()
  per_replica = loop_lib.check_batch(batch_size, strategy, "sgd_eval.batch_size")
  protocol = protocol_name(head, inputs, finetune)
  total_epochs = first_decay_epochs + tail_epochs
  if first_decay_epochs <= 0 or not 0 <= second_decay_after <= tail_epochs:
    raise ValueError(
        f"Need first_decay_epochs > 0 and 0 <= second_decay_after <= "
        f"tail_epochs; got {first_decay_epochs}, {second_decay_after}, "
        f"{tail_epochs}.")
  # Seed 0 keeps the folder name runs had before seeds were part of it.
  eval_dir = os.path.join(workdir, "eval", protocol, _slug(trunk.name),
                          f"{_slug(layer)}-{pooling}-f{fraction:g}"
                          + (f"-s{seed}" if seed else ""))
  os.makedirs(eval_dir, exist_ok=True)
  t_start = time.time()
  lr_peak = schedule_lib.linear_scaling(base_lr, batch_size, base_batch_size)
  hyper = dict(head=head, inputs=inputs, batch_size=batch_size, lr=lr_peak,
               momentum=momentum, first_decay_epochs=first_decay_epochs,
               second_decay_after=second_decay_after, epochs=total_epochs,
               weight_decay=weight_decay, normalize=normalize,
               subset_seed=subset_seed, seed=seed)
  if head == "mlp":
    hyper.update(hidden_units=hidden_units, dropout=dropout)
  if finetune:
    hyper.update(finetune=True, trunk_lr=lr_peak * trunk_lr_multiplier,
                 trunk_lr_multiplier=trunk_lr_multiplier)
    # The copy this evaluation trains; `trunk` itself stays frozen.
    rep_task, rep_model, trunk_owner, trunk_variables, trunk_losses = (
        trainable_copy(trunk, dataset, train_split, strategy))
  else:
    rep_task, rep_model = trunk.task, trunk.model

  # --- data ------------------------------------------------------------------
  rep_pp = rep_task.preprocess(task_lib.REPRESENTATION)
  if inputs == "images":
    train_data = low_data.low_data(dataset, train_split, fraction, subset_seed)
    pp_train = pp_train or augmented_pipeline(rep_pp)
    hyper["pp_train"] = pp_train
    num_train = train_data.num_examples(train_split)
  else:
    splits = feature_cache.read_splits(
        trunk, dataset, [train_split, eval_split], [layer], pooling=pooling,
        batch_size=eval_batch_size, cache=cache, strategy=strategy, log=log)
    train_x, train_y = splits[train_split][0][layer], splits[train_split][1]
    eval_x, eval_y = splits[eval_split][0][layer], splits[eval_split][1]
    if fraction < 1.0:
      keep = low_data.balanced_subset(train_y, fraction, subset_seed)
      train_x, train_y = train_x[keep], train_y[keep]
    train_x = np.asarray(train_x, np.float32)
    eval_x = np.asarray(eval_x, np.float32)
    num_train = len(train_y)
  hyper["train_examples"] = int(num_train)

  to_steps = lambda e: schedule_lib.epochs_to_steps(e, num_train, batch_size)
  steps_per_epoch = to_steps(1)
  total_steps = to_steps(total_epochs)
  schedule = schedule_lib.WarmupPiecewiseConstant(
      lr_peak, 0, [to_steps(first_decay_epochs),
                   to_steps(first_decay_epochs + second_decay_after)],
      decay_factor)

  def features_of(images, training=False):
    end_points = rep_task.representation(rep_model, images,
                                         training=training and finetune)
    if layer not in end_points:
      raise ValueError(f"Unknown layer {layer!r}; the trunk has end points "
                       f"{list(end_points)}.")
    features = pooling_lib.pool_and_flatten(end_points[layer], pooling)
    if not finetune:
      return tf.stop_gradient(features)
    if not training:
      return features
    # The same values, but the trunk's gradient scaled by the multiplier: with
    # its scaled weight decay (FinetuneNet.losses) and SGD's linear update, the
    # trunk trains at trunk_lr_multiplier x the head's learning rate.
    m = trunk_lr_multiplier
    return m * features + (1.0 - m) * tf.stop_gradient(features)

  if inputs == "images":
    # One zero image shaped as the representation pipeline gives them: the
    # feature size now, and (finetune) which trunk variables the layer uses.
    probe = tf.zeros([1] + list(input_pipeline.make_dataset(
        dataset, eval_split, rep_pp, 1, training=False, repeat=False
    ).element_spec["image"].shape[1:]))
    dim = int(features_of(probe).shape[-1])
  else:
    dim = train_x.shape[1]
  with strategy.scope():
    head_model = build_head(head, dataset.num_classes,
                            hidden_units=hidden_units, dropout=dropout,
                            weight_decay=weight_decay, normalize=normalize,
                            seed=seed)
    head_model.build((None, dim))
    model = head_model
    if finetune:
      # Only the trunk variables the layer depends on train (a patch task's
      # head, a supervised logits layer, the blocks after `layer` do not).
      with tf.GradientTape() as tape:
        used = tf.reduce_sum(features_of(probe))
      grads = tape.gradient(used, trunk_variables)
      trunk_variables = [v for v, g in zip(trunk_variables, grads) if g is not None]
      model = FinetuneNet(trunk_owner, head_model, trunk_variables, trunk_losses,
                          trunk_lr_multiplier)
    optimizer = optimizer_lib.make_optimizer("sgd", schedule, momentum)
    train_metrics = dict(accuracy=keras.metrics.SparseCategoricalAccuracy())
    top1 = keras.metrics.SparseTopKCategoricalAccuracy(k=1)
    top5 = keras.metrics.SparseTopKCategoricalAccuracy(
        k=min(5, dataset.num_classes))
  optimizer_lib.build(optimizer, model.trainable_variables, strategy)

  # --- what one step does ------------------------------------------------------
  def head_inputs(batch, training=False):
    return (features_of(batch["image"], training) if inputs == "images"
            else batch["image"])

  def loss_fn(batch):
    logits = head_model(head_inputs(batch, training=True), training=True)
    per_example = keras.losses.sparse_categorical_crossentropy(
        batch["label"], logits, from_logits=True)
    return per_example, {"labels": batch["label"], "logits": logits}

  def update_metrics(metrics, outputs):
    metrics["accuracy"].update_state(outputs["labels"], outputs["logits"])

  def dataset_fn(ctx, start):
    if inputs == "images":
      return input_pipeline.make_dataset(
          train_data, train_split, pp_train, per_replica, training=True,
          seed=seed, start=start, input_context=ctx)
    ds = tf.data.Dataset.from_tensor_slices((train_x, train_y))
    ds = ds.shard(ctx.num_input_pipelines, ctx.input_pipeline_id)
    ds = input_pipeline.stream(
        ds, start=start, repeat=True, shuffle_buffer=min(num_train, 100_000),
        seed=seed, pipeline_id=ctx.input_pipeline_id)
    return ds.map(lambda _, xy: {"image": xy[0], "label": xy[1]}).batch(
        per_replica, drop_remainder=True).prefetch(tf.data.AUTOTUNE)

  writer = strategy_lib.summary_writer(os.path.join(eval_dir, "summaries"))
  loop = loop_lib.Loop(
      strategy=strategy, model=model, optimizer=optimizer,
      loss_fn=loss_fn, dataset_fn=dataset_fn, total_steps=total_steps,
      global_batch_size=batch_size, metrics=train_metrics,
      update_metrics=update_metrics, schedule=lambda s: schedule(s - 1),
      steps_per_loop=steps_per_loop,
      ckpt_dir=os.path.join(eval_dir, "checkpoints"), checkpoint_secs=None,
      max_to_keep=2, summary_writer=writer,
      lr_binding="sgd_eval.base_lr", batch_binding="sgd_eval.batch_size",
      log=log, prefix=f"  {protocol} [{trunk.name}] {layer}: ")
  # Resume order: this evaluation's own latest checkpoint, else a fresh head.
  loop.restore()
  step = loop.step
  curve_path = os.path.join(eval_dir, "curve.json")
  curve = []
  if os.path.exists(curve_path):
    with open(curve_path) as f:
      curve = [c for c in json.load(f)["curve"] if c["step"] <= step]

  def entry():
    last = curve[-1]
    return [dict(
        protocol=protocol, trunk=trunk.name, layer=layer, pooling=pooling,
        # A fixed schedule: no hyperparameter is chosen on any split.
        train_split=train_split, selected_on=None, eval_split=eval_split,
        fraction=fraction,
        top1=last["top1"], top5=last["top5"], hyperparameters=hyper,
        curve=curve, fit_time_s=round(time.time() - t_start, 2),
        eval_dir=eval_dir)]

  if step >= total_steps and curve and curve[-1]["step"] == step:
    log(f"  {protocol} [{trunk.name}] {layer}: already trained ({step} steps).")
    return entry()

  # --- evaluation of the head ---------------------------------------------------
  def replica_eval(batch):
    logits = head_model(head_inputs(batch), training=False)
    # Padding rows (see below) weigh nothing.
    top1.update_state(batch["label"], logits, sample_weight=batch["valid"])
    top5.update_state(batch["label"], logits, sample_weight=batch["valid"])

  head_eval = loop_lib.EvalLoop(strategy, replica_eval)

  def evaluate_head():
    top1.reset_state()
    top5.reset_state()
    def make_batches(ctx, per_replica):
      if inputs == "images":
        return input_pipeline.make_dataset(dataset, eval_split, rep_pp,
                                           per_replica, training=False,
                                           input_context=ctx)
      return tf.data.Dataset.from_tensor_slices(
          {"image": eval_x, "label": eval_y}).shard(
              ctx.num_input_pipelines, ctx.input_pipeline_id).batch(per_replica)
    num_eval = (len(eval_y) if inputs != "images"
                else dataset.num_examples(eval_split))
    # Padding rows weigh nothing (sample_weight = valid).
    head_eval.run(make_batches, num_eval,
                  loop_lib.whole_rows_per_replica(eval_batch_size, strategy))
    return 100.0 * float(top1.result()), 100.0 * float(top5.result())

  # --- driving: one loop call per epoch, then the head's evaluation --------------
  log(f"  {protocol} [{trunk.name}] {layer}: {total_steps} steps "
      f"({total_epochs:g} epochs of {num_train} {train_split} examples, batch "
      f"{batch_size}, lr {lr_peak:g}), from step {step}.")
  while step < total_steps:
    epoch_end = min((step // steps_per_epoch + 1) * steps_per_epoch, total_steps)
    t0 = time.time()
    train = loop.train(epoch_end)
    step = loop.step
    loss, acc = train["loss"], 100.0 * train["accuracy"]
    t1, t5 = evaluate_head()
    # Whole epochs are rounded up to steps; the last point is the full run.
    epoch = total_epochs if step == total_steps else step / steps_per_epoch
    curve.append(dict(epoch=round(epoch, 4), step=step, top1=t1, top5=t5,
                      train_loss=loss, train_top1=acc))
    log(f"  epoch {epoch:.2f}/{total_epochs:g} step {step}/{total_steps} "
        f"loss={loss:.4f} train top-1 {acc:.2f}% | {eval_split} top-1 "
        f"{t1:.2f}% top-5 {t5:.2f}% lr={float(schedule(step - 1)):.3g} "
        f"({time.time() - t0:.1f}s)")
    with writer.as_default(step=step):
      tf.summary.scalar(f"{eval_split}/top1", t1)
      tf.summary.scalar(f"{eval_split}/top5", t5)
    # The curve point first: a checkpoint then always has its point, so a
    # run killed in between retrains that epoch instead of reporting the
    # previous epoch's accuracy as the final one.
    _write_json(curve_path, dict(protocol=protocol, trunk=trunk.name,
                                 layer=layer, curve=curve))
    loop.save()
  writer.flush()
  out = entry()
  log(f"  {protocol} [{trunk.name}] {layer}: {eval_split} top-1 "
      f"{out[0]['top1']:.2f}% top-5 {out[0]['top5']:.2f}%")
  return out
