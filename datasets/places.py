"""Places365-Standard through tfds's `places365_small` (256x256), with the study's splits.

The paper uses Places205, which tfds lacks (docs/protocol.md §7; datasets/places205.py
builds it from its own archives); Places365 is handled the same way as ImageNet: val
is held out from the end of tfds's train split, train is the rest, trainval all of
it, and test is tfds 'validation' (tfds 'test' has no labels).

tfds's builder downloads four archives; offline, it takes them from manual_dir
instead when they sit there under their original names (it still checks their
SHA-256 against the checksums tfds ships, so they must be the original files).
"""
import tensorflow_datasets as tfds

from datasets import registry
from datasets import tfds_dataset

ARCHIVES = ('train_256_places365standard.tar', 'val_256.tar', 'test_256.tar',
            'filelist_places365-standard.tar')
NUM_CLASSES = 365
HOLDOUT = 50000

MANUAL_DIR_HINT = (
    f'Download {", ".join(ARCHIVES)} from http://data.csail.mit.edu/places/places365/ '
    'into one folder and pass that folder as manual_dir (default: '
    '<data_dir>/downloads/manual); prepare() then builds the tfds files once.')


@registry.register('places365')
class Places365(tfds_dataset.TfdsDataset):
  """Places365 (small images) seen through the study's splits; 'image' is encoded bytes."""

  def __init__(self, data_dir=None, manual_dir=None, holdout=HOLDOUT):
    """Uses tfds's `places365_small` builder under `data_dir`.

    Args:
      data_dir: tfds data directory; None uses tfds's default.
      manual_dir: folder with the four Places365 archives; None uses
        <data_dir>/downloads/manual.
      holdout: training images held out from the end of tfds train as val.
    """
    super().__init__(
        name='places365',
        builder=tfds.builder('places365_small', data_dir=data_dir),
        num_classes=NUM_CLASSES,
        image_shape=(256, 256, 3),
        holdout=holdout,
        test_split='validation',
        manual_dir=manual_dir,
        manual_files=ARCHIVES,
        missing_data_hint=MANUAL_DIR_HINT,
        decode_images=False)
