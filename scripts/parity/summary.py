"""Each program's linear top-1 over its seeds (mean, standard deviation, standard error, runs
below the random-init encoder) and the difference of the means with a bootstrap interval,
from the rows evaluate.py wrote.

usage: python summary.py parity.json [more.json ...]
"""
import json, sys

import numpy as np


def main():
    rows = {}
    for path in sys.argv[1:]:
        for r in json.load(open(path)):
            rows[r["encoder"]] = r
    random_init = rows.get("random-init", {}).get("linear_top1")
    by_program = {}
    for name, r in rows.items():
        if "-seed" in name:
            by_program.setdefault(name.split("-seed")[0], []).append(r["linear_top1"])
    for program, scores in sorted(by_program.items()):
        v = np.array(scores)
        sd = v.std(ddof=1) if len(v) > 1 else float("nan")
        below = "" if random_init is None else f", {int((v < random_init).sum())} below random init ({random_init:.2f})"
        print(f"{program}: {len(v)} seeds, mean {v.mean():.2f}, sd {sd:.2f}, s.e. {sd / np.sqrt(len(v)):.2f}, "
              f"min {v.min():.2f}, max {v.max():.2f}{below}")
    if {"byol-wgpu", "pytorch"} <= by_program.keys():
        a, b = np.array(by_program["byol-wgpu"]), np.array(by_program["pytorch"])
        rng = np.random.default_rng(0)
        boots = np.array([rng.choice(a, len(a)).mean() - rng.choice(b, len(b)).mean() for _ in range(20000)])
        lo, hi = np.percentile(boots, [5, 95])
        print(f"byol-wgpu - pytorch: {a.mean() - b.mean():+.2f} points (bootstrap 90% interval {lo:+.2f} to {hi:+.2f})")


if __name__ == "__main__":
    main()
