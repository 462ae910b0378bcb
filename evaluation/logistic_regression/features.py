"""Training features for the L-BFGS solver, behind one interface.

The solver sees every training set as a `TrainingFeatures`:

  num_examples, dim      its shape [N, D];
  mean, scale            [D] standardisation statistics of the rows, None when
                         the fit uses raw features;
  covariance(max_rows)   [D, D] second moment of the first standardised rows,
                         for the preconditioner;
  data_terms(inputs, w, b, block_rows) on graph_inputs()
                         the full-batch data part of the loss and gradient,
                         inside the solver's compiled graph.

Two containers implement it. `InMemoryFeatures` holds the standardised
[N, D] float32 matrix whole (on the device when there is one) and evaluates
it in row blocks. `StreamedFeatures` wraps `ChunkedFeatures` (host memory or
a memory-mapped file on disk) and accumulates the same sums over chunks, so
device memory is bounded by the chunk size.

Standardisation is z = (x - mean) / scale with the population standard
deviation as scale; features with no usable variance get scale 1. Why
standardise by default: raw CNN pre-logits are non-negative with per-channel
scales that differ by orders of magnitude, which makes the problem badly
conditioned for any first-order method. Measured on 2000 x 64 features, 5
overlapping classes, columns offset and scaled by 10^U(-2, 2), l2 in
{1e-1, 1e-2, 1e-3, 1e-4}: standardised fits converge in 13-20 iterations and
reach 82.2% validation top-1, identical per l2 to scikit-learn on
StandardScaler output; unstandardised fits (ours and scikit-learn's) hit
max_iter=500 at every l2 and reach only 65-74%. It also makes one L2 grid
meaningful across layers and models whose feature magnitudes differ.

Memory (bench/lbfgs_memory.py, 1024-d features): an in-memory fit of a host
matrix computes the statistics and the standardised tensor in 64 MiB blocks,
so its peak is about 2.2x the matrix (3.5x when it was converted whole). A
chunked fit holds about 6.5 chunks whatever N: two prefetched, the one in
use and its standardised copy.
"""

import abc
import dataclasses
from typing import Any, Iterator, Optional, Tuple, Union

import numpy as np
import tensorflow as tf

DTYPE = tf.float32
NP_DTYPE = np.float32


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
      yield np.asarray(self.data[start:start + self.chunk_size], dtype=NP_DTYPE)


Features = Union[np.ndarray, tf.Tensor, ChunkedFeatures]


# ----------------------------------------------------------------------------
# Checks and conversions of raw features and labels.


def feature_shape(features: Features) -> Tuple[int, int]:
  """(N, D) of features [N, D]; raises ValueError unless a non-empty matrix."""
  data = features.data if isinstance(features, ChunkedFeatures) else features
  shape = tuple(data.shape)
  if len(shape) != 2:
    raise ValueError(f"features must be a matrix [N, D], got shape {shape}; flatten "
                     "or pool spatial representations first.")
  if shape[0] is None or shape[1] is None:
    raise ValueError(f"features need a fully known shape, got {shape}.")
  if shape[0] < 1 or shape[1] < 1:
    raise ValueError(f"features must have at least one row and column, got {shape}.")
  return int(shape[0]), int(shape[1])


def check_labels(labels, num_examples: int, num_classes: int,
                 name: str = "labels") -> np.ndarray:
  """labels [N] as int32 class ids; raises ValueError naming what is wrong."""
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


def _dense_tensor(features: tf.Tensor) -> tf.Tensor:
  if not (features.dtype.is_floating or features.dtype.is_integer):
    raise ValueError(f"features must be real numbers, got dtype {features.dtype}.")
  return tf.cast(features, DTYPE)


def _real_array(features) -> np.ndarray:
  """`features` as an array of real numbers (a view where possible)."""
  array = features if isinstance(features, np.ndarray) else np.asarray(features)
  if not (np.issubdtype(array.dtype, np.floating) or
          np.issubdtype(array.dtype, np.integer)):
    raise ValueError(f"features must be real numbers, got dtype {array.dtype}.")
  return array


def _host_blocks(features) -> ChunkedFeatures:
  """A host matrix seen in blocks of ~64 MiB: how it crosses to TensorFlow."""
  array = _real_array(features)
  return ChunkedFeatures(array, _host_block_rows(array.shape[1]))


def _host_block_rows(dim: int) -> int:
  return max(1, (64 << 20) // (4 * max(int(dim), 1)))


def raw_blocks(features: Features) -> Iterator[tf.Tensor]:
  """Yields the unstandardised rows of features [N, D] as float32 [n, D] blocks."""
  if isinstance(features, ChunkedFeatures):
    for chunk in features.iter_chunks():
      yield tf.constant(chunk)
  elif isinstance(features, tf.Tensor):
    yield _dense_tensor(features)
  else:
    yield from (tf.constant(chunk) for chunk in _host_blocks(features).iter_chunks())


# ----------------------------------------------------------------------------
# Standardisation: statistics, streamed or whole, and the transform.


def _standardize(x, mean, inv_scale):
  return (x - mean) * inv_scale


def _standardizer(mean: np.ndarray, scale: np.ndarray):
  """(mean [D], 1 / scale [D]) as tensors for `_standardize`."""
  return tf.constant(mean), tf.constant((1.0 / scale).astype(NP_DTYPE))


def _safe_scale(mean: np.ndarray, std: np.ndarray) -> np.ndarray:
  # Constant features (dead ReLUs) carry no signal; any std at the level of the
  # rounding error of the mean is noise, and dividing by it would blow it up.
  usable = std > 10.0 * np.finfo(NP_DTYPE).eps * np.abs(mean)
  usable &= std > 0.0
  return np.where(usable, std, 1.0).astype(NP_DTYPE)


def _raise_non_finite(row: int):
  raise ValueError(f"features contain NaN or Inf (first at row {row}); drop or "
                   "impute those rows before fitting.")


def _chunk_dataset(features: ChunkedFeatures, labels: Optional[np.ndarray]):
  """(x [<=chunk, D] float32, y [<=chunk] int32) or x alone, prefetched."""
  x_spec = tf.TensorSpec([None, features.dim], DTYPE)
  xs = tf.data.Dataset.from_generator(features.iter_chunks, output_signature=x_spec)
  if labels is not None:
    ys = tf.data.Dataset.from_tensor_slices(labels).batch(features.chunk_size)
    xs = tf.data.Dataset.zip((xs, ys))
  # Two chunks in flight overlap reading the next chunk with computing on this
  # one while keeping memory bounded.
  return xs.prefetch(2)


@tf.function(autograph=False, reduce_retracing=True)
def _chunk_sums(dataset, mean):
  """Sums over chunks: (sum x [D], sum (x - mean)^2 [D], non-finite count)."""
  dim = tf.shape(mean)[0]

  def step(acc, batch):
    x = batch[0] if isinstance(batch, tuple) else batch
    bad = tf.reduce_sum(tf.cast(~tf.math.is_finite(x), tf.int64))
    return (acc[0] + tf.reduce_sum(x, axis=0),
            acc[1] + tf.reduce_sum(tf.math.squared_difference(x, mean), axis=0),
            acc[2] + bad)

  init = (tf.zeros([dim], DTYPE), tf.zeros([dim], DTYPE), tf.zeros([], tf.int64))
  return dataset.reduce(init, step)


def _streamed_moments(chunks: ChunkedFeatures, dataset, standardize: bool):
  """(mean [D], scale [D]) of streamed rows, or (None, None) unstandardised.

  Raises ValueError naming the first row with a NaN or Inf.
  """
  n = chunks.num_examples
  sums, _, bad = _chunk_sums(dataset, tf.zeros([chunks.dim], DTYPE))
  if int(bad):
    for start, chunk in zip(range(0, n, chunks.chunk_size), chunks.iter_chunks()):
      rows = np.nonzero(~np.isfinite(chunk).all(axis=1))[0]
      if rows.size:
        _raise_non_finite(start + int(rows[0]))
  if not standardize:
    return None, None
  mean = (sums.numpy() / n).astype(NP_DTYPE)
  # A second pass about the mean: see `InMemoryFeatures.from_tensor`.
  _, sq, _ = _chunk_sums(dataset, tf.constant(mean))
  return mean, _safe_scale(mean, np.sqrt(sq.numpy() / n))


# ----------------------------------------------------------------------------
# Kernels of one evaluation.


def default_block_rows(dim: int) -> int:
  """Rows per block in an objective evaluation for features of width `dim`.

  About 4 MiB of features per block on CPUs (L2/L3-sized); on GPUs/TPUs large
  blocks that only bound the [rows, C] intermediates, since small kernels
  would waste the device.
  """
  if tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"):
    return 1 << 16
  return max(64, (4 << 20) // (4 * max(int(dim), 1)))


def _sum_over_row_blocks(num_rows, block_rows, block_terms, init):
  """Sums block_terms(start, size), a tuple shaped like init, over row blocks."""
  num_blocks = (num_rows + block_rows - 1) // block_rows

  def body(i, acc):
    start = i * block_rows
    size = tf.minimum(block_rows, num_rows - start)
    return i + 1, tuple(a + t for a, t in zip(acc, block_terms(start, size)))

  return tf.while_loop(lambda i, _: i < num_blocks, body, (tf.constant(0), init))[1]


def _row_block(x, start, size):
  # Leading-dimension slices share x's buffer, so blocks cost no copies.
  return tf.slice(x, tf.stack([start, 0]), tf.stack([size, -1]))


@tf.function(autograph=False, reduce_retracing=True)
def _gram(x, block_rows):
  """x^T x [D, D] summed over row blocks (float32)."""

  def block_gram(start, size):
    xb = _row_block(x, start, size)
    return (tf.matmul(xb, xb, transpose_a=True),)

  d = tf.shape(x)[1]
  init = (tf.zeros(tf.stack([d, d]), x.dtype),)
  return _sum_over_row_blocks(tf.shape(x)[0], block_rows, block_gram, init)[0]


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

  def block_terms(start, size):
    return _data_terms(_row_block(x, start, size), tf.slice(y, [start], [size]), w, b)

  init = (tf.zeros([], x.dtype), tf.zeros_like(w), tf.zeros_like(b))
  return _sum_over_row_blocks(tf.shape(x)[0], block_rows, block_terms, init)


# ----------------------------------------------------------------------------
# The interface and its two containers.


class TrainingFeatures(abc.ABC):
  """Training rows [N, D] with labels, as the solver consumes them.

  Attributes:
    num_examples: N.
    dim: D.
    mean: [D] float32 feature mean, None when the fit uses raw features.
    scale: [D] float32 feature scale, None when the fit uses raw features.
  """
  num_examples: int
  dim: int
  mean: Optional[np.ndarray]
  scale: Optional[np.ndarray]

  @abc.abstractmethod
  def covariance(self, max_rows: int) -> np.ndarray:
    """[D, D] mean of z^T z over the first `max_rows` (standardised) rows z."""

  @abc.abstractmethod
  def graph_inputs(self) -> Tuple:
    """The tensors `data_terms` reads: arguments of the compiled solver."""

  @staticmethod
  @abc.abstractmethod
  def data_terms(inputs: Tuple, w, b, block_rows):
    """The data part of J over all rows, traced inside the solver's graph.

    Args:
      inputs: `graph_inputs()`. w: [D, C]. b: [C]. block_rows: [] int32.
    Returns:
      (sum_i CE_i [], dJ/dW * N [D, C], dJ/db * N [C]), as `_data_terms`.
    """


def training_features(features: Features, labels: np.ndarray,
                      standardize: bool) -> TrainingFeatures:
  """The container for features [N, D] and int32 labels [N] (both checked).

  Raises ValueError naming the first row with a NaN or Inf.
  """
  if isinstance(features, ChunkedFeatures):
    return StreamedFeatures(features, labels, standardize)
  if isinstance(features, tf.Tensor):
    return InMemoryFeatures.from_tensor(features, labels, standardize)
  return InMemoryFeatures.from_host_matrix(features, labels, standardize)


class InMemoryFeatures(TrainingFeatures):
  """The standardised matrix held whole, evaluated in row blocks."""

  def __init__(self, x: tf.Tensor, labels: np.ndarray, mean: Optional[np.ndarray],
               scale: Optional[np.ndarray]):
    self.x = x  # [N, D] float32, standardised when mean is not None
    self.y = tf.constant(labels)
    self.num_examples, self.dim = int(x.shape[0]), int(x.shape[1])
    self.mean, self.scale = mean, scale

  @classmethod
  def from_tensor(cls, features: tf.Tensor, labels: np.ndarray,
                  standardize: bool) -> "InMemoryFeatures":
    x = _dense_tensor(features)
    finite_rows = tf.reduce_all(tf.math.is_finite(x), axis=1)
    if not bool(tf.reduce_all(finite_rows)):
      _raise_non_finite(int(np.argmin(finite_rows.numpy())))
    if not standardize:
      return cls(x, labels, None, None)
    mean_t = tf.reduce_mean(x, axis=0)
    # Two passes (mean first): E[x^2] - E[x]^2 cancels catastrophically in
    # float32 for features whose mean dwarfs their spread.
    std = tf.sqrt(tf.reduce_mean(tf.math.squared_difference(x, mean_t), axis=0))
    mean = mean_t.numpy()
    scale = _safe_scale(mean, std.numpy())
    return cls(_standardize(x, *_standardizer(mean, scale)), labels, mean, scale)

  @classmethod
  def from_host_matrix(cls, features, labels: np.ndarray,
                       standardize: bool) -> "InMemoryFeatures":
    """From a host matrix (e.g. the feature cache's memmap), block by block.

    The only N x D allocations are the standardised tensor and the blocks it
    is concatenated from (see the module docstring on memory).
    """
    blocks = _host_blocks(features)
    mean, scale = _streamed_moments(blocks, _chunk_dataset(blocks, None), standardize)
    if mean is None:
      x = [tf.constant(c) for c in blocks.iter_chunks()]
    else:
      mean_t, inv_scale = _standardizer(mean, scale)
      x = [_standardize(tf.constant(c), mean_t, inv_scale)
           for c in blocks.iter_chunks()]
    return cls(tf.concat(x, 0), labels, mean, scale)

  def covariance(self, max_rows: int) -> np.ndarray:
    rows = self.x[:max_rows]
    gram = _gram(rows, tf.constant(default_block_rows(self.dim)))
    return gram.numpy() / int(rows.shape[0])

  def graph_inputs(self) -> Tuple:
    return self.x, self.y

  @staticmethod
  def data_terms(inputs, w, b, block_rows):
    x, y = inputs
    return _blocked_data_terms(x, y, w, b, block_rows)


class StreamedFeatures(TrainingFeatures):
  """ChunkedFeatures standardised chunk by chunk as they stream past."""

  def __init__(self, chunks: ChunkedFeatures, labels: np.ndarray, standardize: bool):
    self.chunks = chunks
    self.num_examples, self.dim = chunks.num_examples, chunks.dim
    self.num_chunks = -(-self.num_examples // chunks.chunk_size)
    self.dataset = _chunk_dataset(chunks, labels)
    self.mean, self.scale = _streamed_moments(chunks, self.dataset, standardize)

  def covariance(self, max_rows: int) -> np.ndarray:
    gram = np.zeros([self.dim, self.dim], np.float64)
    rows = 0
    block = tf.constant(default_block_rows(self.dim))
    for chunk in self.chunks.iter_chunks():
      chunk = chunk[:max_rows - rows]
      if self.mean is not None:
        # Divides where the graph multiplies by 1 / scale: the preconditioner
        # needs only an estimate, and rewriting it would move the bits of
        # every chunked fit.
        chunk = (chunk - self.mean) / self.scale
      gram += _gram(tf.constant(chunk, DTYPE), block).numpy()
      rows += chunk.shape[0]
      if rows >= max_rows:
        break
    return gram / rows

  def graph_inputs(self) -> Tuple:
    if self.mean is None:
      mean = tf.zeros([self.dim], DTYPE)
      inv_scale = tf.ones([self.dim], DTYPE)
    else:
      mean, inv_scale = _standardizer(self.mean, self.scale)
    return self.dataset, tf.constant(self.num_chunks), mean, inv_scale

  @staticmethod
  def data_terms(inputs, w, b, block_rows):
    dataset, num_chunks, mean, inv_scale = inputs
    # An explicit iterator rather than dataset.reduce: tf.data runs its own
    # functions on the host CPU, so the matmuls would never reach a GPU.
    # A fresh iterator per evaluation restarts the stream at row 0.
    iterator = iter(dataset)

    def body(i, acc):
      x, y = iterator.get_next()
      terms = _blocked_data_terms(_standardize(x, mean, inv_scale), y, w, b,
                                  block_rows)
      return i + 1, tuple(a + t for a, t in zip(acc, terms))

    init = (tf.zeros([], DTYPE), tf.zeros_like(w), tf.zeros_like(b))
    # One chunk at a time: with tf.while_loop's default of 10 parallel
    # iterations the loop read up to 10 chunks ahead, and peak memory grew
    # with the number of chunks (bench/lbfgs_memory.py: 496 -> 758 MB from
    # 400k to 800k rows of 1024; 413 MB for both with 1).
    return tf.while_loop(lambda i, _: i < num_chunks, body, (tf.constant(0), init),
                         parallel_iterations=1)[1]

