"""Each task's ImageNet training input pipeline against what its train step consumes.

Measured: source images per second of a task's training pipeline alone
(`datasets.input_pipeline.make_dataset(..., training=True)`, the call the
trainer makes) on a stand-in of ImageNet, with tf.data and TF restricted to
one thread (tf.data private thread pool of 1, intra-op parallelism 1, TF
intra/inter-op threads 1). The per-core rate is source images per CPU-second
of this process, so that other work on a shared machine does not lower it;
the wall-clock rate is shown beside it, and CPU/wall near 1 says the one
thread got a core to itself.

The stand-in goes through the reader the ImageNet configs use: ILSVRC-2012
archives of generated JPEGs (a random size around ImageNet's average of
about 400x350, quality 90, smooth shapes plus texture noise so files weigh
about as much as real ones, ~100 KB) built into tfds's `imagenet2012` and
read as encoded bytes, so decoding costs what it costs on real data.

Estimated: the source images per second a train step consumes on one
H200-class GPU. A step is about 3 forward passes; forward FLOPs come from
models/flops.py for every network input a source image becomes (rotation 4
copies at 224, exemplar 8 crops at 224, jigsaw/relative patch location 9
patches of 64 in patch mode plus their head, supervised 1 image at 224),
for the cheapest trunk that configs/<task>/imagenet_*.gin configures (the
fastest step, so the hardest to feed), at --mfu of --peak_tflops. Override
per task with --step_images_per_sec task=rate.

Cores needed = step rate / per-core rate; "supply / demand" is what
--cores_available cores supply over what the step consumes (>= 1: enough);
the last column counts the task's configured trunks whose estimated step
those cores keep fed.

--breakdown also times every prefix of each pipeline per example (one core),
so the increments say which op costs what.

Usage:
  python bench/input_pipeline.py                        # 5 tasks, ~2.5 min
  python bench/input_pipeline.py --tasks exemplar jigsaw --seconds 20
  python bench/input_pipeline.py --breakdown --tasks jigsaw
  python bench/input_pipeline.py --all_cores            # no thread limits
  python bench/input_pipeline.py --step_images_per_sec rotation=3000 --mfu 0.3
"""
import argparse
import glob
import io
import os
import shutil
import sys
import tarfile
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TASKS = ("rotation", "exemplar", "jigsaw", "relative_patch_location", "supervised")
# The first synsets of tfds's label list; any would do.
SYNSETS = ("n01440764", "n01443537", "n01484850", "n01491361")
NUM_VAL_IMAGES = 4


def _set_one_thread(tf):
  """TF's own pools to one thread; must run before TF executes anything."""
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)


def _one_core_options(tf):
  options = tf.data.Options()
  options.threading.private_threadpool_size = 1
  options.threading.max_intra_op_parallelism = 1
  return options


# --- the stand-in ImageNet ---------------------------------------------------

def standin_jpeg(tf, rng, quality):
  """One ImageNet-like JPEG: (bytes, height, width).

  Smooth colour shapes (a bicubic upsampling of a few random pixels) plus
  mid-frequency blotches and pixel noise, mostly in luma as in photographs.
  Pure noise would weigh several times a real file and decode slower; pure
  gradients would weigh almost nothing.
  """
  h, w = int(rng.integers(250, 451)), int(rng.integers(300, 501))
  low = rng.uniform(0, 255, (1, rng.integers(3, 9), rng.integers(3, 9), 3))
  image = tf.image.resize(low.astype(np.float32), [h, w], method="bicubic")[0]
  mid = rng.normal(0, 25, (1, h // 8, w // 8, 3)).astype(np.float32)
  image = image + tf.image.resize(mid, [h, w])[0]
  image = (image.numpy() + rng.normal(0, 32, (h, w, 1))
           + rng.normal(0, 16, (h, w, 3)))
  data = tf.io.encode_jpeg(np.clip(image, 0, 255).astype(np.uint8),
                           quality=quality).numpy()
  return data, h, w


def _add_file(tar, name, data):
  info = tarfile.TarInfo(name)
  info.size = len(data)
  tar.addfile(info, io.BytesIO(data))


def write_archives(tf, manual_dir, num_images, seed, quality):
  """ILSVRC-2012-shaped archives; returns (mean KB, mean height, mean width)."""
  from datasets import imagenet
  os.makedirs(manual_dir, exist_ok=True)
  rng = np.random.default_rng(seed)
  stats = []
  with tarfile.open(os.path.join(manual_dir, imagenet.TRAIN_ARCHIVE), "w") as outer:
    for s, synset in enumerate(SYNSETS):
      inner_bytes = io.BytesIO()
      with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
        for i in range(s, num_images, len(SYNSETS)):
          data, h, w = standin_jpeg(tf, rng, quality)
          stats.append((len(data) / 1e3, h, w))
          _add_file(inner, f"{synset}_{i}.JPEG", data)
      _add_file(outer, f"{synset}.tar", inner_bytes.getvalue())
  with tarfile.open(os.path.join(manual_dir, imagenet.VAL_ARCHIVE), "w") as val:
    for i in range(1, NUM_VAL_IMAGES + 1):
      _add_file(val, f"ILSVRC2012_val_{i:08d}.JPEG", standin_jpeg(tf, rng, quality)[0])
  return tuple(np.mean(stats, axis=0))


def standin_imagenet(tf, folder, num_images, seed, quality):
  """The prepared `imagenet2012` dataset under `folder` (built once)."""
  from datasets import registry
  manual_dir = os.path.join(folder, "manual")
  stats = None
  if not os.path.isdir(manual_dir):
    stats = write_archives(tf, manual_dir, num_images, seed, quality)
  dataset = registry.get_dataset("imagenet2012", data_dir=os.path.join(folder, "tfds"),
                                 manual_dir=manual_dir, holdout=NUM_VAL_IMAGES)
  dataset.prepare()
  return dataset, stats


# --- what each task is configured to do --------------------------------------

def task_settings(task_name):
  """The task as its ImageNet configs set it up, and every trunk they name.

  Returns:
    (task, pp_train, global batch size, [(trunk name, width), ...]).
  """
  import gin
  from training import experiment  # noqa: F401  (the `experiment` configurable)
  from self_supervision import task as task_lib
  from training import config as config_lib

  paths = sorted(glob.glob(os.path.join(ROOT, "configs", task_name, "imagenet_*.gin")))
  if not paths:
    raise ValueError(f"No configs/{task_name}/imagenet_*.gin to read the pipeline from.")
  pipelines, trunks = set(), []
  task = batch_size = None
  for path in paths:
    task_lib.task_names()
    gin.clear_config()
    config_lib.parse([path])
    task = task_lib.get_task(task_name, num_classes=1000)
    pipelines.add((task.preprocess(task_lib.TRAIN), gin.query_parameter("train.batch_size")))
    trunks.append((gin.query_parameter("get_model.name"),
                   gin.query_parameter("get_model.width")))
  gin.clear_config()
  if len(pipelines) != 1:
    raise ValueError(f"{task_name}'s ImageNet configs differ in pp_train or batch size: "
                     f"{sorted(pipelines)}; bench them one by one.")
  (pp, batch_size), = pipelines
  return task, pp, batch_size, sorted(set(trunks))


def forward_flops(task, trunk, width, inputs, size):
  """Forward FLOPs per source image: `inputs` network inputs of size x size."""
  from models import flops
  from self_supervision import patch_task
  name = task.name
  if isinstance(task, patch_task.PatchTask):
    per_input = flops.count_flops(trunk, width, image_size=size, patch_mode=True,
                                  num_classes=task.embedding_size)
    # The head's two fully connected layers, on each combination of patches.
    if name == "jigsaw":
      rows, features = task.permutations_per_batch, patch_task.NUM_PATCHES
    else:
      rows, features = 8, 2
    fan_in = features * task.embedding_size
    head = rows * 2 * (fan_in * task.head_hidden
                       + task.head_hidden * task.num_pretext_classes)
    return inputs * per_input + head
  classes = {"rotation": 4, "exemplar": getattr(task, "embedding_size", None),
             "supervised": 1000}[name]
  return inputs * flops.count_flops(trunk, width, image_size=size, num_classes=classes)


# --- measurements -------------------------------------------------------------

def time_pipeline(tf, dataset, pp, batch_size, seconds, one_core):
  """Source images/s of make_dataset(train) after a warm-up: (per CPU-s, per s, CPU/wall)."""
  from datasets import input_pipeline
  ds = input_pipeline.make_dataset(dataset, "train", pp, batch_size, training=True,
                                   seed=0)
  if one_core:
    ds = ds.with_options(_one_core_options(tf))
  it = iter(ds)
  # Two batches: the first builds the functions and fills the shuffle buffer.
  for _ in range(2):
    element = next(it)
  count, wall, cpu = 0, time.perf_counter(), time.process_time()
  while True:
    element = next(it)
    count += int(element["image"].shape[0])
    elapsed = time.perf_counter() - wall
    if elapsed >= seconds and count >= 3 * batch_size:
      break
  cpu = time.process_time() - cpu
  return count / cpu, count / elapsed, cpu / elapsed, element["image"].shape


def time_prefixes(tf, dataset, pp, seconds, num_images):
  """Per-example CPU ms of every prefix of `pp` (one core): [(op, cumulative ms)]."""
  from datasets import preprocess_registry
  ops = preprocess_registry.get_preprocess_ops(pp, training=True)
  names = [name for name, _, _ in preprocess_registry.parse_pipeline(pp)]
  raw = dataset.as_dataset("train").take(num_images).cache()
  raw = raw.repeat().enumerate().map(
      lambda i, f: {"image": f["image"], "_rng": tf.stack([tf.constant(0, tf.int64), i])})
  results = []
  for k in range(1, len(ops) + 1):
    fn = preprocess_registry.compose(ops[:k])
    # One value of the output makes TF compute all of it; batching the
    # scalars keeps the per-element cost of the Python loop out.
    ds = raw.map(lambda f: tf.reshape(fn(f)["image"], [-1])[0],
                 num_parallel_calls=tf.data.AUTOTUNE).batch(16)
    ds = ds.with_options(_one_core_options(tf)).prefetch(1)
    it = iter(ds)
    next(it)
    count, wall, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - wall < seconds or count < 32:
      count += int(next(it).shape[0])
    results.append((names[k - 1], 1e3 * (time.process_time() - cpu) / count))
  return results


def parse_rates(pairs):
  rates = {}
  for pair in pairs:
    task, sep, rate = pair.partition("=")
    if not sep or task not in TASKS:
      raise SystemExit(f"--step_images_per_sec takes task=rate with a task among "
                       f"{', '.join(TASKS)}; got {pair!r}.")
    rates[task] = float(rate)
  return rates


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
  parser.add_argument("--seconds", type=float, default=12.0,
                      help="measuring time per task after the warm-up")
  parser.add_argument("--images", type=int, default=200, help="stand-in training JPEGs")
  parser.add_argument("--quality", type=int, default=90, help="their JPEG quality")
  parser.add_argument("--data_dir", default=None,
                      help="keep the stand-in here (reused when present); "
                           "default: a temporary folder, removed at the end")
  parser.add_argument("--all_cores", action="store_true",
                      help="no thread limits (the rate per CPU-second is still shown)")
  parser.add_argument("--breakdown", action="store_true",
                      help="also time every prefix of each pipeline, per example")
  parser.add_argument("--step_images_per_sec", nargs="*", default=[], metavar="TASK=RATE",
                      help="source images/s a train step consumes; default: estimated")
  parser.add_argument("--peak_tflops", type=float, default=400.0,
                      help="accelerator mixed-precision peak for the estimate")
  parser.add_argument("--mfu", type=float, default=0.4,
                      help="fraction of the peak a train step achieves")
  parser.add_argument("--cores_available", type=int, default=16)
  args = parser.parse_args(argv)
  given_rates = parse_rates(args.step_images_per_sec)

  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if not args.all_cores:
    _set_one_thread(tf)
  tf.get_logger().setLevel("ERROR")  # tfds's reader uses a deprecated op
  tfds.disable_progress_bar()

  folder = args.data_dir or tempfile.mkdtemp(prefix="bench_input_pipeline_")
  try:
    dataset, stats = standin_imagenet(tf, folder, args.images, 0, args.quality)
    rows, breakdowns = [], {}
    for name in args.tasks:
      task, pp, batch_size, trunks = task_settings(name)
      per_cpu_s, per_s, load, shape = time_pipeline(
          tf, dataset, pp, batch_size, args.seconds, not args.all_cores)
      inputs = int(np.prod(shape[1:-3])) if len(shape) > 4 else 1
      size = int(shape[-2])
      costs = sorted((forward_flops(task, t, k, inputs, size), f"{t} k={k}")
                     for t, k in trunks)
      fwd, trunk = costs[0]
      estimate = lambda flops: args.mfu * args.peak_tflops * 1e12 / (3 * flops)
      if name in given_rates:
        step_rate, source, fed = given_rates[name], "given", "-"
      else:
        step_rate, source = estimate(fwd), "est."
        fed = sum(args.cores_available * per_cpu_s >= estimate(f) for f, _ in costs)
        fed = f"{fed} of {len(costs)}"
      rows.append((name, pp, batch_size, inputs, size, trunk, fwd, step_rate, source,
                   per_cpu_s, per_s, load, fed))
      print(f"{name}: {per_cpu_s:.0f} images per CPU-s, {per_s:.0f}/s wall, "
            f"CPU/wall {load:.2f}", flush=True)
      if args.breakdown:
        breakdowns[name] = (pp, time_prefixes(tf, dataset, pp, args.seconds / 3,
                                              min(args.images, 64)))
  finally:
    if not args.data_dir:
      shutil.rmtree(folder, ignore_errors=True)

  print()
  print(f"Stand-in: {args.images} JPEGs through tfds imagenet2012 (encoded bytes)"
        + (f", mean {stats[1]:.0f}x{stats[2]:.0f} px, {stats[0]:.0f} KB, quality "
           f"{args.quality}" if stats else f", reused from {args.data_dir}") + ".")
  threads = ("all cores, no thread limits" if args.all_cores else
             "ONE thread (tf.data private pool 1, max intra-op 1, TF intra/inter-op 1)")
  print(f"Measured: pipeline alone, {threads}; per core = source images per CPU-second; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs.")
  print(f"Estimated: step rate = {args.mfu:.0%} of {args.peak_tflops:.0f} TFLOP/s / "
        f"(3 x forward FLOPs per source image), cheapest configured trunk "
        f"(unless given).")
  print()
  print("| task | batch | net inputs / image | trunk (cheapest configured) | "
        "fwd GFLOP / image | step images/s | pipeline images/s per core (measured) | "
        "wall images/s (CPU/wall) | cores needed | "
        f"{args.cores_available} cores supply / step demand | configured trunks "
        f"{args.cores_available} cores feed |")
  print("| --- | ---: | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
  for (name, pp, batch_size, inputs, size, trunk, fwd, step_rate, source, per_cpu_s,
       per_s, load, fed) in rows:
    needed = step_rate / per_cpu_s
    ratio = args.cores_available * per_cpu_s / step_rate
    verdict = "ok" if ratio >= 1 else "SHORT"
    print(f"| {name} | {batch_size} | {inputs} x {size}px | {trunk} | {fwd / 1e9:.1f} | "
          f"{step_rate:.0f} ({source}) | {per_cpu_s:.0f} | {per_s:.0f} ({load:.2f}) | "
          f"{needed:.1f} | {ratio:.2f} {verdict} | {fed} |")
  print()
  for name, pp, *_ in rows:
    print(f"- {name}: `{pp}`")
  for name, (pp, prefixes) in breakdowns.items():
    print()
    print(f"{name}, per example, one core (CPU ms; each op's share = its increment):")
    print("| op | cumulative ms | op ms |")
    print("| --- | ---: | ---: |")
    previous = 0.0
    for op, ms in prefixes:
      print(f"| {op} | {ms:.2f} | {ms - previous:.2f} |")
      previous = ms


if __name__ == "__main__":
  main()
