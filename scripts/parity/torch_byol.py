"""BYOL in PyTorch on Fashion-MNIST with the recipe of byol-wgpu's quick preset: the reference
that byol-wgpu is compared against at equal work (scripts/parity/run.sh).

Same network (torchvision-layout ResNet-18, small stem, width 8, heads 512/128), same data
(the first SUBSET training images), same optimiser (LARS with exclusions, eta 0.02 (clipped with
--clip-lars, as the quick preset does), wd 1e-5,
lr 1.0 x batch/256, linear warm-up then cosine), same target (a copy, tau 0.99 -> 1 by cosine),
same symmetric loss, BN statistics per view. Augmentations are torchvision's, per image:
random resized crop, flip, colour jitter (p 0.8, brightness multiplicative as torchvision or
additive as the BYOL reference code), solarisation in the second view (p 0.2), no blur.

usage: python torch_byol.py --out encoder.safetensors [--subset 10240] [--epochs 3] ...
Writes the online encoder with torchvision's names (what `byol export` writes).
"""
import argparse, gzip, json, math, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
import torchvision.transforms.v2 as T
import torchvision.transforms.v2.functional as TF
from safetensors.torch import save_file

from resnet import ResNet, BasicBlock, mlp, torchvision_init


def read_idx(path):
    with gzip.open(path) as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


class View:
    """One of BYOL's two view distributions on [1, H, W] float images in [0, 1]."""

    def __init__(self, side, crop_min, brightness, interpolation, solarize_p):
        interp = {"bilinear": T.InterpolationMode.BILINEAR, "bicubic": T.InterpolationMode.BICUBIC}[interpolation]
        self.crop = T.RandomResizedCrop(side, scale=(crop_min, 1.0), interpolation=interp, antialias=True)
        self.brightness = brightness
        self.solarize_p = solarize_p

    def jitter(self, x):
        ops = ["brightness", "contrast"]  # saturation and hue do nothing to one channel
        np.random.shuffle(ops)
        for op in ops:
            if op == "brightness":
                if self.brightness == "additive":
                    x = (x + np.random.uniform(-0.4, 0.4)).clamp(0, 1)
                else:
                    x = TF.adjust_brightness(x, np.random.uniform(0.6, 1.4))
            else:
                x = TF.adjust_contrast(x, np.random.uniform(0.6, 1.4))
        return x

    def __call__(self, x):
        x = self.crop(x).clamp(0, 1)
        if np.random.rand() < 0.5:
            x = TF.horizontal_flip(x)
        if np.random.rand() < 0.8:
            x = self.jitter(x)
        if np.random.rand() < self.solarize_p:
            x = torch.where(x < 0.5, x, 1 - x)
        return x


def lars_step(params, moms, lr, wd, eta, momentum, clip=False):
    with torch.no_grad():
        for p, m in zip(params, moms):
            g = p.grad
            if p.ndim > 1:  # biases and batch-norm parameters: no decay, no trust ratio
                u = g + wd * p
                pn, un = p.norm(), u.norm()
                if pn > 0 and un > 0:
                    ratio = float(eta * pn / un)
                    if clip:  # solo-learn's clip_lr: the layer's rate never exceeds lr
                        ratio = min(ratio / lr, 1.0) if lr > 0 else 1.0
                    u = u * ratio
            else:
                u = g
            m.mul_(momentum).add_(u)
            p.sub_(lr * m)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", required=True)
    ap.add_argument("--subset", type=int, default=10240)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--width", type=int, default=8)
    ap.add_argument("--hidden", type=int, default=512)
    ap.add_argument("--projection", type=int, default=128)
    ap.add_argument("--lr", type=float, default=1.0)
    ap.add_argument("--warmup-epochs", type=float, default=0.3)
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--eta", type=float, default=0.02)
    ap.add_argument("--tau-base", type=float, default=0.99)
    ap.add_argument("--crop-min-scale", type=float, default=0.08)
    ap.add_argument("--brightness", choices=["multiplicative", "additive"], default="multiplicative")
    ap.add_argument("--interpolation", choices=["bilinear", "bicubic"], default="bilinear")
    ap.add_argument("--clip-lars", action="store_true", help="cap every layer's LARS rate at lr (solo-learn's clip_lr)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--log", default=None, help="metrics as JSON lines")
    ap.add_argument("--init", help="start from these byol-wgpu tensors (online.*, target.*) instead of a draw")
    ap.add_argument("--dump-views", help="also write the views trained on to this file (the --views layout)")
    ap.add_argument("--views", help="train on these views (per step: view 1 then view 2, [batch, 1, side, side] "
                    "normalised f32) instead of drawing them")
    a = ap.parse_args()

    torch.manual_seed(a.seed)
    np.random.seed(a.seed)
    images = read_idx(f"{a.data}/train-images-idx3-ubyte.gz")
    mean, std = images.mean() / 255.0, images.std() / 255.0
    images = torch.from_numpy(images[: a.subset].copy()).float().div(255).unsqueeze(1)
    side = images.shape[-1]
    views = [View(side, a.crop_min_scale, a.brightness, a.interpolation, 0.0),
             View(side, a.crop_min_scale, a.brightness, a.interpolation, 0.2)]

    encoder = ResNet(BasicBlock, [2, 2, 2, 2], a.width, 1)
    online = nn.ModuleDict({
        "encoder": encoder,
        "projector": mlp(encoder.out_dim, a.hidden, a.projection),
        "predictor": mlp(a.projection, a.hidden, a.projection),
    })
    torchvision_init(online)
    target = nn.ModuleDict({
        "encoder": ResNet(BasicBlock, [2, 2, 2, 2], a.width, 1),
        "projector": mlp(encoder.out_dim, a.hidden, a.projection),
    })
    target.load_state_dict({k: v for k, v in online.state_dict().items() if not k.startswith("predictor")})
    if a.init:
        from safetensors.torch import load_file
        init = load_file(a.init)
        for prefix, net in (("online.", online), ("target.", target)):
            state = {k: init[prefix + k] for k in net.state_dict() if not k.endswith("num_batches_tracked")}
            net.load_state_dict(state, strict=False)
    stored = None
    if a.views:
        per_step = 2 * a.batch * side * side
        raw = np.memmap(a.views, dtype=np.float32, mode="r")
        stored = raw[: len(raw) // per_step * per_step].reshape(-1, 2, a.batch, 1, side, side)
    for p in target.parameters():
        p.requires_grad_(False)
    online_params = [p for n, p in online.named_parameters()]
    target_pairs = [(dict(target.named_parameters())[n], p) for n, p in online.named_parameters() if not n.startswith("predictor")]
    moms = [torch.zeros_like(p) for p in online_params]

    steps_per_epoch = a.subset // a.batch
    total = steps_per_epoch * a.epochs
    warmup = round(a.warmup_epochs * steps_per_epoch)
    peak = a.lr * a.batch / 256

    def lr_at(k):
        if k < warmup:
            return peak * k / warmup
        t = min((k - warmup) / max(total - warmup, 1), 1.0)
        return peak * (1 + math.cos(math.pi * t)) / 2

    def tau_at(k):
        return 1 - (1 - a.tau_base) * (math.cos(math.pi * min(k / total, 1.0)) + 1) / 2

    def loss_fn(p, z):
        return 2 - 2 * (F.normalize(p, dim=1) * F.normalize(z, dim=1)).sum(dim=1)

    log = open(a.log, "w") if a.log else None
    dump = open(a.dump_views, "wb") if a.dump_views else None
    online.train(); target.train()
    started = time.time()
    k = 0
    for epoch in range(a.epochs):
        order = torch.randperm(a.subset)
        for b in range(steps_per_epoch):
            if stored is not None:
                if k >= len(stored):  # a run still being written: replay what is there
                    break
                v1, v2 = (torch.from_numpy(np.array(stored[k, i])) for i in (0, 1))
            else:
                batch = images[order[b * a.batch:(b + 1) * a.batch]]
                v1 = torch.stack([views[0](x) for x in batch]).sub(mean).div(std)
                v2 = torch.stack([views[1](x) for x in batch]).sub(mean).div(std)
            if dump:
                dump.write(v1.numpy().astype(np.float32).tobytes() + v2.numpy().astype(np.float32).tobytes())
            on = lambda v: online["predictor"](online["projector"](online["encoder"](v)))
            p1, p2 = on(v1), on(v2)
            with torch.no_grad():
                z1 = target["projector"](target["encoder"](v1))
                z2 = target["projector"](target["encoder"](v2))
            loss = (loss_fn(p1, z2) + loss_fn(p2, z1)).mean()
            for p in online_params:
                p.grad = None
            loss.backward()
            grad_norm = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in online_params))
            lars_step(online_params, moms, lr_at(k), a.weight_decay, a.eta, 0.9, a.clip_lars)
            tau = tau_at(k)
            with torch.no_grad():
                for t, o in target_pairs:
                    t.mul_(tau).add_((1 - tau) * o)
            k += 1
            if log:
                log.write(json.dumps({"step": k, "loss": loss.item(), "lr": lr_at(k - 1), "tau": tau, "grad_norm": grad_norm,
                                      "elapsed_s": time.time() - started}) + "\n")
            if k % 20 == 0:
                print(f"step {k}/{total} loss {loss.item():.4f} ({time.time() - started:.0f} s)", flush=True)
    state = {k: v.detach().contiguous() for k, v in online["encoder"].state_dict().items()
             if not k.endswith("num_batches_tracked")}
    save_file(state, a.out)
    print(f"trained {total} steps in {time.time() - started:.0f} s; wrote {a.out}")


if __name__ == "__main__":
    main()
