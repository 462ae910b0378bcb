"""Multinomial logistic regression on frozen features, fitted by full-batch L-BFGS.

This is the Table-1 protocol of the paper (SPEC §5): representations of the
training images are computed once, a linear softmax classifier is fitted on
them, and the L2 strength is chosen on the held-out split.

Objective (minimised over W [D, C] and b [C]):

    J(W, b) = (1/N) sum_i CE(softmax(z_i W + b), y_i) + (l2 / 2) * ||W||_F^2

where z_i are the *standardised* features z = (x - mean) / scale when
`standardize=True` (the default) and the raw features otherwise; the bias is
not regularised. `mean` and `scale` are per-feature statistics of the training
features (population standard deviation; features with no usable variance get
scale 1). The fitted W, b are folded back so that the returned model acts on
raw features:  logits = x @ model.weights + model.bias.

Why standardise by default: raw CNN pre-logits are non-negative with per-channel
scales that differ by orders of magnitude, which makes the problem badly
conditioned for any first-order method. Measured on 2000 x 64 features, 5
overlapping classes, columns offset and scaled by 10^U(-2, 2), l2 in
{1e-1, 1e-2, 1e-3, 1e-4}: standardised fits converge in 13-20 iterations and
reach 82.2% validation top-1, identical per l2 to scikit-learn on
StandardScaler output; unstandardised fits (ours and scikit-learn's) hit
max_iter=500 at every l2 and reach only 65-74%. It also makes one L2 grid
meaningful across layers and models whose feature magnitudes differ.

Because the penalty acts on the standardised weights, the exact scikit-learn
equivalent is StandardScaler followed by LogisticRegression(C=1 / (l2 * N))
(scikit-learn minimises C * sum_i CE_i + ||W||^2 / 2, i.e. our J times C * N).

L-BFGS runs on preconditioned weights V = diag(1/d) U^T W, where U and s are
the eigenvectors and eigenvalues of the feature covariance and
d = (s + l2)^(-1/2): the objective and its optimum are unchanged, but its
curvature is far more uniform, which halved the whole-grid time on the
bench's 50k x 2048, 100-class features (402 s -> 192 s, same test top-1).

Everything runs in float32 inside one `tf.function` per problem shape, so the
same code uses a GPU/TPU when TensorFlow has one. Features that do not fit on
the device are wrapped in `ChunkedFeatures`: the full-batch loss and gradient
are then accumulated over chunks streamed from host memory or disk, and device
memory is bounded by the chunk size.
"""

import dataclasses
import math
import time
from typing import Any, Callable, Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import tensorflow as tf

from evaluation import lbfgs

# Sorted strong -> weak so that each fit warm-starts from a smaller-norm
# solution; decades cover the range that is optimal for standardised features
# from 1e3 to 1e6 training examples.
DEFAULT_L2_GRID = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)

_DTYPE = tf.float32
_NP_DTYPE = np.float32


@dataclasses.dataclass(frozen=True)
class ChunkedFeatures:
  """Features [N, D] read chunk by chunk (e.g. an np.memmap or an h5py dataset).

  Attributes:
    data: anything with `.shape == (N, D)` supporting row slicing
      `data[start:stop]` that yields an array convertible to float32.
    chunk_size: rows per chunk; bounds the device memory used per evaluation to
      about chunk_size * (D + 3 C) floats.
  """
  data: Any
  chunk_size: int

  def __post_init__(self):
    shape = getattr(self.data, "shape", None)
    if shape is None or len(shape) != 2:
      raise ValueError("ChunkedFeatures.data must be a 2-D array-like [N, D] with a "
                       f".shape (e.g. np.memmap), got shape {shape}.")
    if isinstance(self.chunk_size, bool) or not isinstance(self.chunk_size,
                                                            (int, np.integer)):
      raise ValueError(f"chunk_size must be a positive int, got {self.chunk_size!r}.")
    if self.chunk_size < 1:
      raise ValueError(f"chunk_size must be a positive int, got {self.chunk_size}.")

  @property
  def num_examples(self) -> int:
    return int(self.data.shape[0])

  @property
  def dim(self) -> int:
    return int(self.data.shape[1])

  def iter_chunks(self) -> Iterator[np.ndarray]:
    """Yields float32 arrays [<=chunk_size, D] in row order."""
    for start in range(0, self.num_examples, self.chunk_size):
      yield np.asarray(self.data[start:start + self.chunk_size], dtype=_NP_DTYPE)


Features = Union[np.ndarray, tf.Tensor, ChunkedFeatures]


@dataclasses.dataclass(frozen=True, eq=False)
class LinearModel:
  """A fitted classifier acting on raw features: logits = x @ weights + bias.

  Attributes:
    weights: [D, C] float32, standardisation folded in.
    bias: [C] float32.
    l2: the L2 strength it was fitted with.
    iterations: L-BFGS iterations used.
    converged: whether an L-BFGS convergence test was met (not max_iter).
    objective: final value of J (see module docstring).
    num_evaluations: objective/gradient evaluations used.
    feature_mean: [D] training-feature mean, None when not standardised.
    feature_scale: [D] training-feature scale, None when not standardised.
  """
  weights: np.ndarray
  bias: np.ndarray
  l2: float
  iterations: int
  converged: bool
  objective: float
  num_evaluations: int
  feature_mean: Optional[np.ndarray] = None
  feature_scale: Optional[np.ndarray] = None

  @property
  def num_classes(self) -> int:
    return int(self.weights.shape[1])


@dataclasses.dataclass
class _Problem:
  """Validated training data in the form the compiled solvers consume."""
  num_examples: int
  dim: int
  num_classes: int
  mean: Optional[np.ndarray]  # [D]
  scale: Optional[np.ndarray]  # [D]
  dense_x: Optional[tf.Tensor] = None  # [N, D], already standardised
  dense_y: Optional[tf.Tensor] = None  # [N] int32
  dataset: Optional[tf.data.Dataset] = None  # (raw x chunk, y chunk)
  num_chunks: int = 0
  # Eigen-decomposition of the (standardised) feature covariance, for the
  # preconditioner: eigenvectors [D, D] and eigenvalues [D]; None: off.
  basis: Optional[np.ndarray] = None
  spectrum: Optional[np.ndarray] = None


# ----------------------------------------------------------------------------
# Input validation and preparation.


def _check_num_classes(num_classes):
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
    raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
  return int(num_classes)


def _check_labels(labels, num_examples: int, num_classes: int,
                  name: str = "labels") -> np.ndarray:
  labels = labels.numpy() if isinstance(labels, tf.Tensor) else np.asarray(labels)
  if labels.ndim != 1:
    raise ValueError(f"{name} must be a vector [N] of class ids, got shape "
                     f"{labels.shape}; pass integer class ids, not one-hot rows.")
  if not np.issubdtype(labels.dtype, np.integer):
    raise ValueError(f"{name} must have an integer dtype, got {labels.dtype}; cast "
                     "with labels.astype(np.int64).")
  if labels.shape[0] != num_examples:
    raise ValueError(f"{name} has {labels.shape[0]} entries but the features have "
                     f"{num_examples} rows; pass one label per feature row.")
  if num_examples and (labels.min() < 0 or labels.max() >= num_classes):
    bad = int(labels[(labels < 0) | (labels >= num_classes)][0])
    raise ValueError(f"{name} contain {bad}, outside [0, {num_classes}); fix the "
                     f"labels or raise num_classes.")
  return labels.astype(np.int32)


def _feature_shape(features) -> Tuple[int, int]:
  shape = tuple(features.shape)
  if len(shape) != 2:
    raise ValueError(f"features must be a matrix [N, D], got shape {shape}; flatten "
                     "or pool spatial representations first.")
  if shape[0] is None or shape[1] is None:
    raise ValueError(f"features need a fully known shape, got {shape}.")
  if shape[0] < 1 or shape[1] < 1:
    raise ValueError(f"features must have at least one row and column, got {shape}.")
  return int(shape[0]), int(shape[1])


def _dense_tensor(features) -> tf.Tensor:
  if isinstance(features, tf.Tensor):
    if not (features.dtype.is_floating or features.dtype.is_integer):
      raise ValueError(f"features must be real numbers, got dtype {features.dtype}.")
    return tf.cast(features, _DTYPE)
  array = np.asarray(features)
  if not (np.issubdtype(array.dtype, np.floating) or
          np.issubdtype(array.dtype, np.integer)):
    raise ValueError(f"features must be real numbers, got dtype {array.dtype}.")
  return tf.convert_to_tensor(array.astype(_NP_DTYPE, copy=False))


def _real_array(features):
  """`features` as an array of real numbers (a view where possible)."""
  array = features if isinstance(features, np.ndarray) else np.asarray(features)
  if not (np.issubdtype(array.dtype, np.floating) or
          np.issubdtype(array.dtype, np.integer)):
    raise ValueError(f"features must be real numbers, got dtype {array.dtype}.")
  return array


def _host_block_rows(dim: int) -> int:
  """Rows of a ~64 MiB float32 block: host matrices cross to TF in these."""
  return max(1, (64 << 20) // (4 * max(int(dim), 1)))


def _moments(features: "ChunkedFeatures", dataset, standardize: bool):
  """(mean [D], scale [D]) of chunked features, or (None, None).

  Raises ValueError naming the first row with a NaN or Inf.
  """
  n, d = features.num_examples, features.dim
  sums, _, bad = _chunked_moments(dataset, tf.zeros([d], _DTYPE))
  if int(bad):
    for start, chunk in zip(range(0, n, features.chunk_size), features.iter_chunks()):
      rows = np.nonzero(~np.isfinite(chunk).all(axis=1))[0]
      if rows.size:
        _raise_non_finite(start + int(rows[0]))
  if not standardize:
    return None, None
  mean = (sums.numpy() / n).astype(_NP_DTYPE)
  _, sq, _ = _chunked_moments(dataset, tf.constant(mean))
  return mean, _safe_scale(mean, np.sqrt(sq.numpy() / n))


def _raise_non_finite(row: int):
  raise ValueError(f"features contain NaN or Inf (first at row {row}); drop or "
                   "impute those rows before fitting.")


def _chunk_dataset(features: ChunkedFeatures, labels: Optional[np.ndarray]):
  """(x [<=chunk, D] float32, y [<=chunk] int32) or x alone, prefetched."""
  x_spec = tf.TensorSpec([None, features.dim], _DTYPE)
  xs = tf.data.Dataset.from_generator(features.iter_chunks, output_signature=x_spec)
  if labels is not None:
    ys = tf.data.Dataset.from_tensor_slices(labels).batch(features.chunk_size)
    xs = tf.data.Dataset.zip((xs, ys))
  # Two chunks in flight overlap reading the next chunk with computing on this
  # one while keeping memory bounded.
  return xs.prefetch(2)


@tf.function(autograph=False, reduce_retracing=True)
def _chunked_moments(dataset, mean):
  """Sums over chunks: (sum x [D], sum (x - mean)^2 [D], non-finite count)."""
  dim = tf.shape(mean)[0]

  def step(acc, batch):
    x = batch[0] if isinstance(batch, tuple) else batch
    bad = tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.int64))
    return (acc[0] + tf.reduce_sum(x, axis=0),
            acc[1] + tf.reduce_sum(tf.math.squared_difference(x, mean), axis=0),
            acc[2] + bad)

  init = (tf.zeros([dim], _DTYPE), tf.zeros([dim], _DTYPE), tf.zeros([], tf.int64))
  return dataset.reduce(init, step)


def _safe_scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  # Constant features (dead ReLUs) carry no signal; any std at the level of the
  # rounding error of the mean is noise, and dividing by it would blow it up.
  usable = std > 10.0 * np.finfo(_NP_DTYPE).eps * np.abs(mean)
  usable &= std > 0.0
  return np.where(usable, std, 1.0).astype(_NP_DTYPE)


def _eigen(covariance: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  spectrum, basis = np.linalg.eigh(covariance.astype(np.float64))
  return basis.astype(_NP_DTYPE), np.maximum(spectrum, 0.0)


@tf.function(autograph=False, reduce_retracing=True)
def _gram(x, block_rows):
  """x^T x [D, D] summed over row blocks (float32)."""
  n = tf.shape(x)[0]
  num_blocks = (n + block_rows - 1) // block_rows

  def body(i, acc):
    start = i * block_rows
    size = tf.minimum(block_rows, n - start)
    xb = tf.slice(x, tf.stack([start, 0]), tf.stack([size, -1]))
    return i + 1, acc + tf.matmul(xb, xb, transpose_a=True)

  d = tf.shape(x)[1]
  return tf.while_loop(lambda i, _: i < num_blocks, body,
                       (tf.constant(0), tf.zeros(tf.stack([d, d]), x.dtype)))[1]


def _prepare(features: Features, labels, num_classes: int,
             standardize: bool, precondition: bool = True) -> _Problem:
  """Validates inputs and computes the standardisation statistics."""
  num_classes = _check_num_classes(num_classes)
  if isinstance(features, ChunkedFeatures):
    n, d = _feature_shape(features.data)
    y = _check_labels(labels, n, num_classes)
    dataset = _chunk_dataset(features, y)
    mean, scale = _moments(features, dataset, standardize)
    problem = _Problem(n, d, num_classes, mean, scale, dataset=dataset,
                       num_chunks=-(-n // features.chunk_size))
    if precondition:
      problem.basis, problem.spectrum = _eigen(
          _chunked_covariance(features, mean, scale))
    return problem

  n, d = _feature_shape(features)
  y = _check_labels(labels, n, num_classes)
  if isinstance(features, tf.Tensor):
    x, mean, scale = _standardized_tensor(features, standardize)
  else:
    x, mean, scale = _standardized_host_matrix(features, d, standardize)
  problem = _Problem(n, d, num_classes, mean, scale, dense_x=x,
                     dense_y=tf.constant(y))
  if precondition:
    rows = x[:_PRECONDITIONER_ROWS]
    gram = _gram(rows, tf.constant(default_block_rows(d)))
    problem.basis, problem.spectrum = _eigen(gram.numpy() / int(rows.shape[0]))
  return problem


def _standardized_tensor(features: tf.Tensor, standardize: bool):
  """(x [N, D] float32, standardised when asked; mean [D], scale [D])."""
  x = _dense_tensor(features)
  finite_rows = tf.reduce_all(tf.math.is_finite(x), axis=1)
  if not bool(tf.reduce_all(finite_rows)):
    _raise_non_finite(int(np.argmin(finite_rows.numpy())))
  if not standardize:
    return x, None, None
  mean_t = tf.reduce_mean(x, axis=0)
  # Two passes (mean first): E[x^2] - E[x]^2 cancels catastrophically in
  # float32 for features whose mean dwarfs their spread.
  std = tf.sqrt(tf.reduce_mean(tf.math.squared_difference(x, mean_t), axis=0))
  mean = mean_t.numpy()
  scale = _safe_scale(mean, std.numpy())
  return _standardize(x, tf.constant(mean), tf.constant(1.0 / scale)), mean, scale


def _standardized_host_matrix(features, dim: int, standardize: bool):
  """`_standardized_tensor` for a host matrix (e.g. the feature cache's memmap).

  Statistics and the standardised tensor are made block by block, so the
  only N x D allocations are that tensor and the blocks it is concatenated
  from: converting and standardising the whole matrix at once measured a
  peak of 3.5x the matrix (400k x 1024 features, bench/lbfgs_memory.py).
  """
  blocks = ChunkedFeatures(_real_array(features), _host_block_rows(dim))
  mean, scale = _moments(blocks, _chunk_dataset(blocks, None), standardize)
  if mean is None:
    return tf.concat([tf.constant(c) for c in blocks.iter_chunks()], 0), None, None
  mean_t, inv_scale = tf.constant(mean), tf.constant(1.0 / scale)
  x = tf.concat([_standardize(tf.constant(c), mean_t, inv_scale)
                 for c in blocks.iter_chunks()], 0)
  return x, mean, scale


def _chunked_covariance(features: ChunkedFeatures, mean, scale) -> np.ndarray:
  """Second moment [D, D] of the (standardised) first rows, chunk by chunk."""
  gram = np.zeros([features.dim, features.dim], np.float64)
  rows = 0
  block = tf.constant(default_block_rows(features.dim))
  for chunk in features.iter_chunks():
    chunk = chunk[:_PRECONDITIONER_ROWS - rows]
    if mean is not None:
      chunk = (chunk - mean) / scale
    gram += _gram(tf.constant(chunk, _DTYPE), block).numpy()
    rows += chunk.shape[0]
    if rows >= _PRECONDITIONER_ROWS:
      break
  return gram / rows


def _standardize(x, mean, inv_scale):
  return (x - mean) * inv_scale


# ----------------------------------------------------------------------------
# Objective and compiled solvers.


def _data_terms(x, y, w, b):
  """Unnormalised data part of J on one block of rows.

  Args:
    x: [n, D] (standardised) features. y: [n] int32. w: [D, C]. b: [C].
  Returns:
    (sum_i CE_i [], dJ/dW * N [D, C], dJ/db * N [C]).
  """
  logits = tf.matmul(x, w) + b
  log_norm = tf.reduce_logsumexp(logits, axis=1)
  true_logits = tf.gather(logits, y, axis=1, batch_dims=1)
  loss = tf.reduce_sum(log_norm - true_logits)
  residual = tf.exp(logits - log_norm[:, None]) - tf.one_hot(y, tf.shape(w)[1],
                                                              dtype=x.dtype)
  # (R^T X)^T rather than X^T R: TF's CPU kernel for a transposed tall-skinny
  # left operand is several times slower (0.8-1.2 s vs 0.07-0.2 s measured
  # for 50k x 2048 features and 10 classes); the [C, D] transpose is cheap.
  grad_w = tf.transpose(tf.matmul(residual, x, transpose_a=True))
  return loss, grad_w, tf.reduce_sum(residual, 0)


def _blocked_data_terms(x, y, w, b, block_rows):
  """`_data_terms` summed over consecutive row blocks of x (same shapes).

  On a CPU, blocks of a few MiB let the gradient matmul re-read x from cache
  instead of memory, and keep the [n, C] intermediates cache-sized; measured
  ~3x faster per evaluation for 50k x 2048 features with 10 or 100 classes.
  """
  n = tf.shape(x)[0]
  num_blocks = (n + block_rows - 1) // block_rows

  def body(i, acc):
    # Leading-dimension slices share x's buffer, so blocks cost no copies.
    start = i * block_rows
    size = tf.minimum(block_rows, n - start)
    terms = _data_terms(tf.slice(x, tf.stack([start, 0]), tf.stack([size, -1])),
                        tf.slice(y, [start], [size]), w, b)
    return i + 1, tuple(a + t for a, t in zip(acc, terms))

  init = (tf.zeros([], x.dtype), tf.zeros_like(w), tf.zeros_like(b))
  return tf.while_loop(lambda i, _: i < num_blocks, body, (tf.constant(0), init))[1]


def default_block_rows(dim: int) -> int:
  """Rows per block in an objective evaluation for features of width `dim`.

  About 4 MiB of features per block on CPUs (L2/L3-sized); on GPUs/TPUs large
  blocks that only bound the [rows, C] intermediates, since small kernels
  would waste the device.
  """
  if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
    return 1 << 16
  return max(64, (4 << 20) // (4 * max(int(dim), 1)))


def _objective(params, dim, num_classes, num_examples, l2, data_sum_fn, basis,
               diag):
  """J and its gradient from the flat parameter vector [D*C + C].

  With a preconditioner (basis U [D, D], diag d [D]) the parameters are
  V = diag(1/d) U^T W, i.e. W = U diag(d) V: the same J, in coordinates where
  its curvature is close to uniform (see `_precondition_diag`).
  """
  v = tf.reshape(params[:dim * num_classes], tf.stack([dim, num_classes]))
  b = params[dim * num_classes:]
  w = v if basis is None else tf.matmul(basis, diag[:, None] * v)
  loss_sum, gw_sum, gb_sum = data_sum_fn(w, b)
  inv_n = 1.0 / num_examples
  value = loss_sum * inv_n + 0.5 * l2 * tf.reduce_sum(w * w)
  grad_w = gw_sum * inv_n + l2 * w
  if basis is not None:
    grad_w = diag[:, None] * tf.matmul(basis, grad_w, transpose_a=True)
  grad = tf.concat([tf.reshape(grad_w, [-1]), gb_sum * inv_n], 0)
  return value, grad


def _solve(params0, dim, num_classes, num_examples, l2, max_iter, tol, ftol, history,
           data_sum_fn, basis, diag):
  def value_and_grad(params):
    return _objective(params, dim, num_classes, num_examples, l2, data_sum_fn,
                      basis, diag)

  return lbfgs.minimize_graph(value_and_grad, params0, max_iter, tol, ftol,
                              num_correction_pairs=history)


@tf.function(autograph=False, reduce_retracing=True)
def _fit_dense(x, y, params0, num_classes, l2, max_iter, tol, ftol, block_rows,
               history, basis, diag):
  dim = tf.shape(x)[1]
  num_examples = tf.cast(tf.shape(x)[0], _DTYPE)
  return _solve(params0, dim, num_classes, num_examples, l2, max_iter, tol, ftol,
                history, lambda w, b: _blocked_data_terms(x, y, w, b, block_rows),
                basis, diag)


@tf.function(autograph=False, reduce_retracing=True)
def _fit_chunked(dataset, num_chunks, mean, inv_scale, num_examples, params0,
                 num_classes, l2, max_iter, tol, ftol, block_rows, history, basis,
                 diag):
  dim = tf.shape(mean)[0]

  def data_sum(w, b):
    # An explicit iterator rather than dataset.reduce: tf.data runs its own
    # functions on the host CPU, so the matmuls would never reach a GPU.
    # A fresh iterator per evaluation restarts the stream at row 0.
    iterator = iter(dataset)

    def body(i, acc):
      x, y = iterator.get_next()
      terms = _blocked_data_terms(_standardize(x, mean, inv_scale), y, w, b,
                                  block_rows)
      return i + 1, tuple(a + t for a, t in zip(acc, terms))

    init = (tf.zeros([], _DTYPE), tf.zeros_like(w), tf.zeros_like(b))
    # One chunk at a time: with tf.while_loop's default of 10 parallel
    # iterations the loop read up to 10 chunks ahead, and peak memory grew
    # with the number of chunks (bench/lbfgs_memory.py: 496 -> 758 MB from
    # 400k to 800k rows of 1024; 413 MB for both with 1).
    return tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(0), init),
                         parallel_iterations=1)[1]

  return _solve(params0, dim, num_classes, num_examples, l2, max_iter, tol, ftol,
                history, data_sum, basis, diag)


# ----------------------------------------------------------------------------
# Public API.


def _initial_params(problem: _Problem, init: Optional[LinearModel],
                    diag: Optional[np.ndarray]) -> np.ndarray:
  d, c = problem.dim, problem.num_classes
  if init is None:
    return np.zeros([d * c + c], _NP_DTYPE)
  if not isinstance(init, LinearModel):
    raise ValueError(f"init must be a LinearModel from fit(), got {type(init)}.")
  if init.weights.shape != (d, c) or init.bias.shape != (c,):
    raise ValueError(f"init has weights {init.weights.shape} and bias "
                     f"{init.bias.shape}, but this problem needs ({d}, {c}) and "
                     f"({c},); warm-start only from a model of the same shape.")
  w = init.weights.astype(np.float64)
  b = init.bias.astype(np.float64)
  if problem.mean is not None:
    # Inverse of the folding in fit(): the same raw-feature classifier
    # expressed on this problem's standardised features.
    b = b + problem.mean.astype(np.float64) @ w
    w = w * problem.scale.astype(np.float64)[:, None]
  if diag is not None:
    w = (problem.basis.astype(np.float64).T @ w) / diag[:, None]
  return np.concatenate([w.ravel(), b]).astype(_NP_DTYPE)


# Weight of the feature covariance against l2 in the preconditioner. 1 makes
# it (Cov + l2 I)^(-1/2), a ridge-regularised whitening. Measured on the
# bench's 20k x 512 features (grid 1e-1..1e-6, tol 1e-6): whole-grid time
# 25.8 s unpreconditioned, 21.4 / 13.4 / 13.7 s for 0.25 / 1 / 4 with 100
# classes, 8.1 s vs 5.3 / 3.3 s for 1 / 4 with 10 classes; same test top-1.
PRECONDITIONER_CURVATURE = 1.0
# Rows that estimate the feature covariance for the preconditioner.
_PRECONDITIONER_ROWS = 100_000


def _precondition_diag(spectrum: np.ndarray, l2: float) -> np.ndarray:
  """d = (c s + l2)^(-1/2) for covariance eigenvalues s.

  J's Hessian in W is roughly proportional to Cov (x) I plus l2 * I; in
  V = diag(1/d) U^T W its spread of eigenvalues shrinks, so L-BFGS needs
  fewer iterations, above all for weak l2 where Cov's small eigenvalues
  would set the conditioning. The optimum (in W) is the same.
  """
  floor = 1e-6 * max(float(spectrum.max()), 1e-12)
  return 1.0 / np.sqrt(np.maximum(PRECONDITIONER_CURVATURE * spectrum + l2, floor))


def _fit_problem(problem: _Problem, l2: float, max_iter: int, tol: float,
                 init: Optional[LinearModel], history: int,
                 block_rows: Optional[int]) -> LinearModel:
  if not (isinstance(l2, (int, float, np.floating, np.integer)) and
          math.isfinite(l2) and l2 >= 0):
    raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}.")
  if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or \
      max_iter < 0:
    raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}.")
  if not (isinstance(tol, (int, float, np.floating)) and tol >= 0):
    raise ValueError(f"tol must be a number >= 0, got {tol!r}.")
  if block_rows is None:
    block_rows = default_block_rows(problem.dim)
  if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) \
      or block_rows < 1:
    raise ValueError(f"block_rows must be a positive int or None, got {block_rows!r}.")
  d, c = problem.dim, problem.num_classes
  diag = None
  if problem.basis is not None:
    diag = _precondition_diag(problem.spectrum, float(l2))
  params0 = tf.constant(_initial_params(problem, init, diag))
  scalars = dict(num_classes=tf.constant(c), l2=tf.constant(l2, _DTYPE),
                 max_iter=tf.constant(max_iter), tol=tf.constant(tol, _DTYPE),
                 ftol=tf.constant(0.0, _DTYPE), block_rows=tf.constant(block_rows),
                 history=int(history),
                 basis=None if diag is None else tf.constant(problem.basis),
                 diag=None if diag is None else tf.constant(diag, _DTYPE))
  if problem.dataset is not None:
    if problem.mean is None:
      mean, inv_scale = np.zeros([d], _NP_DTYPE), np.ones([d], _NP_DTYPE)
    else:
      mean, inv_scale = problem.mean, (1.0 / problem.scale).astype(_NP_DTYPE)
    result = _fit_chunked(problem.dataset, tf.constant(problem.num_chunks),
                          tf.constant(mean), tf.constant(inv_scale),
                          tf.constant(float(problem.num_examples), _DTYPE), params0,
                          **scalars)
  else:
    result = _fit_dense(problem.dense_x, problem.dense_y, params0, **scalars)

  params = result.position.numpy().astype(np.float64)
  w, b = params[:d * c].reshape(d, c), params[d * c:]
  if diag is not None:
    w = problem.basis.astype(np.float64) @ (diag[:, None] * w)
  if problem.mean is not None:
    # logits = ((x - mean) / scale) @ w + b = x @ (w / scale) + (b - (mean / scale) @ w)
    w = w / problem.scale.astype(np.float64)[:, None]
    b = b - problem.mean.astype(np.float64) @ w
  return LinearModel(weights=w.astype(_NP_DTYPE), bias=b.astype(_NP_DTYPE),
                     l2=float(l2), iterations=int(result.num_iterations),
                     converged=bool(result.converged), objective=float(result.value),
                     num_evaluations=int(result.num_evaluations),
                     feature_mean=problem.mean, feature_scale=problem.scale)


def fit(features: Features, labels, num_classes: int, l2: float = 1e-4,
        max_iter: int = 500, tol: float = 1e-6, init: Optional[LinearModel] = None,
        standardize: bool = True, history: int = 10,
        block_rows: Optional[int] = None, precondition: bool = True) -> LinearModel:
  """Fits multinomial logistic regression by full-batch L-BFGS.

  Args:
    features: [N, D] float32 (np.ndarray or tf.Tensor), or ChunkedFeatures to
      stream rows from host memory / disk.
    labels: [N] integer class ids in [0, num_classes).
    num_classes: C >= 2.
    l2: strength of (l2 / 2) ||W||^2 in J (module docstring); >= 0.
    max_iter: L-BFGS iteration cap.
    tol: converged when max |dJ/dparam| <= tol (scikit-learn's `tol`). Below
      the float32 noise floor of the gradient (~1e-7 for standardised
      features) the solver stops at a failed line search with converged=False.
    init: a LinearModel of the same shape to warm-start from (e.g. the
      solution for a neighbouring l2); None starts from zero.
    standardize: standardise features with training statistics (recommended;
      see the module docstring). The returned model always takes raw features.
    history: number of L-BFGS correction pairs.
    block_rows: rows per block inside one evaluation (speed only; changes the
      float32 summation order); None picks `default_block_rows(D)`.
    precondition: solve in whitened weight coordinates (the eigenbasis of
      the feature covariance, estimated on up to 100k rows); the same
      optimum in fewer iterations (see PRECONDITIONER_CURVATURE). Costs one
      [D, D] covariance and eigendecomposition per problem and two [D, D] x
      [D, C] products per evaluation.

  Returns:
    LinearModel with weights [D, C] and bias [C] for raw features.
  """
  problem = _prepare(features, labels, num_classes, standardize, precondition)
  return _fit_problem(problem, l2, max_iter, tol, init, history, block_rows)


@tf.function(autograph=False, reduce_retracing=True)
def _logits(x, w, b):
  return tf.matmul(x, w) + b


def _iter_feature_blocks(model: LinearModel, features: Features) -> Iterator[tf.Tensor]:
  """Yields float32 blocks [n, D] of `features`, checked against the model."""
  data = features.data if isinstance(features, ChunkedFeatures) else features
  _, d = _feature_shape(data)
  if d != model.weights.shape[0]:
    raise ValueError(f"features have {d} columns but the model expects "
                     f"{model.weights.shape[0]}; use the same layer/pooling as in fit.")
  if isinstance(features, ChunkedFeatures):
    for chunk in features.iter_chunks():
      yield tf.constant(chunk)
  elif isinstance(features, tf.Tensor):
    yield _dense_tensor(features)
  else:  # a host matrix, converted a block at a time
    yield from (tf.constant(chunk) for chunk in ChunkedFeatures(
        _real_array(features), _host_block_rows(d)).iter_chunks())


def predict_logits(model: LinearModel, features: Features) -> np.ndarray:
  """Class scores of raw features.

  Args:
    model: from `fit`.
    features: [N, D] array/tensor or ChunkedFeatures.
  Returns:
    [N, C] float32 logits.
  """
  w, b = tf.constant(model.weights), tf.constant(model.bias)
  blocks = [_logits(x, w, b).numpy() for x in _iter_feature_blocks(model, features)]
  return np.concatenate(blocks, axis=0)


@tf.function(autograph=False, reduce_retracing=True)
def _count_top_k(x, y, w, b, k):
  logits = tf.matmul(x, w) + b
  true_logits = tf.gather(logits, y, axis=1, batch_dims=1)
  # Ties count against the example, so a constant classifier scores 0 rather
  # than 100% top-1.
  rank = tf.reduce_sum(tf.cast(logits >= true_logits[:, None], tf.int32), axis=1) - 1
  return tf.reduce_sum(tf.cast(rank < k, tf.int64))


def accuracy(model: LinearModel, features: Features, labels, k: int = 1) -> float:
  """Top-k accuracy in [0, 1].

  Args:
    model: from `fit`.
    features: [N, D] array/tensor or ChunkedFeatures.
    labels: [N] integer class ids.
    k: an example is correct when fewer than k classes score at least as high
      as its true class, other than the true class itself.
  Returns:
    Fraction of correct examples.
  """
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive int, got {k!r}.")
  data = features.data if isinstance(features, ChunkedFeatures) else features
  n, _ = _feature_shape(data)
  y = _check_labels(labels, n, model.num_classes)
  w, b = tf.constant(model.weights), tf.constant(model.bias)
  correct, start = 0, 0
  for x in _iter_feature_blocks(model, features):
    stop = start + int(x.shape[0])
    correct += int(_count_top_k(x, tf.constant(y[start:stop]), w, b, tf.constant(k)))
    start = stop
  return correct / n


def grid_search(train_x: Features, train_y, val_x: Features, val_y, num_classes: int,
                l2_grid: Sequence[float] = DEFAULT_L2_GRID, max_iter: int = 500,
                tol: float = 1e-6, standardize: bool = True, history: int = 10,
                block_rows: Optional[int] = None, precondition: bool = True,
                search_tol: Optional[float] = 1e-4,
                log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
  """Chooses the L2 strength by held-out top-1 accuracy.

  The grid is visited from strong to weak regularisation and each fit
  warm-starts from the previous solution, which is close to the next optimum.
  Grid values are fitted to `search_tol` (enough to rank them: scikit-learn's
  default tolerance) and only the chosen one is then polished to `tol` from
  where it stopped, so the returned model is as converged as `fit(tol=tol)`.
  Measured on the bench's 50k x 2048, 100-class features: the 6-value grid
  took 205 s at tol 1e-6 throughout; on 20k x 512 features 15.9 s vs 6.1 s
  with search_tol 1e-4, with the same chosen l2 and test top-1.

  Args:
    train_x: [N, D] training features (array/tensor or ChunkedFeatures).
    train_y: [N] training labels.
    val_x: [M, D] held-out features. val_y: [M] held-out labels.
    num_classes: C.
    l2_grid: candidate l2 values (>= 0, any order, duplicates ignored).
    max_iter, tol, standardize, history, block_rows, precondition: as in
      `fit`.
    search_tol: tolerance of the fits that rank the grid (None or <= tol:
      every value is fitted to `tol`).
    log: optional callable receiving one progress line per grid value.

  Returns:
    dict with best_l2 (ties go to the stronger l2), val_top1_by_l2 {l2: acc},
    iterations_by_l2 {l2: int} (ranking fits), model (LinearModel fitted on
    train with best_l2 to `tol`).
  """
  grid = sorted({float(v) for v in l2_grid}, reverse=True)
  if not grid:
    raise ValueError("l2_grid is empty; pass at least one l2 value, e.g. "
                     "DEFAULT_L2_GRID.")
  if any(not math.isfinite(v) or v < 0 for v in grid):
    raise ValueError(f"l2_grid values must be finite and >= 0, got {list(l2_grid)}.")
  problem = _prepare(train_x, train_y, num_classes, standardize, precondition)
  val_data = val_x.data if isinstance(val_x, ChunkedFeatures) else val_x
  val_n, val_d = _feature_shape(val_data)
  if val_d != problem.dim:
    raise ValueError(f"val_x has {val_d} columns but train_x has {problem.dim}; both "
                     "must come from the same layer and pooling.")
  _check_labels(val_y, val_n, problem.num_classes, name="val_y")

  rank_tol = tol if search_tol is None else max(float(search_tol), tol)
  best, previous = None, None
  val_top1, iterations = {}, {}
  for l2 in grid:
    start = time.perf_counter()
    model = _fit_problem(problem, l2, max_iter, rank_tol, previous, history,
                         block_rows)
    acc = accuracy(model, val_x, val_y)
    val_top1[l2], iterations[l2] = acc, model.iterations
    if log is not None:
      log(f"l2={l2:.3g}: val top-1 {100 * acc:.2f}%, {model.iterations} iterations"
          f"{'' if model.converged else ' (not converged)'}, "
          f"{time.perf_counter() - start:.1f}s")
    if best is None or acc > val_top1[best.l2]:
      best = model
    previous = model
  if rank_tol > tol:
    start = time.perf_counter()
    polished = _fit_problem(problem, best.l2, max_iter, tol, best, history,
                            block_rows)
    if log is not None:
      log(f"l2={best.l2:.3g} polished to tol {tol:g}: {polished.iterations} more "
          f"iterations, {time.perf_counter() - start:.1f}s")
    best = dataclasses.replace(polished,
                               iterations=best.iterations + polished.iterations)
  return dict(best_l2=best.l2, val_top1_by_l2=val_top1, iterations_by_l2=iterations,
              model=best)
