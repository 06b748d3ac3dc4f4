"""Training speed of the fine-tuning model in bf16 and fp32 on this CPU (l2's diagnosis).

    .venv-train/bin/python benchmarks/results/runs/l2-wise-ft/precision.py
"""

import time
from dataclasses import replace

import numpy as np
import torch
from safetensors.numpy import load_file

from guard.models import paths
from guard.models.finetune import FinetuneConfig, make_model

torch.set_num_threads(2)
w = load_file(str(paths.weights_dir() / "model.safetensors"))
rng = np.random.default_rng(0)
ids = torch.from_numpy(rng.integers(1000, 20000, size=(200, 64)).astype(np.int64))
mask = torch.ones_like(ids)
for prec in ("bf16", "fp32", "bf16"):
    m = make_model(w, replace(FinetuneConfig(), precision=prec))
    m.train()
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4)

    def step() -> None:
        loss = m(ids, mask).float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    t = time.perf_counter()
    for _ in range(3):
        step()
    dt = (time.perf_counter() - t) / 3
    print(prec, f"{200 / dt:.0f} windows/s (200 windows of 64 tokens, forward+backward)")
