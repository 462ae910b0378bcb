"""The label-free measures skip a trunk without the layer (the pixels control
has no pre_logits): a run with `experiment.evaluate_pixels = True` no longer
fails after its evaluations with "Unknown layer(s) ['pre_logits']"."""
import os

from evaluation import protocols
from evaluation import trunks


def test_record_label_free_skips_the_pixels_control(tmp_path):
  pixels = trunks.Trunk(trunks.PIXELS, None, None, {}, end_points=(trunks.PIXELS,))
  assert protocols.record_label_free(pixels, None, "val", workdir=str(tmp_path)) is None
  assert os.listdir(tmp_path) == []  # no results.json entry, no features extracted
