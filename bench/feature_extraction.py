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

--precision float32,bfloat16 times each trunk in each compute dtype
(`extraction.precision`, evaluation/representations.py), alternating within
every repeat so both see the same machine load, and prints each dtype's
speed-up over the first. --accuracy answers whether the faster features are
as good: the Table 1 protocol (L-BFGS on pre_logits, configs/
demo_fashion_mnist.gin's settings) on Fashion-MNIST features of the demo's
random-init trunk, extracted in each dtype (--fraction of train and val for
the fit; test whole), with the features' relative difference.

Usage:
  python bench/feature_extraction.py                  # ResNet50 v2, four rows
  python bench/feature_extraction.py --trunks 2x64:train --layers pre_logits,block3
  python bench/feature_extraction.py --trunks 1x32,2x64 --precision float32,bfloat16
  python bench/feature_extraction.py --accuracy --precision float32,bfloat16
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
from evaluation import linear_eval  # noqa: E402
from evaluation import representations  # noqa: E402
from evaluation import trunks  # noqa: E402
from self_supervision import task as task_lib  # noqa: E402
from training import config as config_lib  # noqa: E402

DEMO_CONFIG = "configs/demo_fashion_mnist.gin"


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
  parser.add_argument("--precision", default="float32",
                      help="comma-separated compute dtypes of the trunk "
                      f"({', '.join(representations.COMPUTE_DTYPES)}); the "
                      "first is the one the others are compared with")
  parser.add_argument("--accuracy", action="store_true",
                      help="linear L-BFGS top-1 of the demo's random-init "
                      "trunk with features of each --precision, not speed")
  parser.add_argument("--fraction", type=float, default=1.0,
                      help="with --accuracy: the class-balanced part of "
                      "train and val the solver fits (linear_eval.fraction)")
  parser.add_argument("--seed", type=int, default=0,
                      help="with --accuracy: the random-init trunk's seed")
  args = parser.parse_args()
  dtypes = args.precision.split(",")
  for d in dtypes:
    if d not in representations.COMPUTE_DTYPES:
      parser.error(f"--precision {d!r}: use {representations.COMPUTE_DTYPES}")

  task_lib.task_names()  # registers the tasks' gin names
  if args.accuracy:
    accuracy(args, dtypes)
    return
  rows = []
  for spec in args.trunks.split(","):
    trunk, _, split = spec.partition(":")
    width, size = trunk.split("x")
    rows.append(bench_one(args, int(width), int(size), split or args.split,
                          dtypes))
  print(f"\nratio extraction / forward (target >= 0.9), batch {args.batch}, "
        f"layers {args.layers}, {args.repeats} repeats:")
  for r in rows:
    for d in dtypes:
      t = r[d]
      tag = f" [{d}]" if len(dtypes) > 1 else ""
      print(f"  {args.arch} width {r['width']:g} at {r['size']:3d}px, "
            f"{r['split']:5s} ({r['n']:5d} images){tag}: forward "
            f"{t['forward']:6.0f} img/s, extraction {t['extraction']:6.0f} "
            f"img/s, ratio {t['ratio']:.3f} (median {t['median_ratio']:.3f}), "
            f"start {1000 * r['start']:.0f} ms; input pipeline alone "
            f"{r['pipe'][True]:.0f} img/s per batch, {r['pipe'][False]:.0f} "
            f"per example")
  if len(dtypes) > 1:
    print(f"\nspeed-up over {dtypes[0]} (best times; median of the "
          f"per-repeat ratios):")
    for r in rows:
      for d in dtypes[1:]:
        print(f"  {args.arch} width {r['width']:g} at {r['size']:3d}px, "
              f"{r['split']:5s}, {d}: extraction x{r[d]['speedup']:.2f} "
              f"(median x{r[d]['median_speedup']:.2f}), forward "
              f"x{r[d]['forward_speedup']:.2f}")


def bench_one(args, width, size, split, dtypes=("float32",)):
  """Throughputs (img/s) and ratios per compute dtype and the start latency
  (s) for one trunk."""
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
  forwards = {}
  for d in dtypes:
    net = (model if d == "float32" else representations.precision_twin(
        task, model, dataset, split, d))
    forwards[d] = tf.function(lambda x, net=net: net(x, training=False)[0])
    forwards[d](batches[0])  # trace (a last partial batch traces once more)
    forwards[d](batches[-1])

  def plain_forward(d):
    t0 = time.perf_counter()
    for x in batches:
      out = forwards[d](x)
    out.numpy()
    return time.perf_counter() - t0

  root = tempfile.mkdtemp(prefix="bench_features_")
  # One cache per dtype: each keeps its own extractor (and twin) traced.
  caches = {d: feature_cache.FeatureCache(os.path.join(root, d))
            for d in dtypes}

  def extraction(d):
    # The last repeat's entry: a miss.
    shutil.rmtree(caches[d].root, ignore_errors=True)
    t0 = time.perf_counter()
    caches[d].get(task, model, dataset, split, layers, trunk=trunk.fingerprint,
                  batch_size=args.batch, compute_dtype=d, log=lambda _: None)
    return time.perf_counter() - t0

  def start():
    """Building the extraction's pipeline and reading its first batch."""
    t0 = time.perf_counter()
    ds, _ = input_pipeline.make_eval_batches(dataset, split, pp, args.batch)
    next(iter(ds))
    return time.perf_counter() - t0

  for d in dtypes:
    extraction(d)  # trace and warm the input pipeline
  times = {d: {"forward": [], "extract": []} for d in dtypes}
  starts = []
  for _ in range(args.repeats):
    for d in dtypes:  # alternated: every dtype sees the same machine load
      times[d]["forward"].append(plain_forward(d))
      times[d]["extract"].append(extraction(d))
    starts.append(start())
  shutil.rmtree(root, ignore_errors=True)
  for d in dtypes:
    tag = f" [{d}]" if len(dtypes) > 1 else ""
    print(f"{args.arch} width {width:g} at {size}px, {split}, {n} images{tag}: "
          f"forward {_rounded(times[d]['forward'])}, extraction "
          f"{_rounded(times[d]['extract'])} s, start of extraction "
          f"{_rounded(starts)} s", flush=True)

  def pipeline(batched):
    t0 = time.perf_counter()
    for _ in input_pipeline.make_dataset(dataset, split, pp, args.batch,
                                         training=False,
                                         batch_preprocessing=batched):
      pass
    return time.perf_counter() - t0

  pipe = {batched: n / min(pipeline(batched) for _ in range(args.repeats))
          for batched in (True, False)}
  row = dict(width=width, size=size, split=split, n=n,
             start=float(np.median(starts)), pipe=pipe)
  base = times[dtypes[0]]
  for d in dtypes:
    t = times[d]
    fwd, ext = min(t["forward"]), min(t["extract"])
    row[d] = dict(
        forward=n / fwd, extraction=n / ext, ratio=fwd / ext,
        median_ratio=float(np.median(np.divide(t["forward"], t["extract"]))),
        speedup=min(base["extract"]) / ext,
        median_speedup=float(np.median(np.divide(base["extract"],
                                                 t["extract"]))),
        forward_speedup=min(base["forward"]) / fwd)
  return row


def accuracy(args, dtypes):
  """Prints linear_lbfgs top-1/top-5 on features of each compute dtype.

  The trunk is the demo's at initialisation (--seed), so every dtype reads
  the same weights; each dtype's features go to their own cache (a fresh
  temporary folder) and are extracted with `extraction.precision` bound to
  it, i.e. through the path a run takes.
  """
  gin.clear_config()
  # experiment.* and train.* configure a training, which this bench does not
  # run (their modules are not imported): skipped here.
  config_lib.parse([DEMO_CONFIG], skip_unknown=True, finalize=False)
  dataset = registry.get_dataset("fashion_mnist")
  dataset.prepare()
  task = task_lib.get_task("rotation", num_classes=dataset.num_classes)
  model = task.make_model(dataset, seed=args.seed)
  trunk = trunks.random_init(task, model, seed=args.seed)
  root = tempfile.mkdtemp(prefix="bench_accuracy_")
  results, test_features = {}, {}
  try:
    for d in dtypes:
      gin.bind_parameter("extraction.precision", d)
      cache = feature_cache.FeatureCache(os.path.join(root, d))
      t0 = time.perf_counter()
      entry, = linear_eval.evaluate(trunk, dataset, fraction=args.fraction,
                                    cache=cache, log=print)
      entry["total_s"] = time.perf_counter() - t0
      results[d] = entry
      test_features[d] = feature_cache.read_splits(
          trunk, dataset, ["test"], ["pre_logits"], batch_size=500,
          cache=cache, log=lambda _: None)["test"][0]["pre_logits"]
  finally:
    gin.bind_parameter("extraction.precision", "float32")
  first = dtypes[0]
  exact = np.asarray(test_features[first], np.float64)
  print(f"\nlinear_lbfgs, random-init (seed {args.seed}) ResNet50 v2 width 1 "
        f"at 32 px, "
        f"pre_logits, Fashion-MNIST (fit on {100 * args.fraction:g}% of "
        f"train, L2 chosen on val, refit on train+val, scored on the whole "
        f"test split):")
  for d in dtypes:
    e = results[d]
    got = np.asarray(test_features[d], np.float64)
    rel = (np.linalg.norm(got - exact, axis=1)
           / np.maximum(np.linalg.norm(exact, axis=1), 1e-30))
    by_l2 = {k: round(v, 2)
             for k, v in e["hyperparameters"]["val_top1_by_l2"].items()}
    print(f"  {d:9s}: top-1 {e['top1']:.2f}% (vs {first} "
          f"{e['top1'] - results[first]['top1']:+.2f} points), top-5 "
          f"{e['top5']:.2f}%, l2 {e['hyperparameters']['l2']:g}, val top-1 "
          f"by l2 {by_l2}, extraction "
          f"{e['extract_time_s']:.1f} s, fit {e['fit_time_s']:.1f} s; test "
          f"features vs {first}: relative L2 difference median "
          f"{np.median(rel):.4f}, max {np.max(rel):.4f}")
  shutil.rmtree(root, ignore_errors=True)


def _rounded(times):
  return [round(t, 3) for t in times]


if __name__ == "__main__":
  main()
