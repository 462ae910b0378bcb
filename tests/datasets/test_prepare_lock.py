"""Two runs preparing the same tfds data at once: one builds it, the other waits
for it and reads what the first built (a sweep with --jobs, or a parallel test
suite, on a fresh machine)."""
import fcntl
import os
import subprocess
import sys

from datasets import fashion_mnist
from fake_data import write_fashion_files

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PREPARE = """
import sys
from datasets import fashion_mnist
ds = fashion_mnist.FashionMnist(data_dir=sys.argv[1], manual_dir=sys.argv[2], holdout=6)
ds.prepare()
print('examples', ds.num_examples('train'))
"""


def test_a_second_process_waits_for_the_first_and_reads_its_data(tmp_path):
  manual_dir = write_fashion_files(str(tmp_path / "idx"))
  data_dir = str(tmp_path / "tfds")
  ours = fashion_mnist.FashionMnist(data_dir=data_dir, manual_dir=manual_dir, holdout=6)
  lock = os.path.dirname(os.fspath(ours.builder.data_dir)) + ".prepare.lock"
  os.makedirs(os.path.dirname(lock), exist_ok=True)
  with open(lock, "a") as held:
    # This process is "the first run": it holds the lock while the other starts.
    fcntl.flock(held, fcntl.LOCK_EX)
    other = subprocess.Popen(
        [sys.executable, "-c", PREPARE, data_dir, manual_dir], cwd=ROOT,
        env=dict(os.environ, PYTHONPATH=ROOT), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    waiting = other.stdout.readline()
    assert waiting == (f"fashion_mnist: another process is preparing "
                       f"{ours.builder.data_dir}; waiting for it (lock {lock}) ...\n")
    ours._prepare_unlocked(os.fspath(ours.builder.data_dir))  # pylint: disable=protected-access
    fcntl.flock(held, fcntl.LOCK_UN)
  out, err = other.communicate(timeout=300)
  assert other.returncode == 0, err[-3000:]
  # It found the data the first run built instead of building it again.
  assert out.splitlines() == [
      f"fashion_mnist: prepared tfds data found in {ours.builder.data_dir}",
      f"examples {ours.num_examples('train')}"]
