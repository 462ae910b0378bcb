"""Times the Table-1 L2 grid search: our TF L-BFGS vs scikit-learn's lbfgs.

Both solve the same problems: multinomial logistic regression on standardised
features (ours standardises internally; scikit-learn gets StandardScaler
output, timed as part of its run), one fit per L2 value with
C = 1 / (l2 * N_train), the same max_iter and tol, best L2 by validation top-1,
then test top-1 of that model. Ours warm-starts along the grid, works in
whitened weight coordinates, ranks the grid with fits to scikit-learn's default
tol (1e-4) and polishes the chosen value to --tol (all part of the method:
`logistic_regression.grid_search`); scikit-learn fits each value from zero to
--tol, as LogisticRegression does by default.

Features imitate CNN pre-logits: non-negative (ReLU of a linear map), strongly
correlated through a low-rank latent, class-dependent means plus noise, and
per-channel scales spread over an order of magnitude.

scikit-learn runs before TensorFlow is imported, so TF's thread pools cannot
compete with it. It is not a project dependency (Keras imports it on every
`import tensorflow` when installed, slowing every command's start-up):
`pip install -r requirements-bench.txt` first.

Usage:
  python bench/lbfgs_vs_sklearn.py                      # 50k x 2048, 10 and 100 classes
  python bench/lbfgs_vs_sklearn.py --n 5000 --dim 256 --classes 10
"""

import argparse
import os
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)


def synthesize(dim, classes, seed, latent=64, separation=0.5):
  """A fixed task: class means in a latent space and its map to CNN-like channels."""
  task = np.random.default_rng(seed)
  class_means = separation * task.normal(size=(classes, latent))
  mixing = task.normal(size=(latent, dim)) / np.sqrt(latent)
  shared = task.normal(size=(8, dim))  # nuisance directions common to all classes
  offset = task.normal(size=dim) * 0.5
  channel_scale = np.exp(task.normal(size=dim) * 0.6)
  return class_means, mixing, shared, offset, channel_scale


def sample(task, n, seed):
  """n examples of `task`: features [n, dim] float32 >= 0, labels [n] int64."""
  class_means, mixing, shared, offset, channel_scale = task
  rng = np.random.default_rng(seed)
  y = rng.integers(0, class_means.shape[0], n)
  z = class_means[y] + rng.normal(size=(n, class_means.shape[1]))
  h = z @ mixing + rng.normal(size=(n, shared.shape[0])) @ shared
  h += rng.normal(size=h.shape) * 0.5 + offset
  return (np.maximum(h, 0.0) * channel_scale).astype(np.float32), y


def run_sklearn(data, grid, max_iter, tol, omp_threads):
  from sklearn.linear_model import LogisticRegression
  from sklearn.preprocessing import StandardScaler
  from threadpoolctl import threadpool_limits

  (train_x, train_y), (val_x, val_y), (test_x, test_y) = data
  start, cpu_start = time.perf_counter(), time.process_time()
  with threadpool_limits(limits=omp_threads or None, user_api="openmp"):
    scaler = StandardScaler().fit(train_x)
    train_s, val_s = scaler.transform(train_x), scaler.transform(val_x)
    best, best_acc, log = None, -1.0, []
    for l2 in sorted(grid, reverse=True):
      t = time.perf_counter()
      with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at max_iter
        model = LogisticRegression(C=1.0 / (l2 * len(train_y)), max_iter=max_iter,
                                   tol=tol).fit(train_s, train_y)
      acc = model.score(val_s, val_y)
      log.append(f"    sklearn l2={l2:.0e}: val {100 * acc:.2f}%, "
                 f"{int(model.n_iter_[0])} it, {time.perf_counter() - t:.1f}s")
      print(log[-1], flush=True)
      if acc > best_acc:
        best, best_acc, best_l2 = model, acc, l2
  seconds = (time.perf_counter() - start, time.process_time() - cpu_start)
  test_acc = best.score(scaler.transform(test_x), test_y)
  return seconds, best_l2, test_acc, log


def run_ours(data, grid, max_iter, tol):
  from evaluation import logistic_regression as lr

  (train_x, train_y), (val_x, val_y), (test_x, test_y) = data
  log = []

  def record(line):
    log.append("    ours    " + line)
    print(log[-1], flush=True)

  start, cpu_start = time.perf_counter(), time.process_time()
  result = lr.grid_search(train_x, train_y, val_x, val_y, int(train_y.max()) + 1,
                          l2_grid=grid, max_iter=max_iter, tol=tol, log=record)
  seconds = (time.perf_counter() - start, time.process_time() - cpu_start)
  test_acc = lr.accuracy(result["model"], test_x, test_y)
  return seconds, result["best_l2"], test_acc, log


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--n", type=int, default=50_000, help="training examples")
  parser.add_argument("--n-eval", type=int, default=10_000,
                      help="examples in each of the validation and test splits")
  parser.add_argument("--dim", type=int, default=2048)
  parser.add_argument("--classes", type=int, nargs="+", default=[10, 100])
  parser.add_argument("--grid", type=float, nargs="+", default=list(GRID))
  parser.add_argument("--max-iter", type=int, default=500)
  parser.add_argument("--tol", type=float, default=1e-6)
  # One OpenMP thread for sklearn's Cython loss (BLAS keeps all cores): on a
  # shared 2-core box its OpenMP loop spin-waits and ran up to 30x slower with
  # 2 threads on small problems; the loss is O(N C), minor next to the matmuls.
  parser.add_argument("--sklearn-omp-threads", type=int, default=1,
                      help="OpenMP threads for sklearn's loss; 0 = its default")
  parser.add_argument("--skip-sklearn", action="store_true")
  parser.add_argument("--skip-ours", action="store_true",
                      help="only scikit-learn (e.g. to run the slow half separately)")
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args(argv)
  if not args.skip_sklearn:
    try:
      import sklearn  # pylint: disable=g-import-not-at-top,unused-import
    except ImportError:
      sys.exit("Error: this benchmark compares against scikit-learn, which is not a "
               "project dependency: `pip install -r requirements-bench.txt` (or pass "
               "--skip-sklearn to time ours only).")

  datasets = {}
  for classes in args.classes:
    task = synthesize(args.dim, classes, args.seed)
    datasets[classes] = (sample(task, args.n, args.seed + 1),
                         sample(task, args.n_eval, args.seed + 2),
                         sample(task, args.n_eval, args.seed + 3))

  sk = {}
  if not args.skip_sklearn:
    for classes, data in datasets.items():
      sk[classes] = run_sklearn(data, args.grid, args.max_iter, args.tol,
                                args.sklearn_omp_threads)
  ours = {}
  if not args.skip_ours:
    ours = {classes: run_ours(data, args.grid, args.max_iter, args.tol)
            for classes, data in datasets.items()}

  grid = ", ".join(f"{v:.0e}" for v in sorted(args.grid, reverse=True))
  print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
  print(f"train {args.n} x {args.dim}, val/test {args.n_eval} each, grid [{grid}], "
        f"max_iter {args.max_iter}, tol {args.tol:g}")
  for classes in args.classes:
    print(f"{classes} classes")
    if classes in ours:
      t_ours, l2_ours, acc_ours, log_ours = ours[classes]
      print("\n".join(log_ours))
      print(f"  ours    {t_ours[0]:8.1f}s wall {t_ours[1]:8.1f}s CPU  best l2 "
            f"{l2_ours:.0e}  test top-1 {100 * acc_ours:.2f}%")
    if classes in sk:
      t_sk, l2_sk, acc_sk, log_sk = sk[classes]
      print("\n".join(log_sk))
      print(f"  sklearn {t_sk[0]:8.1f}s wall {t_sk[1]:8.1f}s CPU  best l2 "
            f"{l2_sk:.0e}  test top-1 {100 * acc_sk:.2f}%")
    if classes in ours and classes in sk:
      print(f"  speed-up sklearn/ours {t_sk[0] / t_ours[0]:.1f}x wall, "
            f"{t_sk[1] / t_ours[1]:.1f}x CPU time; top-1 difference "
            f"(ours - sklearn) {100 * (acc_ours - acc_sk):+.2f} points")


if __name__ == "__main__":
  main()
