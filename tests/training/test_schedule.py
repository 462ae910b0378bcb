import numpy as np
import pytest

from training import schedule


def test_epochs_to_steps_rounds_up():
  assert schedule.epochs_to_steps(35, 1_231_167, 256) == 168_324  # 35 * 1231167 / 256 = 168323.6
  assert schedule.epochs_to_steps(1, 100, 64) == 2
  assert schedule.epochs_to_steps(0, 100, 64) == 0
  with pytest.raises(ValueError, match="batch size"):
    schedule.epochs_to_steps(1, 100, 0)


def test_learning_rate_scales_linearly_with_batch():
  assert schedule.scaled_learning_rate(256) == pytest.approx(0.1)
  assert schedule.scaled_learning_rate(64) == pytest.approx(0.025)
  assert schedule.scaled_learning_rate(2048, base_lr=0.2) == pytest.approx(1.6)


def test_spec_schedule_values_at_chosen_steps():
  # 1000 examples, batch 100: 10 steps per epoch; warm-up 5 epochs, decays at
  # 15 and 25 epochs (docs/protocol.md §4), peak 0.1 * 100 / 256.
  peak = schedule.scaled_learning_rate(100)
  lr = schedule.make_schedule(peak_lr=peak, num_examples=1000,
                              global_batch_size=100, warmup_epochs=5,
                              decay_epochs=[15, 25])
  expected = {0: 0.0, 25: peak * 0.5, 49: peak * 49 / 50, 50: peak,
              149: peak, 150: peak * 0.1, 249: peak * 0.1, 250: peak * 0.01,
              349: peak * 0.01}
  for step, value in expected.items():
    np.testing.assert_allclose(float(lr(step)), value, rtol=1e-6, atol=1e-9)


def test_no_warmup():
  lr = schedule.WarmupPiecewiseConstant(0.4, 0, [10])
  assert float(lr(0)) == pytest.approx(0.4)
  assert float(lr(10)) == pytest.approx(0.04)
