"""Label-free selection skips the pixels control (it has no pre_logits), so a
run that scores pixels beside its trunks goes on to its next trunk."""
import fake_data
from tiny_tasks import PixelTask
from evaluation import protocols
from evaluation import results
from evaluation import trunks


def test_the_pixels_control_records_no_label_free_entry(tmp_path):
  ds = fake_data.small_pixels(separable=True)
  pixels = trunks.pixels(PixelTask("decode|value_range(-1, 1)"))
  assert protocols.record_label_free(pixels, ds, "val", workdir=str(tmp_path),
                                     log=lambda _: None) is None
  assert "label_free" not in results.load(str(tmp_path))
