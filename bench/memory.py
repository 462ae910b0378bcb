"""Peak memory and step time of training steps with and without memory saving.

`memory_saving.mode` (models/recompute.py) trades compute for activation
memory: 'recompute' keeps only each block's input and recomputes the block
in the backward pass, 'reversible' (RevNet50 only) keeps only what is stored
anyway and rebuilds every unit's input from its output. This bench runs SGD
training steps (momentum 0.9, weight decay, 4 classes; the forward and
backward pass, one tf.function) of RevNet50 in the three modes and of
ResNet50 v2 in 'none' and 'recompute', each in a fresh subprocess, and
prints per run:

  peak      the process's peak memory during the measured steps: peak RSS
            (VmHWM, reset after the warm-up) on CPU; on a GPU the device
            allocator's peak (tf.config.experimental.get_memory_info).
  step      the peak's growth over what the process held before the steps
            (model, optimizer slots, the traced function): the step's
            activations and gradients, the part memory saving acts on.
  time      the fastest measured step (the first one at full batch also sets
            up the kernels).

and the ratios of `step` and `time` to the same trunk's 'none' run of this
bench. The warm-up step runs one image, so tracing and graph optimisation
happen before the baseline; freed heap memory is then handed back to the OS
(malloc_trim), or the baseline would count it and the steps reuse it unseen.

Usage:
  python bench/memory.py                                 # k=16, 128x128, batch 16
  python bench/memory.py --width 4 --image_size 224 --batch 32 --steps 3
"""
import argparse
import ctypes
import json
import os
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MB = 2.0 ** 20
RUNS = (("revnet50", "none"), ("revnet50", "recompute"),
        ("revnet50", "reversible"), ("resnet50_v2", "none"),
        ("resnet50_v2", "recompute"))


def proc_status_bytes(field):
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) * 1024
  raise RuntimeError(f"no {field} in /proc/self/status (Linux only)")


def reset_peak_rss():
  """Restarts VmHWM from the current RSS (Linux >= 4.0: clear_refs 5)."""
  with open("/proc/self/clear_refs", "w") as f:
    f.write("5")


def release_free_heap():
  """Hands freed malloc memory back to the OS, so RSS is what is live."""
  try:
    ctypes.CDLL("libc.so.6").malloc_trim(0)
  except (OSError, AttributeError):
    pass  # Not glibc: the baseline may include some freed memory.


def child(args):
  """One trunk and mode in this process; prints a JSON line of measurements."""
  import gin
  import keras
  import numpy as np
  import tensorflow as tf
  import models

  gpu = bool(tf.config.list_physical_devices("GPU"))
  gin.bind_parameter("memory_saving.mode", args.mode)
  keras.utils.set_random_seed(0)
  model = models.get_model(args.model, width=args.width, num_classes=4)
  optimizer = keras.optimizers.SGD(0.01, momentum=0.9)
  optimizer.build(model.trainable_variables)
  variables = model.trainable_variables

  @tf.function(input_signature=[
      tf.TensorSpec([None, args.image_size, args.image_size, 3], tf.float32),
      tf.TensorSpec([None], tf.int32)])
  def step(images, labels):
    with tf.GradientTape() as tape:
      logits, _ = model(images, training=True)
      loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
          labels, logits)) + tf.add_n(model.losses)
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  rng = np.random.RandomState(0)
  images = tf.constant(rng.rand(args.batch, args.image_size, args.image_size,
                                3).astype(np.float32))
  labels = tf.constant(rng.randint(0, 4, args.batch).astype(np.int32))
  step(images[:1], labels[:1])  # Trace and optimise the graph.
  release_free_heap()
  if gpu:
    tf.config.experimental.reset_memory_stats("GPU:0")
    base = tf.config.experimental.get_memory_info("GPU:0")["current"]
  else:
    base = proc_status_bytes("VmRSS")
    reset_peak_rss()
  seconds = []
  for _ in range(args.steps):
    t0 = time.perf_counter()
    loss = float(step(images, labels))
    seconds.append(time.perf_counter() - t0)
  peak = (tf.config.experimental.get_memory_info("GPU:0")["peak"] if gpu
          else proc_status_bytes("VmHWM"))
  print(json.dumps(dict(model=args.model, mode=args.mode, device="GPU" if gpu else "CPU",
                        peak_mb=peak / MB, step_mb=(peak - base) / MB,
                        seconds=min(seconds), loss=loss)))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--width", type=int, default=16)
  parser.add_argument("--image_size", type=int, default=128)
  parser.add_argument("--batch", type=int, default=16)
  parser.add_argument("--steps", type=int, default=2)
  parser.add_argument("--models", nargs="+", default=["revnet50", "resnet50_v2"],
                      help="trunks to measure (revnet50 also runs 'reversible')")
  parser.add_argument("--model", help=argparse.SUPPRESS)  # one run, in a child
  parser.add_argument("--mode", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.mode:
    return child(args)
  print(f"k={args.width}, {args.image_size}x{args.image_size} px, batch {args.batch}, "
        f"{args.steps} measured steps; each run in its own process", flush=True)
  print(f"{'trunk':12s} {'mode':10s} {'peak MiB':>9s} {'step MiB':>9s} "
        f"{'x none':>7s} {'time s':>7s} {'x none':>7s}", flush=True)
  reference = {}
  for model, mode in RUNS:
    if model not in args.models:
      continue
    out = subprocess.run(
        [sys.executable, os.path.abspath(__file__), f"--model={model}", f"--mode={mode}"]
        + [f"--{k}={getattr(args, k)}" for k in ("width", "image_size", "batch", "steps")],
        check=True, capture_output=True, text=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    ref = reference.setdefault(model, r)
    print(f"{model:12s} {mode:10s} {r['peak_mb']:9.0f} {r['step_mb']:9.0f} "
          f"{r['step_mb'] / ref['step_mb']:7.2f} {r['seconds']:7.2f} "
          f"{r['seconds'] / ref['seconds']:7.2f}  ({r['device']}, loss {r['loss']:.4f})",
          flush=True)


if __name__ == "__main__":
  main()
