"""Tests for the preprocessing op registry and the pipeline-string parser."""

import numpy as np
import pytest
import tensorflow as tf

from datasets import preprocess_registry as ppr

BUILTIN_OPS = [
    "central_crop", "color_distort", "crop", "crop_patches", "decode", "flip_lr",
    "inception_crop", "inception_patches", "inception_preprocess", "keep", "resize",
    "resize_small", "standardize", "to_gray", "value_range"
]


@pytest.fixture
def scratch_ops():
  """Names registered by a test, removed afterwards so tests stay independent."""
  names = []
  yield names
  for name in names:
    ppr._REGISTRY.pop(name, None)  # pylint: disable=protected-access


def _register_tracer(name, scratch_ops):
  """Registers an op appending (tag, training) to features['trace']."""
  scratch_ops.append(name)

  @ppr.register(name)
  def get_tracer(tag="x", *, training):

    def _apply(features):
      features = dict(features)
      features["trace"] = features.get("trace", ()) + ((tag, training),)
      return features

    return _apply

  return get_tracer


class TestParsePipeline:

  def test_names_positional_and_keyword_args(self):
    ops = ppr.parse_pipeline(
        "decode|resize(256)|to_gray(p=0.6667)|crop_patches(3, jitter=21)|"
        "value_range(-1, 1)|central_crop((24, 32))|keep('image', 'label')")
    assert ops == [
        ("decode", (), {}),
        ("resize", (256,), {}),
        ("to_gray", (), {"p": 0.6667}),
        ("crop_patches", (3,), {"jitter": 21}),
        ("value_range", (-1, 1), {}),
        ("central_crop", ((24, 32),), {}),
        ("keep", ("image", "label"), {}),
    ]

  def test_whitespace_and_newlines_tolerated(self):
    ops = ppr.parse_pipeline("  decode |\n resize( 32 ,  method = 'area' )|\tflip_lr  ")
    assert ops == [("decode", (), {}), ("resize", (32,), {"method": "area"}),
                   ("flip_lr", (), {})]

  def test_numeric_arithmetic_as_in_spec(self):
    ops = ppr.parse_pipeline("to_gray(2/3)|value_range(-1, 2*0.5)|resize(256 // 2 + 4)")
    assert ops[0] == ("to_gray", (2 / 3,), {})
    assert ops[1] == ("value_range", (-1, 1.0), {})
    assert ops[2] == ("resize", (132,), {})

  def test_literals_of_every_kind(self):
    ops = ppr.parse_pipeline("op(None, True, [1, 2], {'a': -3}, 'a|b', -1e-3)")
    assert ops == [("op", (None, True, [1, 2], {"a": -3}, "a|b", -1e-3), {})]

  @pytest.mark.parametrize("empty", ["", "   ", "\n", []])
  def test_empty_pipeline(self, empty):
    assert ppr.parse_pipeline(empty) == []

  def test_sequence_of_strings_is_concatenated(self):
    assert ppr.parse_pipeline(["decode|resize(8)", "", "flip_lr"]) == [
        ("decode", (), {}), ("resize", (8,), {}), ("flip_lr", (), {})]

  @pytest.mark.parametrize("bad, fragment", [
      ("decode||resize(8)", "Cannot parse pipeline"),
      ("decode|resize(8", "Cannot parse pipeline"),
      ("decode|resize(size)", "must be Python literals"),
      ("decode|resize(__import__('os'))", "must be Python literals"),
      ("decode|resize(**{'size': 3})", "must be Python literals"),
      ("decode|to_gray('a' * 3)", "must be Python literals"),
      ("decode|resize(1/0)", "division by zero"),
      ("decode|tf.image.resize(8)", "each op must be `name`"),
      ("decode + resize(8)", "each op must be `name`"),
      ("3", "each op must be `name`"),
  ])
  def test_malformed_strings_raise_value_error(self, bad, fragment):
    with pytest.raises(ValueError, match=fragment):
      ppr.parse_pipeline(bad)

  def test_non_string_pipeline_raises(self):
    with pytest.raises(ValueError, match="must be a string like"):
      ppr.parse_pipeline(42)


class TestRegistry:

  def test_builtins_registered_and_sorted(self):
    ops = ppr.registered_ops()
    assert ops == sorted(ops)
    assert set(BUILTIN_OPS) <= set(ops)

  def test_builtins_live_in_the_module_the_package_docstring_names(self):
    # The package docstring is the map a reader follows to an op's code.
    from datasets import preprocess_ops
    families = {}
    for line in preprocess_ops.__doc__.splitlines():
      words = line.replace(",", " ").split()
      if words and words[0].endswith(".py"):
        families.update({op: words[0][:-3] for op in words[1:]})
    for name in BUILTIN_OPS:
      module = ppr.get_op_factory(name).__module__
      assert module == f"datasets.preprocess_ops.{families.get(name)}", name

  def test_register_and_apply_in_order_with_training_flag(self, scratch_ops):
    _register_tracer("test_tracer_op", scratch_ops)
    assert "test_tracer_op" in ppr.registered_ops()
    for training in (True, False):
      fn = ppr.get_preprocess_fn("test_tracer_op('a')| test_tracer_op(tag='b')|test_tracer_op",
                                 training=training)
      out = fn({"label": 3})
      assert out["trace"] == (("a", training), ("b", training), ("x", training))
      assert out["label"] == 3

  def test_duplicate_registration_raises_unless_override(self, scratch_ops):
    _register_tracer("test_dup_op", scratch_ops)
    with pytest.raises(ValueError, match="already registered.*override=True"):
      _register_tracer("test_dup_op", scratch_ops)

    @ppr.register("test_dup_op", override=True)
    def get_replacement(*, training):
      del training
      return lambda features: {**features, "replaced": True}

    out = ppr.get_preprocess_fn("test_dup_op", training=False)({})
    assert out == {"replaced": True}

  def test_builtin_name_cannot_be_reused_silently(self):
    with pytest.raises(ValueError, match="'resize' is already registered"):

      @ppr.register("resize")
      def get_resize(*, training):
        del training
        return lambda f: f

  @pytest.mark.parametrize("name", ["bad-name", "two words", "", 3])
  def test_non_identifier_name_raises(self, name):
    with pytest.raises(ValueError, match="identifier"):
      ppr.register(name)

  def test_factory_without_training_keyword_raises(self):
    with pytest.raises(ValueError, match="must accept the keyword argument `training`"):

      @ppr.register("test_no_training_op")
      def get_op(size):
        return lambda f: f

    assert "test_no_training_op" not in ppr.registered_ops()

  def test_unknown_op_lists_every_registered_op(self):
    with pytest.raises(ValueError) as info:
      ppr.get_preprocess_fn("decode|no_such_op(3)", training=True)
    message = str(info.value)
    assert "'no_such_op'" in message
    for name in ppr.registered_ops():
      assert name in message

  def test_bad_arguments_name_op_and_signature(self):
    with pytest.raises(ValueError, match=r"'resize'.*Signature: resize\(size"):
      ppr.get_preprocess_fn("resize", training=True)
    with pytest.raises(ValueError, match=r"'crop_patches'.*unexpected keyword.*jiter"):
      ppr.get_preprocess_fn("crop_patches(3, jiter=21)", training=True)
    with pytest.raises(ValueError, match=r"'flip_lr'.*Signature: flip_lr\("):
      ppr.get_preprocess_fn("flip_lr(0.5)", training=True)
    with pytest.raises(ValueError, match="set by get_preprocess_fn"):
      ppr.get_preprocess_fn("flip_lr(training=True)", training=False)

  def test_empty_pipeline_is_identity_and_input_not_mutated(self):
    features = {"image": tf.zeros([2, 2, 3]), "label": 1}
    out = ppr.get_preprocess_fn("", training=True)(features)
    assert out is not features
    assert out.keys() == features.keys()
    assert out["image"] is features["image"]

  def test_training_must_be_bool(self):
    with pytest.raises(ValueError, match="must be True or False"):
      ppr.get_preprocess_fn("decode", training="yes")

  def test_features_must_be_a_dict(self):
    fn = ppr.get_preprocess_fn("flip_lr", training=True)
    with pytest.raises(ValueError, match="dict of features"):
      fn(tf.zeros([4, 4, 3]))


class TestSeeds:

  def test_next_seed_splits_and_advances_rng(self):
    features = {"_rng": tf.constant([7, 11], tf.int32), "label": 2}
    seed_a, after_a = ppr.next_seed(features)
    seed_b, after_b = ppr.next_seed(after_a)
    # The input dict keeps its seed: ops must not mutate the caller's features.
    np.testing.assert_array_equal(features["_rng"], [7, 11])
    assert after_a["label"] == 2
    assert seed_a.shape == (2,) and seed_a.dtype == tf.int32
    values = {tuple(v.numpy()) for v in (seed_a, seed_b, after_a["_rng"], after_b["_rng"])}
    assert len(values) == 4 and (7, 11) not in values
    again, _ = ppr.next_seed({"_rng": tf.constant([7, 11], tf.int32)})
    np.testing.assert_array_equal(again, seed_a)

  def test_next_seed_accepts_int64(self):
    seed, features = ppr.next_seed({"_rng": tf.constant([1, 2], tf.int64)})
    assert seed.dtype == tf.int64 and features["_rng"].dtype == tf.int64

  def test_next_seed_without_rng_draws_a_seed(self):
    seed, features = ppr.next_seed({"label": 0})
    assert seed.shape == (2,) and seed.dtype == tf.int32
    assert "_rng" not in features

  def test_next_seed_rejects_float_rng(self):
    with pytest.raises(ValueError, match="int32 or int64"):
      ppr.next_seed({"_rng": tf.constant([1.0, 2.0])})

  def test_split_seed_dynamic_count(self):
    seeds = ppr.split_seed(tf.constant([3, 4]), tf.constant(5))
    assert seeds.shape == (5, 2)
    assert len({tuple(s) for s in seeds.numpy()}) == 5
    np.testing.assert_array_equal(seeds, ppr.split_seed(tf.constant([3, 4]), 5))
