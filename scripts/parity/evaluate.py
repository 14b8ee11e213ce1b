"""One evaluator for every encoder of the parity table: frozen features (BN in inference mode)
of all Fashion-MNIST training and test images, standardised, then scikit-learn's multinomial
logistic regression (L-BFGS) fit on the training features; top-1 on the test split. Also the
effective rank of the test features (exp of the entropy of the normalised singular values).

usage: python evaluate.py NAME=ENCODER.safetensors ... [--random-init NAME] [--pixels NAME] [--json OUT]
"""
import argparse, json, time
import numpy as np
import torch
from safetensors.torch import load_file
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from resnet import ResNet, BasicBlock, torchvision_init, encoder_from_state
from torch_byol import read_idx


def features(net, images, mean, std):
    net.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), 1000):
            x = torch.from_numpy(images[i:i + 1000]).float().div(255).unsqueeze(1).sub(mean).div(std)
            out.append(net(x).numpy())
    return np.concatenate(out)


def effective_rank(f):
    s = np.linalg.svd(f - f.mean(0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


def linear_top1(train, ytrain, test, ytest):
    scaler = StandardScaler().fit(train)
    clf = LogisticRegression(max_iter=2000, C=1.0)
    clf.fit(scaler.transform(train), ytrain)
    return 100.0 * clf.score(scaler.transform(test), ytest)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("encoders", nargs="*", help="NAME=PATH of torchvision-named encoder weights")
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--random-init", metavar="NAME", help="also a torchvision-initialised encoder (width 8)")
    ap.add_argument("--pixels", metavar="NAME", help="also the raw pixels")
    ap.add_argument("--json", help="write the rows here")
    a = ap.parse_args()
    torch.set_num_threads(2)
    xtr = read_idx(f"{a.data}/train-images-idx3-ubyte.gz")
    ytr = read_idx(f"{a.data}/train-labels-idx1-ubyte.gz")
    xte = read_idx(f"{a.data}/t10k-images-idx3-ubyte.gz")
    yte = read_idx(f"{a.data}/t10k-labels-idx1-ubyte.gz")
    mean, std = xtr.mean() / 255.0, xtr.std() / 255.0
    nets = [(name, encoder_from_state(load_file(path))) for name, path in (e.split("=", 1) for e in a.encoders)]
    if a.random_init:
        torch.manual_seed(0)
        net = ResNet(BasicBlock, [2, 2, 2, 2], 8, 1)
        torchvision_init(net)
        nets.append((a.random_init, net))
    rows = []
    for name, net in nets:
        t = time.time()
        ftr, fte = features(net, xtr, mean, std), features(net, xte, mean, std)
        top1 = linear_top1(ftr, ytr, fte, yte)
        rows.append({"encoder": name, "linear_top1": top1, "effective_rank": effective_rank(fte), "dims": ftr.shape[1]})
        print(f"{name}: linear top-1 {top1:.2f}%, effective rank {rows[-1]['effective_rank']:.2f} ({time.time() - t:.0f} s)", flush=True)
    if a.pixels:
        flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0
        top1 = linear_top1(flat(xtr), ytr, flat(xte), yte)
        rows.append({"encoder": a.pixels, "linear_top1": top1, "effective_rank": None, "dims": 784})
        print(f"{a.pixels}: linear top-1 {top1:.2f}%")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
