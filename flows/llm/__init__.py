"""The LLM pipeline: tokenize -> pretrain (DDP or DiLoCo) -> midtrain -> SFT -> eval, the study, curtailment.

Every stage is a Prefect flow (and so a deployment) and a `seedflow llm` command, one module per
stage family: tokenize, pretrain, chat_stages (midtrain and SFT, from one factory), evaluation,
curtail and study. Beside them: training (the stage task they share), checks (inputs checked once
per command, or by the flow where no command runs it), commands (the `seedflow llm` sub-app) and
benches (the benchmarks and the demo). Each
flow is loaded by its own module's path (`flows.llm.pretrain:llm_pretrain`), so Ray workers and
deployments import the module that defines it. Torch-heavy modules load inside the functions, so
`seedflow --help` stays quick.
"""

from __future__ import annotations

from flows.llm.benches import BENCHES, demo
from flows.llm.chat_stages import llm_midtrain, llm_sft
from flows.llm.commands import app
from flows.llm.curtail import llm_curtail
from flows.llm.evaluation import llm_eval
from flows.llm.pretrain import llm_pretrain
from flows.llm.study import llm_study
from flows.llm.tokenize import llm_tokenize

FLOWS = [llm_tokenize, llm_pretrain, llm_midtrain, llm_sft, llm_eval, llm_study, llm_curtail]

__all__ = ["BENCHES", "FLOWS", "app", "demo"]
