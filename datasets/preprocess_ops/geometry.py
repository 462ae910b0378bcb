"""Resizing, cropping and flipping ops: resize, resize_small, crop, central_crop,
flip_lr."""

import tensorflow as tf

from datasets import preprocess_registry as ppr
from datasets.preprocess_ops import common

RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area", "lanczos3", "lanczos5",
                  "gaussian", "mitchellcubic")


def central_crop(image: tf.Tensor, h: int, w: int) -> tf.Tensor:
  """Crops the central h x w window of [..., H, W, C]; offsets round down."""
  static_h, static_w = image.shape[-3], image.shape[-2]
  if (static_h is not None and static_h < h) or (static_w is not None and static_w < w):
    raise ValueError(f"Cannot crop {h}x{w} from an image of {static_h}x{static_w}; "
                     f"resize first or crop less.")
  shape = tf.shape(image)
  height, width = shape[-3], shape[-2]
  tf.debugging.assert_greater_equal(
      tf.stack([height, width]), tf.constant([h, w]),
      message=f"central crop of {h}x{w} is larger than the image")
  top = (height - h) // 2
  left = (width - w) // 2
  crop = image[..., top:top + h, left:left + w, :]
  # Slicing at run-time offsets loses the static size, which is known.
  crop.set_shape(image.shape[:-3].concatenate([h, w]).concatenate(image.shape[-1:]))
  return crop


def resize(image: tf.Tensor, h: int, w: int, method: str = "bilinear") -> tf.Tensor:
  """[..., H, W, C] resized to [..., h, w, C], float32."""
  return tf.cast(tf.image.resize(image, [h, w], method=method), tf.float32)


@ppr.register("resize")
def get_resize(size: common.Size, method: str = "bilinear", *,
               training: bool) -> ppr.PreprocessFn:
  """Resizes [H, W, C] or [N, H, W, C] to size (int or (h, w)).

  Bilinear by default; `method` is any tf.image.resize method name.
  """
  del training
  h, w = common.height_width(size, "resize")
  if method not in RESIZE_METHODS:
    raise ValueError(f"resize: unknown method {method!r}; use one of "
                     f"{', '.join(RESIZE_METHODS)}.")

  def _apply(features):
    image = common.float_image(features, "resize")
    return common.with_image(features, resize(image, h, w, method))

  return ppr.batchable(_apply)


@ppr.register("resize_small")
def get_resize_small(smaller_side: int, *, training: bool) -> ppr.PreprocessFn:
  """Resizes so the smaller side is `smaller_side`, keeping the aspect ratio.

  Uses area interpolation; the longer side is rounded to the nearest pixel.
  Accepts [H, W, C] or [N, H, W, C].
  """
  del training
  if not isinstance(smaller_side, int) or smaller_side <= 0:
    raise ValueError(f"resize_small: smaller_side must be a positive int; got "
                     f"{smaller_side!r}.")

  def _apply(features):
    image = common.float_image(features, "resize_small")
    shape = tf.shape(image)
    height = tf.cast(shape[-3], tf.float32)
    width = tf.cast(shape[-2], tf.float32)
    ratio = smaller_side / tf.minimum(height, width)
    new_h = tf.cast(tf.round(height * ratio), tf.int32)
    new_w = tf.cast(tf.round(width * ratio), tf.int32)
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method="area")
    return common.with_image(features, tf.cast(image, tf.float32))

  return ppr.batchable(_apply)


@ppr.register("crop")
def get_crop(size: common.Size, *, training: bool) -> ppr.PreprocessFn:
  """Crops size (int or (h, w)): random position in training, central in eval.

  On a stack [N, H, W, C] all elements are cropped at the same position.
  """
  h, w = common.height_width(size, "crop")

  def _apply(features):
    image = common.float_image(features, "crop")
    if not training:
      return common.with_image(features, central_crop(image, h, w))
    seed, features = ppr.next_seed(features)
    shape = tf.shape(image)
    crop_shape = tf.concat([shape[:-3], [h, w], shape[-1:]], axis=0)
    image = tf.image.stateless_random_crop(image, crop_shape, seed)
    return common.with_image(features, image)

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


@ppr.register("central_crop")
def get_central_crop(size: common.Size, *, training: bool) -> ppr.PreprocessFn:
  """Crops the central size (int or (h, w)) window of [H, W, C] or [N, H, W, C].

  The offset is (H - h) // 2, i.e. numpy's image[(H-h)//2:(H-h)//2 + h, ...].
  """
  del training
  h, w = common.height_width(size, "central_crop")

  def _apply(features):
    image = common.float_image(features, "central_crop")
    return common.with_image(features, central_crop(image, h, w))

  return ppr.batchable(_apply)


@ppr.register("flip_lr")
def get_flip_lr(*, training: bool) -> ppr.PreprocessFn:
  """Random left-right flip (p=1/2, per element of a stack); identity in eval."""

  def _apply(features):
    image = common.float_image(features, "flip_lr")
    if not training:
      return features
    seed, features = ppr.next_seed(features)
    return common.with_image(features,
                             tf.image.stateless_random_flip_left_right(image, seed))

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)
