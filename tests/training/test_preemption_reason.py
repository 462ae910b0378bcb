"""A preemption's message names the signal that asked for it."""
import signal

from training import preemption


def test_the_notice_names_its_signal(capsys):
  try:
    preemption._on_signal(signal.SIGINT, None)  # pylint: disable=protected-access
    assert preemption.requested()
    assert preemption.reason() == "SIGINT (Ctrl-C) received"
    assert "Ctrl-C again stops at once, unsaved." in capsys.readouterr().err
    preemption.clear()
    preemption._on_signal(signal.SIGTERM, None)  # pylint: disable=protected-access
    assert preemption.reason() == "SIGTERM received"
  finally:
    preemption.clear()
