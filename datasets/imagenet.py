"""ImageNet (ILSVRC-2012) through tfds's `imagenet2012`, with the study's splits.

docs/protocol.md §7: val is 50,000 images held out from the end of tfds's train split (tfds
fixes the order of a prepared split, so the hold-out is deterministic); train is the
rest, trainval the whole train split, test the official validation set (tfds
'validation'). Images come out JPEG-encoded so preprocessing can decode and crop in
one step.
"""
import tensorflow_datasets as tfds

from datasets import registry
from datasets import tfds_dataset

TRAIN_ARCHIVE = 'ILSVRC2012_img_train.tar'
VAL_ARCHIVE = 'ILSVRC2012_img_val.tar'
NUM_CLASSES = 1000
HOLDOUT = 50000

MANUAL_DIR_HINT = (
    f'Download {TRAIN_ARCHIVE} and {VAL_ARCHIVE} from https://image-net.org (after '
    'registering) into one folder and pass that folder as manual_dir (default: '
    '<data_dir>/downloads/manual); prepare() then builds the tfds files once.')


@registry.register('imagenet2012')
class Imagenet2012(tfds_dataset.TfdsDataset):
  """ImageNet 2012 seen through the study's splits; 'image' is encoded JPEG bytes."""

  def __init__(self, data_dir=None, manual_dir=None, holdout=HOLDOUT):
    """Uses tfds's `imagenet2012` builder under `data_dir`.

    Args:
      data_dir: tfds data directory; None uses tfds's default.
      manual_dir: folder with the two ILSVRC-2012 archives; None uses
        <data_dir>/downloads/manual.
      holdout: training images held out from the end of tfds train as val.
    """
    super().__init__(
        name='imagenet2012',
        builder=tfds.builder('imagenet2012', data_dir=data_dir),
        num_classes=NUM_CLASSES,
        image_shape=(None, None, 3),
        holdout=holdout,
        test_split='validation',
        manual_dir=manual_dir,
        manual_files=(TRAIN_ARCHIVE, VAL_ARCHIVE),
        missing_data_hint=MANUAL_DIR_HINT,
        decode_images=False)
