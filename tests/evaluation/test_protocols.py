"""The protocol table: one record per protocol, one naming scheme."""
import gin
import pytest

from evaluation import protocols
from evaluation import sgd_eval


def test_the_table_keeps_every_protocol_in_order():
  assert protocols.PROTOCOLS == (
      "linear_lbfgs", "linear_sgd", "mlp_sgd", "linear_sgd_features",
      "mlp_sgd_features", "knn", "finetune")
  assert protocols.DETERMINISTIC_AT_FULL_DATA == ("linear_lbfgs", "knn")
  assert [n for n, p in protocols.TABLE.items() if p.on_features] == [
      "linear_lbfgs", "linear_sgd_features", "mlp_sgd_features", "knn"]
  assert protocols.seed_arguments("knn", 2) == dict(subset_seed=2)
  assert protocols.seed_arguments("mlp_sgd", 2) == dict(seed=2, subset_seed=2)
  with pytest.raises(ValueError, match="use any of linear_lbfgs"):
    protocols.check_protocols(["linear"])


@pytest.mark.parametrize("name", protocols.PROTOCOLS)
def test_a_records_gin_scope_is_its_familys(clean_gin, name):
  del clean_gin
  record = protocols.TABLE[name]
  assert record.scope == f"{record.family}_eval"
  gin.bind_parameter(f"{record.scope}.fraction", 0.25)
  assert protocols.resolved_settings(record.evaluate, {})["fraction"] == 0.25
  if record.trains_heads:
    assert sgd_eval.protocol_name(**record.arguments) == name
    assert record.on_features == (record.arguments["inputs"] == "features")
  else:
    assert not record.arguments
