"""The GPT and what is computed from it alone: optimizers, fused loss, KV cache, FLOPs, bits per byte."""
