"""Colour ops: color_distort (brightness and saturation) and to_gray."""

from typing import Optional

import tensorflow as tf

from datasets import preprocess_registry as ppr
from datasets.preprocess_ops import common


def channels_equal(image: tf.Tensor) -> tf.Tensor:
  """Whether every pixel of [..., 3] has three equal channels (bool scalar).

  A sparse grid of pixels is compared first: a colour image (the usual case)
  is told apart for almost nothing, and only a gray one is compared in full.
  """
  def equal(x):
    return tf.logical_and(tf.reduce_all(tf.equal(x[..., 0], x[..., 1])),
                          tf.reduce_all(tf.equal(x[..., 1], x[..., 2])))

  return tf.cond(equal(image[..., ::8, ::8, :]), lambda: equal(image),
                 lambda: tf.constant(False))


def distort(image: tf.Tensor, seed: tf.Tensor, brightness_delta: float,
            saturation_lower: float, saturation_upper: float,
            gray: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Random brightness and saturation of [H, W, 3] in [0, 1], in random order.

  gray: optional bool scalar, whether all channels of `image` are equal;
  where true, the saturation is left out (see below).
  """
  order_seed, brightness_seed, saturation_seed = tf.unstack(ppr.split_seed(seed, 3))

  def brightness(x):
    return tf.image.stateless_random_brightness(x, brightness_delta, brightness_seed)

  def adjust_saturation(x):
    if saturation_lower == saturation_upper:
      # TF's random op needs upper > lower; a fixed factor is the limit case.
      return tf.image.adjust_saturation(x, saturation_lower)
    return tf.image.stateless_random_saturation(
        x, saturation_lower, saturation_upper, saturation_seed)

  # TF's saturation kernel (an HSV round trip per pixel) gives every pixel
  # with equal channels back bit for bit (hue 0, saturation 0 before and
  # after), and a brightness shift keeps channels equal; it is the costliest
  # op of the inception augmentations, and exemplar's grayscale (p = 2/3, before
  # its 8 crops) makes most of its crops gray. Its factor is drawn from its own
  # seed, so skipping it changes no other draw. Only a caller that knows asks
  # for this: in pipelines without grayscale a check per image is pure cost.
  def saturation(x):
    if gray is None:
      return adjust_saturation(x)
    return tf.cond(gray, lambda: x, lambda: adjust_saturation(x))

  brightness_first = tf.random.stateless_uniform([], order_seed) < 0.5
  image = tf.cond(brightness_first,
                  lambda: saturation(brightness(image)),
                  lambda: brightness(saturation(image)))
  # Clip so later ops can rely on [0, 1] (value_range maps it exactly).
  return tf.clip_by_value(image, 0.0, 1.0)


@ppr.register("color_distort")
def get_color_distort(brightness_delta: float = 32.0 / 255.0,
                      saturation_lower: float = 0.5, saturation_upper: float = 1.5,
                      *, training: bool) -> ppr.PreprocessFn:
  """Random brightness and saturation in random order, clipped to [0, 1].

  Training only (identity in eval). Input in [0, 1], RGB, [H, W, 3] or
  [N, H, W, 3] (independent per element).
  """
  if not 0 <= saturation_lower <= saturation_upper or brightness_delta < 0:
    raise ValueError(
        f"color_distort: need brightness_delta >= 0 and 0 <= saturation_lower <= "
        f"saturation_upper; got {brightness_delta}, {saturation_lower}, "
        f"{saturation_upper}.")

  def _apply(features):
    image = common.float_image(features, "color_distort")
    if not training:
      return features
    seed, features = ppr.next_seed(features)
    distort_fn = lambda x, s: distort(x, s, brightness_delta, saturation_lower,
                                      saturation_upper)
    return common.with_image(features, common.per_element(distort_fn, image, seed))

  # Deterministic in evaluation only.
  return _apply if training else ppr.batchable(_apply)


def _gray(image: tf.Tensor) -> tf.Tensor:
  """The mean of the channels, tiled back to the input's channel count."""
  if image.shape[-1] == 3:
    # The same sum in the same order and the same division as reduce_mean
    # (TF sums the 3 values one after the other, then divides by the count),
    # so the same bits; a reduction over a last axis of 3 is a slow path of
    # TF's kernels, and this took about half the time.
    mean = ((image[..., 0:1] + image[..., 1:2]) + image[..., 2:3]) / 3.0
  else:
    mean = tf.reduce_mean(image, axis=-1, keepdims=True)
  return tf.broadcast_to(mean, tf.shape(image))


@ppr.register("to_gray")
def get_to_gray(p: float = 2.0 / 3.0, eval_p: float = 0.0,
                per_element: bool = False, *,
                training: bool) -> ppr.PreprocessFn:
  """With probability p, replaces the image by the mean of its channels.

  The mean is tiled back to the input's channel count so shapes do not change.
  By default the decision is drawn ONCE per example: on a stack [N, H, W, C]
  either all elements become gray or none. per_element=True draws it for each
  element of a stack independently (the patch tasks' per-patch grayscale,
  docs/protocol.md §2). In evaluation the probability is `eval_p`, 0 by default (no
  conversion); eval_p=1 converts every evaluation image.
  """
  for name, value in (("p", p), ("eval_p", eval_p)):
    if not 0.0 <= value <= 1.0:
      raise ValueError(f"to_gray: {name} is a probability in [0, 1]; got {value!r}.")
  prob = p if training else eval_p

  def _apply(features):
    image = common.float_image(features, "to_gray")
    if prob == 0.0:
      return features
    if prob == 1.0:
      return common.with_image(features, _gray(image))
    seed, features = ppr.next_seed(features)
    if per_element:
      if image.shape.rank != 4:
        raise ValueError(f"to_gray(per_element=True) needs a stack [N, H, W, C] "
                         f"(put it after crop_patches); got shape {image.shape}.")
      # One draw per element. Picking each element from [colour; gray] by
      # index copies it once; tf.where with the draws broadcast over H, W, C
      # took twice as long (TF's broadcasting select is a slow path).
      n = tf.shape(image)[0]
      draws = tf.random.stateless_uniform([n], seed)
      picks = tf.range(n) + n * tf.cast(draws < prob, tf.int32)
      return common.with_image(
          features, tf.gather(tf.concat([image, _gray(image)], 0), picks))
    draws = tf.random.stateless_uniform([], seed)
    # A branch, so a colour example skips computing the gray image at all.
    return common.with_image(features, tf.cond(draws < prob, lambda: _gray(image),
                                               lambda: tf.identity(image)))

  # Per-example coin flips only strictly between 0 and 1.
  return ppr.batchable(_apply) if prob in (0.0, 1.0) else _apply
