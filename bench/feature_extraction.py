"""Feature extraction throughput vs the trunk's plain forward throughput.

Reference: the compiled trunk forward (`model(x, training=False)`) over batches
already preprocessed and held in memory, i.e. the compute alone. Measured: a
full extraction into the feature cache (read, decode, preprocess, forward,
pool, copy to host, write to disk) of the same split with the same batch
size. Both run in this process, alternating, best of --repeats each; the
issue's target is a ratio >= 0.9.

On a 2-core CPU the input pipeline (decode, resize) runs on the same cores
as the trunk, so the ratio depends on how heavy the trunk is next to the
pipeline: the default sweep goes from the demo trunk (0.01 GFLOP per image)
to a width-2 trunk at 64 px. On a GPU or TPU the pipeline runs beside the
trunk instead. The input pipeline alone is timed too, with its ops run once
per batch (the default) and once per example, as what it costs next to the
trunk explains the ratio.

Usage:
  python bench/feature_extraction.py                  # ResNet50 v2, three sizes
  python bench/feature_extraction.py --trunks 2x64 --layers pre_logits,block3
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import gin  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import input_pipeline  # noqa: E402
from datasets import registry  # noqa: E402
from evaluation import feature_cache  # noqa: E402
from evaluation import trunks  # noqa: E402
from self_supervision import task as task_lib  # noqa: E402
from self_supervision import trainer  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", default="resnet50_v2")
  parser.add_argument("--trunks", default="1x32,1x64,2x64",
                      help="comma-separated WIDTHxSIZE trunks to time")
  parser.add_argument("--split", default="test")
  parser.add_argument("--layers", default="pre_logits")
  parser.add_argument("--batch", type=int, default=500)
  parser.add_argument("--repeats", type=int, default=3)
  args = parser.parse_args()

  task_lib.task_names()  # registers the tasks' gin names
  rows = []
  for spec in args.trunks.split(","):
    width, size = spec.split("x")
    rows.append(bench_one(args, int(width), int(size)))
  print(f"\nratio extraction / forward (target >= 0.9), {args.split} split, "
        f"batch {args.batch}, layers {args.layers}:")
  for width, size, fwd, ext, pipe in rows:
    print(f"  {args.arch} width {width:g} at {size:3d}px: forward {fwd:7.0f} img/s,"
          f" extraction {ext:7.0f} img/s, ratio {ext / fwd:.3f}; input pipeline"
          f" alone {pipe[True]:.0f} img/s per batch, {pipe[False]:.0f} per example")


def bench_one(args, width, size):
  """(width, size, forward img/s, extraction img/s) for one trunk."""
  gin.clear_config()
  gin.parse_config([
      f"get_model.name = '{args.arch}'", f"get_model.width = {width}",
      f"rotation.pp_eval = 'decode|resize({size})|value_range(-1, 1)'"])
  dataset = registry.get_dataset("fashion_mnist")
  dataset.prepare()
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  model = trainer.build_model(task, dataset, "train", seed=0)
  trunk = trunks.random_init(task, model, seed=0)
  layers = args.layers.split(",")
  n = dataset.num_examples(args.split)

  batches = [b["image"] for b in input_pipeline.make_dataset(
      dataset, args.split, task.preprocess(task_lib.REPRESENTATION),
      args.batch, training=False)]
  forward = tf.function(lambda x: model(x, training=False)[0])
  forward(batches[0])  # trace (a last partial batch traces once more)
  forward(batches[-1])

  def plain_forward():
    t0 = time.perf_counter()
    for x in batches:
      out = forward(x)
    out.numpy()
    return time.perf_counter() - t0

  root = tempfile.mkdtemp(prefix="bench_features_")
  cache = feature_cache.FeatureCache(root)

  def extraction():
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    cache.get(task, model, dataset, args.split, layers, trunk=trunk.fingerprint,
              batch_size=args.batch, log=lambda _: None)
    return time.perf_counter() - t0

  extraction()  # trace and warm the input pipeline
  times = {"forward": [], "extract": []}
  for _ in range(args.repeats):
    times["forward"].append(plain_forward())
    times["extract"].append(extraction())
  shutil.rmtree(root, ignore_errors=True)
  fwd, ext = min(times["forward"]), min(times["extract"])
  print(f"{args.arch} width {width:g} at {size}px, {n} images: forward "
        f"{times['forward']}, extraction {times['extract']} s", flush=True)
  pp = task.preprocess(task_lib.REPRESENTATION)

  def pipeline(batched):
    t0 = time.perf_counter()
    for _ in input_pipeline.make_dataset(dataset, args.split, pp, args.batch,
                                         training=False,
                                         batch_preprocessing=batched):
      pass
    return time.perf_counter() - t0

  pipe = {batched: n / min(pipeline(batched) for _ in range(args.repeats))
          for batched in (True, False)}
  return width, size, n / fwd, n / ext, pipe


if __name__ == "__main__":
  main()
