"""Tests for evaluation/logistic_regression/ against known answers and an
independent reference: scipy's L-BFGS-B on the same float64 objective.

(scikit-learn was the reference once; it is not a dependency any more because
Keras imports it, when installed, on every `import tensorflow`, which cost each
command line ~20% of its start-up.)"""

import warnings

import numpy as np
import pytest
import tensorflow as tf
from scipy import optimize

from evaluation import logistic_regression as lr
from evaluation.logistic_regression import features as lr_features
from evaluation.logistic_regression import solver


def _overlapping_classes(n=2000, dim=64, classes=5, seed=0, scale_spread=0.0):
  """Gaussian classes with overlapping means; optionally badly scaled columns."""
  rng = np.random.default_rng(seed)
  means = 0.3 * rng.normal(size=(classes, dim))
  y = rng.integers(0, classes, n)
  x = means[y] + rng.normal(size=(n, dim))
  if scale_spread:
    x = (x + rng.uniform(0, 5, dim)) * 10.0**rng.uniform(-scale_spread, scale_spread,
                                                         dim)
  return x.astype(np.float32), y


def _objective64(weights, bias, x, y, l2):
  """J of the module docstring, in float64, for raw features x."""
  logits = x.astype(np.float64) @ weights.astype(np.float64) + bias
  logits -= logits.max(axis=1, keepdims=True)
  log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
  return -log_probs[np.arange(len(y)), y].mean() + 0.5 * l2 * np.sum(
      weights.astype(np.float64)**2)


class StandardScaler:
  """Columns to zero mean and unit variance (population std; a constant column
  keeps scale 1), as a standardising preprocessor does."""

  def fit(self, x):
    x = np.asarray(x, np.float64)
    self.mean_ = x.mean(axis=0)
    scale = x.std(axis=0)
    self.scale_ = np.where(scale == 0.0, 1.0, scale)
    return self

  def transform(self, x):
    return (np.asarray(x, np.float64) - self.mean_) / self.scale_

  def fit_transform(self, x):
    return self.fit(x).transform(x)


class _Reference:
  """Multinomial logistic regression minimising `_objective64` (bias free of
  L2) with scipy's L-BFGS-B to a tight gradient tolerance."""

  def __init__(self, x, y, l2, tol):
    x = np.asarray(x, np.float64)
    n, dim = x.shape
    classes = int(y.max()) + 1
    onehot = np.eye(classes)[y]

    def objective(theta):
      weights = theta[:dim * classes].reshape(dim, classes)
      bias = theta[dim * classes:]
      logits = x @ weights + bias
      logits -= logits.max(axis=1, keepdims=True)
      log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
      value = -(log_probs * onehot).sum() / n + 0.5 * l2 * np.sum(weights**2)
      residual = (np.exp(log_probs) - onehot) / n
      grad = np.concatenate([(x.T @ residual + l2 * weights).ravel(),
                             residual.sum(axis=0)])
      return value, grad

    solution = optimize.minimize(
        objective, np.zeros(dim * classes + classes), jac=True, method="L-BFGS-B",
        options=dict(maxiter=5000, gtol=tol, ftol=1e-15))
    self.coef_ = solution.x[:dim * classes].reshape(dim, classes).T
    self.intercept_ = solution.x[dim * classes:]

  def decision_function(self, x):
    return np.asarray(x, np.float64) @ self.coef_.T + self.intercept_

  def score(self, x, y):
    return float(np.mean(self.decision_function(x).argmax(axis=1) == y))


def _reference(x, y, l2, tol=1e-8):
  return _Reference(x, y, l2, tol)


@pytest.fixture(scope="module")
def overlapping():
  return _overlapping_classes()


def test_separable_problem_is_solved_with_correct_signs():
  rng = np.random.default_rng(3)
  # Class c is the one whose own feature is largest; feature 3 is pure noise.
  y = rng.integers(0, 3, 300)
  x = rng.uniform(0.0, 1.0, size=(300, 4))
  x[np.arange(300), y] += 1.5
  model = lr.fit(x.astype(np.float32), y, 3, l2=1e-3, tol=1e-5)
  assert lr.accuracy(model, x, y) == 1.0
  w = model.weights
  for c in range(3):
    # A class's own feature raises its logit relative to every other class.
    assert all(w[c, c] > w[c, other] for other in range(3) if other != c)
  assert np.abs(w[3]).max() < 0.2 * np.abs(w[:3]).max()


def test_matches_the_reference_on_raw_features(overlapping):
  x, y = overlapping
  l2 = 1e-2
  ours = lr.fit(x, y, 5, l2=l2, standardize=False, tol=1e-6)
  ref = _reference(x, y, l2)
  ref_objective = _objective64(ref.coef_.T, ref.intercept_, x, y, l2)
  our_objective = _objective64(ours.weights, ours.bias, x, y, l2)
  assert ours.converged
  assert abs(our_objective - ref_objective) <= 1e-4 * ref_objective
  assert abs(ours.objective - ref_objective) <= 1e-4 * ref_objective
  assert abs(lr.accuracy(ours, x, y) - ref.score(x, y)) <= 0.005
  np.testing.assert_allclose(ours.weights, ref.coef_.T, atol=1e-3)


def test_standardized_fit_matches_the_reference_after_standardizing(overlapping):
  x, y = overlapping
  l2 = 1e-3
  ours = lr.fit(x, y, 5, l2=l2, tol=1e-6)
  scaler = StandardScaler().fit(x)
  ref = _reference(scaler.transform(x), y, l2)
  ref_objective = _objective64(ref.coef_.T, ref.intercept_, scaler.transform(x), y, l2)
  assert abs(ours.objective - ref_objective) <= 1e-4 * ref_objective
  # The folded model acts on raw features exactly like the standardised reference.
  np.testing.assert_allclose(lr.predict_logits(ours, x)[:, 1:] -
                             lr.predict_logits(ours, x)[:, :1],
                             ref.decision_function(scaler.transform(x))[:, 1:] -
                             ref.decision_function(scaler.transform(x))[:, :1],
                             atol=1e-2)
  np.testing.assert_allclose(ours.feature_mean, scaler.mean_, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(ours.feature_scale, scaler.scale_, rtol=1e-5)


def test_standardization_fixes_badly_scaled_features():
  x, y = _overlapping_classes(n=1500, dim=32, seed=1, scale_spread=2.0)
  l2 = 1e-2
  raw = lr.fit(x, y, 5, l2=l2, standardize=False, max_iter=150,
               precondition=False)
  std = lr.fit(x, y, 5, l2=l2, max_iter=150, precondition=False)
  ref = _reference(StandardScaler().fit_transform(x), y, l2)
  assert std.converged and not raw.converged
  assert std.iterations < 60
  assert abs(lr.accuracy(std, x, y) -
             ref.score(StandardScaler().fit_transform(x), y)) <= 0.005


def _correlated_features(n, dim, classes, seed):
  """Features mixed through a low-rank latent: a badly conditioned covariance."""
  rng = np.random.default_rng(seed)
  y = rng.integers(0, classes, n)
  latent = rng.normal(size=(classes, 8))[y] + rng.normal(size=(n, 8))
  x = latent @ rng.normal(size=(8, dim)) + 0.05 * rng.normal(size=(n, dim))
  return np.maximum(x, 0).astype(np.float32), y


def test_preconditioning_reaches_the_same_optimum_in_fewer_iterations():
  x, y = _correlated_features(3000, 64, 6, seed=2)
  # Measured: 54 vs 55 iterations at l2=1e-2, 212 vs 95 at 1e-4, 297 vs 110
  # at 1e-5; weak l2 is where the covariance's conditioning matters.
  for l2 in (1e-2, 1e-4, 1e-5):
    plain = lr.fit(x, y, 6, l2=l2, max_iter=2000, tol=1e-5, precondition=False)
    pre = lr.fit(x, y, 6, l2=l2, max_iter=2000, tol=1e-5)
    assert plain.converged and pre.converged
    if l2 < 1e-3:
      assert pre.iterations < 0.6 * plain.iterations, l2
    np.testing.assert_allclose(pre.objective, plain.objective, rtol=1e-4)
    np.testing.assert_allclose(lr.predict_logits(pre, x), lr.predict_logits(plain, x),
                               atol=0.05 if l2 == 1e-2 else 0.5)
    ref = _reference(StandardScaler().fit_transform(x), y, l2)
    assert abs(lr.accuracy(pre, x, y)
               - ref.score(StandardScaler().fit_transform(x), y)) <= 0.005


def test_constant_features_are_harmless(overlapping):
  x, y = overlapping
  x = np.concatenate([x, np.zeros([len(y), 2], np.float32),
                      np.full([len(y), 1], 7.0, np.float32)], axis=1)
  model = lr.fit(x, y, 5, l2=1e-2)
  assert model.converged
  np.testing.assert_array_equal(model.feature_scale[-3:], 1.0)
  assert np.all(np.isfinite(model.weights)) and np.all(np.isfinite(model.bias))


def test_chunked_fit_equals_in_memory_fit(overlapping, tmp_path):
  x, y = overlapping
  path = tmp_path / "features.f32"
  memmap = np.memmap(path, dtype=np.float32, mode="w+", shape=x.shape)
  memmap[:] = x
  memmap.flush()
  on_disk = np.memmap(path, dtype=np.float32, mode="r", shape=x.shape)
  dense = lr.fit(x, y, 5, l2=1e-2, tol=1e-5)
  chunked = lr.fit(lr.ChunkedFeatures(on_disk, 300), y, 5, l2=1e-2, tol=1e-5)
  assert dense.converged and chunked.converged
  assert chunked.iterations == dense.iterations
  scale = np.abs(dense.weights).max()
  np.testing.assert_allclose(chunked.weights, dense.weights, atol=1e-5 * scale)
  np.testing.assert_allclose(chunked.bias, dense.bias, atol=1e-5 * scale)
  np.testing.assert_allclose(lr.predict_logits(dense, lr.ChunkedFeatures(on_disk, 700)),
                             lr.predict_logits(dense, x), rtol=1e-5, atol=1e-5)
  assert lr.accuracy(dense, lr.ChunkedFeatures(on_disk, 700), y) == lr.accuracy(
      dense, x, y)


def test_host_matrices_cross_in_blocks_with_the_same_fit(overlapping, monkeypatch):
  x, y = overlapping
  whole = lr.fit(tf.constant(x), y, 5, l2=1e-2, tol=1e-5)  # one tensor
  monkeypatch.setattr(lr_features, "_host_block_rows", lambda dim: 300)  # 6 + a partial
  blocked = lr.fit(x, y, 5, l2=1e-2, tol=1e-5)
  assert blocked.iterations == whole.iterations
  scale = np.abs(whole.weights).max()
  np.testing.assert_allclose(blocked.weights, whole.weights, atol=1e-5 * scale)
  np.testing.assert_allclose(blocked.feature_mean, whole.feature_mean,
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(lr.predict_logits(whole, x),
                             lr.predict_logits(whole, tf.constant(x)),
                             rtol=1e-5, atol=1e-5)
  assert lr.accuracy(whole, x, y) == lr.accuracy(whole, tf.constant(x), y)
  bad = x.copy()
  bad[1234, 3] = np.nan  # in the fifth block
  with pytest.raises(ValueError, match="row 1234"):
    lr.fit(bad, y, 5)


def test_row_blocking_does_not_change_the_fit(overlapping):
  x, y = overlapping
  assert lr.default_block_rows(64) >= len(y)  # the default is one block here
  whole = lr.fit(x, y, 5, l2=1e-2, tol=1e-5)
  blocked = lr.fit(x, y, 5, l2=1e-2, tol=1e-5, block_rows=300)  # 6 full + 1 partial
  assert blocked.iterations == whole.iterations
  scale = np.abs(whole.weights).max()
  np.testing.assert_allclose(blocked.weights, whole.weights, atol=1e-5 * scale)
  np.testing.assert_allclose(blocked.objective, whole.objective, rtol=1e-6)
  with pytest.raises(ValueError, match="block_rows"):
    lr.fit(x, y, 5, block_rows=0)


def test_tensor_inputs_and_determinism(overlapping):
  x, y = overlapping
  a = lr.fit(x, y, 5, l2=1e-2, tol=1e-5)
  b = lr.fit(tf.constant(x), tf.constant(y), 5, l2=1e-2, tol=1e-5)
  np.testing.assert_array_equal(a.weights, b.weights)
  np.testing.assert_array_equal(a.bias, b.bias)
  assert a.iterations == b.iterations


def test_accuracy_top_k(overlapping):
  x, y = overlapping
  model = lr.fit(x, y, 5, l2=1e-2, tol=1e-4)
  logits = lr.predict_logits(model, x)
  assert logits.shape == (2000, 5)
  assert lr.accuracy(model, x, y) == np.mean(np.argmax(logits, axis=1) == y)
  top2 = np.argsort(-logits, axis=1)[:, :2]
  assert lr.accuracy(model, x, y, k=2) == np.mean((top2 == y[:, None]).any(axis=1))
  assert lr.accuracy(model, x, y, k=5) == 1.0


def test_warm_start_from_solution_converges_immediately(overlapping):
  x, y = overlapping
  first = lr.fit(x, y, 5, l2=1e-2, tol=1e-5)
  again = lr.fit(x, y, 5, l2=1e-2, tol=1e-5, init=first)
  assert again.iterations <= 2
  np.testing.assert_allclose(again.weights, first.weights, atol=1e-4)


def test_grid_search_picks_best_validation_l2_and_warm_start_saves_work(overlapping):
  x, y = overlapping
  train_x, train_y, val_x, val_y = x[:1000], y[:1000], x[1000:], y[1000:]
  grid = (1e-4, 1e-1, 1e-2, 1e-3)  # unsorted on purpose
  lines = []
  result = lr.grid_search(train_x, train_y, val_x, val_y, 5, l2_grid=grid, tol=1e-5,
                          search_tol=None, log=lines.append)
  accs = result["val_top1_by_l2"]
  assert sorted(accs) == sorted(grid) and len(lines) == 4
  best = max(accs.values())
  assert result["best_l2"] == max(l2 for l2, acc in accs.items() if acc == best)
  assert result["model"].l2 == result["best_l2"]
  assert lr.accuracy(result["model"], val_x, val_y) == best
  # On this overlapping problem strong regularisation must win over 1e-4.
  assert accs[1e-4] < best

  cold = {l2: lr.fit(train_x, train_y, 5, l2=l2, tol=1e-5) for l2 in grid}
  best_cold = cold[result["best_l2"]]
  # Warm starts change the path, not the optimum.
  assert abs(result["model"].objective -
             best_cold.objective) <= 1e-5 * best_cold.objective
  assert sum(result["iterations_by_l2"].values()) < sum(
      m.iterations for m in cold.values())


@pytest.mark.parametrize("mutate,match", [
    (lambda x, y: (x, np.where(y == 0, 5, y)), r"outside \[0, 5\)"),
    (lambda x, y: (x, y - 1), r"outside \[0, 5\)"),
    (lambda x, y: (np.where(np.arange(len(y))[:, None] == 7, np.nan, x), y),
     "NaN or Inf .*row 7"),
    (lambda x, y: (x, y[:-1]), "one label per feature row"),
    (lambda x, y: (x, y.astype(np.float32)), "integer dtype"),
    (lambda x, y: (x[:, :, None], y), r"matrix \[N, D\]"),
    (lambda x, y: (x, np.eye(5)[y].astype(np.int64)), "one-hot"),
])
def test_invalid_inputs_raise(overlapping, mutate, match):
  x, y = mutate(*overlapping)
  with pytest.raises(ValueError, match=match):
    lr.fit(x, y, 5)


def test_invalid_chunked_and_settings_raise(overlapping):
  x, y = overlapping
  bad = x.copy()
  bad[1234, 3] = np.inf
  with pytest.raises(ValueError, match="row 1234"):
    lr.fit(lr.ChunkedFeatures(bad, 500), y, 5)
  with pytest.raises(ValueError, match="chunk_size"):
    lr.ChunkedFeatures(x, 0)
  with pytest.raises(ValueError, match="l2"):
    lr.fit(x, y, 5, l2=-1.0)
  with pytest.raises(ValueError, match="num_classes"):
    lr.fit(x, np.zeros_like(y), 1)
  with pytest.raises(ValueError, match="same shape"):
    lr.fit(x[:, :10], y, 5, init=lr.fit(x[:, :8], y, 5, max_iter=1))
  with pytest.raises(ValueError, match="columns"):
    lr.grid_search(x, y, x[:, :10], y, 5)
  with pytest.raises(ValueError, match="l2_grid is empty"):
    lr.grid_search(x, y, x, y, 5, l2_grid=())


def test_loose_ranking_fits_choose_the_same_l2_and_polish_the_winner(overlapping):
  x, y = overlapping
  train_x, train_y, val_x, val_y = x[:1000], y[:1000], x[1000:], y[1000:]
  grid = (1e-1, 1e-2, 1e-3, 1e-4)
  exact = lr.grid_search(train_x, train_y, val_x, val_y, 5, l2_grid=grid,
                         tol=1e-6, search_tol=None)
  lines = []
  fast = lr.grid_search(train_x, train_y, val_x, val_y, 5, l2_grid=grid,
                        tol=1e-6, search_tol=1e-3, log=lines.append)
  assert fast["best_l2"] == exact["best_l2"]
  assert len(lines) == 5 and "polished to tol 1e-06" in lines[-1]
  assert sum(fast["iterations_by_l2"].values()) < sum(
      exact["iterations_by_l2"].values())
  direct = lr.fit(train_x, train_y, 5, l2=fast["best_l2"], tol=1e-6)
  np.testing.assert_allclose(fast["model"].objective, direct.objective, rtol=1e-5)
  np.testing.assert_allclose(lr.predict_logits(fast["model"], val_x),
                             lr.predict_logits(direct, val_x), atol=2e-2)


def test_a_fit_in_calls_of_one_iteration_is_the_fit_in_calls_of_twenty(monkeypatch):
  x, y = _overlapping_classes()
  whole = lr.fit(x, y, 5, l2=1e-4, tol=1e-6)
  assert whole.iterations > 20  # more than one call of ITERATIONS_PER_CALL
  asked = []
  monkeypatch.setattr(solver, "ITERATIONS_PER_CALL", 1)
  split = lr.fit(x, y, 5, l2=1e-4, tol=1e-6, interrupt=lambda: asked.append(1))
  np.testing.assert_array_equal(split.weights, whole.weights)
  np.testing.assert_array_equal(split.bias, whole.bias)
  assert (split.iterations, split.num_evaluations, split.converged) == (
      whole.iterations, whole.num_evaluations, whole.converged)
  # Asked before every call that had work left: once per iteration here.
  assert len(asked) == whole.iterations


def test_an_interrupt_stops_the_fit_between_calls(monkeypatch):
  x, y = _overlapping_classes()
  monkeypatch.setattr(solver, "ITERATIONS_PER_CALL", 2)
  asked = []

  def interrupt():
    asked.append(1)
    if len(asked) == 3:
      raise KeyboardInterrupt("stop")

  with pytest.raises(KeyboardInterrupt, match="stop"):
    lr.fit(x, y, 5, l2=1e-4, tol=1e-6, interrupt=interrupt)
  assert len(asked) == 3
  asked.clear()
  with pytest.raises(KeyboardInterrupt, match="stop"):
    lr.grid_search(x[:1500], y[:1500], x[1500:], y[1500:], 5, l2_grid=[1e-2, 1e-4],
                   interrupt=interrupt)
  assert len(asked) == 3
