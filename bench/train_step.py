"""Train-step throughput of every trunk and task, against Keras's ResNet50.

Usage:
  python bench/train_step.py                        # the issue's figure 1 + 2
  python bench/train_step.py --tasks rotation exemplar jigsaw \\
      relative_patch_location supervised --widths 4 16 --batch 2   # the table

Each row trains through the project's own loop (`training.loop.Loop`: the
compiled `steps_per_loop` loop, the task's `compute_loss`, weight decay, SGD
with momentum 0.9, metrics) on one fixed batch made by the task's ImageNet
training pipeline (configs/common/<task>_imagenet.gin), so the input pipeline
is out of the figure (bench/input_pipeline.py measures it). The reference is
`keras.applications.ResNet50` (1000 classes) trained by a plain
`tf.function` step (tape, cross-entropy, `apply_gradients`) with the same
optimizer, precision and number of network inputs per step; ours and the
reference alternate, `--rounds` times each, and the medians are compared.
The supervised ResNet50 v1 k=4 row is the same network as the reference: its
ratio is what the framework costs.

The `peak` column is the model's training FLOP/s (3 x the forward FLOPs of
models/flops.py per network input) over the dense matmul rate of this
machine, measured in the same process in the row's dtype.
"""
import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import models  # noqa: E402
from datasets import input_pipeline  # noqa: E402
from models import flops as flops_lib  # noqa: E402
from self_supervision import task as task_lib  # noqa: E402
from training import config as config_lib  # noqa: E402
from training import experiment  # noqa: E402,F401  (the `experiment` configurable)
from training import loop as loop_lib  # noqa: E402
from training import precision as precision_lib  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRUNKS = (("resnet50_v1", True), ("resnet50_v2", True), ("resnet50_v2", False),
          ("revnet50", True), ("revnet50", False), ("vgg19_bn", True))
PATCH_TASKS = ("jigsaw", "relative_patch_location")
NUM_CLASSES = 1000
LR = 0.01


class RandomImages:
  """ImageNet-like source images in memory: uint8 [n, 256, 320, 3], 1000 labels."""

  name = "random_images"
  num_classes = NUM_CLASSES

  def __init__(self, n, seed=0):
    rng = np.random.RandomState(seed)
    self.images = rng.randint(0, 256, (n, 256, 320, 3)).astype(np.uint8)
    self.labels = rng.randint(0, NUM_CLASSES, (n,)).astype(np.int64)
    self.image_shape = self.images.shape[1:]

  def prepare(self):
    pass

  def num_examples(self, split):
    del split
    return len(self.images)

  def as_dataset(self, split, *, shuffle_files=False, seed=0, input_context=None):
    del split, shuffle_files, seed, input_context
    ds = tf.data.Dataset.from_tensor_slices(
        {"image": self.images, "label": self.labels})
    return ds.enumerate().map(lambda i, f: dict(f, index=i))


def task_config(task, trunk, last_relu, width):
  """Gin for one row: the task's ImageNet settings and the trunk."""
  include = ("supervised" if task == "supervised" else
             f"{task}_imagenet")
  lines = [f"get_model.name = '{trunk}'", f"get_model.width = {width}",
           f"get_model.last_relu = {last_relu}"]
  path = os.path.join(ROOT, "configs", "common", f"{include}.gin")
  if os.path.exists(path):
    lines.insert(0, f"include '{path}'")
  return "\n".join(lines)


def fixed_batch(task, images_per_step):
  """One training batch of `task`'s pipeline, repeated: no input cost."""
  data = RandomImages(max(images_per_step, 8))
  ds = input_pipeline.make_dataset(
      data, "train", task.preprocess(task_lib.TRAIN), images_per_step,
      training=True, seed=0, cache=False)
  return next(iter(ds))


def network_inputs(task, batch):
  """Network inputs per step: images x copies (or x 9 patches)."""
  shape = batch["image"].shape
  return int(np.prod(shape[:-3]))


def input_size(batch):
  return int(batch["image"].shape[-2])


class OurStep:
  """The project's loop around `task.compute_loss`, on a fixed batch."""

  def __init__(self, task, batch, images_per_step, dtype, jit, steps):
    self.steps = steps
    strategy = tf.distribute.get_strategy()
    with precision_lib.policy_scope(dtype):
      keras.utils.set_random_seed(0)
      model = task.build_model(0)
      task.compute_loss(model, {k: v[:1] for k, v in batch.items()}, False)
      optimizer = precision_lib.wrap_optimizer(
          keras.optimizers.SGD(LR, momentum=0.9), dtype)
    optimizer.build(model.trainable_variables)
    self.model = model
    self.loop = loop_lib.Loop(
        strategy=strategy, model=model, optimizer=optimizer,
        loss_fn=lambda b: task.compute_loss(model, b, True),
        dataset_fn=lambda ctx, start: tf.data.Dataset.from_tensors(
            batch).repeat(),
        total_steps=10**9, global_batch_size=images_per_step,
        steps_per_loop=steps, ckpt_dir=tempfile.mkdtemp(),
        summary_writer=tf.summary.create_noop_writer(),
        schedule=lambda step: LR, metrics=task.make_metrics(),
        update_metrics=task.update_metrics, checkpoint_secs=None,
        jit_compile=jit, log=lambda _: None)

  def run(self):
    """Seconds for `steps` steps (one compiled loop)."""
    t0 = time.perf_counter()
    self.loop.train(self.loop.step + self.steps)
    return time.perf_counter() - t0


class KerasReference:
  """keras.applications.ResNet50 trained by a plain compiled step."""

  def __init__(self, inputs_per_step, size, dtype, jit, steps):
    self.steps = steps
    with precision_lib.policy_scope(dtype):
      keras.utils.set_random_seed(0)
      self.model = keras.applications.ResNet50(
          weights=None, input_shape=(size, size, 3), classes=NUM_CLASSES,
          classifier_activation=None)
      self.optimizer = precision_lib.wrap_optimizer(
          keras.optimizers.SGD(LR, momentum=0.9), dtype)
    self.optimizer.build(self.model.trainable_variables)
    rng = np.random.RandomState(0)
    self.images = tf.constant(rng.uniform(-1, 1, (inputs_per_step, size, size, 3)),
                              tf.float32)
    self.labels = tf.constant(rng.randint(0, NUM_CLASSES, inputs_per_step))
    self._step = tf.function(self._train_step, jit_compile=jit)

  def _train_step(self, images, labels):
    variables = self.model.trainable_variables
    with tf.GradientTape() as tape:
      logits = tf.cast(self.model(images, training=True), tf.float32)
      loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
          labels, logits, from_logits=True))
      scaled = precision_lib.scale_loss(self.optimizer, loss)
    grads = tape.gradient(scaled, variables)
    self.optimizer.apply_gradients(zip(grads, variables))
    return loss

  @tf.function
  def _loop(self, n):
    for _ in tf.range(n):
      self._step(self.images, self.labels)

  def run(self):
    t0 = time.perf_counter()
    self._loop(tf.constant(self.steps))
    return time.perf_counter() - t0


def matmul_flops_per_sec(dtype, n=2048, repeats=10):
  """Dense [n, n] x [n, n] products per second on this device, in FLOP/s.

  The best of five timings: the machine's rate, not its load at the moment.
  """
  a = tf.random.stateless_normal([n, n], seed=[0, 1], dtype=tf.float32)
  a = tf.cast(a, dtype)

  @tf.function
  def chain(x):
    for _ in range(repeats):
      x = tf.matmul(x, a) * tf.cast(1.0 / n, dtype)
    return x

  chain(a).numpy()
  times = []
  for _ in range(5):
    t0 = time.perf_counter()
    chain(a).numpy()
    times.append(time.perf_counter() - t0)
  return 2 * n**3 * repeats / min(times)


def alternate(ours, ref, rounds):
  """Median seconds per run of each, run alternately after one warm-up each."""
  ours.run()
  if ref is not None:
    ref.run()
  a, b = [], []
  for _ in range(rounds):
    a.append(ours.run())
    if ref is not None:
      b.append(ref.run())
  return statistics.median(a), (statistics.median(b) if b else None)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--tasks", nargs="+", default=["rotation", "supervised"])
  parser.add_argument("--trunks", nargs="+", default=None,
                      help="e.g. resnet50_v1 revnet50- (trailing '-': no last "
                           "ReLU); default all six of Table 1")
  parser.add_argument("--widths", type=int, nargs="+", default=[4])
  parser.add_argument("--batch", type=int, default=4,
                      help="source images per step (rotation: x4 inputs, "
                           "exemplar x8, patch tasks x9 patches)")
  parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"],
                      choices=["float32", "bfloat16", "float16"])
  parser.add_argument("--jit", choices=["off", "on", "both"], default="off")
  parser.add_argument("--steps", type=int, default=2, help="steps per timed run")
  parser.add_argument("--rounds", type=int, default=3)
  parser.add_argument("--no_reference", action="store_true")
  args = parser.parse_args()
  tf.get_logger().setLevel("ERROR")  # one retracing warning per row

  trunks = TRUNKS
  if args.trunks:
    trunks = [(t.rstrip("-"), not t.endswith("-")) for t in args.trunks]
  jits = {"off": [False], "on": [True], "both": [False, True]}[args.jit]
  device = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
  cores = len(os.sched_getaffinity(0))
  peak = {p: matmul_flops_per_sec(tf.float32 if p == "float32" else p)
          for p in args.precisions}
  print(f"Device: {device} ({cores} cores visible); dense matmul peak "
        + ", ".join(f"{p} {v / 1e12:.2f} TFLOP/s" for p, v in peak.items()))
  print(f"{args.batch} source images per step, {args.steps} steps per run, "
        f"median of {args.rounds} alternated runs.")
  print("| task | trunk | k | px | precision | XLA | inputs/s | images/s | "
        "Keras ResNet50 inputs/s | ours / Keras | TFLOP/s | of matmul peak |")
  print("| --- | --- | ---: | ---: | --- | --- | ---: | ---: | ---: | ---: "
        "| ---: | ---: |")
  task_lib.task_names()
  for task_name in args.tasks:
    for trunk, last_relu in trunks:
      if trunk == "resnet50_v1" and not last_relu:
        continue
      for width in args.widths:
        gin.clear_config()
        config_lib.parse([], bindings=[task_config(task_name, trunk,
                                                   last_relu, width)])
        # Exemplar's triplets need another source image for negatives, and
        # its mining groups can be no larger than the batch.
        images_per_step = max(args.batch, 2) if task_name == "exemplar" else args.batch
        groups = (dict(mining_group_images=min(8, images_per_step))
                  if task_name == "exemplar" else {})
        task = task_lib.get_task(task_name, num_classes=NUM_CLASSES, **groups)
        batch = fixed_batch(task, images_per_step)
        inputs = network_inputs(task, batch)
        size = input_size(batch)
        fwd = flops_lib.count_flops(
            trunk, width, image_size=size, num_classes=None,
            patch_mode=task_name in PATCH_TASKS)
        for dtype in args.precisions:
          for jit in jits:
            ours = OurStep(task, batch, images_per_step, dtype, jit, args.steps)
            ref = (None if args.no_reference else
                   KerasReference(inputs, size, dtype, jit, args.steps))
            t_ours, t_ref = alternate(ours, ref, args.rounds)
            rate = inputs * args.steps / t_ours
            ref_rate = inputs * args.steps / t_ref if t_ref else None
            achieved = 3 * fwd * rate
            name = trunk + ("" if last_relu else "(-)")
            print(f"| {task_name} | {name} | {width} | {size} | {dtype} | "
                  f"{'on' if jit else 'off'} | {rate:.2f} | "
                  f"{rate * images_per_step / inputs:.2f} | "
                  f"{ref_rate:.1f} | {rate / ref_rate:.2f} | "
                  if ref_rate else
                  f"| {task_name} | {name} | {width} | {size} | {dtype} | "
                  f"{'on' if jit else 'off'} | {rate:.2f} | "
                  f"{rate * images_per_step / inputs:.1f} | - | - | ",
                  end="")
            print(f"{achieved / 1e12:.3f} | {100 * achieved / peak[dtype]:.0f}% |",
                  flush=True)
            del ours, ref
            keras.backend.clear_session()


if __name__ == "__main__":
  main()
