"""The op table: verifier op name -> its rules (evaluation, IBP, backward linear bound)."""
from verifier.ops.activation import Relu, Sigmoid, Tanh
from verifier.ops.bilinear import MatMulVariables, Mul
from verifier.ops.exp_log import Exp, Log
from verifier.ops.linear import Add, Affine, Conv, MatMul
from verifier.ops.pooling import MaxPool
from verifier.ops.power import Pow, Reciprocal, Sqrt
from verifier.ops.reduction import ReduceSum
from verifier.ops.shape import Concat, Pad, Reshape, Slice, Transpose
from verifier.ops.softmax import Softmax
from verifier.ops.trig import Cos, Sin

RULES = {
    "matmul": MatMul(),
    "conv": Conv(),
    "affine": Affine(),
    "add": Add(),
    "relu": Relu(),
    "sigmoid": Sigmoid(),
    "tanh": Tanh(),
    "maxpool": MaxPool(),
    "reshape": Reshape(),
    "transpose": Transpose(),
    "concat": Concat(),
    "slice": Slice(),
    "pad": Pad(),
    "exp": Exp(),
    "log": Log(),
    "reciprocal": Reciprocal(),
    "sqrt": Sqrt(),
    "pow": Pow(),
    "sin": Sin(),
    "cos": Cos(),
    "mul": Mul(),
    "matmul_variables": MatMulVariables(),
    "reducesum": ReduceSum(),
    "softmax": Softmax(),
}
