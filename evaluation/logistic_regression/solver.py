"""Multinomial logistic regression on frozen features, fitted by full-batch L-BFGS.

Objective (minimised over W [D, C] and b [C]):

    J(W, b) = (1/N) sum_i CE(softmax(z_i W + b), y_i) + (l2 / 2) * ||W||_F^2

where z_i are the *standardised* features z = (x - mean) / scale when
`standardize=True` (the default; features.py says why) and the raw features
otherwise; the bias is not regularised. The fitted W, b are folded back so
that the returned model acts on raw features:
logits = x @ model.weights + model.bias.

Because the penalty acts on the standardised weights, the exact scikit-learn
equivalent is StandardScaler followed by LogisticRegression(C=1 / (l2 * N))
(scikit-learn minimises C * sum_i CE_i + ||W||^2 / 2, i.e. our J times C * N).

L-BFGS runs on preconditioned weights V = diag(1/d) U^T W, where U and s are
the eigenvectors and eigenvalues of the feature covariance and
d = (s + l2)^(-1/2): the objective and its optimum are unchanged, but its
curvature is far more uniform, which halved the whole-grid time on the
bench's 50k x 2048, 100-class features (402 s -> 192 s, same test top-1).

Everything runs in float32 inside one `tf.function` per problem shape, so the
same code uses a GPU/TPU when TensorFlow has one; `features.TrainingFeatures`
supplies the data part of J, whole or accumulated over streamed chunks.
"""

import dataclasses
import math
from typing import Callable, Iterator, Optional, Tuple

import numpy as np
import tensorflow as tf

from evaluation import lbfgs
from evaluation.logistic_regression import features as feature_lib

_DTYPE = feature_lib.DTYPE
_NP_DTYPE = feature_lib.NP_DTYPE

# Weight of the feature covariance against l2 in the preconditioner. 1 makes
# it (Cov + l2 I)^(-1/2), a ridge-regularised whitening. Measured on the
# bench's 20k x 512 features (grid 1e-1..1e-6, tol 1e-6): whole-grid time
# 25.8 s unpreconditioned, 21.4 / 13.4 / 13.7 s for 0.25 / 1 / 4 with 100
# classes, 8.1 s vs 5.3 / 3.3 s for 1 / 4 with 10 classes; same test top-1.
PRECONDITIONER_CURVATURE = 1.0
# Rows that estimate the feature covariance for the preconditioner.
_PRECONDITIONER_ROWS = 100_000


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


# ----------------------------------------------------------------------------
# The problem: training features, labels and the preconditioner's eigenbasis.


@dataclasses.dataclass
class Problem:
  """Validated training data, prepared once for fits at any number of l2."""
  data: feature_lib.TrainingFeatures
  num_classes: int
  # Eigen-decomposition of the (standardised) feature covariance, for the
  # preconditioner: eigenvectors [D, D] and eigenvalues [D]; None: off.
  basis: Optional[np.ndarray] = None
  spectrum: Optional[np.ndarray] = None

  @property
  def dim(self) -> int:
    return self.data.dim


def prepare(features: feature_lib.Features, labels, num_classes: int,
            standardize: bool, precondition: bool = True) -> Problem:
  """Validates features [N, D] and labels [N] and computes their statistics."""
  num_classes = _check_num_classes(num_classes)
  n, _ = feature_lib.feature_shape(features)
  y = feature_lib.check_labels(labels, n, num_classes)
  problem = Problem(feature_lib.training_features(features, y, standardize),
                    num_classes)
  if precondition:
    problem.basis, problem.spectrum = _eigen(
        problem.data.covariance(_PRECONDITIONER_ROWS))
  return problem


def _check_num_classes(num_classes):
  if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
    raise ValueError(f"num_classes must be an int >= 2, got {num_classes!r}.")
  if num_classes < 2:
    raise ValueError(f"num_classes must be >= 2, got {num_classes}.")
  return int(num_classes)


def _eigen(covariance: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
  spectrum, basis = np.linalg.eigh(covariance.astype(np.float64))
  return basis.astype(_NP_DTYPE), np.maximum(spectrum, 0.0)


def _precondition_diag(spectrum: np.ndarray, l2: float) -> np.ndarray:
  """d = (c s + l2)^(-1/2) for covariance eigenvalues s.

  J's Hessian in W is roughly proportional to Cov (x) I plus l2 * I; in
  V = diag(1/d) U^T W its spread of eigenvalues shrinks, so L-BFGS needs
  fewer iterations, above all for weak l2 where Cov's small eigenvalues
  would set the conditioning. The optimum (in W) is the same.
  """
  floor = 1e-6 * max(float(spectrum.max()), 1e-12)
  return 1.0 / np.sqrt(np.maximum(PRECONDITIONER_CURVATURE * spectrum + l2, floor))


# ----------------------------------------------------------------------------
# The objective and the compiled solver.


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


# L-BFGS iterations per compiled call. Between calls the host regains control
# (Python runs its signal handlers only then) and asks `interrupt`: a fit on a
# 4,096-d layer ran more than 25 minutes, longer than any preemption grace
# period, as one call. The iterates are the same as in one call (the whole
# L-BFGS state is carried across), and so is the time: a 3-value grid took
# 2.00-2.18 s against 2.15-2.22 s as one call on 16,000 x 512 features, and
# 1.28-1.30 s against 1.22-1.40 s on 4,000 x 64 (three runs each).
ITERATIONS_PER_CALL = 20


def _value_and_grad(data_terms, data, dim, num_examples, num_classes, l2,
                    block_rows, basis, diag):
  return lambda params: _objective(
      params, dim, num_classes, num_examples, l2,
      lambda w, b: data_terms(data, w, b, block_rows), basis, diag)


@tf.function(autograph=False, reduce_retracing=True)
def _start(data_terms, data, dim, num_examples, params0, num_classes, l2, tol,
           block_rows, history, basis, diag):
  """The L-BFGS state at params0, for J whose data part is
  data_terms(data, w, b, block_rows)."""
  fn = _value_and_grad(data_terms, data, dim, num_examples, num_classes, l2,
                       block_rows, basis, diag)
  return lbfgs.start_graph(fn, params0, tol, num_correction_pairs=history)


@tf.function(autograph=False, reduce_retracing=True)
def _advance(data_terms, data, dim, num_examples, state, num_classes, l2, until,
             tol, ftol, block_rows, history, basis, diag):
  """L-BFGS on J from `state` until iteration `until` (or convergence)."""
  fn = _value_and_grad(data_terms, data, dim, num_examples, num_classes, l2,
                       block_rows, basis, diag)
  return lbfgs.advance_graph(fn, state, until, tol, ftol,
                             num_correction_pairs=history)


def _initial_params(problem: Problem, init: Optional[LinearModel],
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
  mean, scale = problem.data.mean, problem.data.scale
  if mean is not None:
    # Inverse of the folding in fit_problem(): the same raw-feature
    # classifier expressed on this problem's standardised features.
    b = b + mean.astype(np.float64) @ w
    w = w * scale.astype(np.float64)[:, None]
  if diag is not None:
    w = (problem.basis.astype(np.float64).T @ w) / diag[:, None]
  return np.concatenate([w.ravel(), b]).astype(_NP_DTYPE)


def fit_problem(problem: Problem, l2: float, max_iter: int, tol: float,
                init: Optional[LinearModel], history: int,
                block_rows: Optional[int],
                interrupt: Optional[Callable[[], None]] = None) -> LinearModel:
  """`fit` on a prepared problem (arguments as there)."""
  if not (isinstance(l2, (int, float, np.floating, np.integer)) and
          math.isfinite(l2) and l2 >= 0):
    raise ValueError(f"l2 must be a finite number >= 0, got {l2!r}.")
  if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or \
      max_iter < 0:
    raise ValueError(f"max_iter must be an int >= 0, got {max_iter!r}.")
  if not (isinstance(tol, (int, float, np.floating)) and tol >= 0):
    raise ValueError(f"tol must be a number >= 0, got {tol!r}.")
  if block_rows is None:
    block_rows = feature_lib.default_block_rows(problem.dim)
  if isinstance(block_rows, bool) or not isinstance(block_rows, (int, np.integer)) \
      or block_rows < 1:
    raise ValueError(f"block_rows must be a positive int or None, got {block_rows!r}.")
  data = problem.data
  d, c = data.dim, problem.num_classes
  diag = None
  if problem.basis is not None:
    diag = _precondition_diag(problem.spectrum, float(l2))
  params0 = tf.constant(_initial_params(problem, init, diag))
  common = dict(data_terms=data.data_terms, data=data.graph_inputs(),
                dim=tf.constant(d), num_examples=tf.constant(float(data.num_examples), _DTYPE),
                num_classes=tf.constant(c), l2=tf.constant(l2, _DTYPE),
                tol=tf.constant(tol, _DTYPE), block_rows=tf.constant(block_rows),
                history=int(history),
                basis=None if diag is None else tf.constant(problem.basis),
                diag=None if diag is None else tf.constant(diag, _DTYPE))
  state = _start(params0=params0, **common)
  while not (bool(state.converged) or bool(state.failed)
             or int(state.iteration) >= max_iter):
    if interrupt is not None:
      interrupt()
    until = min(max_iter, int(state.iteration) + ITERATIONS_PER_CALL)
    state = _advance(state=state, until=tf.constant(until),
                     ftol=tf.constant(0.0, _DTYPE), **common)
  result = lbfgs.result_of(state)

  params = result.position.numpy().astype(np.float64)
  w, b = params[:d * c].reshape(d, c), params[d * c:]
  if diag is not None:
    w = problem.basis.astype(np.float64) @ (diag[:, None] * w)
  if data.mean is not None:
    # logits = ((x - mean) / scale) @ w + b = x @ (w / scale) + (b - (mean / scale) @ w)
    w = w / data.scale.astype(np.float64)[:, None]
    b = b - data.mean.astype(np.float64) @ w
  return LinearModel(weights=w.astype(_NP_DTYPE), bias=b.astype(_NP_DTYPE),
                     l2=float(l2), iterations=int(result.num_iterations),
                     converged=bool(result.converged), objective=float(result.value),
                     num_evaluations=int(result.num_evaluations),
                     feature_mean=data.mean, feature_scale=data.scale)


# ----------------------------------------------------------------------------
# Public API.


def fit(features: feature_lib.Features, labels, num_classes: int, l2: float = 1e-4,
        max_iter: int = 500, tol: float = 1e-6, init: Optional[LinearModel] = None,
        standardize: bool = True, history: int = 10,
        block_rows: Optional[int] = None, precondition: bool = True,
        interrupt: Optional[Callable[[], None]] = None) -> LinearModel:
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
      see features.py). The returned model always takes raw features.
    history: number of L-BFGS correction pairs.
    block_rows: rows per block inside one evaluation (speed only; changes the
      float32 summation order); None picks `default_block_rows(D)`.
    precondition: solve in whitened weight coordinates (the eigenbasis of
      the feature covariance, estimated on up to 100k rows); the same
      optimum in fewer iterations (see PRECONDITIONER_CURVATURE). Costs one
      [D, D] covariance and eigendecomposition per problem and two [D, D] x
      [D, C] products per evaluation.
    interrupt: called every ITERATIONS_PER_CALL iterations while the fit goes
      on; an exception it raises stops the fit (a preemption check: the
      evaluation raises training.preemption.Preempted there).

  Returns:
    LinearModel with weights [D, C] and bias [C] for raw features.
  """
  problem = prepare(features, labels, num_classes, standardize, precondition)
  return fit_problem(problem, l2, max_iter, tol, init, history, block_rows,
                     interrupt)


@tf.function(autograph=False, reduce_retracing=True)
def _logits(x, w, b):
  return tf.matmul(x, w) + b


def _model_blocks(model: LinearModel,
                  features: feature_lib.Features) -> Iterator[tf.Tensor]:
  """`feature_lib.raw_blocks`, once the width is checked against the model."""
  _, d = feature_lib.feature_shape(features)
  if d != model.weights.shape[0]:
    raise ValueError(f"features have {d} columns but the model expects "
                     f"{model.weights.shape[0]}; use the same layer/pooling as in fit.")
  yield from feature_lib.raw_blocks(features)


def predict_logits(model: LinearModel, features: feature_lib.Features) -> np.ndarray:
  """Class scores of raw features.

  Args:
    model: from `fit`.
    features: [N, D] array/tensor or ChunkedFeatures.
  Returns:
    [N, C] float32 logits.
  """
  w, b = tf.constant(model.weights), tf.constant(model.bias)
  blocks = [_logits(x, w, b).numpy() for x in _model_blocks(model, features)]
  return np.concatenate(blocks, axis=0)


@tf.function(autograph=False, reduce_retracing=True)
def _count_top_k(x, y, w, b, k):
  logits = tf.matmul(x, w) + b
  true_logits = tf.gather(logits, y, axis=1, batch_dims=1)
  # Ties count against the example, so a constant classifier scores 0 rather
  # than 100% top-1.
  rank = tf.reduce_sum(tf.cast(logits >= true_logits[:, None], tf.int32), axis=1) - 1
  return tf.reduce_sum(tf.cast(rank < k, tf.int64))


def accuracy(model: LinearModel, features: feature_lib.Features, labels,
             k: int = 1) -> float:
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
  n, _ = feature_lib.feature_shape(features)
  y = feature_lib.check_labels(labels, n, model.num_classes)
  w, b = tf.constant(model.weights), tf.constant(model.bias)
  correct, start = 0, 0
  for x in _model_blocks(model, features):
    stop = start + int(x.shape[0])
    correct += int(_count_top_k(x, tf.constant(y[start:stop]), w, b, tf.constant(k)))
    start = stop
  return correct / n
