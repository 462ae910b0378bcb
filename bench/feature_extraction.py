"""Feature extraction throughput vs the trunk's plain forward throughput.

Reference: the compiled trunk forward (`model(x, training=False)`) over batches
already preprocessed and held in memory, i.e. the compute alone. Measured: a
full extraction into the feature cache (read, parse, preprocess, forward,
pool, copy to host, write to disk and fsync) of the same split with the same
batch size. Both run in this process, alternating, --repeats times each; the
issue's target is a ratio >= 0.9. Printed per trunk: the ratio of the best
times, the median of the per-repeat ratios (the machines are noisy), and the
extraction's start (building the pipeline until the first batch is read),
a once-per-pass cost that a short pass cannot amortise.

On a 2-core CPU the input pipeline runs on the same cores as the trunk, so
the ratio depends on how heavy the trunk is next to the pipeline: the default
sweep goes from the demo trunk (0.01 GFLOP per image), on the demo's largest
extraction (train, 55,000 images) and on test (10,000 images, about one
second of forward), to a width-2 trunk at 64 px. The input pipeline alone is
timed too, with its ops run once per batch and once per example.

Usage:
  python bench/feature_extraction.py                  # ResNet50 v2, four rows
  python bench/feature_extraction.py --trunks 2x64:train --layers pre_logits,block3
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
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from datasets import input_pipeline  # noqa: E402
from datasets import registry  # noqa: E402
from evaluation import feature_cache  # noqa: E402
from evaluation import trunks  # noqa: E402
from self_supervision import task as task_lib  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--arch", default="resnet50_v2")
  parser.add_argument("--trunks", default="1x32:train,1x32,1x64,2x64",
                      help="comma-separated WIDTHxSIZE[:SPLIT] trunks to time")
  parser.add_argument("--split", default="test",
                      help="the split of trunks that name none")
  parser.add_argument("--layers", default="pre_logits")
  parser.add_argument("--batch", type=int, default=500)
  parser.add_argument("--repeats", type=int, default=5)
  args = parser.parse_args()

  task_lib.task_names()  # registers the tasks' gin names
  rows = []
  for spec in args.trunks.split(","):
    trunk, _, split = spec.partition(":")
    width, size = trunk.split("x")
    rows.append(bench_one(args, int(width), int(size), split or args.split))
  print(f"\nratio extraction / forward (target >= 0.9), batch {args.batch}, "
        f"layers {args.layers}, {args.repeats} repeats:")
  for r in rows:
    print(f"  {args.arch} width {r['width']:g} at {r['size']:3d}px, {r['split']:5s}"
          f" ({r['n']:5d} images): forward {r['forward']:6.0f} img/s, extraction "
          f"{r['extraction']:6.0f} img/s, ratio {r['ratio']:.3f} (median "
          f"{r['median_ratio']:.3f}), start {1000 * r['start']:.0f} ms; input "
          f"pipeline alone {r['pipe'][True]:.0f} img/s per batch, "
          f"{r['pipe'][False]:.0f} per example")


def bench_one(args, width, size, split):
  """Throughputs (img/s), ratios and the start latency (s) for one trunk."""
  gin.clear_config()
  gin.parse_config([
      f"get_model.name = '{args.arch}'", f"get_model.width = {width}",
      f"rotation.pp_representation = 'decode|resize({size})|value_range(-1, 1)'"])
  dataset = registry.get_dataset("fashion_mnist")
  dataset.prepare()
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  model = task.make_model(dataset, seed=0)
  trunk = trunks.random_init(task, model, seed=0)
  layers = args.layers.split(",")
  n = dataset.num_examples(split)
  pp = task.preprocess(task_lib.REPRESENTATION)

  batches = [b["image"] for b in input_pipeline.make_dataset(
      dataset, split, task.preprocess(task_lib.REPRESENTATION),
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
    shutil.rmtree(root, ignore_errors=True)  # the last repeat's entry: a miss
    t0 = time.perf_counter()
    cache.get(task, model, dataset, split, layers, trunk=trunk.fingerprint,
              batch_size=args.batch, log=lambda _: None)
    return time.perf_counter() - t0

  def start():
    """Building the extraction's pipeline and reading its first batch."""
    t0 = time.perf_counter()
    ds, _ = input_pipeline.make_eval_batches(dataset, split, pp, args.batch)
    next(iter(ds))
    return time.perf_counter() - t0

  extraction()  # trace and warm the input pipeline
  times = {"forward": [], "extract": [], "start": []}
  for _ in range(args.repeats):
    times["forward"].append(plain_forward())
    times["extract"].append(extraction())
    times["start"].append(start())
  shutil.rmtree(root, ignore_errors=True)
  fwd, ext = min(times["forward"]), min(times["extract"])
  print(f"{args.arch} width {width:g} at {size}px, {split}, {n} images: forward "
        f"{_rounded(times['forward'])}, extraction {_rounded(times['extract'])}"
        f" s, start of extraction {_rounded(times['start'])} s", flush=True)

  def pipeline(batched):
    t0 = time.perf_counter()
    for _ in input_pipeline.make_dataset(dataset, split, pp, args.batch,
                                         training=False,
                                         batch_preprocessing=batched):
      pass
    return time.perf_counter() - t0

  pipe = {batched: n / min(pipeline(batched) for _ in range(args.repeats))
          for batched in (True, False)}
  return dict(width=width, size=size, split=split, n=n, forward=n / fwd,
              extraction=n / ext, ratio=fwd / ext,
              median_ratio=float(np.median(np.divide(times["forward"],
                                                     times["extract"]))),
              start=float(np.median(times["start"])), pipe=pipe)


def _rounded(times):
  return [round(t, 3) for t in times]


if __name__ == "__main__":
  main()
