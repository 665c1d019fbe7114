"""The language-model task (``deepfit train --task lm``): a corpus in, a GPT that continues text out."""

from deepfit.data.corpus import encode_text, read_corpus
from deepfit.tasks.lm.predictor import LMPredictor
from deepfit.tasks.lm.sampling import sample_tokens
from deepfit.tasks.lm.settings import LMSettings
from deepfit.tasks.lm.task import LMTask, demo, fit_lm, generate_cli, lm_loss, unigram_entropy

__all__ = ["LMTask", "LMSettings", "LMPredictor", "fit_lm", "sample_tokens", "read_corpus", "encode_text",
           "lm_loss", "unigram_entropy", "generate_cli", "demo"]
