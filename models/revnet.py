"""RevNet50: ResNet50's layout with analytically invertible units (docs/protocol.md §1).

Root: 7x7 conv with 64k filters (stride 2, or 1 in patch mode), no BN and no
weight decay, then the 3x3/2 max-pool -> `after_root`. Four blocks of 3, 4, 6,
3 reversible units -> `block1` .. `block4`; after blocks 1..3 an average pool
by the next block's stride and zero channel padding double the channels
(64k, 128k, 256k, 512k). Head as ResNet v2: BN, optional ReLU, global average
pool -> `pre_logits` [B, 512k].

Memory saving (models/recompute.py): 'recompute' keeps each block's input and
recomputes the block in the backward pass; 'reversible' keeps each block's
output only and rebuilds every unit's input from its output on the way back
(`RevNetBlock.reversible_call`), the backward pass the units' invertibility
is for.
"""
import tensorflow as tf

from models import layers
from models import recompute
from models import resnet


class ReversibleUnit(layers.CompositeLayer):
  """x = concat([x1, x2]) -> concat([x2, x1 + F(x2)]), F a v2 bottleneck.

  F is BN-ReLU, conv1x1 (C/8), BN-ReLU, conv3x3 (C/8), BN-ReLU, conv1x1 (C/2)
  with no shortcut. Maps [B, H, W, C] to [B, H, W, C]; `inverse` undoes it.
  """

  def __init__(self, channels, weight_decay, **kwargs):
    super().__init__(**kwargs)
    if channels % 8:
      raise ValueError(f'A reversible unit needs channels divisible by 8, got {channels}.')
    self.channels = channels
    self.residual_fn = resnet.BottleneckV2(
        channels // 2, 1, projection=False, weight_decay=weight_decay, residual=False,
        name='residual_fn')

  def call(self, x, training=False):
    x1, x2 = tf.split(x, 2, axis=-1)
    y1 = x1 + self.residual_fn(x2, training=training)
    return tf.concat([x2, y1], axis=-1)

  def inverse(self, y, training=False):
    """Recovers the unit's input from its output.

    Exact only when F sees the same BN statistics as in the forward pass, i.e.
    with training=False (moving statistics).

    Args:
      y: [B, H, W, C], an output of this unit.
      training: Python bool passed to F's batch norms.

    Returns:
      x: [B, H, W, C] with call(x) == y.
    """
    y2, y1 = tf.split(y, 2, axis=-1)
    x1 = y1 - self.residual_fn(y2, training=training)
    return tf.concat([x1, y2], axis=-1)


def pool_and_double_channels(x, stride):
  """Average-pools by `stride` (SAME) and zero-pads C/2 channels on each side.

  Args:
    x: [B, H, W, C].
    stride: int; 1 skips the pooling but still doubles the channels.

  Returns:
    [B, ceil(H/stride), ceil(W/stride), 2C].
  """
  if stride > 1:
    x = tf.nn.avg_pool2d(x, ksize=stride, strides=stride, padding='SAME')
  half = x.shape[-1] // 2
  return tf.pad(x, [[0, 0], [0, 0], [0, 0], [half, half]])


class RevNetBlock(layers.CompositeLayer):
  """`num_units` reversible units at constant shape [B, H, W, channels].

  `memory_saving` (recompute.MODES) says what the block keeps for the
  backward pass: everything ('none'), its input ('recompute') or only what
  is stored anyway ('reversible', see `reversible_call`).
  """

  def __init__(self, num_units, channels, weight_decay, memory_saving='none', **kwargs):
    super().__init__(**kwargs)
    self.memory_saving = memory_saving
    self.unit_names = tuple(f'unit{i + 1}' for i in range(num_units))
    for unit_name in self.unit_names:
      setattr(self, unit_name, ReversibleUnit(channels, weight_decay, name=unit_name))

  def call(self, x, training=False, transition_stride=None):
    """Runs the units.

    Args:
      x: [B, H, W, channels], or with `transition_stride` the previous
        block's output [B, H * s, W * s, channels / 2] (ceil on H, W), which
        `pool_and_double_channels` turns into this block's input.
      training: Python bool, passed to the units' batch norms.
      transition_stride: None, or the stride s of that transition.

    Returns:
      [B, H, W, channels].
    """
    units = [getattr(self, unit_name) for unit_name in self.unit_names]

    def run(x):
      for unit in units:
        x = unit(x, training=training)
      return x

    # Inference keeps nothing for a backward pass: nothing to save there.
    if training and self.memory_saving == 'reversible':
      return self.reversible_call(run, units, x, training, transition_stride)
    if transition_stride is not None:
      x = pool_and_double_channels(x, transition_stride)
    if training and self.memory_saving == 'recompute':
      return recompute.recompute(run, units, x)
    return run(x)

  def reversible_call(self, run, units, source, training, transition_stride):
    """`run` on the block input, keeping only its output for the backward pass.

    The backward pass walks the units last to first. For a unit's output
    y = [y_a, y_b] = [x2, x1 + F(x2)] and output gradient [dy_a, dy_b], it
    rebuilds x2 = y_a, runs F(x2) once more under a tape (batch norms frozen:
    recompute.frozen_moving_statistics), and gets

      x1 = y_b - F(x2)                     (the unit's input, for the next one)
      dx1 = dy_b
      (g_x2, g_F) = d F(x2) / d (x2, F's variables), weighted by dy_b
      dx2 = dy_a + g_x2.

    The first unit is the exception: it takes x2 from the block input, rebuilt
    exactly from `source`, which is stored anyway (the previous block's output
    is that block's starting point; block 1's input, the root max-pool's
    output, is kept by the max-pool's gradient). A rebuilt input is exact
    only up to round-off, and the first unit's x2 holds exact zeros (the
    channels `pool_and_double_channels` pads, the root max-pool's zero
    padding) that its batch norm maps onto ReLU's kink, where a round-off of
    1e-9 flips the ReLU's gradient; that made the 'reversible' gradients
    differ by percents. Later units see sums with F's output, where ties are
    as rare as anywhere.

    In training mode F normalises with the batch statistics of the rebuilt
    x2, the forward pass's up to the round-off of the reconstruction. That
    round-off is the compute dtype's: about 1e-7 relative per unit in
    float32; under a bfloat16 policy a rebuilt input is only as exact as
    bfloat16 (for k = 1, 64x64, moving statistics: gradients 1.4% (L2) off
    the bfloat16 'none' ones, which are themselves 4.9% off float32's).

    Args:
      run: x -> y, the units in order (the plain forward pass).
      units: the ReversibleUnits, in order.
      source: the block input [B, H, W, C], or with `transition_stride` the
        previous block's output; in the compute dtype.
      training: Python bool, as passed to the units.
      transition_stride: None, or the stride of `pool_and_double_channels`
        from `source` to the block input.

    Returns:
      y = run(block input), [B, H, W, C].
    """

    def block_input(source):
      if transition_stride is None:
        return source
      return pool_and_double_channels(source, transition_stride)

    @tf.custom_gradient
    def block(source):
      y = recompute.unrecorded(lambda source: run(block_input(source)), source)

      def grad(dy, variables=None):
        """dy: [B, H, W, C] -> (d source, one gradient per variable)."""
        variables = list(variables or [])
        # Moving statistics and anything F does not reach keep None.
        variable_grads = [None] * len(variables)
        y_unit = recompute.after(y, dy)
        for unit in reversed(units):
          dy_a, dy_b = tf.split(dy, 2, axis=-1)
          if unit is units[0]:
            # x2 from the block input, rebuilt exactly (see above).
            source_again = recompute.after(source, dy)
            with tf.GradientTape() as input_tape:
              input_tape.watch(source_again)
              x = block_input(source_again)
            x2 = tf.split(x, 2, axis=-1)[1]
          else:
            x2, y_b = tf.split(y_unit, 2, axis=-1)
          with tf.GradientTape() as tape:
            tape.watch(x2)
            with recompute.frozen_moving_statistics([unit]):
              f = unit.residual_fn(x2, training=training)
          grads = tape.gradient(f, [x2] + variables, output_gradients=dy_b)
          if unit is not units[0]:
            y_unit = tf.concat([y_b - f, x2], axis=-1)  # The previous unit's output.
          dy = tf.concat([dy_b, dy_a + grads[0]], axis=-1)
          for i, g in enumerate(grads[1:]):
            if g is not None:
              variable_grads[i] = g if variable_grads[i] is None else variable_grads[i] + g
        d_source = input_tape.gradient(x, source_again, output_gradients=dy)
        return d_source, variable_grads

      return y, grad

    return block(source)


class RevNet50(layers.Trunk):
  """RevNet50; see the module docstring for the layout.

  End points (same shapes as ResNet50 except after_root): after_root
  [B, H/4, W/4, 64k], block1 [B, H/4, W/4, 64k], block2 [B, H/8, W/8, 128k],
  block3 [B, H/16, W/16, 256k], block4 [B, H/32, W/32, 512k], pre_logits
  [B, 512k] (or representation_size), logits [B, num_classes]. The 'small'
  stem (a 3x3/1 root conv, no max-pool) makes each spatial end point 4x
  larger per side.

  `memory_saving`: one of recompute.MODES, None for the gin-bound
  `memory_saving.mode`.
  """

  def __init__(self, width=4, num_classes=None, last_relu=True, patch_mode=False,
               representation_size=None, weight_decay=1e-4, name='revnet50',
               memory_saving=None, stem='imagenet'):
    layers.check_positive_int(width, 'width', 'it is the widening factor k, e.g. 4.')
    memory_saving = recompute.trunk_mode(memory_saving, name, reversible_units=True)
    super().__init__(num_classes, representation_size, weight_decay, name=name)
    self.memory_saving = memory_saving
    self.width = width
    self.last_relu = last_relu
    self.patch_mode = patch_mode
    self.stem = stem
    self.strides = resnet.block_strides(patch_mode)
    kernel, stride, self.root_pool = layers.root_geometry(stem, patch_mode)
    # The root is a random projection raising the channels to block 1's width;
    # the reference leaves it undecayed and without BN.
    self.root_conv = layers.conv2d(64 * width, kernel, 'root_conv',
                                   strides=stride, weight_decay=0.0)
    self.block_names = ('block1', 'block2', 'block3', 'block4')
    for i, block_name in enumerate(self.block_names):
      setattr(self, block_name, RevNetBlock(
          resnet.UNITS_PER_BLOCK[i], 64 * width * 2**i, weight_decay,
          memory_saving=memory_saving, name=block_name))
    self.final_bn = layers.batch_norm('final_bn')
    self.add_head()

  def trunk_features(self, images, training, end_points):
    x = self.root_conv(layers.fixed_padding(images, self.root_conv.kernel_size[0]))
    if self.root_pool:
      x = layers.root_max_pool(x)
    end_points['after_root'] = x
    for i, block_name in enumerate(self.block_names):
      # Blocks 2..4 pool and double their input themselves, so that with
      # memory_saving 'reversible' they can rebuild it from the previous
      # block's output (kept anyway) instead of storing it.
      x = getattr(self, block_name)(
          x, training=training, transition_stride=self.strides[i] if i > 0 else None)
      end_points[block_name] = x
    x = self.final_bn(x, training=training)
    if self.last_relu:
      x = tf.nn.relu(x)
    return x
