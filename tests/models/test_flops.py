"""The analytic counter of models/flops.py against TensorFlow's own op profiler."""
import pytest
import tensorflow as tf

import models
from models import flops


def _profiled_flops(model, size):
  """FLOPs of Conv2D and MatMul ops in the traced forward graph (batch 1)."""
  @tf.function
  def forward(images):
    return model(images, training=False)[0]

  graph = forward.get_concrete_function(tf.TensorSpec([1, size, size, 3])).graph
  options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
  options['account_type_regexes'] = ['Conv2D', 'MatMul']
  options['output'] = 'none'
  return tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops


@pytest.mark.parametrize('name,size,patch_mode', [
    ('resnet50_v1', 224, False),
    ('resnet50_v2', 64, True),
    ('revnet50', 224, False),
    ('vgg19_bn', 64, True),
])
def test_flops_match_tensorflow_profiler(name, size, patch_mode):
  model = models.get_model(name, width=1, num_classes=10, patch_mode=patch_mode)
  expected = flops.count_flops(name, 1, image_size=size, patch_mode=patch_mode,
                               num_classes=10)
  assert _profiled_flops(model, size) == expected


def test_layer_costs_are_in_network_order_and_named_like_the_model():
  costs = flops.layer_costs('resnet50_v2', 1, num_classes=10)
  assert costs[0].name == 'root_conv' and costs[-1].name == 'head/logits'
  model = models.get_model('resnet50_v2', width=1, num_classes=10)
  kernel_paths = [v.path for v in model.trainable_variables
                  if v.path.endswith('/kernel')]
  conv_names = [c.name for c in costs if c.flops]
  assert ['resnet50_v2/' + n + '/kernel' for n in conv_names] == kernel_paths


def test_flops_grow_quadratically_with_width():
  # Every conv except the 3-channel root scales with k^2.
  root = [c for c in flops.layer_costs('revnet50', 1) if c.name == 'root_conv'][0]
  k1 = flops.count_flops('revnet50', 1) - root.flops
  k4 = flops.count_flops('revnet50', 4) - 4 * root.flops
  assert k4 == 16 * k1


def test_unknown_name():
  with pytest.raises(ValueError, match='valid names'):
    flops.count_flops('alexnet', 4)
