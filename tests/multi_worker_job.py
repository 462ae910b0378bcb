"""One worker of the two-process MultiWorkerMirroredStrategy test (or the
single-process reference run): train, dump what the test compares, then the
rest of a run (export, pretext evaluation, features, linear evaluation).

  python tests/multi_worker_job.py CONFIG WORKDIR OUT STRATEGY [train]

Writes OUT/initial.npz, OUT/step1.npz and OUT/weights.npz (every variable
before training, after its first step and at its end, by name),
OUT/shard.json (the input pipeline the strategy gave this process and the
training examples it reads) and OUT/role.json; the workdir files are the
run's own (only the chief's, under several workers).
"""
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import run_lib  # noqa: E402
from datasets import registry as dataset_registry  # noqa: E402
from self_supervision import task as task_lib  # noqa: E402
from self_supervision import trainer as trainer_lib  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import experiment as experiment_lib  # noqa: E402
from training import strategy as strategy_lib  # noqa: E402


def main(config, workdir, out, strategy_name, stages="all"):
  task_lib.task_names()
  dataset_registry.dataset_names()
  config_lib.parse([config], [])
  strategy = strategy_lib.make_strategy(strategy_name)
  os.makedirs(out, exist_ok=True)
  settings = experiment_lib.experiment_settings()
  dataset = dataset_registry.get_dataset(settings.dataset)
  task = task_lib.get_task(settings.task, num_classes=dataset.num_classes)
  trainer = trainer_lib.Trainer(task, dataset, workdir, strategy,
                                seed=settings.seed)
  def dump(name):  # every variable, BN moving statistics included
    np.savez(os.path.join(out, name),
             **{v.path: v.numpy() for v in trainer.model.variables})
  dump("initial.npz")
  contexts = []
  make = trainer.loop.dataset_fn

  def spy(ctx, start):
    contexts.append((ctx.num_input_pipelines, ctx.input_pipeline_id))
    return make(ctx, start)
  trainer.loop.dataset_fn = spy
  trainer.loop.train(1)
  dump("step1.npz")
  trainer.train()
  dump("weights.npz")
  pipelines, pipeline_id = contexts[0]
  context = tf.distribute.InputContext(pipelines, pipeline_id,
                                       strategy.num_replicas_in_sync)
  indices = [int(e["index"]) for e in dataset.as_dataset(
      trainer.train_split, shuffle_files=True, seed=settings.seed,
      input_context=context)]
  with open(os.path.join(out, "shard.json"), "w") as f:
    json.dump(dict(contexts=contexts, train_indices=indices), f)
  with open(os.path.join(out, "role.json"), "w") as f:
    json.dump(dict(chief=strategy_lib.is_chief(), pid=os.getpid(),
                   replicas=strategy.num_replicas_in_sync,
                   workers=strategy_lib.num_workers(strategy)), f)
  if stages != "train":
    # The rest of the run, as train_and_eval.py does it: training is found
    # finished, then export (the chief), pretext evaluation and features.
    run_lib.run(workdir, "train_and_eval", strategy)
  print("worker done", flush=True)


if __name__ == "__main__":
  main(*sys.argv[1:])
