"""The ONNX loader and the IR evaluator against onnxruntime, op family by op family, plus errors."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

import onnx_factory as factory
from onnx_factory import one_torch_thread  # noqa: F401  (a fixture)
from onnx_factory import INT64_MAX, OnnxBuilder, run_onnxruntime
from verifier.errors import UnsupportedModel, UserError
from verifier.graph.evaluate import evaluate
from verifier.graph.onnx_loader import load_onnx

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SEEDS = range(8)


def ir_output(path, x: np.ndarray) -> np.ndarray:
    """The IR's output on x; every node's value has the shape the loader inferred for it."""
    graph = load_onnx(path).to(torch.float64)
    values = evaluate(graph, torch.as_tensor(x, dtype=torch.float64), keep_all=True)
    for node in graph.nodes:
        assert tuple(values[node.name].shape[1:]) == node.shape, f"{node.name} ({node.op})"
    return values[graph.output_name].numpy()


def assert_matches_onnxruntime(path, x: np.ndarray, rtol: float = 1e-5) -> None:
    """The IR (float64) on the float32 inputs x agrees with onnxruntime, shape and values."""
    x = np.asarray(x, dtype=np.float32)
    ref = run_onnxruntime(path, x)
    y = ir_output(path, x)
    assert y.shape == ref.shape, f"IR output shape {y.shape[1:]}, onnxruntime {ref.shape[1:]}"
    scale = max(float(np.abs(ref).max(initial=0.0)), 1e-6)
    np.testing.assert_allclose(y, ref, rtol=rtol, atol=rtol * scale)


def random_inputs(path, n: int, seed: int) -> np.ndarray:
    shape = factory.input_shape(onnx.load(str(path)))
    return np.random.default_rng(seed).normal(size=(n, *shape)).astype(np.float32)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("family", sorted(factory.ALL))
def test_matches_onnxruntime(family, seed, tmp_path):
    path = factory.make(family, seed, tmp_path)
    assert_matches_onnxruntime(path, random_inputs(path, 4, seed))


# --- one hand-built model per corner of the converters ------------------------------------------

def _flatten_axis_rank(b):  # axis == rank: (prod, 1)
    return b.add("Flatten", [b.input], axis=3)


def _flatten_axis_zero(b):
    return b.add("Flatten", [b.input], axis=0)


def _size_of_variable(b):
    size = b.add("Cast", [b.add("Size", [b.input])], to=onnx.TensorProto.FLOAT)
    return b.add("Mul", [b.input, size])


def _shape_constant_of_shape(b):
    zeros = b.add("ConstantOfShape", [b.add("Shape", [b.input])],
                  value=onnx.helper.make_tensor("v", onnx.TensorProto.FLOAT, [1], [0.5]))
    return b.add("Add", [b.input, zeros])


def _unsupported_op_on_constants(b):  # Erf is not supported, but folds away on constants
    erf = b.add("Erf", [b.const(np.linspace(-1, 1, 4).reshape(1, 1, 1, 4))])
    return b.add("Mul", [b.input, erf])


def _constant_value_float(b):
    return b.add("Mul", [b.input, b.add("Constant", [], value_float=2.5)])


def _maxpool_ceil_mode_full_windows(b):
    return b.add("MaxPool", [b.input], kernel_shape=[2, 2], strides=[1, 2], ceil_mode=1)


def _maxpool_same_lower(b):
    return b.add("MaxPool", [b.input], kernel_shape=[2, 3], strides=[2, 2], auto_pad="SAME_LOWER")


def _avgpool_same_lower(b):
    return b.add("AveragePool", [b.input], kernel_shape=[3, 2], auto_pad="SAME_LOWER")


def _conv_same_lower(b):
    return b.add("Conv", [b.input, b.weight(2, 2, 2, 3)], auto_pad="SAME_LOWER", strides=[2, 1])


def _conv_valid(b):
    return b.add("Conv", [b.input, b.weight(1, 2, 3, 3)], auto_pad="VALID")


def _matmul_bias_of_other_shape(b):  # an Add that broadcasts is not fused into the matmul
    return b.add("Add", [b.add("MatMul", [b.input, b.weight(4, 3)]), b.weight(2, 1, 1, 3)])


def _sub_of_itself(b):
    return b.add("Sub", [b.input, b.add("Identity", [b.input])])


def _identity_only(b):
    return b.add("Identity", [b.input])


def _slice_clamped_ends(b):
    return b.add("Slice", [b.input, b.ints([-100, 1]), b.ints([INT64_MAX, -1]), b.ints([3, 2])])


def _gemm_trans_a_alpha_beta(b):  # input (4, 1): A^T is (1, 4)
    return b.add("Gemm", [b.input, b.weight(3, 4), b.weight(1, 3)], transA=1, transB=1,
                 alpha=-0.7, beta=1.9)


def _transpose_default_perm(b):
    return b.add("Transpose", [b.input])


def _recombined(b, parts):
    """The parts of a split, each through a different op, concatenated back."""
    ops = ["Relu", "Neg", "Sigmoid"]
    return b.add("Concat", [b.add(ops[k % 3], [p]) for k, p in enumerate(parts)], axis=1 if len(parts) == 3 else -1)


HAND_BUILT = {  # name: (input shape, opset, body)
    "flatten_axis_rank": ([1, 2, 3, 4], 13, _flatten_axis_rank),
    "flatten_axis_zero": ([1, 2, 3, 4], 13, _flatten_axis_zero),
    "size_of_variable": ([1, 2, 3], 13, _size_of_variable),
    "shape_constant_of_shape": ([1, 2, 3], 13, _shape_constant_of_shape),
    "unsupported_op_on_constants": ([1, 2, 3, 4], 13, _unsupported_op_on_constants),
    "constant_value_float": ([1, 3], 13, _constant_value_float),
    "maxpool_ceil_mode_full_windows": ([1, 2, 5, 6], 13, _maxpool_ceil_mode_full_windows),
    "maxpool_same_lower": ([1, 2, 5, 6], 13, _maxpool_same_lower),
    "avgpool_same_lower": ([1, 2, 5, 6], 13, _avgpool_same_lower),
    "conv_same_lower": ([1, 2, 5, 6], 13, _conv_same_lower),
    "conv_valid": ([1, 2, 5, 6], 13, _conv_valid),
    "matmul_bias_of_other_shape": ([1, 1, 4], 13, _matmul_bias_of_other_shape),
    "sub_of_itself": ([1, 3], 13, _sub_of_itself),
    "identity_only": (["N", 3], 13, _identity_only),
    "slice_clamped_ends": ([1, 2, 5, 6], 13, _slice_clamped_ends),
    "transpose_default_perm": ([1, 2, 3], 13, _transpose_default_perm),
    "gemm_trans_a_alpha_beta": ([4, 1], 13, _gemm_trans_a_alpha_beta),
    # older and newer opsets: attributes instead of inputs, and the reverse
    "pad_opset10_attributes": ([1, 2, 3], 10,
                               lambda b: b.add("Pad", [b.input], pads=[0, 1, 2, 0, 0, 1], value=2.0)),
    "pad_opset18_axes": ([1, 2, 3], 18, lambda b: b.add(
        "Pad", [b.input, b.ints([1, 2, 0, 1]), b.const(np.float32(1.5)), b.ints([-1, 1])])),
    "slice_opset9_attributes": ([1, 4, 5], 9, lambda b: b.add(
        "Slice", [b.input], starts=[1, -3], ends=[100, -1], axes=[1, 2])),
    "squeeze_opset11_attributes": ([1, 3, 1, 2], 11, lambda b: b.add("Squeeze", [b.input], axes=[2])),
    "unsqueeze_opset11_attributes": ([1, 3], 11, lambda b: b.add("Unsqueeze", [b.input], axes=[-1, 0])),
    "reshape_opset14_allowzero_0": ([1, 2, 3], 14, lambda b: b.add(
        "Reshape", [b.input, b.ints([0, -1])], allowzero=0)),
    # piecewise-linear activations, rewritten into ReLUs
    "clip_opset6_attributes": ([1, 5], 6, lambda b: b.add("Clip", [b.input], min=-0.5, max=0.7)),
    "clip_no_bounds": ([1, 5], 13, lambda b: b.add("Clip", [b.input])),
    "clip_min_only": ([1, 5], 13, lambda b: b.add("Clip", [b.input, b.const(np.float32(0.2))])),
    "leaky_relu_default_alpha": ([1, 5], 13, lambda b: b.add("LeakyRelu", [b.input])),
    "prelu_per_channel": ([1, 3, 4, 4], 13, lambda b: b.add(
        "PRelu", [b.input, b.const(np.array([0.1, -0.3, 2.0]).reshape(3, 1, 1))])),
    "max_of_three_broadcast": ([1, 2, 3], 13, lambda b: b.add(
        "Max", [b.input, b.add("Neg", [b.input]), b.const(np.array([0.1, -0.2, 0.3]))])),
    "min_of_constant_and_variable": ([1, 4], 13, lambda b: b.add(
        "Min", [b.const(np.array([[0.5], [0.0]])), b.input])),
    # Split: sizes as an input, as an attribute, or equal parts; the outputs recombined
    "split_sizes_input": ([1, 6, 2], 13, lambda b: _recombined(b, b.add(
        "Split", [b.input, b.ints([1, 3, 2])], outputs=3, axis=1))),
    "split_opset11_attribute": ([1, 2, 5], 11, lambda b: _recombined(b, b.add(
        "Split", [b.input], outputs=2, axis=-1, split=[4, 1]))),
    "split_equal_parts": ([1, 6], 13, lambda b: _recombined(b, b.add("Split", [b.input], outputs=3, axis=1))),
}


@pytest.mark.parametrize("name", sorted(HAND_BUILT))
def test_hand_built_matches_onnxruntime(name, tmp_path):
    shape, opset, body = HAND_BUILT[name]
    b = OnnxBuilder(shape, opset=opset, rng=np.random.default_rng(0))
    path = b.save(tmp_path / f"{name}.onnx", body(b))
    assert_matches_onnxruntime(path, random_inputs(path, 3, 0))


# --- linear layers back to back (merged into one matmul at load time) -----------------------------

@pytest.mark.parametrize("bias_shape", [
    None, (3,), (1, 3), (2, 3), (1, 2, 3), (), (1,), (2, 1),
], ids=str)
def test_matmul_add_matmul_chain(bias_shape, tmp_path):
    b = OnnxBuilder([1, 2, 4], rng=np.random.default_rng(3))
    y = b.add("MatMul", [b.input, b.weight(4, 3)])
    if bias_shape is not None:
        y = b.add("Add", [y, b.weight(*bias_shape, fan_in=1)])
    y = b.add("MatMul", [y, b.weight(3, 2)])
    path = b.save(tmp_path / "chain.onnx", b.add("Relu", [y]))
    assert_matches_onnxruntime(path, random_inputs(path, 3, 0))


@pytest.mark.parametrize("c_shape", [(3,), (1, 3), (1, 1)], ids=str)
def test_gemm_gemm_chain(c_shape, tmp_path):
    b = OnnxBuilder([1, 4], rng=np.random.default_rng(4))
    y = b.add("Gemm", [b.input, b.weight(4, 3), b.weight(*c_shape, fan_in=1)], beta=0.5)
    y = b.add("Gemm", [y, b.weight(2, 3), b.weight(2, fan_in=1)], transB=1)
    y = b.add("MatMul", [b.weight(5, 2), b.add("Transpose", [y])])  # and a constant on the left
    path = b.save(tmp_path / "chain.onnx", y)
    assert_matches_onnxruntime(path, random_inputs(path, 3, 0))


# --- batches ------------------------------------------------------------------------------------

@pytest.mark.parametrize("family", sorted(factory.ALL))
def test_batch_equals_one_at_a_time(family, tmp_path):
    """A model exported with batch 1 evaluates 7 inputs at once, each as on its own."""
    for seed in range(3):
        model = factory.ALL[family](np.random.default_rng(seed))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        if dims[0].dim_param:  # export it with batch 1
            dims[0].dim_value = 1
        path = factory.save(model, tmp_path / f"{family}_{seed}.onnx")
        graph = load_onnx(path).to(torch.float64)
        x = torch.as_tensor(random_inputs(path, 7, seed), dtype=torch.float64)
        batch = evaluate(graph, x)
        assert batch.shape[0] == 7
        for i in range(7):
            single = evaluate(graph, x[i:i + 1])
            torch.testing.assert_close(batch[i:i + 1], single, rtol=1e-12, atol=1e-12)
        # the flat form (B, input_size) is the same batch
        torch.testing.assert_close(evaluate(graph, x.reshape(7, -1)), batch, rtol=0, atol=0)
    # and onnxruntime agrees on the batch, one sample at a time
    assert_matches_onnxruntime(path, x.numpy())


def test_batch_dimension_is_not_mixed_up_with_a_model_axis(tmp_path):
    """An input whose first dims equal the batch size: samples must still stay apart."""
    b = OnnxBuilder([1, 7, 3], rng=np.random.default_rng(1))
    y = b.add("Transpose", [b.input], perm=[1, 0, 2])  # (7, 1, 3)
    y = b.add("Concat", [y, b.add("Relu", [y])], axis=1)  # (7, 2, 3)
    y = b.add("Add", [b.add("MatMul", [y, b.weight(3, 2)]), b.weight(7, 1, 1)])  # (7, 2, 2)
    path = b.save(tmp_path / "m.onnx", y)
    x = random_inputs(path, 7, 1)
    assert_matches_onnxruntime(path, x)


# --- errors -------------------------------------------------------------------------------------

def assert_one_line(error) -> str:
    message = str(error.value)
    assert message and "\n" not in message, repr(message)
    return message


def test_unsupported_ops_are_all_named(tmp_path):
    b = OnnxBuilder([1, 4], rng=np.random.default_rng(0))
    h = b.add("Relu", [b.add("Gemm", [b.input, b.weight(4, 4)], name="dense")])
    s = b.add("Hardmax", [h], axis=1, name="probabilities")
    e = b.add("Erf", [h], name="gelu_erf")
    e2 = b.add("Erf", [b.add("Add", [e, s])], name="second_erf")
    path = b.save(tmp_path / "unsupported.onnx", b.add("Sigmoid", [e2]))
    with pytest.raises(UnsupportedModel) as error:
        load_onnx(path)
    message = assert_one_line(error)
    assert str(path) in message
    for op, name in [("Hardmax", "probabilities"), ("Erf", "gelu_erf"), ("Erf", "second_erf")]:
        assert f"{op} (node '{name}')" in message, message
    listed = message.replace(str(path), "")
    for supported in ("Gemm", "Relu", "Sigmoid", "Add", "dense"):
        assert supported not in listed, message


def test_missing_file(tmp_path):
    path = tmp_path / "nowhere" / "model.onnx"
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert str(path) in assert_one_line(error)


@pytest.mark.parametrize("seed", range(4))
def test_corrupt_file(seed, tmp_path):
    path = tmp_path / "corrupt.onnx"
    path.write_bytes(np.random.default_rng(seed).integers(0, 256, 64 + 97 * seed, dtype=np.uint8).tobytes())
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert str(path) in assert_one_line(error)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.onnx"
    path.write_bytes(b"")
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert str(path) in assert_one_line(error)


def _matmul_inner_mismatch(b):
    return b.add("MatMul", [b.input, b.weight(5, 3)], name="bad_matmul")


def _gemm_mismatch(b):
    return b.add("Gemm", [b.input, b.weight(3, 5), b.weight(3)], transB=1, name="bad_gemm")


def _add_broadcast_mismatch(b):
    return b.add("Add", [b.input, b.const(np.ones(3))], name="bad_add")


def _reshape_mismatch(b):
    return b.add("Reshape", [b.input, b.ints([3, -1, 2])], name="bad_reshape")


def _reshape_zero_past_rank(b):
    return b.add("Reshape", [b.input, b.ints([1, 4, 0])], name="bad_reshape_zero")


def _concat_mismatch(b):
    return b.add("Concat", [b.input, b.add("MatMul", [b.input, b.weight(4, 2)])], axis=0,
                 name="bad_concat")


def _mul_of_variables_mismatch(b):
    return b.add("Mul", [b.input, b.add("MatMul", [b.input, b.weight(4, 3)])], name="bad_mul")


def _division_by_variable_mismatch(b):
    return b.add("Div", [b.const(np.ones(4)), b.add("MatMul", [b.input, b.weight(4, 3)])], name="bad_div")


def _matmul_of_variables_mismatch(b):
    return b.add("MatMul", [b.input, b.add("Relu", [b.input])], name="bad_matmul_vv")


def _concat_with_constant_of_other_rank(b):
    return b.add("Concat", [b.input, b.const(np.ones(2))], axis=0, name="bad_concat_const")


def _clip_min_above_max(b):
    return b.add("Clip", [b.input, b.const(np.float32(1.0)), b.const(np.float32(0.0))], name="bad_clip")


def _split_sizes_mismatch(b):
    return b.add("Split", [b.input, b.ints([1, 2])], outputs=2, axis=1, name="bad_split")[0]


MISTAKES = {  # on an input of shape (1, 4); the node named bad_* is at fault
    "matmul_inner_mismatch": _matmul_inner_mismatch,
    "gemm_mismatch": _gemm_mismatch,
    "add_broadcast_mismatch": _add_broadcast_mismatch,
    "reshape_mismatch": _reshape_mismatch,
    "reshape_zero_past_rank": _reshape_zero_past_rank,
    "concat_mismatch": _concat_mismatch,
    "mul_of_variables_mismatch": _mul_of_variables_mismatch,
    "division_by_variable_mismatch": _division_by_variable_mismatch,
    "matmul_of_variables_mismatch": _matmul_of_variables_mismatch,
    "concat_with_constant_of_other_rank": _concat_with_constant_of_other_rank,
    "split_sizes_mismatch": _split_sizes_mismatch,
    "clip_min_above_max": _clip_min_above_max,
}


@pytest.mark.parametrize("name", sorted(MISTAKES))
def test_mistakes_name_the_node(name, tmp_path):
    b = OnnxBuilder([1, 4], rng=np.random.default_rng(0))
    y = b.add("Relu", [MISTAKES[name](b)])
    path = b.save(tmp_path / f"{name}.onnx", y)
    with pytest.raises(UserError) as error:
        load_onnx(path)
    message = assert_one_line(error)
    assert str(path) in message
    bad = b.nodes[-2].name
    assert bad.startswith("bad_") and f"'{bad}'" in message, message


def test_conv_channel_mismatch_names_the_node(tmp_path):
    b = OnnxBuilder([1, 3, 5, 5], rng=np.random.default_rng(0))
    path = b.save(tmp_path / "conv.onnx", b.add("Conv", [b.input, b.weight(2, 2, 3, 3)], name="conv7"))
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert "'conv7'" in assert_one_line(error)


def test_global_average_pool_1d_is_refused(tmp_path):
    """Was silently wrong (pooled over channels and length together)."""
    b = OnnxBuilder([1, 3, 5])
    path = b.save(tmp_path / "gap1d.onnx", b.add("GlobalAveragePool", [b.input], name="gap"))
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert "'gap'" in assert_one_line(error)


def test_two_inputs_refused(tmp_path):
    b = OnnxBuilder([1, 3])
    model = b.model(b.add("Relu", [b.input]))
    model.graph.input.append(onnx.helper.make_tensor_value_info("z", onnx.TensorProto.FLOAT, [1, 3]))
    path = factory.save(model, tmp_path / "two.onnx")
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert str(path) in assert_one_line(error)


def test_integer_input_refused(tmp_path):
    b = OnnxBuilder([1, 3], elem_type=onnx.TensorProto.INT64)
    path = b.save(tmp_path / "int.onnx", b.add("Identity", [b.input]))
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert "INT64" in assert_one_line(error)


def test_output_not_depending_on_input_refused(tmp_path):
    b = OnnxBuilder([1, 3])
    b.add("Relu", [b.input])
    out = b.add("Constant", [], value=numpy_helper.from_array(np.ones(3, np.float32), "v"))
    path = b.save(tmp_path / "const.onnx", out)
    with pytest.raises(UserError) as error:
        load_onnx(path)
    assert "does not depend on the input" in assert_one_line(error)


IMAGE_MISTAKES = {  # on an input of shape (1, 2, 3, 3): (the bad node, what the message says)
    "conv_kernel_too_large": (lambda b: b.add("Conv", [b.input, b.weight(2, 2, 5, 5)], name="bad_conv"),
                              "larger than the padded input"),
    "maxpool_window_too_large": (lambda b: b.add("MaxPool", [b.input], kernel_shape=[4, 4], name="bad_pool"),
                                 "does not fit"),
}


@pytest.mark.parametrize("name", sorted(IMAGE_MISTAKES))
def test_window_mistakes_name_the_node_and_the_mismatch(name, tmp_path):
    b = OnnxBuilder([1, 2, 3, 3], rng=np.random.default_rng(0))
    make, fragment = IMAGE_MISTAKES[name]
    path = b.save(tmp_path / f"{name}.onnx", b.add("Relu", [make(b)]))
    with pytest.raises(UserError) as error:
        load_onnx(path)
    message = assert_one_line(error)
    assert f"'{b.nodes[-2].name}'" in message and "shape mismatch" in message and fragment in message, message
