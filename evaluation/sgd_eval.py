"""Table 2 and MLP protocols: an evaluation head trained by SGD on a frozen trunk.

`head='linear'` is the literature protocol (docs/protocol.md §5, paper Sec. 4.7): a linear
layer on augmented images (random crop + flip), SGD with momentum 0.9, LR 0.1
for a batch of 2048 (scaled linearly), decayed by 0.1 after
`first_decay_epochs` (30, 120 or 480) and again `second_decay_after` (20)
epochs later, `tail_epochs` (40) after the first decay in total.
`head='mlp'` is Sec. 4.3's MLP (1000 ReLU units, dropout 0.5) trained alike.

`inputs='features'` trains the same heads on cached, un-augmented features
instead of images: orders of magnitude faster, the fast variant.
`finetune=True` trains a copy of the trunk with the linear head.

This module says which protocol is which and composes it; the pieces live in
evaluation/sgd/: the head (heads.py), what it reads (inputs.py, finetune.py)
and the per-epoch train-and-evaluate driver (driver.py), whose run lives in
the workdir's head directory (training/workdir.py: checkpoints/, summaries/,
curve.json).
"""
import os
import time
from typing import Callable, Dict, List, Optional

import gin
import tensorflow as tf

from datasets import low_data
from evaluation import feature_cache
from evaluation.sgd import driver as driver_lib
from evaluation.sgd import heads as heads_lib
from evaluation.sgd import inputs as inputs_lib
from evaluation.sgd.finetune import FinetuneNet  # noqa: F401  (re-exported)
from evaluation.sgd.finetune import trainable_copy
from evaluation.sgd.heads import build_head
from evaluation.sgd.heads import HEADS  # noqa: F401  (re-exported)
from evaluation.sgd.inputs import augmented_pipeline  # noqa: F401  (re-exported)
from training import loop as loop_lib
from training import schedule as schedule_lib
from training import workdir as workdir_lib

INPUTS = ("images", "features")
FINETUNE = "finetune"


def protocol_name(head: str, inputs: str, finetune: bool = False) -> str:
  """The protocol an SGD head runs: '<head>_sgd', '<head>_sgd_features' on
  cached features, or 'finetune'."""
  if finetune:
    return FINETUNE
  return f"{head}_sgd" + ("_features" if inputs == "features" else "")


def _check(head, inputs, finetune, trunk_lr_multiplier):
  if inputs not in INPUTS:
    raise ValueError(f"Unknown sgd_eval.inputs {inputs!r}; use one of {INPUTS}.")
  if finetune and (head != "linear" or inputs != "images"):
    raise ValueError("finetune trains the trunk with a linear head on images "
                     f"(got head {head!r}, inputs {inputs!r}).")
  if finetune and not 0 < trunk_lr_multiplier:
    raise ValueError(f"sgd_eval.trunk_lr_multiplier = {trunk_lr_multiplier}: the "
                     f"trunk's learning rate as a fraction of the head's, > 0.")


def _check_schedule(first_decay_epochs, second_decay_after, tail_epochs):
  if first_decay_epochs <= 0 or not 0 <= second_decay_after <= tail_epochs:
    raise ValueError(
        f"Need first_decay_epochs > 0 and 0 <= second_decay_after <= "
        f"tail_epochs; got {first_decay_epochs}, {second_decay_after}, "
        f"{tail_epochs}.")


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
             normalize: bool = False,
             pp_train: Optional[str] = None, eval_batch_size: int = 500,
             steps_per_loop: int = 100, seed: int = 0,
             finetune: bool = False, trunk_lr_multiplier: float = 0.1,
             cache: Optional[feature_cache.FeatureCache] = None,
             strategy: Optional[tf.distribute.Strategy] = None,
             log: Callable[[str], None] = print) -> List[Dict]:
  """Trains an evaluation head on `trunk`'s `layer`; returns one results entry.

  The run lives in the workdir's head directory (`Workdir.head`:
  eval/<protocol>/<trunk>/<layer>-<pooling>-f<fraction>[-s<seed>]) and
  resumes from there; a finished one returns its entry without training.

  normalize: False (the default) is the protocol's head, a plain linear
  layer (or MLP) on the features (docs/protocol.md §5). True puts a
  scale-free batch norm before it (heads.build_head): features of different
  trunks and layers differ in scale by orders of magnitude (a random-init
  ResNet's pre_logits reach 1e3), one learning rate cannot suit them all,
  and an unnormalised MLP's ReLUs can die at once on such features; a
  config that needs it says so (`sgd_eval.normalize = True`), and its
  entries record `normalize` in their hyperparameters and settings.

  Returns:
    [entry] with protocol, trunk, layer, pooling, train_split, eval_split,
    fraction, top1, top5 (final epoch, percent), hyperparameters,
    curve [{epoch, step, top1, top5, train_loss}], fit_time_s.
  """
  _check(head, inputs, finetune, trunk_lr_multiplier)
  fraction = low_data.check_fraction(fraction)
  strategy = strategy or tf.distribute.get_strategy()
  loop_lib.check_batch(batch_size, strategy, "sgd_eval.batch_size")
  protocol = protocol_name(head, inputs, finetune)
  _check_schedule(first_decay_epochs, second_decay_after, tail_epochs)
  run_dir = workdir_lib.of(workdir).head(protocol, trunk.name, layer, pooling,
                                         fraction, seed)
  os.makedirs(run_dir.path, exist_ok=True)
  t_start = time.time()
  lr_peak = schedule_lib.linear_scaling(base_lr, batch_size, base_batch_size)
  hyper = dict(head=head, inputs=inputs, batch_size=batch_size, lr=lr_peak,
               momentum=momentum, first_decay_epochs=first_decay_epochs,
               second_decay_after=second_decay_after,
               epochs=first_decay_epochs + tail_epochs,
               weight_decay=weight_decay, normalize=normalize,
               subset_seed=subset_seed, seed=seed)
  hyper.update(heads_lib.hyperparameters(head, hidden_units, dropout))

  # --- build: what the head reads, the head, the schedule ----------------------
  common = dict(layer=layer, pooling=pooling, train_split=train_split,
                eval_split=eval_split, fraction=fraction,
                subset_seed=subset_seed)
  if inputs == "features":
    source = inputs_lib.CachedFeatures(
        trunk, dataset, batch_size=eval_batch_size, cache=cache,
        strategy=strategy, log=log, **common)
  else:
    copy = None
    if finetune:
      hyper.update(finetune=True, trunk_lr=lr_peak * trunk_lr_multiplier,
                   trunk_lr_multiplier=trunk_lr_multiplier)
      # The copy this evaluation trains; `trunk` itself stays frozen. Called
      # by this module's name, so a test can wrap it to see the copy.
      copy = trainable_copy(trunk, dataset, train_split, strategy)
    source = inputs_lib.Images(trunk, dataset, pp_train=pp_train, copy=copy,
                               trunk_lr_multiplier=trunk_lr_multiplier,
                               **common)
  hyper.update(source.hyperparameters, train_examples=int(source.num_train))
  plan = driver_lib.Plan.of(
      lr_peak, source.num_train, batch_size,
      first_decay_epochs=first_decay_epochs,
      second_decay_after=second_decay_after, tail_epochs=tail_epochs,
      decay_factor=decay_factor)
  with strategy.scope():
    head_model = build_head(head, dataset.num_classes,
                            hidden_units=hidden_units, dropout=dropout,
                            weight_decay=weight_decay, normalize=normalize,
                            seed=seed)
    head_model.build((None, source.dim))
    model = source.trained_model(head_model)
  prefix = f"  {protocol} [{trunk.name}] {layer}: "
  trainer = driver_lib.HeadTrainer(
      inputs=source, head=head_model, model=model, plan=plan, run_dir=run_dir,
      strategy=strategy, batch_size=batch_size, momentum=momentum,
      steps_per_loop=steps_per_loop, seed=seed, log=log, prefix=prefix)
  evaluator = driver_lib.HeadEvaluator(
      inputs=source, head=head_model, num_classes=dataset.num_classes,
      strategy=strategy, eval_batch_size=eval_batch_size)

  # --- loop: an epoch of training, then the head's evaluation ------------------
  curve = driver_lib.train_and_evaluate(
      trainer, evaluator, plan, run_dir,
      describe=dict(protocol=protocol, trunk=trunk.name, layer=layer),
      eval_split=eval_split,
      summary=(f"{source.num_train} {train_split} examples, batch "
               f"{batch_size}, lr {lr_peak:g}"), log=log, prefix=prefix)
  return [dict(
      protocol=protocol, trunk=trunk.name, layer=layer, pooling=pooling,
      # A fixed schedule: no hyperparameter is chosen on any split.
      train_split=train_split, selected_on=None, eval_split=eval_split,
      fraction=fraction, top1=curve[-1]["top1"], top5=curve[-1]["top5"],
      hyperparameters=hyper, curve=curve,
      fit_time_s=round(time.time() - t_start, 2), eval_dir=run_dir.path)]
