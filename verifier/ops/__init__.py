"""The op table: verifier op name -> its rules (evaluation, IBP, backward linear bound)."""
from verifier.ops.activation import Relu, Sigmoid, Tanh
from verifier.ops.bilinear import MatMulVariables, Mul
from verifier.ops.exact import ArgMax, Compare, GatherIndexed, Nonzero, Where
from verifier.ops.exp_log import Exp, Log
from verifier.ops.index import Place, Take
from verifier.ops.linear import Add, Affine, Conv, ConvTranspose, MatMul
from verifier.ops.pooling import MaxPool
from verifier.ops.power import Pow, Reciprocal, Sqrt
from verifier.ops.reduction import ReduceSum
from verifier.ops.shape import Concat, Pad, Reshape, Slice, Transpose
from verifier.ops.softmax import Softmax
from verifier.ops.trig import Cos, Sin
from verifier.ops.step import Floor, Sign, Truncate
from verifier.ops.table import Table

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
    # index, structural and step ops (issue 17)
    "conv_transpose": ConvTranspose(),
    "take": Take(),
    "place": Place(),
    "sign": Sign(),
    "floor": Floor(),
    "trunc": Truncate(),
    "argmax": ArgMax(),
    "compare": Compare(),
    "where": Where(),
    "nonzero": Nonzero(),
    "gather_indexed": GatherIndexed(),
    "table": Table(),
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
