"""Evaluation and inference: bpb and task accuracy, the eval stage, the engine, the sandbox, chat."""
