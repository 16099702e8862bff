"""The two networks: plain Conv(+BN)+ReLU chains, no Add/Concat/skip (tract int8 constraint)."""

from __future__ import annotations

import torch
from torch import nn

DET_OUT = 11  # heat logit, 2 offsets, 8 corner coordinates
CLS_OUT = 13  # 12 ISM classes + defect logit


def cbr(cin: int, cout: int, k, stride: int = 1, dilation: int = 1, padding=None) -> nn.Sequential:
    """Conv (no bias) + BatchNorm + ReLU; BN folds into the conv at ONNX export (eval mode)."""
    if padding is None:
        padding = dilation * (k // 2) if isinstance(k, int) else tuple(dilation * (kk // 2) for kk in k)
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride=stride, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class Detector(nn.Module):
    """Stride-8 CenterNet-style module detector.

    c1 4x4/4 1->w/2, c2 3x3/2 w/2->w, c3 3x3, c4 3x3 dil 2, c5 3x3 dil 4, c6 3x3 dil 8 (w->w),
    head 1x1 w->11. Receptive field 252 px. ~220 M MAC at 640x512 for w=32.
    """

    def __init__(self, width: int = 32):
        super().__init__()
        w = width
        self.width = width
        self.features = nn.Sequential(
            cbr(1, w // 2, 4, stride=4, padding=0),
            cbr(w // 2, w, 3, stride=2),
            cbr(w, w, 3),
            cbr(w, w, 3, dilation=2),
            cbr(w, w, 3, dilation=4),
            cbr(w, w, 3, dilation=8),
        )
        self.head = nn.Conv2d(w, DET_OUT, 1)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)
        with torch.no_grad():
            self.head.bias[0] = -2.19  # prior p = 0.1 (CenterNet)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class Classifier(nn.Module):
    """40x24 crop -> 13 logits as a [1,13,1,1] map (the last conv is the dense layer).

    3x3 1->w1, 3x3/2 w1->w2 (20x12), 3x3/2 w2->w2 (10x6), [extra 3x3 w2->w2], (10,6) w2->13.
    """

    def __init__(self, w1: int = 16, w2: int = 32, extra: int = 0):
        super().__init__()
        layers = [cbr(1, w1, 3), cbr(w1, w2, 3, stride=2), cbr(w2, w2, 3, stride=2)]
        layers += [cbr(w2, w2, 3) for _ in range(extra)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(w2, CLS_OUT, (10, 6))
        self.cfg = {"w1": w1, "w2": w2, "extra": extra}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def count_macs(model: nn.Module, h: int, w: int) -> int:
    """Multiply-accumulates of all convolutions for a 1x1xHxW input."""
    macs = 0

    def hook(m, inp, out):
        nonlocal macs
        kh, kw = m.kernel_size
        macs += out.numel() * (m.in_channels // m.groups) * kh * kw

    hs = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was = model.training
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 1, h, w))
    model.train(was)
    for hh in hs:
        hh.remove()
    return macs


class ResBlock(nn.Module):
    """relu(x + bn(conv(relu(bn(conv(x)))))): ONNX Conv, Relu, Conv, Add, Relu after BN folding."""

    def __init__(self, c: int):
        super().__init__()
        self.c1 = cbr(c, c, 3)
        self.c2 = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        nn.init.zeros_(self.c2[1].weight)  # start as identity (zero-init residual)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.c2(self.c1(x)))


class ResClassifier(nn.Module):
    """Residual 40x24 crop classifier -> 13 logits as a [1,13,1,1] map.

    stem 3x3 1->w0 (40x24), 3x3/2 w0->w1 (20x12), 3x3/2 w1->w2 (10x6), `blocks` residual
    blocks (two 3x3 w2->w2 each), 3x3/2 w2->w3 (5x3), global average pool + 1x1 w3->13.
    At export the pool and the 1x1 fold into one (5,3) conv with a spatially constant kernel
    (`export_module`), so the ONNX graph holds Conv, Relu and Add only.
    """

    def __init__(self, w0: int = 16, w1: int = 32, w2: int = 40, w3: int = 80, blocks: int = 1):
        super().__init__()
        layers = [cbr(1, w0, 3), cbr(w0, w1, 3, stride=2), cbr(w1, w2, 3, stride=2)]
        layers += [ResBlock(w2) for _ in range(blocks)]
        layers += [cbr(w2, w3, 3, stride=2)]
        self.features = nn.Sequential(*layers)
        self.fc = nn.Conv2d(w3, CLS_OUT, 1)
        self.cfg = {"arch": "res", "w0": w0, "w1": w1, "w2": w2, "w3": w3, "blocks": blocks}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3), keepdim=True))

    def export_module(self, h: int = 40, w: int = 24) -> nn.Module:
        """Equivalent module for ONNX export: the pool + 1x1 as one (h/8, w/8) conv."""
        fh, fw = _out_size(h, 3), _out_size(w, 3)
        head = nn.Conv2d(self.fc.in_channels, CLS_OUT, (fh, fw))
        with torch.no_grad():
            head.weight.copy_(self.fc.weight.expand(-1, -1, fh, fw) / (fh * fw))
            head.bias.copy_(self.fc.bias)
        return nn.Sequential(self.features, head).eval()


def _out_size(n: int, downs: int) -> int:
    """Spatial size after `downs` stride-2 3x3 convs with padding 1."""
    for _ in range(downs):
        n = (n - 1) // 2 + 1
    return n


def make_classifier(cfg: dict) -> nn.Module:
    """Classifier from a checkpoint's cfg (the plain chain when cfg has no 'arch')."""
    cfg = dict(cfg)
    if cfg.pop("arch", "plain") == "res":
        return ResClassifier(**cfg)
    return Classifier(**cfg)


def load_folded_onnx(model: nn.Module, path: str) -> nn.Module:
    """Load an exported f32 file's weights into `model` (a chain of cbr blocks and a last conv,
    as Detector and Classifier). Export folded each BN into its conv (and cross-layer equalisation
    rescaled channels), so each BN becomes the identity plus the folded bias; its statistics must
    then stay frozen while training (freeze_bn)."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(path)
    init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    convs = [n for n in m.graph.node if n.op_type == "Conv"]
    blocks = [b for b in model.modules() if isinstance(b, nn.Sequential) and len(b) == 3
              and isinstance(b[0], nn.Conv2d) and isinstance(b[1], nn.BatchNorm2d)]
    if len(convs) != len(blocks) + 1:
        raise ValueError(f"{path}: {len(convs)} Conv nodes, {type(model).__name__} has {len(blocks) + 1} convs")
    with torch.no_grad():
        for node, block in zip(convs, blocks):
            conv, bn = block[0], block[1]
            conv.weight.copy_(torch.from_numpy(init[node.input[1]].copy()))
            bn.weight.fill_(1.0)
            bn.bias.copy_(torch.from_numpy(init[node.input[2]].copy()))
            bn.running_mean.zero_()
            bn.running_var.fill_(1.0 - bn.eps)
        model.head.weight.copy_(torch.from_numpy(init[convs[-1].input[1]].copy()))
        model.head.bias.copy_(torch.from_numpy(init[convs[-1].input[2]].copy()))
    return model


def freeze_bn(model: nn.Module) -> None:
    """BatchNorm layers in eval mode (running statistics used and kept), affine parameters still trained."""
    for mod in model.modules():
        if isinstance(mod, nn.BatchNorm2d):
            mod.eval()


ANOMALY_OUT = 12  # the 12 ISM classes


class AnomalyNet(nn.Module):
    """Residual 40x24 crop -> 12 ISM class logits as a [1,12,1,1] map: the anomaly class model,
    run only on the modules the defect decision flags, so it can afford ~10x the classifier.

    stem 3x3 1->widths[0] (40x24), then per stage a 3x3/2 conv to widths[i] and blocks[i]
    residual blocks; global average pool + 1x1, folded into one conv at export (Conv, Relu, Add).
    """

    def __init__(self, widths=(32, 48, 96, 128), blocks=(0, 1, 1, 1)):
        super().__init__()
        widths, blocks = tuple(widths), tuple(blocks)
        layers = [cbr(1, widths[0], 3)] + [ResBlock(widths[0]) for _ in range(blocks[0])]
        for cin, cout, nb in zip(widths, widths[1:], blocks[1:]):
            layers += [cbr(cin, cout, 3, stride=2)] + [ResBlock(cout) for _ in range(nb)]
        self.features = nn.Sequential(*layers)
        self.downs = len(widths) - 1
        self.fc = nn.Conv2d(widths[-1], ANOMALY_OUT, 1)
        self.cfg = {"arch": "anomaly", "widths": list(widths), "blocks": list(blocks)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3), keepdim=True))

    def export_module(self, h: int = 40, w: int = 24) -> nn.Module:
        """Equivalent module for ONNX export: the pool + 1x1 as one conv over the last map."""
        fh, fw = _out_size(h, self.downs), _out_size(w, self.downs)
        head = nn.Conv2d(self.fc.in_channels, ANOMALY_OUT, (fh, fw))
        with torch.no_grad():
            head.weight.copy_(self.fc.weight.expand(-1, -1, fh, fw) / (fh * fw))
            head.bias.copy_(self.fc.bias)
        return nn.Sequential(self.features, head).eval()
