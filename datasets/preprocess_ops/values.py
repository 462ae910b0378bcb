"""The ops at the ends of a pipeline: decode (first) turns the stored image into
float32 in [0, 1]; value_range and standardize (last) scale it for the network;
keep drops the features the model does not read."""

import tensorflow as tf

from datasets import preprocess_registry as ppr
from datasets.preprocess_ops import common


@ppr.register("decode")
def get_decode(channels: int = 3, *, training: bool) -> ppr.PreprocessFn:
  """Image (encoded string or uint8 [H, W, C], C in {1, 3}) -> float32 [0, 1].

  Output has `channels` channels: grayscale is tiled to RGB, RGB is converted
  to luma for channels=1 (as image decoders do). Already decoded images may
  come as a batch [B, H, W, C].
  """
  del training
  if channels not in (1, 3):
    raise ValueError(f"decode: channels must be 1 or 3; got {channels!r}.")

  def _decode(features):
    image = tf.convert_to_tensor(common.image_of(features, "decode"))
    if image.dtype == tf.string:
      if image.shape.rank != 0:
        raise ValueError(f"decode expects one encoded image (a scalar string); "
                         f"got shape {image.shape}.")
      image = tf.io.decode_image(image, channels=channels, expand_animations=False)
    if image.shape.rank not in (3, 4):
      raise ValueError(f"decode expects one image [H, W, C] or a batch of them; "
                       f"got shape {image.shape}.")
    image = tf.image.convert_image_dtype(image, tf.float32)
    in_channels = image.shape[-1]
    if in_channels is None:
      # Channel count unknown until run time: tiling by 3 // C turns 1 channel
      # into 3 and leaves 3 unchanged.
      if channels == 3:
        multiples = [1] * (image.shape.rank - 1) + [3 // tf.shape(image)[-1]]
        image = tf.tile(image, multiples)
      else:
        image = tf.cond(tf.shape(image)[-1] == 3,
                        lambda: tf.image.rgb_to_grayscale(image), lambda: image)
      image.set_shape([None, None, channels])
    elif in_channels != channels:
      if in_channels == 1:
        image = tf.image.grayscale_to_rgb(image)
      elif in_channels == 3:
        image = tf.image.rgb_to_grayscale(image)
      else:
        raise ValueError(f"decode supports images with 1 or 3 channels; got "
                         f"{in_channels}.")
    return common.with_image(features, image)

  return ppr.batchable(_decode)


@ppr.register("value_range")
def get_value_range(lo: float, hi: float, in_lo: float = 0.0, in_hi: float = 1.0,
                    *, training: bool) -> ppr.PreprocessFn:
  """Maps values linearly from [in_lo, in_hi] (default [0, 1]) to [lo, hi]."""
  del training
  if in_hi == in_lo:
    raise ValueError(f"value_range: in_lo and in_hi must differ; both are {in_lo}.")
  scale = (hi - lo) / (in_hi - in_lo)

  def _apply(features):
    image = common.float_image(features, "value_range")
    if in_lo:  # x - 0.0 is x; skipping it saves a pass over the image
      image = image - in_lo
    return common.with_image(features, image * scale + lo)

  return ppr.batchable(_apply)


@ppr.register("standardize")
def get_standardize(*, training: bool) -> ppr.PreprocessFn:
  """Zero mean, unit variance per image, or per element of a stack.

  Same as tf.image.per_image_standardization: statistics over H, W and C of
  each image, the std floored at 1 / sqrt(H * W * C) for constant images.
  """
  del training

  def _apply(features):
    image = common.float_image(features, "standardize")
    return common.with_image(features, tf.image.per_image_standardization(image))

  return ppr.batchable(_apply)


@ppr.register("keep")
def get_keep(*keys: str, training: bool) -> ppr.PreprocessFn:
  """Keeps only the named features, dropping every other one.

  '_rng' is dropped too unless named, so random ops placed after `keep`
  fall back to unseeded randomness: put `keep` last.
  """
  del training
  if not keys or not all(isinstance(k, str) for k in keys):
    raise ValueError(f"keep: name the features to keep as strings, e.g. "
                     f"keep('image', 'label'); got {keys!r}.")

  def _apply(features):
    missing = [k for k in keys if k not in features]
    if missing:
      raise ValueError(f"keep: features {missing} are not in the example; it has "
                       f"{sorted(features)}.")
    return {k: features[k] for k in keys}

  return ppr.batchable(_apply)
