"""Turning an end point into a feature vector of about 9000 values (docs/protocol.md §5).

Spatial end points with more than `max_features` values (h*w*c) are pooled;
smaller ones are only flattened. `adaptive_max` (default) and `adaptive_avg`
pool to the square grid g x g whose g*g*c is closest to `max_features`, g the
floor or the ceiling of sqrt(max_features / c) (at least 1, at most h and w):
the result may exceed the budget slightly, e.g. 3x3x1024 = 9216 as in the
reference code. `max` and `avg` use a window and stride of
ceil(sqrt(h*w*c / max_features)), which stays within it.

Equal dimension (docs/protocol.md §5, "best layer at equal dimension"): the
name `<method>@<n>` (what `linear_eval.pool_to_features = n` reads through)
brings every end point, pre_logits included, to exactly n features, so that
layers are compared on what they learned rather than on how many numbers they
have: a spatial end point is pooled (adaptive bins, the method's reduction) to
the smallest grid of at least n values, then the flattened values (channels of
one cell adjacent) are reduced in n contiguous bins, bin i spanning
[floor(i*N/n), ceil((i+1)*N/n)) of the N values; an end point of exactly n
values is returned as it is, one of fewer is refused (it cannot be enlarged).
"""
import math
import re
from typing import Optional, Tuple

import tensorflow as tf

POOLINGS = ("adaptive_max", "adaptive_avg", "max", "avg")
MAX_FEATURES = 9000


def equal_dimension(method: str, features: Optional[int]) -> str:
  """The pooling name that brings every end point to `features` values with
  `method`'s reduction ('adaptive_max@2048'); `method` itself for None."""
  parse(method)
  if features is None:
    return method
  if isinstance(features, bool) or not isinstance(features, int) or features < 1:
    raise ValueError(f"pool_to_features = {features!r}: use a positive number of "
                     f"features (e.g. 2048), or None to pool to about {MAX_FEATURES}.")
  return f"{method}@{features}"


def parse(name: str) -> Tuple[str, Optional[int]]:
  """(method, features) of a pooling name; features None unless `<method>@<n>`."""
  match = re.fullmatch(r"(\w+)@([1-9][0-9]*)", name) if isinstance(name, str) else None
  method, features = (match.group(1), int(match.group(2))) if match else (name, None)
  if method not in POOLINGS:
    raise ValueError(f"Unknown pooling {name!r}; use one of {POOLINGS}, or "
                     f"'<pooling>@<n>' for exactly n features.")
  return method, features


def pooled_size(h: int, w: int, c: int, method: str = "adaptive_max",
                max_features: int = MAX_FEATURES) -> int:
  """Number of features `pool_and_flatten` returns for an [h, w, c] end point."""
  method, features = parse(method)
  if features is not None:
    _check_enough(h * w * c, features, f"[{h}, {w}, {c}]")
    return features
  if h * w * c <= max_features:
    return h * w * c
  if method.startswith("adaptive"):
    s = _adaptive_grid(h, w, c, max_features)
    return s * s * c
  stride = math.ceil(math.sqrt(h * w * c / max_features))
  return (h // stride) * (w // stride) * c


def _adaptive_grid(h, w, c, max_features):
  root = math.sqrt(max_features / c)
  # Ties go to the smaller grid.
  g = min((max(1, math.floor(root)), max(1, math.ceil(root))),
          key=lambda s: abs(s * s * c - max_features))
  return min(g, h, w)


def _adaptive_pool(x, s, reduce_fn, s_cols=None):
  """[B,H,W,C] -> [B,s,s',C] (s' = s_cols or s); bin i spans
  [floor(i*H/s), ceil((i+1)*H/s))."""
  h, w = x.shape[1], x.shape[2]
  s_cols = s_cols or s
  rows = []
  for i in range(s):
    r0, r1 = (i * h) // s, -((-(i + 1) * h) // s)
    cols = []
    for j in range(s_cols):
      c0, c1 = (j * w) // s_cols, -((-(j + 1) * w) // s_cols)
      cols.append(reduce_fn(x[:, r0:r1, c0:c1, :], axis=[1, 2]))
    rows.append(tf.stack(cols, axis=1))
  return tf.stack(rows, axis=1)


def pool_and_flatten(x: tf.Tensor, method: str = "adaptive_max",
                     max_features: int = MAX_FEATURES) -> tf.Tensor:
  """[B, ...] end point -> [B, D], D about max_features for large spatial ones.

  Rank-2 inputs ([B, D], e.g. pre_logits) are returned as they are, whatever D;
  with a `<method>@<n>` name every input becomes [B, n] (equal dimension).
  """
  method, features = parse(method)
  if features is not None:
    return _to_features(x, method, features)
  if x.shape.rank == 2:
    return x
  if x.shape.rank != 4:
    raise ValueError(f"Expected a [B,H,W,C] or [B,D] end point, got {x.shape}.")
  h, w, c = x.shape[1], x.shape[2], x.shape[3]
  if h * w * c > max_features:
    if method.startswith("adaptive"):
      s = _adaptive_grid(h, w, c, max_features)
      reduce_fn = tf.reduce_max if method == "adaptive_max" else tf.reduce_mean
      x = _adaptive_pool(x, s, reduce_fn)
    else:
      stride = math.ceil(math.sqrt(h * w * c / max_features))
      pool = tf.nn.max_pool2d if method == "max" else tf.nn.avg_pool2d
      x = pool(x, stride, stride, "VALID")
  return tf.reshape(x, [-1, x.shape[1] * x.shape[2] * x.shape[3]])


def _check_enough(values: int, features: int, shape) -> None:
  if values < features:
    raise ValueError(
        f"An end point of shape {shape} has {values} values, fewer than the "
        f"{features} features asked for (linear_eval.pool_to_features): choose at "
        f"most {values}, or evaluate that layer without pool_to_features.")


def _to_features(x: tf.Tensor, method: str, n: int) -> tf.Tensor:
  """[B, ...] end point -> [B, n] exactly (the module docstring's rule)."""
  if x.shape.rank not in (2, 4):
    raise ValueError(f"Expected a [B,H,W,C] or [B,D] end point, got {x.shape}.")
  _check_enough(math.prod(x.shape[1:]), n, list(x.shape[1:]))
  take_max = method.endswith("max")
  if x.shape.rank == 4:
    h, w, c = x.shape[1], x.shape[2], x.shape[3]
    g = 1
    while min(g, h) * min(g, w) * c < n:
      g += 1
    if (min(g, h), min(g, w)) != (h, w):
      x = _adaptive_pool(x, min(g, h), tf.reduce_max if take_max else tf.reduce_mean,
                         min(g, w))
    x = tf.reshape(x, [-1, x.shape[1] * x.shape[2] * x.shape[3]])
  size = x.shape[1]
  if size == n:
    return x
  # Bin i: [floor(i*N/n), ceil((i+1)*N/n)), gathered as a [n, L] index
  # matrix (L the longest bin) whose padding repeats the bin's last index:
  # harmless to a max, masked out of a mean.
  starts = [(i * size) // n for i in range(n)]
  ends = [-((-(i + 1) * size) // n) for i in range(n)]
  longest = max(e - s for s, e in zip(starts, ends))
  index = [[min(s + j, e - 1) for j in range(longest)] for s, e in zip(starts, ends)]
  binned = tf.gather(x, tf.constant(index, tf.int32), axis=1)  # [B, n, L]
  if take_max:
    return tf.reduce_max(binned, axis=2)
  mask = tf.constant([[float(s + j < e) for j in range(longest)]
                      for s, e in zip(starts, ends)], x.dtype)
  return tf.reduce_sum(binned * mask, axis=2) / tf.reduce_sum(mask, axis=1)
