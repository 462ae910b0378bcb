"""Peak memory of the chunked L-BFGS fit against the in-memory fit.

The Table 1 protocol must fit feature matrices that do not fit in memory
(ImageNet k=16 `pre_logits`: 1.28M x 8192 floats = 42 GB): `linear_eval`
then wraps the on-disk cache in `ChunkedFeatures` and accumulates the
full-batch loss and gradient over chunks. This bench writes an N x D float32
feature file (default 800,000 x 1024, 3.1 GB) and, each in a fresh
subprocess, fits its first N/2 rows and all N rows chunked, and the first N/2
rows in memory (as `linear_eval` does below `max_in_memory_gb`). It prints
each fit's peak growth of anonymous memory (RssAnon, sampled every 2 ms; the
memory-mapped file's pages are page cache, not the process's) against the
matrix and chunk sizes: bounded by the chunk size means the chunked peak
stays put when N doubles. Also the chunked and in-memory fits' times and how
far apart their solutions are.

Usage:
  python bench/lbfgs_memory.py                       # chunks of 16,384 rows (64 MB)
  python bench/lbfgs_memory.py --rows 2000000 --dim 512 --chunk_rows 32768
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

MB = 2.0 ** 20


def rss_anon_bytes() -> int:
  with open("/proc/self/status") as f:
    for line in f:
      if line.startswith("RssAnon:"):
        return int(line.split()[1]) * 1024
  raise RuntimeError("no RssAnon in /proc/self/status (Linux only)")


class PeakSampler:
  """Highest RssAnon seen while the `with` block runs."""

  def __enter__(self):
    self.peak = rss_anon_bytes()
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    return self

  def _run(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, rss_anon_bytes())
      time.sleep(0.002)

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.peak = max(self.peak, rss_anon_bytes())


def write_features(folder, rows, dim, classes, seed=0):
  """features.npy [rows, dim] float32 and labels.npy, written in blocks."""
  rng = np.random.RandomState(seed)
  means = rng.randn(classes, dim).astype(np.float32) * 0.3
  labels = rng.randint(0, classes, size=rows).astype(np.int64)
  path = os.path.join(folder, "features.npy")
  out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32,
                                  shape=(rows, dim))
  for start in range(0, rows, 65536):
    y = labels[start:start + 65536]
    out[start:start + len(y)] = means[y] + rng.randn(len(y), dim).astype(
        np.float32)
  out.flush()
  del out
  np.save(os.path.join(folder, "labels.npy"), labels)
  return path


def child(args):
  """One fit in this process; prints a JSON line with its measurements."""
  import tensorflow as tf  # noqa: F401  (imported before the baseline)
  from evaluation import linear_eval
  from evaluation import logistic_regression as lr
  x = np.load(os.path.join(args.folder, "features.npy"), mmap_mode="r")
  y = np.load(os.path.join(args.folder, "labels.npy"))
  x, y = x[:args.rows], y[:args.rows]
  # Warm TF's runtime (thread pools, kernels) on a tiny problem first, so the
  # baseline holds everything but what the fit itself allocates.
  lr.fit(np.asarray(x[:256]), y[:256], args.classes, max_iter=2)
  base = rss_anon_bytes()
  with PeakSampler() as sampler:
    t0 = time.perf_counter()
    if args.mode == "chunked":
      features = linear_eval.as_features(x, max_in_memory_gb=0.0,
                                         chunk_rows=args.chunk_rows)
    else:
      # What linear_eval does under max_in_memory_gb: the cache's memmap as
      # an array (its pages are page cache, counted in neither mode).
      features = linear_eval.as_features(x, max_in_memory_gb=1e6,
                                         chunk_rows=None)
    model = lr.fit(features, y, args.classes, l2=1e-4, max_iter=args.max_iter)
    seconds = time.perf_counter() - t0
  print(json.dumps(dict(
      mode=args.mode, rows=args.rows, peak_growth_mb=(sampler.peak - base) / MB,
      seconds=seconds, iterations=model.iterations,
      objective=float(model.objective),
      weights=np.asarray(model.weights[:4, :4]).tolist())))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--rows", type=int, default=800_000)
  parser.add_argument("--dim", type=int, default=1024)
  parser.add_argument("--classes", type=int, default=10)
  parser.add_argument("--chunk_rows", type=int, default=16_384)
  parser.add_argument("--max_iter", type=int, default=10)
  parser.add_argument("--mode", choices=["chunked", "in_memory"],
                      help=argparse.SUPPRESS)  # one fit, in a child process
  parser.add_argument("--folder", help=argparse.SUPPRESS)
  args = parser.parse_args()
  if args.mode:
    return child(args)
  half = args.rows // 2
  mb = lambda rows: rows * args.dim * 4 / MB
  chunk_mb = mb(args.chunk_rows)
  fits = [("chunked", half), ("chunked", args.rows), ("in_memory", half)]
  with tempfile.TemporaryDirectory(prefix="bench_lbfgs_memory_",
                                   dir=os.environ.get("TMPDIR")) as folder:
    print(f"writing {args.rows} x {args.dim} float32 features "
          f"({mb(args.rows):.0f} MB) to {folder} ...", flush=True)
    write_features(folder, args.rows, args.dim, args.classes)
    results = []
    for mode, rows in fits:
      out = subprocess.run(
          [sys.executable, os.path.abspath(__file__), "--mode", mode,
           "--folder", folder, f"--rows={rows}"]
          + [f"--{k}={getattr(args, k)}" for k in
             ("dim", "classes", "chunk_rows", "max_iter")],
          check=True, capture_output=True, text=True).stdout
      r = json.loads(out.strip().splitlines()[-1])
      results.append(r)
      print(f"  {mode:9s} {rows:8d} rows ({mb(rows):5.0f} MB): peak anonymous "
            f"memory growth {r['peak_growth_mb']:6.0f} MB = "
            f"{r['peak_growth_mb'] / mb(rows):.3f} x matrix = "
            f"{r['peak_growth_mb'] / chunk_mb:5.2f} x chunk; {r['seconds']:.1f} s,"
            f" {r['iterations']} iterations", flush=True)
  small, large, dense = results
  print(f"\nchunks of {args.chunk_rows} rows ({chunk_mb:.0f} MB), "
        f"{args.max_iter} L-BFGS iterations:")
  print(f"  chunked peak, {args.rows} rows / {half} rows: "
        f"{large['peak_growth_mb'] / small['peak_growth_mb']:.2f} "
        f"(1 = bounded by the chunk, 2 = grows with the matrix)")
  print(f"  in-memory peak / matrix: {dense['peak_growth_mb'] / mb(half):.2f}")
  print(f"  chunked / in-memory on {half} rows: time "
        f"{small['seconds'] / dense['seconds']:.2f}, objective difference "
        f"{abs(small['objective'] - dense['objective']):.2e}, max weight "
        f"difference "
        f"{np.max(np.abs(np.subtract(small['weights'], dense['weights']))):.2e}")


if __name__ == "__main__":
  main()
