"""Limited-memory BFGS for smooth unconstrained minimisation, in TensorFlow.

The whole optimisation (two-loop recursion, strong-Wolfe line search and the
stopping tests) is one TensorFlow graph: inside a `tf.function` nothing goes
back to the host between iterations, so on a GPU/TPU only the objective's own
work touches the host (e.g. streaming data chunks).

The line search is the bracketing + zoom search of Nocedal & Wright
(Numerical Optimization, 2nd ed., Algorithms 3.5 and 3.6) with safeguarded
cubic interpolation. All arithmetic stays in the dtype of the starting point
(float32 on accelerators; TPUs have no float64), so tolerances are interpreted
relative to that dtype's precision.

Stopping rules mirror SciPy's L-BFGS-B, as used by scikit-learn:
  * converged when max_i |g_i| <= gradient_tolerance, or (optional, off by
    default) when an iteration reduces f by at most
    f_relative_tolerance * max(|f_k|, |f_k+1|, 1);
  * failed when the line search cannot decrease f even along steepest descent
    (after dropping the curvature memory once), or f is not finite at the start.
"""

from typing import Callable, NamedTuple, Tuple

import numpy as np
import tensorflow as tf

# Differences in f below this many ulps of |f| are treated as rounding noise.
_NOISE_ULPS = 16.0

ValueAndGradientFn = Callable[[tf.Tensor], Tuple[tf.Tensor, tf.Tensor]]


class LBFGSResult(NamedTuple):
  """Outcome of `minimize`.

  Attributes:
    position: [n] the best point found.
    value: [] objective at `position`.
    gradient: [n] gradient at `position`.
    num_iterations: [] int32, outer iterations performed.
    num_evaluations: [] int32, calls of the objective (line search included).
    converged: [] bool, a convergence test was met (see module docstring).
    failed: [] bool, stopped because no further decrease could be found.
  """
  position: tf.Tensor
  value: tf.Tensor
  gradient: tf.Tensor
  num_iterations: tf.Tensor
  num_evaluations: tf.Tensor
  converged: tf.Tensor
  failed: tf.Tensor


class _Point(NamedTuple):
  """A line-search point: step length, value, gradient, directional slope."""
  t: tf.Tensor
  f: tf.Tensor
  g: tf.Tensor
  slope: tf.Tensor


def _select(cond, a, b):
  """Elementwise `cond ? a : b` over matching NamedTuples / tensors."""
  return tf.nest.map_structure(lambda x, y: tf.where(cond, x, y), a, b)


def _cubic_minimizer(t1, f1, d1, t2, f2, d2, lower, upper):
  """Minimiser of the cubic matching (f, f') at t1 and t2, clipped to bounds.

  Falls back to the middle of [lower, upper] when the cubic has no minimiser
  or the arithmetic overflowed (e.g. f2 = inf after a too-long step).
  """
  theta = d1 + d2 - 3.0 * (f1 - f2) / (t1 - t2)
  disc = theta * theta - d1 * d2
  root = tf.sqrt(tf.maximum(disc, 0.0))
  # Written so the same formula works whichever of t1, t2 is larger.
  root = tf.where(t2 >= t1, root, -root)
  t = t2 - (t2 - t1) * (d2 + root - theta) / (d2 - d1 + 2.0 * root)
  usable = tf.logical_and(disc >= 0.0, tf.math.is_finite(t))
  return tf.where(usable, tf.clip_by_value(t, lower, upper), 0.5 * (lower + upper))


def _evaluate(fn, x, t, direction):
  """Objective at x + t * direction; non-finite values become +inf."""
  f, g = fn(x + t * direction)
  f = tf.convert_to_tensor(f, dtype=x.dtype)
  finite = tf.logical_and(tf.math.is_finite(f), tf.reduce_all(tf.math.is_finite(g)))
  # +inf makes the step fail the sufficient-decrease test, which shrinks it;
  # a NaN would silently pass every comparison as False instead.
  f = tf.where(finite, f, tf.constant(float("inf"), x.dtype))
  g = tf.where(finite, g, tf.zeros_like(g))
  return f, g


def _strong_wolfe_search(fn, x, f0, g0, direction, slope0, t_init, max_evaluations,
                         c1, c2):
  """Finds t with f(x+td) <= f0 + c1 t f'(0) and |f'(t)| <= c2 |f'(0)|.

  Where f cannot resolve the decrease (within _NOISE_ULPS ulps of f0), the
  curvature condition alone is accepted (approximate Wolfe, Hager & Zhang
  2005), which lets float32 runs keep converging on the gradient.

  Args:
    fn: objective, [n] -> ([], [n]).
    x: [n] current point. f0: [] value there. g0: [n] gradient there.
    direction: [n] descent direction (slope0 = g0 . direction < 0).
    t_init: [] first trial step. max_evaluations: [] int32 budget.
    c1, c2: Wolfe constants, 0 < c1 < c2 < 1.

  Returns:
    (ok, point, num_evaluations): when ok, `point` satisfies (approximate)
    strong Wolfe, or, if the budget ran out first, it is the lowest
    sufficient-decrease point seen.
  """
  dtype = x.dtype
  eps = tf.constant(np.finfo(dtype.as_numpy_dtype).eps, dtype)
  f_noise = _NOISE_ULPS * eps * tf.abs(f0)
  origin = _Point(tf.zeros([], dtype), f0, g0, slope0)
  # Phases: 0 = looking for an interval that contains a Wolfe point,
  #         1 = zooming inside [lo, hi], 2 = done.
  init = (tf.constant(0), tf.constant(0), t_init, origin, origin)

  def cond(phase, evals, t, lo, hi):
    # Once the bracket is narrower than the float resolution of t, further
    # trials cannot produce distinct points.
    interval_alive = tf.logical_or(
        tf.not_equal(phase, 1), tf.abs(hi.t - lo.t) > eps * tf.maximum(lo.t, hi.t))
    return tf.logical_and(tf.logical_and(phase < 2, evals < max_evaluations),
                          interval_alive)

  def body(phase, evals, t, lo, hi):
    f, g = _evaluate(fn, x, t, direction)
    trial = _Point(t, f, g, tf.reduce_sum(g * direction))
    within_noise = f <= f0 + f_noise
    sufficient = tf.logical_and(f <= f0 + c1 * t * slope0, f < lo.f)
    # Near a minimiser f stops resolving the decrease; a trial that is still
    # downhill and not measurably above f0 then counts as progress, and the
    # slope alone decides (the "approximate Wolfe" rule of Hager & Zhang).
    low = tf.logical_or(sufficient, tf.logical_and(within_noise, trial.slope < 0.0))
    flat = tf.abs(trial.slope) <= -c2 * slope0
    done = tf.logical_and(flat, tf.logical_or(sufficient, within_noise))

    # Bracketing phase (lo is the previous accepted trial).
    b_flip = tf.logical_and(low, trial.slope >= 0.0)
    b_extend = tf.logical_and(low, trial.slope < 0.0)
    b_lo = _select(low, trial, lo)
    b_hi = _select(low, _select(b_flip, lo, hi), trial)
    b_phase = tf.where(b_extend, 0, 1)

    # Zoom phase.
    z_flip = tf.logical_and(low, trial.slope * (hi.t - lo.t) >= 0.0)
    z_lo = _select(low, trial, lo)
    z_hi = _select(low, _select(z_flip, lo, hi), trial)

    zooming = tf.equal(phase, 1)
    new_lo = _select(done, trial, _select(zooming, z_lo, b_lo))
    new_hi = _select(zooming, z_hi, b_hi)
    new_phase = tf.where(done, 2, tf.where(zooming, 1, b_phase))

    # Next trial. Extrapolation follows MINPACK's dcsrch bounds; inside a
    # bracket the cubic is kept 10% away from both ends so that the bracket
    # shrinks geometrically even when the interpolant is poor.
    grow = t - lo.t
    t_extrapolated = _cubic_minimizer(lo.t, lo.f, lo.slope, t, f, trial.slope,
                                      t + 1.1 * grow, t + 4.0 * grow)
    left = tf.minimum(new_lo.t, new_hi.t)
    right = tf.maximum(new_lo.t, new_hi.t)
    margin = 0.1 * (right - left)
    t_zoomed = _cubic_minimizer(new_lo.t, new_lo.f, new_lo.slope, new_hi.t, new_hi.f,
                                new_hi.slope, left + margin, right - margin)
    next_t = tf.where(tf.equal(new_phase, 0), t_extrapolated, t_zoomed)
    return new_phase, evals + 1, next_t, new_lo, new_hi

  phase, evals, _, lo, _ = tf.while_loop(cond, body, init)
  # Out of budget, lo is still the lowest sufficient-decrease trial (if any).
  ok = tf.logical_or(tf.equal(phase, 2), tf.logical_and(lo.t > 0.0, lo.f < f0))
  return ok, lo, evals


def _two_loop_direction(g, s_hist, y_hist, rho_hist, gamma):
  """-H g for the L-BFGS inverse-Hessian approximation H.

  History rows are ordered oldest -> newest; unused rows have rho = 0, which
  makes their updates exact no-ops, so the loop length is static.

  Args:
    g: [n]. s_hist, y_hist: [m, n]. rho_hist: [m]. gamma: [] initial scaling.
  Returns:
    [n] search direction.
  """
  m = s_hist.shape[0]
  q = -g
  alphas = [None] * m
  for i in reversed(range(m)):
    alphas[i] = rho_hist[i] * tf.reduce_sum(s_hist[i] * q)
    q = q - alphas[i] * y_hist[i]
  r = gamma * q
  for i in range(m):
    beta = rho_hist[i] * tf.reduce_sum(y_hist[i] * r)
    r = r + (alphas[i] - beta) * s_hist[i]
  return r


class LBFGSState(NamedTuple):
  """Everything an L-BFGS run carries from one iteration to the next.

  `advance_graph` continues exactly where a state stopped, so a run split into
  several calls (a host round trip between them: a preemption check, a
  progress line) computes the same iterates as one call.

  Attributes:
    iteration: [] int32, outer iterations done.
    evaluations: [] int32, objective calls so far.
    x: [n] current point. f: [] value there. g: [n] gradient there.
    s, y: [m, n] correction pairs, oldest -> newest (unused rows are zero).
    rho: [m] 1 / (s . y) of each pair (0 for unused rows).
    num_pairs: [] int32, pairs in use.
    converged: [] bool. failed: [] bool (see `LBFGSResult`).
  """
  iteration: tf.Tensor
  evaluations: tf.Tensor
  x: tf.Tensor
  f: tf.Tensor
  g: tf.Tensor
  s: tf.Tensor
  y: tf.Tensor
  rho: tf.Tensor
  num_pairs: tf.Tensor
  converged: tf.Tensor
  failed: tf.Tensor


# The loops are explicit tf.while_loops already; converting this code with
# AutoGraph when a caller's tf.function traces it would only slow tracing.
@tf.autograph.experimental.do_not_convert
def start_graph(value_and_gradients_fn: ValueAndGradientFn,
                initial_position: tf.Tensor,
                gradient_tolerance,
                num_correction_pairs: int = 10) -> LBFGSState:
  """The state before the first iteration: one evaluation at `initial_position`.

  Call inside a `tf.function`; arguments as in `minimize`.
  """
  x0 = tf.convert_to_tensor(initial_position)
  dtype = x0.dtype
  if not dtype.is_floating:
    raise ValueError(f"initial_position must be floating point, got {dtype}; cast it "
                     "with tf.cast(x, tf.float32).")
  if x0.shape.rank != 1:
    raise ValueError(f"initial_position must be a vector [n], got shape {x0.shape}; "
                     "flatten the variables with tf.reshape(x, [-1]).")
  m = _num_pairs(num_correction_pairs)
  gtol = tf.cast(gradient_tolerance, dtype)
  f0, g0 = value_and_gradients_fn(x0)
  f0 = tf.convert_to_tensor(f0, dtype)
  start_finite = tf.logical_and(tf.math.is_finite(f0),
                                tf.reduce_all(tf.math.is_finite(g0)))
  zeros_hist = tf.zeros(tf.stack([m, tf.size(x0)]), dtype)
  return LBFGSState(
      iteration=tf.constant(0),
      evaluations=tf.constant(1),
      x=x0, f=f0, g=g0,
      s=zeros_hist, y=zeros_hist, rho=tf.zeros([m], dtype),
      num_pairs=tf.constant(0),
      converged=tf.logical_and(start_finite, tf.reduce_max(tf.abs(g0)) <= gtol),
      failed=~start_finite,
  )


def _num_pairs(num_correction_pairs) -> int:
  m = int(num_correction_pairs)
  if m < 1:
    raise ValueError(f"num_correction_pairs must be >= 1, got {m}.")
  return m


@tf.autograph.experimental.do_not_convert
def advance_graph(value_and_gradients_fn: ValueAndGradientFn,
                  state: LBFGSState,
                  max_iterations,
                  gradient_tolerance,
                  f_relative_tolerance,
                  num_correction_pairs: int = 10,
                  max_line_search_evaluations: int = 25,
                  c1: float = 1e-4,
                  c2: float = 0.9) -> LBFGSState:
  """Iterates from `state` until it converges, fails or has done
  `max_iterations` iterations in all (counted from the start, not from this
  call). Call inside a `tf.function`; other arguments as in `minimize_graph`.
  """
  m = _num_pairs(num_correction_pairs)
  dtype = state.x.dtype
  # A state that crossed a tf.function boundary may have lost its static
  # memory size, which the two-loop recursion unrolls over.
  state = state._replace(s=tf.ensure_shape(state.s, [m, None]),
                         y=tf.ensure_shape(state.y, [m, None]),
                         rho=tf.ensure_shape(state.rho, [m]))
  max_iterations = tf.cast(max_iterations, tf.int32)
  max_ls = tf.cast(max_line_search_evaluations, tf.int32)
  gtol = tf.cast(gradient_tolerance, dtype)
  ftol = tf.cast(f_relative_tolerance, dtype)
  eps = tf.constant(np.finfo(dtype.as_numpy_dtype).eps, dtype)

  def cond(st):
    return tf.logical_and(~(st.converged | st.failed),
                          st.iteration < max_iterations)

  def body(st):
    x, f, g = st.x, st.f, st.g
    have_pairs = st.num_pairs > 0
    s_new, y_new = st.s[m - 1], st.y[m - 1]
    gamma = tf.where(have_pairs,
                     tf.reduce_sum(s_new * y_new) / tf.reduce_sum(y_new * y_new),
                     tf.ones([], dtype))
    direction = _two_loop_direction(g, st.s, st.y, st.rho, gamma)
    slope = tf.reduce_sum(g * direction)
    # Rounding can make the quasi-Newton direction useless; steepest descent
    # always descends while g != 0.
    restart = tf.logical_or(~(slope < 0.0), ~tf.math.is_finite(slope))
    direction = tf.where(restart, -g, direction)
    slope = tf.where(restart, -tf.reduce_sum(g * g), slope)
    steepest = tf.logical_or(restart, ~have_pairs)
    # Without curvature information, a first step of unit length in x.
    t_init = tf.where(steepest, tf.minimum(1.0 / tf.norm(g), 1.0), tf.ones([], dtype))

    ok, point, evals = _strong_wolfe_search(value_and_gradients_fn, x, f, g, direction,
                                            slope, t_init, max_ls, c1, c2)
    step = point.t * direction
    grad_change = point.g - g
    sy = tf.reduce_sum(step * grad_change)
    yy = tf.reduce_sum(grad_change * grad_change)
    # Only pairs with safely positive curvature keep H positive definite.
    store = tf.logical_and(ok, sy > eps * yy)
    shifted = lambda h, v: tf.concat([h[1:], v[None]], axis=0)
    s_hist = tf.where(store, shifted(st.s, step), st.s)
    y_hist = tf.where(store, shifted(st.y, grad_change), st.y)
    rho_hist = tf.where(store, shifted(st.rho, 1.0 / tf.where(store, sy, 1.0)),
                        st.rho)
    num_pairs = tf.where(store, tf.minimum(st.num_pairs + 1, m), st.num_pairs)
    # A failed search with memory is retried once from steepest descent with
    # the memory dropped (as L-BFGS-B does); without memory it is final.
    reset = tf.logical_and(~ok, have_pairs)
    s_hist = tf.where(reset, tf.zeros_like(s_hist), s_hist)
    y_hist = tf.where(reset, tf.zeros_like(y_hist), y_hist)
    rho_hist = tf.where(reset, tf.zeros_like(rho_hist), rho_hist)
    num_pairs = tf.where(reset, 0, num_pairs)

    new_x = tf.where(ok, x + step, x)
    new_f = tf.where(ok, point.f, f)
    new_g = tf.where(ok, point.g, g)
    small_gradient = tf.reduce_max(tf.abs(new_g)) <= gtol
    small_decrease = tf.logical_and(ftol > 0.0, (f - new_f) <= ftol * tf.maximum(
        tf.maximum(tf.abs(f), tf.abs(new_f)), 1.0))
    converged = tf.logical_and(ok, small_gradient | small_decrease)
    failed = tf.logical_and(~ok, ~have_pairs)
    return (LBFGSState(iteration=st.iteration + 1, evaluations=st.evaluations + evals,
                       x=new_x, f=new_f, g=new_g, s=s_hist, y=y_hist, rho=rho_hist,
                       num_pairs=num_pairs, converged=converged, failed=failed),)

  (final,) = tf.while_loop(cond, body, (state,))
  return final


def result_of(state: LBFGSState) -> LBFGSResult:
  """The outcome a state stands for (its point, counts and stopping flags)."""
  return LBFGSResult(position=state.x, value=state.f, gradient=state.g,
                     num_iterations=state.iteration,
                     num_evaluations=state.evaluations,
                     converged=state.converged, failed=state.failed)


@tf.autograph.experimental.do_not_convert
def minimize_graph(value_and_gradients_fn: ValueAndGradientFn,
                   initial_position: tf.Tensor,
                   max_iterations,
                   gradient_tolerance,
                   f_relative_tolerance,
                   num_correction_pairs: int = 10,
                   max_line_search_evaluations: int = 25,
                   c1: float = 1e-4,
                   c2: float = 0.9) -> LBFGSResult:
  """Graph-building core of `minimize`; call it inside a `tf.function`.

  Same arguments as `minimize`, except that the tolerances and
  `max_iterations` may be tensors (so one trace serves many settings) and
  `f_relative_tolerance` is required. `start_graph` then `advance_graph`, in
  one call.
  """
  state = start_graph(value_and_gradients_fn, initial_position, gradient_tolerance,
                      num_correction_pairs)
  return result_of(advance_graph(value_and_gradients_fn, state, max_iterations,
                                 gradient_tolerance, f_relative_tolerance,
                                 num_correction_pairs, max_line_search_evaluations,
                                 c1, c2))


def minimize(value_and_gradients_fn: ValueAndGradientFn,
             initial_position,
             max_iterations: int = 500,
             gradient_tolerance: float = 1e-6,
             f_relative_tolerance: float = 0.0,
             num_correction_pairs: int = 10,
             max_line_search_evaluations: int = 25,
             c1: float = 1e-4,
             c2: float = 0.9) -> LBFGSResult:
  """Minimises a smooth function of a vector with L-BFGS.

  Callable eagerly (the loop is then compiled with `tf.function`) or from
  inside a `tf.function` (it just adds to the graph being traced).

  Args:
    value_and_gradients_fn: maps x [n] to (f [], df/dx [n]); must be
      traceable by TensorFlow (pure TF ops on its input).
    initial_position: [n] floating-point starting point; its dtype is the
      compute dtype.
    max_iterations: cap on outer iterations (each runs one line search).
    gradient_tolerance: converged when max_i |df/dx_i| <= this.
    f_relative_tolerance: if > 0, also converged when one iteration lowers f
      by at most this times max(|f|, 1) (SciPy's `ftol`). Off by default:
      in float32 it fires on rounding noise long before the gradient is small.
    num_correction_pairs: memory m of the quasi-Newton approximation.
    max_line_search_evaluations: objective calls allowed per line search.
    c1, c2: sufficient-decrease and curvature constants, 0 < c1 < c2 < 1.

  Returns:
    LBFGSResult (tensors).
  """
  if not 0.0 < c1 < c2 < 1.0:
    raise ValueError(f"Wolfe constants need 0 < c1 < c2 < 1, got c1={c1}, c2={c2}.")
  if int(max_iterations) < 0:
    raise ValueError(f"max_iterations must be >= 0, got {max_iterations}.")
  if not gradient_tolerance >= 0.0:
    raise ValueError(f"gradient_tolerance must be >= 0, got {gradient_tolerance}.")
  if int(max_line_search_evaluations) < 1:
    raise ValueError("max_line_search_evaluations must be >= 1, got "
                     f"{max_line_search_evaluations}.")
  x0 = tf.convert_to_tensor(initial_position)

  def run(x):
    return minimize_graph(value_and_gradients_fn, x, max_iterations,
                          gradient_tolerance, f_relative_tolerance,
                          num_correction_pairs, max_line_search_evaluations, c1, c2)

  if tf.executing_eagerly():
    return tf.function(run, autograph=False)(x0)
  return run(x0)
