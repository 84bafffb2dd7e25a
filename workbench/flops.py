"""Model FLOPs and MFU (model FLOPs utilisation), the way nanoGPT and the PaLM paper count them.

A training step of a transformer costs about ``6 N`` FLOPs per token for its weights (2 for the
forward matmuls, 4 for the backward) plus ``12 L C T`` for attention (scores and the weighted
sum of values, forward and backward; L layers, width C, context T). MFU is the FLOPs a run
achieves per second over what the device could do at its peak: how much of the hardware the
training actually uses, whatever the tricks (recomputation is not counted as useful work).
"""

from __future__ import annotations

import torch
import torch.nn as nn

PEAK_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,  # an H100 whose name says no more: the SXM part
    "A100": 312.0,
    "L40S": 362.0,
    "L4": 121.0,
    "A10G": 70.0,
    "A10": 125.0,
}
"""Dense bf16 tensor-core peaks (TFLOP/s, no sparsity) from NVIDIA's data sheets, matched by the
first key the device name contains (so the longer names come first)."""


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token: ``6 N + 12 L C T``, N the parameters
    without the position table (as nanoGPT's ``estimate_mfu``); the attention term only for
    families with attention; 0 for models fitted without gradients (n-grams).

    >>> from workbench.models import GPT, GPTConfig
    >>> m = GPT(GPTConfig(n_layer=2, n_head=2, n_embd=32, block_size=16, vocab_size=10))
    >>> flops_per_token(m, 16) == 6 * m.num_parameters(non_embedding=True) + 12 * 2 * 32 * 16
    True
    """
    config = getattr(model, "config", None)
    capabilities = getattr(config, "capabilities", frozenset())
    if "counting" in capabilities:
        return 0.0
    from .models.base import LanguageModel, unwrap_model

    model = unwrap_model(model)
    n = (model.num_parameters(non_embedding=True) if isinstance(model, LanguageModel)
         else sum(p.numel() for p in model.parameters()))  # a fine-tuning head on its trunk, an HF model
    attention = 12 * getattr(config, "n_layer", 0) * getattr(config, "n_embd", 0) * seq_len
    return 6.0 * n + (attention if "attention" in capabilities else 0)


def peak_tflops(device: torch.device, configured: float = 0.0) -> float | None:
    """The device's peak TFLOP/s for MFU: ``configured`` when > 0 (``train.peak_tflops``), else the
    dense bf16 peak of a known NVIDIA GPU; None when unknown (CPUs: their peak depends on the
    model, clock and vector units, so give it yourself)."""
    if configured > 0:
        return configured
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def mfu(tokens_per_s: float, per_token: float, peak: float | None) -> float | None:
    """Achieved model FLOP/s over the peak (``peak`` in TFLOP/s); None without a peak.

    >>> mfu(10_000, 6e6, 100.0)  # 6e10 FLOP/s of a 1e14 FLOP/s device
    0.0006
    """
    if not peak or per_token <= 0:
        return None
    return tokens_per_s * per_token / (peak * 1e12)
