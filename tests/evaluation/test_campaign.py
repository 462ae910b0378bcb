"""The evaluation campaign's checks: what a run evaluates exists, before training."""
import pytest

from evaluation import campaign
from training import experiment as experiment_lib


def _experiment(**kwargs):
  return experiment_lib.Experiment(task="rotation", dataset="fashion_mnist",
                                   **kwargs)


def test_known_protocols_and_datasets_pass():
  campaign.check(_experiment(protocols=("linear_lbfgs", "knn"),
                             transfer_datasets=("places205|places365",)))


def test_an_unknown_transfer_dataset_is_named():
  with pytest.raises(ValueError, match="Unknown dataset 'sun397'; use one of"):
    campaign.check(_experiment(transfer_datasets=("places205|sun397",)))


def test_an_unknown_protocol_is_named():
  with pytest.raises(ValueError, match=r"Unknown evaluation protocol\(s\) \['knn_cosine'\]"):
    campaign.check(_experiment(protocols=("knn_cosine",)))


def test_cli_seeds():
  assert campaign.seeds(["1", "0", "1"]) == [1, 0]
  with pytest.raises(ValueError, match=r"--seeds takes integers, e.g. --seeds=0,1,2 "
                     r"\(got 0,one\)\."):
    campaign.seeds(["0", "one"])
