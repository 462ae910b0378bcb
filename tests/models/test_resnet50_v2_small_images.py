"""ResNet50 v2 on 64x64 images without patch mode (the walking skeleton's trunk)."""
import pytest
import tensorflow as tf

import models


@pytest.mark.parametrize("k", [1, 4])
def test_resnet50_v2_end_points_at_64(k):
  model = models.get_model("resnet50_v2", width=k, num_classes=4)
  logits, end_points = model(tf.zeros([2, 64, 64, 3]), training=False)
  shapes = {name: tuple(t.shape) for name, t in end_points.items()}
  # Root stride 2 and max-pool stride 2: 64 -> 16; blocks 2-4 halve each.
  assert shapes == {
      "after_root": (2, 16, 16, 16 * k),
      "block1": (2, 16, 16, 64 * k),
      "block2": (2, 8, 8, 128 * k),
      "block3": (2, 4, 4, 256 * k),
      "block4": (2, 2, 2, 512 * k),
      "pre_logits": (2, 512 * k),
      "logits": (2, 4),
  }
  assert list(end_points) == ["after_root", "block1", "block2", "block3",
                              "block4", "pre_logits", "logits"]
  assert logits.shape == (2, 4)
