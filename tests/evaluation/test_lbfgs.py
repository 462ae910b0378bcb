"""Tests for evaluation/lbfgs.py: convergence to known minimisers and edge cases."""

import numpy as np
import pytest
import tensorflow as tf

from evaluation import lbfgs


def _quadratic(dim, condition, dtype, seed=0):
  """f(x) = x'Ax/2 - b'x with a known minimiser A^-1 b and given condition number."""
  rng = np.random.default_rng(seed)
  q, _ = np.linalg.qr(rng.normal(size=(dim, dim)))
  a = q @ np.diag(np.geomspace(1.0, condition, dim)) @ q.T
  b = rng.normal(size=dim)
  a_t, b_t = tf.constant(a, dtype), tf.constant(b, dtype)

  def fn(x):
    ax = tf.linalg.matvec(a_t, x)
    return 0.5 * tf.reduce_sum(x * ax) - tf.reduce_sum(b_t * x), ax - b_t

  return fn, np.linalg.solve(a, b)


def _rosenbrock(x):
  with tf.GradientTape() as tape:
    tape.watch(x)
    f = tf.reduce_sum(100.0 * (x[1:] - x[:-1]**2)**2 + (1.0 - x[:-1])**2)
  return f, tape.gradient(f, x)


def test_quadratic_float64_reaches_exact_minimiser():
  fn, x_star = _quadratic(dim=30, condition=100.0, dtype=tf.float64)
  result = lbfgs.minimize(fn, tf.zeros([30], tf.float64), gradient_tolerance=1e-10)
  assert bool(result.converged) and not bool(result.failed)
  assert np.max(np.abs(result.gradient.numpy())) <= 1e-10
  np.testing.assert_allclose(result.position.numpy(), x_star, atol=1e-9)
  # SciPy's L-BFGS-B stalls here after 77 iterations at max|g| ~ 8e-8 (its
  # f-based line search runs out of float64 resolution); 106 take us to 1e-10.
  assert int(result.num_iterations) < 130


def test_quadratic_float32_to_float32_precision():
  fn, x_star = _quadratic(dim=30, condition=100.0, dtype=tf.float32)
  result = lbfgs.minimize(fn, tf.zeros([30], tf.float32), gradient_tolerance=1e-5)
  assert bool(result.converged)
  np.testing.assert_allclose(result.position.numpy(), x_star, atol=2e-5)


@pytest.mark.parametrize("dtype,atol", [(tf.float64, 1e-7), (tf.float32, 1e-3)])
def test_rosenbrock(dtype, atol):
  x0 = tf.constant([-1.2, 1.0] * 5, dtype)
  result = lbfgs.minimize(_rosenbrock, x0, max_iterations=1000,
                          gradient_tolerance=1e-9 if dtype == tf.float64 else 1e-4)
  assert bool(result.converged)
  np.testing.assert_allclose(result.position.numpy(), np.ones(10), atol=atol)
  assert int(result.num_evaluations) < 3 * int(result.num_iterations) + 10


def test_line_search_recovers_from_non_finite_trial_steps():
  # The log barrier is NaN for x <= 0; the first unit-length steepest-descent
  # step from near 0 leaves the domain, so the search must shrink the step.
  def fn(x):
    return (tf.reduce_sum(x * x - tf.math.log(x)), 2.0 * x - 1.0 / x)

  result = lbfgs.minimize(fn, tf.fill([4], tf.constant(0.05, tf.float64)),
                          gradient_tolerance=1e-10)
  assert bool(result.converged)
  np.testing.assert_allclose(result.position.numpy(), np.full(4, np.sqrt(0.5)),
                             atol=1e-9)


def test_works_inside_a_user_tf_function_with_tensor_tolerances():
  fn, x_star = _quadratic(dim=5, condition=10.0, dtype=tf.float64)

  @tf.function
  def solve(x0, tol):
    return lbfgs.minimize_graph(fn, x0, 100, tol, 0.0)

  result = solve(tf.zeros([5], tf.float64), tf.constant(1e-11, tf.float64))
  np.testing.assert_allclose(result.position.numpy(), x_star, atol=1e-10)


def test_iteration_cap_and_reporting():
  x0 = tf.constant([-1.2, 1.0], tf.float64)
  result = lbfgs.minimize(_rosenbrock, x0, max_iterations=3)
  assert int(result.num_iterations) == 3
  assert not bool(result.converged) and not bool(result.failed)
  assert float(result.value) < float(_rosenbrock(x0)[0])


def test_start_at_minimum_takes_zero_iterations():
  result = lbfgs.minimize(_rosenbrock, tf.ones([2], tf.float64))
  assert int(result.num_iterations) == 0
  assert bool(result.converged)


def test_non_finite_start_fails_without_iterating():
  def fn(x):
    return tf.reduce_sum(tf.math.log(x)), 1.0 / x

  result = lbfgs.minimize(fn, tf.constant([-1.0, 2.0], tf.float64))
  assert bool(result.failed) and not bool(result.converged)
  assert int(result.num_iterations) == 0


def test_f_relative_tolerance_stops_early():
  fn, _ = _quadratic(dim=30, condition=1e4, dtype=tf.float64)
  strict = lbfgs.minimize(fn, tf.zeros([30], tf.float64), gradient_tolerance=0.0,
                          max_iterations=300)
  loose = lbfgs.minimize(fn, tf.zeros([30], tf.float64), gradient_tolerance=0.0,
                         f_relative_tolerance=1e-6, max_iterations=300)
  assert bool(loose.converged)
  assert int(loose.num_iterations) < int(strict.num_iterations)


@pytest.mark.parametrize("kwargs,match", [
    (dict(c1=0.9, c2=0.1), "0 < c1 < c2 < 1"),
    (dict(max_iterations=-1), "max_iterations"),
    (dict(max_line_search_evaluations=0), "max_line_search_evaluations"),
    (dict(num_correction_pairs=0), "num_correction_pairs"),
])
def test_invalid_settings_raise(kwargs, match):
  with pytest.raises(ValueError, match=match):
    lbfgs.minimize(_rosenbrock, tf.zeros([2], tf.float64), **kwargs)


@pytest.mark.parametrize("x0,match", [
    (tf.zeros([2, 2], tf.float64), "vector"),
    (tf.zeros([2], tf.int32), "floating point"),
])
def test_invalid_start_raises(x0, match):
  with pytest.raises(ValueError, match=match):
    lbfgs.minimize(lambda x: (tf.reduce_sum(x), x), x0)


@tf.function(autograph=False)
def _start_rosenbrock(x0):
  return lbfgs.start_graph(_rosenbrock, x0, 0.0, num_correction_pairs=5)


@tf.function(autograph=False)
def _advance_rosenbrock(state, until):
  return lbfgs.advance_graph(_rosenbrock, state, until, 0.0, 0.0,
                             num_correction_pairs=5)


def test_a_run_split_into_calls_computes_the_same_iterates():
  """The state carries everything: 7 iterations per call, the same 60
  iterates, bit for bit, as one call (the solver's preemption checks sit
  between such calls)."""
  x0 = tf.constant([-1.2, 1.0] * 5, tf.float64)
  whole = lbfgs.minimize(_rosenbrock, x0, max_iterations=60, gradient_tolerance=0.0,
                         num_correction_pairs=5)
  state = _start_rosenbrock(x0)
  calls = 0
  while int(state.iteration) < 60 and not bool(state.converged | state.failed):
    state = _advance_rosenbrock(state, tf.constant(min(60, int(state.iteration) + 7)))
    calls += 1
  split = lbfgs.result_of(state)
  assert calls == 9 and int(split.num_iterations) == 60
  assert int(split.num_evaluations) == int(whole.num_evaluations)
  np.testing.assert_array_equal(split.position.numpy(), whole.position.numpy())
  np.testing.assert_array_equal(split.gradient.numpy(), whole.gradient.numpy())
  # Still going at 60 from this start (117 iterations to its end): the test
  # splits a run mid-way.
  assert not bool(whole.converged | whole.failed)
