"""VGG19 with batch norm at any widening factor k (docs/protocol.md §1).

w = 8k. Five stages of 2, 2, 4, 4, 4 3x3 SAME convs (each conv-BN-ReLU, no
bias) with w, 2w, 4w, 8w, 8w channels, each followed by a 2x2/2 max-pool. Then
`fc6`, a VALID conv whose kernel covers the remaining spatial extent (7x7 at
224, 2x2 on a 64x64 patch) with 512k channels + BN-ReLU, and `fc7`, 1x1 with
512k channels + BN-ReLU, whose pooled output is `pre_logits`. No dropout.

VGG has no patch mode: a 64x64 patch through the plain network leaves 2x2
after the fifth pool, which fc6 covers, so `patch_mode` is accepted and
ignored (task code can pass it uniformly).
"""
import keras
import tensorflow as tf

from models import layers
from models import recompute

CONVS_PER_STAGE = (2, 2, 4, 4, 4)
STAGE_WIDTH_MULTIPLIERS = (1, 2, 4, 8, 8)


class ConvBnRelu(keras.layers.Layer):
  """conv (no bias) - BN - ReLU.

  With `kernel_size=None` the kernel covers the whole spatial extent of the
  input seen at build time (VALID), as VGG's fc6 does; the input height and
  width must then be static.
  """

  def __init__(self, filters, kernel_size, padding, weight_decay, **kwargs):
    super().__init__(**kwargs)
    self.filters = filters
    self.kernel_size = kernel_size
    self.padding = padding
    self.weight_decay = weight_decay
    self.conv = None
    if kernel_size is not None:
      self.conv = layers.conv2d(filters, kernel_size, 'conv', padding=padding,
                                weight_decay=weight_decay)
    self.bn = layers.batch_norm('bn')

  def build(self, input_shape):
    if self.conv is None:
      height, width = input_shape[1], input_shape[2]
      if height is None or width is None:
        raise ValueError(
            f'{self.name} covers the whole remaining spatial extent, so the image height '
            f'and width must be static; build the model with a fixed size, e.g. '
            f'model.build((None, 224, 224, 3)). Got feature shape {tuple(input_shape)}.')
      self.conv = layers.conv2d(self.filters, (height, width), 'conv',
                                padding=self.padding, weight_decay=self.weight_decay)
    self.conv.build(input_shape)
    self.bn.build(self.conv.compute_output_shape(input_shape))

  def compute_output_shape(self, input_shape):
    return self.conv.compute_output_shape(input_shape)

  def call(self, x, training=False):
    return tf.nn.relu(self.bn(self.conv(x), training=training))


def _check_poolable(shape, input_shape):
  if any(d is not None and d < 2 for d in tuple(shape)[1:3]):
    raise ValueError(f'vgg19_bn needs images of at least 32x32 (five 2x2 pools); '
                     f'got input shape {tuple(input_shape)}.')


class VGG19BN(layers.Trunk):
  """VGG19-BN; see the module docstring for the layout.

  End points (paper naming, the inputs of the 2nd..5th max-pool): block1
  [B, H/2, W/2, 2w], block2 [B, H/4, W/4, 4w], block3 [B, H/8, W/8, 8w], block4
  [B, H/16, W/16, 8w]; fc6 [B, 1, 1, 512k]; pre_logits [B, 512k] (or
  representation_size); logits [B, num_classes]. If the model is applied to
  larger images than it was built for, fc7 is spatial and is average-pooled.

  `memory_saving`: 'none' or 'recompute' (each of the five conv stages keeps
  only its input; models/recompute.py), None for the gin-bound
  `memory_saving.mode`; 'reversible' raises.
  """

  def __init__(self, width=4, num_classes=None, last_relu=True, patch_mode=False,
               representation_size=None, weight_decay=1e-4, name='vgg19_bn',
               memory_saving=None):
    layers.check_positive_int(width, 'width', 'it is the widening factor k, e.g. 8.')
    if not last_relu:
      raise ValueError('vgg19_bn always ends in fc7-BN-ReLU; last_relu=False is only '
                       'defined for resnet50_v2 and revnet50.')
    memory_saving = recompute.trunk_mode(memory_saving, name)
    super().__init__(num_classes, representation_size, weight_decay, name=name)
    self.memory_saving = memory_saving
    self.width = width
    self.last_relu = last_relu
    self.patch_mode = patch_mode
    w = 8 * width
    conv_names = []
    for stage, (num_convs, mult) in enumerate(zip(CONVS_PER_STAGE, STAGE_WIDTH_MULTIPLIERS)):
      stage_names = []
      for i in range(num_convs):
        conv_name = f'conv{stage + 1}_{i + 1}'
        setattr(self, conv_name, ConvBnRelu(w * mult, 3, 'same', weight_decay, name=conv_name))
        stage_names.append(conv_name)
      conv_names.append(tuple(stage_names))
    self.conv_names = tuple(conv_names)
    self.fc6 = ConvBnRelu(512 * width, None, 'valid', weight_decay, name='fc6')
    self.fc7 = ConvBnRelu(512 * width, 1, 'valid', weight_decay, name='fc7')
    self.add_head()

  def create_variables(self, input_shape):
    """Builds layer by layer from shapes: fc6's kernel depends on the image size."""
    shape = (None,) + tuple(input_shape[1:3]) + (input_shape[-1] or 3,)
    for stage_names in self.conv_names:
      for conv_name in stage_names:
        conv = getattr(self, conv_name)
        conv.build(shape)
        shape = conv.compute_output_shape(shape)
      _check_poolable(shape, input_shape)
      shape = (None, None if shape[1] is None else shape[1] // 2,
               None if shape[2] is None else shape[2] // 2, shape[3])
    self.fc6.build(shape)
    shape = self.fc6.compute_output_shape(shape)
    self.fc7.build(shape)
    self.head.build(self.fc7.compute_output_shape(shape))

  def trunk_features(self, images, training, end_points):
    x = images
    for stage, stage_names in enumerate(self.conv_names):
      convs = [getattr(self, conv_name) for conv_name in stage_names]

      def run(x, convs=convs):
        for conv in convs:
          x = conv(x, training=training)
        return x

      # The stage's output is kept either way: the max-pool's gradient needs it.
      # Inference keeps nothing for a backward pass: nothing to save there.
      x = (recompute.recompute(run, convs, x)
           if training and self.memory_saving == 'recompute' else run(x))
      if stage > 0:
        end_points[f'block{stage}'] = x
      # Built for one size, called on another (the representation's): the
      # same check as at build time, or the pool fails with a kernel error.
      _check_poolable(x.shape, images.shape)
      x = tf.nn.max_pool2d(x, ksize=2, strides=2, padding='VALID')
    x = self.fc6(x, training=training)
    end_points['fc6'] = x
    return self.fc7(x, training=training)
