"""The op table: verifier op name -> its rules (evaluation, IBP, backward linear bound)."""
from verifier.ops.activation import Relu, Sigmoid, Tanh
from verifier.ops.linear import Add, Affine, Conv, MatMul
from verifier.ops.pooling import MaxPool
from verifier.ops.shape import Concat, Pad, Reshape, Slice, Transpose

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
}
