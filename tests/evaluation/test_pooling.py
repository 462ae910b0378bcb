"""docs/protocol.md §5 pooling: every trunk's end points at k = 4 come down to about 9000:
the adaptive grid closest to it (9216 allowed), the strided pools within it."""
import numpy as np
import pytest
import tensorflow as tf

import models
from evaluation import pooling

TRUNKS = [("resnet50_v1", True), ("resnet50_v2", True), ("resnet50_v2", False),
          ("revnet50", True), ("revnet50", False), ("vgg19_bn", True)]

# ResNet50 v2, k = 4, 224 x 224: end point shape and the number of features
# of each pooling, worked out by hand from docs/protocol.md §5.
#   adaptive: g = floor or ceil of sqrt(9000 / c), whichever puts g*g*c closer
#             to 9000 (at most h), g*g*c features
#   max/avg:  stride t = ceil(sqrt(h*w*c / 9000)), (h // t)^2 * c features
RESNET50_V2_K4 = {
    # name: (shape, adaptive, strided)
    "after_root": ((56, 56, 64), 12 * 12 * 64, 11 * 11 * 64),    # t = 5
    "block1": ((56, 56, 256), 6 * 6 * 256, 5 * 5 * 256),         # t = 10
    "block2": ((28, 28, 512), 4 * 4 * 512, 4 * 4 * 512),         # t = 7
    "block3": ((14, 14, 1024), 3 * 3 * 1024, 2 * 2 * 1024),      # t = 5
    "block4": ((7, 7, 2048), 2 * 2 * 2048, 1 * 1 * 2048),       # t = 4
    "pre_logits": ((2048,), 2048, 2048),
}


@pytest.fixture(scope="module")
def end_points():
  out = {}
  for name, last_relu in TRUNKS:
    model = models.get_model(name, width=4, last_relu=last_relu)
    _, eps = model(tf.zeros([1, 224, 224, 3]), training=False)
    out[(name, last_relu)] = {k: v for k, v in eps.items() if k != "logits"}
  return out


def test_resnet50_v2_k4_end_points_pool_to_the_worked_sizes(end_points):
  eps = end_points[("resnet50_v2", True)]
  assert list(eps) == list(RESNET50_V2_K4)
  for layer, (shape, adaptive, strided) in RESNET50_V2_K4.items():
    assert tuple(eps[layer].shape[1:]) == shape, layer
    for method, expected in (("adaptive_max", adaptive),
                             ("adaptive_avg", adaptive), ("max", strided),
                             ("avg", strided)):
      out = pooling.pool_and_flatten(eps[layer], method)
      assert out.shape == (1, expected), (layer, method)
      if len(shape) == 3:
        assert pooling.pooled_size(*shape, method=method) == expected


@pytest.mark.parametrize("trunk", TRUNKS, ids=lambda t: f"{t[0]}-relu{t[1]}")
@pytest.mark.parametrize("method", pooling.POOLINGS)
def test_every_end_point_of_every_trunk_fits_the_budget(end_points, trunk, method):
  for layer, x in end_points[trunk].items():
    out = pooling.pool_and_flatten(x, method)
    values = int(np.prod(x.shape[1:]))
    assert out.shape[0] == 1
    if x.shape.rank == 4:
      assert out.shape[1] == pooling.pooled_size(*x.shape[1:], method=method)
      if method.startswith("adaptive"):
        # The closest square grid: one cell more or less per side is farther.
        h, w, c = x.shape[1:]
        g = int(round(np.sqrt(out.shape[1] / c)))
        assert g * g * c == out.shape[1]
        if values > pooling.MAX_FEATURES:
          for other in (g - 1, g + 1):
            if 1 <= other <= min(h, w):
              assert (abs(other * other * c - pooling.MAX_FEATURES)
                      >= abs(out.shape[1] - pooling.MAX_FEATURES)), (layer, x.shape)
      else:
        assert out.shape[1] <= pooling.MAX_FEATURES, (layer, x.shape)
      if values <= pooling.MAX_FEATURES:
        assert out.shape[1] == values  # small end points are only flattened
    else:
      assert out.shape[1] == values


def test_adaptive_max_takes_the_max_of_each_bin():
  x = tf.reshape(tf.range(6 * 6 * 300, dtype=tf.float32), [1, 6, 6, 300])
  # 10800 values > 9000: sqrt(30) = 5.48; 5 x 5 x 300 = 7500 is closer to 9000
  # than 6 x 6 x 300 = 10800, so 5 bins over 6 rows/cols.
  out = pooling.pool_and_flatten(x, "adaptive_max").numpy().reshape(5, 5, 300)
  xs = x.numpy()[0]
  for i in range(5):
    r0, r1 = (i * 6) // 5, -((-(i + 1) * 6) // 5)
    for j in range(5):
      c0, c1 = (j * 6) // 5, -((-(j + 1) * 6) // 5)
      np.testing.assert_array_equal(out[i, j], xs[r0:r1, c0:c1].max(axis=(0, 1)))


def test_unknown_pooling_is_refused():
  with pytest.raises(ValueError, match="adaptive_max"):
    pooling.pool_and_flatten(tf.zeros([1, 4]), "median")


def test_the_adaptive_grid_may_exceed_the_budget_when_closer():
  # docs/protocol.md §5's example: 1024 channels give 3 x 3 x 1024 = 9216, not 2 x 2.
  assert pooling.pooled_size(14, 14, 1024) == 9216
  # 512 channels: 4 x 4 (8192) beats 5 x 5 (12800).
  assert pooling.pooled_size(28, 28, 512) == 8192
  # A grid never has more cells than the map: 3 x 3 x 2000 = 18000 values,
  # sqrt(4.5) = 2.12, 2 x 2 (8000) is the closest.
  assert pooling.pooled_size(3, 3, 2000) == 8000
  assert pooling.pooled_size(14, 14, 1024, method="max") == 4096
