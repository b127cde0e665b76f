"""The tiny networks of the soundness set: MLPs, CNNs (Conv + AveragePool) and a residual
CNN (Add), with ReLU, Tanh or Sigmoid, always two logits; and their ONNX export."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

ARCHS = ("mlp", "cnn", "resnet")
ACTS = ("relu", "tanh", "sigmoid")
_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}
OPSET = 13


class ResidualBlock(nn.Module):
    """act(x + conv(act(conv(x)))): the Add of a ResNet basic block, without normalisation."""

    def __init__(self, channels: int, act: str):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.act1, self.act2 = _ACTIVATIONS[act](), _ACTIVATIONS[act]()

    def forward(self, x):
        return self.act2(x + self.conv2(self.act1(self.conv1(x))))


def build_model(arch: str, act: str, input_shape: tuple[int, ...], hidden: int = 16) -> nn.Sequential:
    """A network with a few hundred to a few thousand parameters; input_shape excludes the batch.

    Every architecture ends in the same head, Linear-act-Linear-act-Linear (two logits), whose
    input is the flat input (MLP) or the pooled convolutional features (CNN, ResNet): the
    pockets are planted in that head (`verifier.soundness.pockets`).
    """
    Act = _ACTIVATIONS[act]
    if arch == "mlp":
        (features,) = input_shape
        body: list[nn.Module] = []
    elif arch in ("cnn", "resnet"):
        channels, height, width = input_shape
        conv_channels = 4
        body = [nn.Conv2d(channels, conv_channels, 3, padding=1), Act()]
        if arch == "resnet":
            body.append(ResidualBlock(conv_channels, act))
        body += [nn.AvgPool2d(2, stride=1), nn.Flatten()]
        features = conv_channels * (height - 1) * (width - 1)
    else:
        raise ValueError(f"unknown architecture '{arch}' ({', '.join(ARCHS)})")
    head = [nn.Linear(features, hidden), Act(), nn.Linear(hidden, hidden // 2), Act(), nn.Linear(hidden // 2, 2)]
    return nn.Sequential(*body, *head)


def head_start(model: nn.Sequential) -> int:
    """Index of the head's first Linear (the third Linear from the end)."""
    linears = [i for i, m in enumerate(model) if isinstance(m, nn.Linear)]
    return linears[-3]


def parameter_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def export_onnx(model: nn.Module, input_shape: tuple[int, ...], path: Path) -> None:
    """Batch 1, float32, input `input`, output `output` (the legacy exporter: no onnxscript)."""
    model = model.float().eval()
    torch.onnx.export(model, (torch.zeros(1, *input_shape),), str(path), opset_version=OPSET, dynamo=False,
                      input_names=["input"], output_names=["output"])
