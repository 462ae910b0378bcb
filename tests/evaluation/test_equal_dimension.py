"""Best layer at equal dimension (docs/protocol.md §5, §9): `<pooling>@<n>`
brings every end point to exactly n features; `linear_eval.pool_to_features`
uses it and records it, so it is another result."""
import numpy as np
import pytest
import tensorflow as tf

import fake_data
from tiny_tasks import pixel_trunk
from evaluation import linear_eval
from evaluation import pooling
from evaluation import trunks


def test_names_parse_and_bad_ones_are_refused():
  assert pooling.equal_dimension("adaptive_max", 2048) == "adaptive_max@2048"
  assert pooling.equal_dimension("adaptive_avg", None) == "adaptive_avg"
  assert pooling.parse("avg@5") == ("avg", 5)
  assert pooling.parse("adaptive_max") == ("adaptive_max", None)
  for bad in (0, -3, 2.5, True):
    with pytest.raises(ValueError, match="positive number of features"):
      pooling.equal_dimension("adaptive_max", bad)
  with pytest.raises(ValueError, match="Unknown pooling 'median@4'"):
    pooling.parse("median@4")
  assert pooling.pooled_size(8, 8, 256, "adaptive_max@2048") == 2048
  with pytest.raises(ValueError, match="has 1024 values, fewer than the 2048"):
    pooling.pooled_size(1, 1, 1024, "adaptive_max@2048")


def test_a_flat_end_point_is_binned_to_exactly_n_values():
  # 12 values -> 5 bins [0,3) [2,5) [4,8) [7,10) [9,12).
  x = tf.constant(np.arange(12, dtype=np.float32)[None])
  np.testing.assert_array_equal(pooling.pool_and_flatten(x, "adaptive_avg@5"),
                                [[1.0, 3.0, 5.5, 8.0, 10.0]])
  np.testing.assert_array_equal(pooling.pool_and_flatten(x, "adaptive_max@5"),
                                [[2.0, 4.0, 7.0, 9.0, 11.0]])
  np.testing.assert_array_equal(pooling.pool_and_flatten(x, "adaptive_max@12"), x)
  with pytest.raises(ValueError, match="has 12 values, fewer than the 13"):
    pooling.pool_and_flatten(x, "adaptive_max@13")


def test_a_spatial_end_point_is_pooled_to_the_smallest_grid_then_binned():
  # [1, 4, 4, 2]: value 10 * (4 r + c) + channel.
  r, c, ch = np.meshgrid(range(4), range(4), range(2), indexing="ij")
  x = tf.constant((10 * (4 * r + c) + ch).astype(np.float32)[None])
  # n = 8: a 2x2 grid (8 values) is the smallest with >= 8; max of each
  # quadrant, channels of one cell adjacent.
  np.testing.assert_array_equal(pooling.pool_and_flatten(x, "adaptive_max@8"),
                                [[50, 51, 70, 71, 130, 131, 150, 151]])
  # n = 3: a 2x2 grid too (1x1 has 2 < 3), its 8 values in bins [0,3) [2,6) [5,8);
  # quadrant means 25 26 | 45 46 | 105 106 | 125 126.
  np.testing.assert_allclose(
      pooling.pool_and_flatten(x, "adaptive_avg@3"),
      [[(25 + 26 + 45) / 3, (45 + 46 + 105 + 106) / 4, (106 + 125 + 126) / 3]])
  # Every end point of a layer sweep at one size: [B, 2048] whatever its shape.
  for shape in ((2, 8, 8, 256), (2, 1, 1, 2048), (2, 4096)):
    out = pooling.pool_and_flatten(tf.ones(shape), "adaptive_max@2048")
    assert out.shape == (2, 2048)


def test_linear_eval_records_the_size_and_leaves_the_pixels_control_alone():
  dataset = fake_data.small_pixels(separable=True)
  common = dict(l2_grid=[1e-2], max_iter=50, batch_size=32, log=lambda _: None)
  # 8x8 images: the 'image' end point (8x8x3 = 192) and 'pixels' (64).
  plain, = linear_eval.evaluate(pixel_trunk(), dataset, layers=["image"], **common)
  assert plain["features"] == 192
  equal = linear_eval.evaluate(pixel_trunk(), dataset, layers=["image", "pixels"],
                               pool_to_features=48, **common)
  assert [e["features"] for e in equal] == [48, 48]
  assert [e["pooling"] for e in equal] == ["adaptive_max"] * 2
  # The pixels control (a trunk with its own end point) keeps its 192 values.
  control = trunks.Trunk("pixels", pixel_trunk().task, None, dict(kind="test"),
                         end_points=("image",))
  kept, = linear_eval.evaluate(control, dataset, layers=["image"],
                               pool_to_features=48, **common)
  assert kept["features"] == 192
  with pytest.raises(ValueError, match="fewer than the 100 features"):
    linear_eval.evaluate(pixel_trunk(), dataset, layers=["pixels"],
                         pool_to_features=100, **common)


def test_the_size_is_a_setting_so_it_makes_another_result(clean_gin):
  from evaluation import protocols  # pylint: disable=g-import-not-at-top
  settings = protocols.entry_settings("linear_lbfgs", "decode", "float32",
                                      dict(pool_to_features=2048))
  assert settings["pool_to_features"] == 2048
  assert protocols.entry_settings("linear_lbfgs", "decode", "float32",
                                  {})["pool_to_features"] is None
