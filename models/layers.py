"""Building blocks shared by every trunk (docs/protocol.md §1, "Common").

Holds the pieces whose details must be identical across trunks: fixed padding,
the convolution and batch-norm factories (initializer, weight decay, BN
momentum/epsilon/synchronisation), the head (global pool, optional
representation bottleneck, logits) and `Trunk`, the Keras model base class
that gives every trunk the same calling convention and build behaviour.
"""
import collections

import gin
import keras
import tensorflow as tf

BN_MOMENTUM = 0.99
BN_EPSILON = 1e-3


def check_positive_int(value, what, hint):
  """Raises ValueError unless `value` is a positive Python int (bools rejected)."""
  if isinstance(value, bool) or not isinstance(value, int) or value < 1:
    raise ValueError(f'{what} must be a positive integer, got {value!r}; {hint}')


def weight_decay_regularizer(weight_decay):
  """Kernel regularizer adding `weight_decay * sum(w**2) / 2` to `model.losses`.

  The halving matches the reference (`tf.nn.l2_loss` semantics), so a decay of
  1e-4 here means the same optimisation problem as the paper's 1e-4.

  Args:
    weight_decay: non-negative float; 0 turns decay off.

  Returns:
    A `keras.regularizers.L2` or None when `weight_decay` is 0.
  """
  if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)):
    raise ValueError(f'weight_decay must be a non-negative number, got {weight_decay!r}.')
  if weight_decay < 0:
    raise ValueError(f'weight_decay must be >= 0 (use 0 to disable it), got {weight_decay}.')
  if weight_decay == 0:
    return None
  return keras.regularizers.L2(weight_decay / 2.0)


CONV_INITIALIZERS = ('glorot_uniform', 'he')


@gin.configurable
def conv_initializer(kind='glorot_uniform'):
  """The convolution kernels' initialiser (gin: `conv_initializer.kind`).

  'glorot_uniform' (default, docs/protocol.md §1): the `tf.layers` default the reference
  code used; it decides the random-init ("Rnd") column, whose features depend
  on how strongly the residual branches start. 'he': truncated normal with
  variance 2 / fan_in, which keeps the forward activation variance constant
  through ReLU layers. No fixed seed: callers seed through
  `keras.utils.set_random_seed`.
  """
  if kind == 'glorot_uniform':
    return keras.initializers.GlorotUniform()
  if kind == 'he':
    return keras.initializers.VarianceScaling(
        scale=2.0, mode='fan_in', distribution='truncated_normal')
  raise ValueError(f'Unknown conv_initializer.kind {kind!r}; use one of '
                   f'{", ".join(CONV_INITIALIZERS)}.')


def conv2d(filters, kernel_size, name, strides=1, padding='valid', weight_decay=0.0):
  """A bias-free convolution (`conv_initializer`) with optional weight decay.

  Args:
    filters: output channels.
    kernel_size: int or (kh, kw).
    name: layer name (also the checkpoint/variable name).
    strides: int stride.
    padding: 'valid' or 'same'; fixed padding is applied by the caller.
    weight_decay: L2 strength on the kernel (see `weight_decay_regularizer`).

  Returns:
    A `keras.layers.Conv2D` mapping [B, H, W, C] to [B, H', W', filters].
  """
  return keras.layers.Conv2D(
      filters, kernel_size, strides=strides, padding=padding, use_bias=False,
      kernel_initializer=conv_initializer(),
      kernel_regularizer=weight_decay_regularizer(weight_decay), name=name)


class BatchNorm(keras.layers.BatchNormalization):
  """Keras's BatchNormalization with TF's fused kernel and two-pass sync stats.

  Same variables, same moving-average rule (`moving * momentum + batch *
  (1 - momentum)`, biased batch variance) and the same outputs as the Keras
  layer up to float rounding, but:
    - on one replica, and in inference, one fused op (oneDNN on CPU, cuDNN
      on GPU) instead of a chain of elementwise ops; under a mixed policy it
      reads the bfloat16/float16 activations directly and keeps its
      statistics in float32, where Keras copies every activation to float32
      first. bench/train_step.py measures what this buys;
    - across replicas (`synchronized=True` under a multi-replica strategy),
      the variance in two passes, mean(x - all-reduced mean)^2, rather than
      Keras's E[x^2] - E[x]^2, which cancels where activations have a large
      mean (RevNet's unnormalised stream): several replicas then take the
      step one replica takes on the same global batch.
  Masks, renorm and axes other than the last take Keras's own path.
  """

  def call(self, inputs, training=None, mask=None):
    rank = inputs.shape.rank
    context = tf.distribute.get_replica_context()
    if (mask is not None or context is None or self.renorm
        or rank not in (2, 4) or self.axis not in (-1, rank - 1)):
      return super().call(inputs, training=training, mask=mask)
    x = inputs if rank == 4 else inputs[:, None, None, :]
    if x.dtype not in (tf.float16, tf.bfloat16, tf.float32):
      x = tf.cast(x, tf.float32)
    channels = x.shape[-1]
    gamma = self.gamma if self.scale else tf.ones([channels])
    beta = self.beta if self.center else tf.zeros([channels])
    if training and self.trainable:
      if self.synchronized and context.num_replicas_in_sync > 1:
        y, mean, variance = _cross_replica_batch_norm(
            x, gamma, beta, self.epsilon, context)
      else:
        y, mean, variance = tf.compat.v1.nn.fused_batch_norm(
            x, gamma, beta, epsilon=self.epsilon, is_training=True)
        # The kernel returns the unbiased variance; the moving average (as
        # Keras's, and the reference's) takes the biased one.
        n = tf.cast(tf.size(x) // channels, tf.float32)
        variance = variance * (n - 1.0) / tf.maximum(n, 1.0)
      self.moving_mean.assign(
          self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
      self.moving_variance.assign(
          self.moving_variance * self.momentum
          + variance * (1.0 - self.momentum))
    else:
      y, _, _ = tf.compat.v1.nn.fused_batch_norm(
          x, gamma, beta, mean=self.moving_mean, variance=self.moving_variance,
          epsilon=self.epsilon, is_training=False)
    if rank == 2:
      y = y[:, 0, 0, :]
    return tf.cast(y, self.compute_dtype)


def _cross_replica_batch_norm(x, gamma, beta, epsilon, context):
  """Batch norm of [B, H, W, C] with moments over every replica's batch.

  Returns (y [B, H, W, C] in x's dtype, mean [C], biased variance [C]), the
  moments in float32. Gradients flow through the all-reduces, so each
  replica's input gradient accounts for the whole global batch.
  """
  xf = tf.cast(x, tf.float32)
  count = tf.cast(tf.size(xf) // xf.shape[-1], tf.float32)
  total, count = context.all_reduce(
      tf.distribute.ReduceOp.SUM, [tf.reduce_sum(xf, axis=[0, 1, 2]), count])
  mean = total / count
  squares = context.all_reduce(
      tf.distribute.ReduceOp.SUM,
      tf.reduce_sum(tf.square(xf - mean), axis=[0, 1, 2]))
  variance = squares / count
  y = tf.nn.batch_normalization(xf, mean, variance, beta, gamma, epsilon)
  return tf.cast(y, x.dtype), mean, variance


@gin.configurable("trunk_batch_norm")
def trunk_bn_momentum(momentum: float = BN_MOMENTUM) -> float:
  """The trunks' BN momentum (gin: trunk_batch_norm.momentum; docs/protocol.md: 0.99).

  0.99 averages the statistics over ~100 steps, nothing next to the protocol's 35
  epochs; a run of a few hundred steps (the Fashion-MNIST miniature) ends with
  moving statistics still half those of weights it has left, so its pretext
  and linear evaluations read stale normalisation: such runs set ~0.9.
  """
  if not 0.0 <= momentum < 1.0:
    raise ValueError(f"trunk_batch_norm.momentum = {momentum}: use a value in "
                     f"[0, 1) (protocol: 0.99; 0.9 for runs of a few hundred steps).")
  return float(momentum)


def batch_norm(name):
  """Batch norm of the trunks: momentum 0.99, epsilon 1e-3, cross-replica stats.

  `synchronized=True` all-reduces the batch moments across replicas under a
  multi-replica strategy; on one replica the fused kernel runs (`BatchNorm`).
  """
  return BatchNorm(axis=-1, momentum=trunk_bn_momentum(), epsilon=BN_EPSILON,
                   synchronized=True, name=name)


def fixed_padding(x, kernel_size):
  """Pads H and W by `kernel_size - 1`, split floor/ceil, independent of input size.

  Unlike SAME padding, the padding does not depend on the input size or stride,
  so a following VALID convolution behaves identically for every resolution.

  Args:
    x: [B, H, W, C] tensor.
    kernel_size: int, the kernel size of the following VALID op.

  Returns:
    [B, H + kernel_size - 1, W + kernel_size - 1, C] tensor, zero padded.
  """
  pad_total = kernel_size - 1
  pad_beg = pad_total // 2
  pad_end = pad_total - pad_beg
  return tf.pad(x, [[0, 0], [pad_beg, pad_end], [pad_beg, pad_end], [0, 0]])


# The trunk's stem, i.e. its root before block 1 (models/resnet.py, revnet.py):
# 'imagenet' is the paper's 7x7/2 conv and 3x3/2 max-pool (stride 1 conv in
# patch mode); 'small' is the CIFAR-sized ResNets' 3x3/1 conv without a pool,
# for 28-32 px inputs, where the ImageNet stem leaves block4 at 1x1.
STEMS = ('imagenet', 'small')


def root_geometry(stem, patch_mode):
  """(kernel size, stride, max-pool after it?) of the root conv of `stem`."""
  if stem not in STEMS:
    raise ValueError(f'Unknown stem {stem!r}; valid stems: {", ".join(STEMS)} '
                     f'(get_model.stem).')
  if stem == 'small':
    return 3, 1, False
  return 7, 1 if patch_mode else 2, True


def root_max_pool(x):
  """The 3x3/2 max-pool after the root convolution, with fixed padding.

  Args:
    x: [B, H, W, C].

  Returns:
    [B, ceil(H/2), ceil(W/2), C] (for even H, W: [B, H/2, W/2, C]).
  """
  x = fixed_padding(x, 3)
  return tf.nn.max_pool2d(x, ksize=3, strides=2, padding='VALID')


class CompositeLayer(keras.layers.Layer):
  """A layer made of sublayers that build themselves on their first call.

  Without a `build` method, Keras 3 would trace `call` symbolically just to
  build the sublayers, which costs seconds per ResNet50.
  """

  def build(self, input_shape):
    del input_shape  # Sublayers infer their shapes when first called.


class Head(keras.layers.Layer):
  """Global average pool, optional linear bottleneck, optional logits.

  The logits layer is the reference's 1x1 convolution with bias applied to
  the pooled features, written as a Dense layer; since it is a convolution
  kernel in the reference, its kernel is weight-decayed like every other
  convolution. The representation bottleneck (paper Fig. 6) is also a 1x1
  convolution on pooled features, with bias, and is decayed for the same
  reason. Both use Glorot-uniform kernels (the reference's default) and zero
  biases.
  """

  def __init__(self, num_classes, representation_size, weight_decay, **kwargs):
    super().__init__(**kwargs)
    self.num_classes = num_classes
    self.representation_size = representation_size
    self.representation = None
    self.logits = None
    if representation_size is not None:
      self.representation = keras.layers.Dense(
          representation_size, use_bias=True,
          kernel_regularizer=weight_decay_regularizer(weight_decay),
          name='representation')
    if num_classes is not None:
      self.logits = keras.layers.Dense(
          num_classes, use_bias=True,
          kernel_regularizer=weight_decay_regularizer(weight_decay), name='logits')

  def build(self, input_shape):
    size = input_shape[-1]
    if self.representation is not None:
      self.representation.build((None, size))
      size = self.representation_size
    if self.logits is not None:
      self.logits.build((None, size))

  def call(self, features):
    """Maps a [B, H, W, C] feature map to (pre_logits [B, D], logits [B, N] or None).

    D is `representation_size` when set, else C.
    """
    # float32 from the pool on (a no-op in float32): under a mixed policy
    # the mean of a bfloat16 map would round every representation, and
    # losses, the feature cache and the solvers want float32 anyway.
    pre_logits = tf.reduce_mean(tf.cast(features, tf.float32), axis=[1, 2])
    if self.representation is not None:
      pre_logits = tf.cast(self.representation(pre_logits), tf.float32)
    logits = (tf.cast(self.logits(pre_logits), tf.float32)
              if self.logits is not None else None)
    return pre_logits, logits


class Trunk(keras.Model):
  """Base class of the trunks: `call(images, training) -> (logits, end_points)`.

  Subclasses implement `trunk_features(images, training, end_points)`, which
  fills the spatial end points in network order and returns the final
  [B, h, w, C] feature map; this class adds `pre_logits` and `logits`.

  `build(input_shape)` creates every variable at once, eagerly (also when
  first called inside a tf.function), so that they exist under
  `strategy.scope()` and before `tf.train.Checkpoint` restores (Keras 3
  variables are not restored lazily). By default it runs the network on a
  1x1 image, which is valid for trunks whose variables do not depend on the
  resolution and is much cheaper than a symbolic trace; subclasses whose
  variables do depend on it override `create_variables`. Sublayers are held as
  named attributes, never in lists, because Keras 3 does not expose lists of
  layers to `tf.train.Checkpoint`; this also keeps checkpoint keys stable.
  """

  def __init__(self, num_classes, representation_size, weight_decay, **kwargs):
    super().__init__(**kwargs)
    if num_classes is not None:
      check_positive_int(num_classes, 'num_classes', 'use None for no logits layer.')
    if representation_size is not None:
      check_positive_int(representation_size, 'representation_size',
                         'use None for no representation bottleneck.')
    self.num_classes = num_classes
    self.representation_size = representation_size
    self.weight_decay = weight_decay

  def identity(self):
    """What this trunk is, read from the built object (results.json, exports).

    {architecture, width, last_relu, patch_mode, representation_size}, plus
    `stem` when it is not the paper's 'imagenet' (so the identity of every
    trunk made before stems were a choice stays what it was); the subclasses
    set width, last_relu, patch_mode and stem in their constructors.
    """
    identity = dict(architecture=self.name, width=self.width,
                    last_relu=self.last_relu, patch_mode=self.patch_mode,
                    representation_size=self.representation_size)
    if getattr(self, 'stem', 'imagenet') != 'imagenet':
      identity['stem'] = self.stem
    return identity

  def add_head(self):
    """Creates the head; subclasses call it last so variables are in network order."""
    self.head = Head(self.num_classes, self.representation_size, self.weight_decay,
                     name='head')

  def build(self, input_shape):
    if self.built:
      return  # Variables exist; a second build (e.g. at another size) adds none.
    input_shape = tuple(input_shape)
    if len(input_shape) != 4:
      raise ValueError(f'{self.name} expects images of shape [batch, height, width, '
                       f'channels], got input shape {input_shape}.')
    with tf.init_scope():
      self.create_variables(input_shape)

  def create_variables(self, input_shape):
    """Creates all variables by running the network on one 1x1 image."""
    channels = input_shape[-1] or 3
    self.call(tf.zeros([1, 1, 1, channels]), training=False)

  def call(self, images, training=False):
    """Runs the network.

    Args:
      images: float32 [B, H, W, 3], already scaled by the input pipeline.
      training: Python bool; True uses batch statistics and updates BN moving
        averages.

    Returns:
      (logits, end_points), all float32 whatever the layers compute in:
      logits is [B, num_classes] or None when the model has no logits layer; end_points is an OrderedDict of the named tensors in
      network order, ending with `pre_logits` [B, D] and (only with logits)
      `logits`.
    """
    end_points = collections.OrderedDict()
    features = self.trunk_features(images, training, end_points)
    pre_logits, logits = self.head(features)
    # End points leave the network in float32 whatever the compute dtype
    # (training/precision.py); unused ones cost nothing inside a tf.function.
    for name, value in end_points.items():
      end_points[name] = tf.cast(value, tf.float32)
    end_points['pre_logits'] = pre_logits
    if logits is not None:
      end_points['logits'] = logits
    return logits, end_points
