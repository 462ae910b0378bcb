"""Turning an end point into a feature vector of about 9000 values (docs/protocol.md §5).

Spatial end points with more than `max_features` values (h*w*c) are pooled;
smaller ones are only flattened. `adaptive_max` (default) and `adaptive_avg`
pool to the square grid g x g whose g*g*c is closest to `max_features`, g the
floor or the ceiling of sqrt(max_features / c) (at least 1, at most h and w):
the result may exceed the budget slightly, e.g. 3x3x1024 = 9216 as in the
reference code. `max` and `avg` use a window and stride of
ceil(sqrt(h*w*c / max_features)), which stays within it.
"""
import math

import tensorflow as tf

POOLINGS = ("adaptive_max", "adaptive_avg", "max", "avg")
MAX_FEATURES = 9000


def pooled_size(h: int, w: int, c: int, method: str = "adaptive_max",
                max_features: int = MAX_FEATURES) -> int:
  """Number of features `pool_and_flatten` returns for an [h, w, c] end point."""
  if method not in POOLINGS:
    raise ValueError(f"Unknown pooling {method!r}; use one of {POOLINGS}.")
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


def _adaptive_pool(x, s, reduce_fn):
  """[B,H,W,C] -> [B,s,s,C]; bin i spans [floor(i*H/s), ceil((i+1)*H/s))."""
  h, w = x.shape[1], x.shape[2]
  rows = []
  for i in range(s):
    r0, r1 = (i * h) // s, -((-(i + 1) * h) // s)
    cols = []
    for j in range(s):
      c0, c1 = (j * w) // s, -((-(j + 1) * w) // s)
      cols.append(reduce_fn(x[:, r0:r1, c0:c1, :], axis=[1, 2]))
    rows.append(tf.stack(cols, axis=1))
  return tf.stack(rows, axis=1)


def pool_and_flatten(x: tf.Tensor, method: str = "adaptive_max",
                     max_features: int = MAX_FEATURES) -> tf.Tensor:
  """[B, ...] end point -> [B, D], D about max_features for large spatial ones.

  Rank-2 inputs ([B, D], e.g. pre_logits) are returned as they are, whatever D.
  """
  if method not in POOLINGS:
    raise ValueError(f"Unknown pooling {method!r}; use one of {POOLINGS}.")
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
