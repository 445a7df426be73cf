"""The LLM pipeline's benches (`seedflow bench pretrain | diloco-wan | sdc | curtail`): figures, not library code."""
