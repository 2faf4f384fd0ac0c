# Writes python_written.safetensors with the reference `safetensors` library, so the C reader is
# checked against files it did not write itself. Run with /work/refenv/bin/python; the output is
# committed (CI has no torch). Values are checked by tests/unit/test_safetensors.c.
import os

import torch
from safetensors.torch import save_file

here = os.path.dirname(os.path.abspath(__file__))
tensors = {
    "f32": torch.arange(6, dtype=torch.float32).reshape(2, 3) * 0.5,
    "f16": torch.tensor([1.0, -2.0, 0.5], dtype=torch.float16),
    "bf16": torch.tensor([3.0, -0.25], dtype=torch.bfloat16),
    "f64": torch.tensor([1.0 / 3.0], dtype=torch.float64),
    "i64_scalar": torch.tensor(-7, dtype=torch.int64),
    "i32": torch.tensor([[1, -2], [3, 2147483647]], dtype=torch.int32),
    "i8": torch.tensor([-128, 127], dtype=torch.int8),
    "u8_empty": torch.zeros((0, 4), dtype=torch.uint8),
    "transformer.h.0.mlp.dense_h_to_4h.weight": torch.ones(4, 2, dtype=torch.float16),
}
save_file(tensors, os.path.join(here, "python_written.safetensors"), metadata={"format": "pt"})
