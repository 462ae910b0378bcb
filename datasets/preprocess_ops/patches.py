"""The patch tasks' grid of patches: crop_patches."""

from typing import Optional

import tensorflow as tf

from datasets import preprocess_registry as ppr
from datasets.preprocess_ops import common


@ppr.register("crop_patches")
def get_crop_patches(splits: int = 3, patch_size: int = 64,
                     jitter: Optional[int] = None, *,
                     training: bool) -> ppr.PreprocessFn:
  """Splits [H, W, C] into a splits x splits grid and crops a patch in each cell.

  Output [splits * splits, patch_size, patch_size, C], row-major (patch
  r * splits + c is grid cell (r, c)). Cells are H // splits by W // splits,
  starting at the top-left corner. In each cell the margin is
  m = cell - patch_size; in evaluation the patch sits at offset m // 2
  (central); in training its offset is drawn uniformly, independently per cell
  and axis, from [(m - j) // 2, (m - j) // 2 + j] with j = jitter (default
  m, i.e. anywhere in the cell).
  """
  if not isinstance(splits, int) or splits <= 0:
    raise ValueError(f"crop_patches: splits must be a positive int; got {splits!r}.")
  if not isinstance(patch_size, int) or patch_size <= 0:
    raise ValueError(f"crop_patches: patch_size must be a positive int; got "
                     f"{patch_size!r}.")
  if jitter is not None and (not isinstance(jitter, int) or jitter < 0):
    raise ValueError(f"crop_patches: jitter must be None or an int >= 0; got "
                     f"{jitter!r}.")
  num_patches = splits * splits

  def _apply(features):
    image = common.float_image(features, "crop_patches", ranks=(3,))
    static_hw = image.shape[:2]
    if static_hw.is_fully_defined():
      static_margin = min(static_hw[0], static_hw[1]) // splits - patch_size
      if static_margin < 0:
        raise ValueError(
            f"crop_patches: image {static_hw[0]}x{static_hw[1]} split {splits}x"
            f"{splits} gives cells smaller than patch_size={patch_size}; resize or "
            f"crop to at least {splits * patch_size} pixels first.")
      if jitter is not None and jitter > static_margin:
        raise ValueError(
            f"crop_patches: jitter={jitter} exceeds the cell margin "
            f"{static_margin} (cell - patch_size); use jitter <= {static_margin}.")
    shape = tf.shape(image)
    cell = tf.stack([shape[0] // splits, shape[1] // splits])  # (cell_h, cell_w)
    margin = cell - patch_size
    tf.debugging.assert_non_negative(
        margin, message="crop_patches: grid cells are smaller than patch_size")
    if training:
      if jitter is None:
        span = margin
      else:
        span = tf.fill([2], jitter)
        tf.debugging.assert_less_equal(
            span, margin, message="crop_patches: jitter exceeds cell - patch_size")
      seed, features = ppr.next_seed(features)
      # Integer offsets uniform in [0, span] per cell and axis, independently.
      u = tf.random.stateless_uniform([num_patches, 2], seed)
      draw = tf.cast(tf.floor(u * tf.cast(span + 1, tf.float32)), tf.int32)
      offset = (margin - span) // 2 + tf.minimum(draw, span)
    else:
      offset = tf.broadcast_to(margin // 2, [num_patches, 2])
    grid = tf.range(num_patches)
    cell_pos = tf.stack([grid // splits, grid % splits], axis=1)  # row-major
    corner = cell_pos * cell + offset  # [num_patches, 2] top-left of each patch
    steps = tf.range(patch_size)
    rows = corner[:, 0:1] + steps  # [num_patches, patch_size]
    cols = corner[:, 1:2] + steps
    patches = tf.gather(image, rows, axis=0)  # [P, ps, W, C]
    patches = tf.gather(patches, cols, axis=2, batch_dims=1)  # [P, ps, ps, C]
    patches.set_shape([num_patches, patch_size, patch_size, image.shape[-1]])
    return common.with_image(features, patches)

  return _apply
