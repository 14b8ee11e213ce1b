"""The encoder and heads of tests/fixtures/torch_resnet.py (torchvision's names, the small-image
stem here), torchvision's initialisation, and loading an encoder from its weights."""
import os, sys

import torch, torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../tests/fixtures"))
from torch_resnet import BasicBlock, ResNet as _ResNet, mlp  # noqa: E402,F401


def ResNet(block, layers, width, in_ch):
    """A ResNet with the small-image stem (3x3 stride 1, no max pool)."""
    return _ResNet(block, layers, width, in_ch, "small")


def torchvision_init(model):
    """torchvision's ResNet initialisation: convolutions kaiming-normal (fan-out), batch norm
    1 and 0; linear layers keep PyTorch's default."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def encoder_from_state(state, in_ch=1):
    """The ResNet-18 whose width the state's conv1 names."""
    width = state["conv1.weight"].shape[0]
    net = ResNet(BasicBlock, [2, 2, 2, 2], width, in_ch)
    net.load_state_dict({k: torch.as_tensor(v) for k, v in state.items()}, strict=False)
    missing = set(net.state_dict()) - set(state) - {k for k in net.state_dict() if k.endswith("num_batches_tracked")}
    if missing:
        raise SystemExit(f"encoder weights lack {sorted(missing)[:5]}")
    return net
