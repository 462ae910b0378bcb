"""The "(-)" variants: identical variables, only the final ReLU differs."""
import numpy as np
import pytest
import tensorflow as tf

import models


@pytest.mark.parametrize('name', ['resnet50_v2', 'revnet50'])
def test_minus_variant_differs_only_in_final_relu(name):
  relu_model = models.get_model(name, width=1, num_classes=3)
  minus_model = models.get_model(name, width=1, num_classes=3, last_relu=False)
  assert [v.path for v in relu_model.variables] == [v.path for v in minus_model.variables]
  assert [v.shape for v in relu_model.variables] == [v.shape for v in minus_model.variables]
  minus_model.set_weights(relu_model.get_weights())

  images = tf.constant(np.random.RandomState(0).randn(2, 32, 32, 3).astype(np.float32))
  _, relu_points = relu_model(images)
  _, minus_points = minus_model(images)
  for end_point in ('after_root', 'block1', 'block2', 'block3', 'block4'):
    np.testing.assert_array_equal(relu_points[end_point], minus_points[end_point])
  final = relu_model.final_bn(relu_points['block4'])
  np.testing.assert_allclose(minus_points['pre_logits'], tf.reduce_mean(final, [1, 2]),
                             atol=1e-5)
  np.testing.assert_allclose(relu_points['pre_logits'],
                             tf.reduce_mean(tf.nn.relu(final), [1, 2]), atol=1e-5)
  assert float(tf.reduce_min(relu_points['pre_logits'])) >= 0.0
  assert float(tf.reduce_min(minus_points['pre_logits'])) < 0.0
