"""torchvision's ResNet v1 with a free base width and the small-image stem, without fc (the
parameter names byol-wgpu reads and `byol export` writes), and the BYOL heads."""
import torch, torch.nn as nn, torch.nn.functional as F


def conv3x3(i, o, s=1):
    return nn.Conv2d(i, o, 3, s, 1, bias=False)


def conv1x1(i, o, s=1):
    return nn.Conv2d(i, o, 1, s, 0, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(inplanes, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + idt)


class ResNet(nn.Module):
    """Small stem (3x3 stride 1, no max pool); output: the global average pool."""

    def __init__(self, block, layers, width, in_ch):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(in_ch, width, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = self._make(block, width, layers[0])
        self.layer2 = self._make(block, width * 2, layers[1], 2)
        self.layer3 = self._make(block, width * 4, layers[2], 2)
        self.layer4 = self._make(block, width * 8, layers[3], 2)
        self.out_dim = width * 8 * block.expansion

    def _make(self, block, planes, n, stride=1):
        ds = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            ds = nn.Sequential(conv1x1(self.inplanes, planes * block.expansion, stride),
                               nn.BatchNorm2d(planes * block.expansion))
        blocks = [block(self.inplanes, planes, stride, ds)]
        self.inplanes = planes * block.expansion
        blocks += [block(self.inplanes, planes) for _ in range(1, n)]
        return nn.Sequential(*blocks)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))


def mlp(i, h, o):
    """Projector / predictor: Linear(bias) -> BN -> ReLU -> Linear(no bias)."""
    return nn.Sequential(nn.Linear(i, h), nn.BatchNorm1d(h), nn.ReLU(), nn.Linear(h, o, bias=False))


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
