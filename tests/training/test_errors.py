"""How the command lines end: one line, the status scripts read."""
import os

import pytest
import tensorflow as tf

from datasets import image_folder
from training import errors


def test_root_message_unwraps_keras_and_autograph_errors():
  layer_error = ValueError(
      "Exception encountered when calling VGG19BN.call().\n\n\x1b[1mvgg19_bn needs "
      "images of at least 32x32 (five 2x2 pools); got input shape (1, 16, 16, 3)."
      "\x1b[0m\n\nArguments received by VGG19BN.call():\n  • images=...")
  assert errors.root_message(layer_error) == (
      "vgg19_bn needs images of at least 32x32 (five 2x2 pools); got input shape "
      "(1, 16, 16, 3).")

  @tf.function
  def crop(x):
    if x.shape[0] < 4:
      raise ValueError("Cannot crop 4 from 3;\n resize first.")
    return x
  with pytest.raises(ValueError) as info:
    crop(tf.zeros([3]))
  assert "in user code" in str(info.value)
  assert errors.root_message(info.value) == "Cannot crop 4 from 3; resize first."
  assert errors.root_message(ValueError("plain\n  text")) == "plain text"
  assert errors.root_message(KeyError()) == "KeyError"


def test_a_corrupt_image_met_while_running_fails_in_one_line(tmp_path, capsys):
  root = tmp_path / "images"
  for name in ("cat", "dog"):
    os.makedirs(root / name)
    data = tf.io.encode_png(tf.zeros([4, 4, 3], tf.uint8)).numpy()
    for i in range(2):
      (root / name / f"{i}.png").write_bytes(data)
  bad = root / "dog" / "1.png"
  bad.write_bytes(bad.read_bytes()[:20])
  dataset = image_folder.ImageFolder(str(root))

  def read_all():
    list(dataset.as_dataset("trainval"))

  with pytest.raises(SystemExit) as info:
    errors.run_cli(read_all)
  assert info.value.code == errors.FAILED_STATUS
  [line] = capsys.readouterr().err.splitlines()
  assert line.startswith("Failed: image_folder: this file is not a complete JPEG or "
                         "PNG image (truncated or corrupt); run `python -m "
                         f"datasets.image_folder --check {root}`")
  assert line.endswith(f"File: {bad}")
  with pytest.raises(tf.errors.InvalidArgumentError):
    errors.run_cli(read_all, debug=True)
  # Errors of no check of ours keep their traceback.
  with pytest.raises(tf.errors.InvalidArgumentError):
    errors.run_cli(lambda: tf.debugging.assert_equal(1, 2))
