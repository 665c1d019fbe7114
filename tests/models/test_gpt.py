import pytest
import torch

from deepfit.errors import ConfigError
from deepfit.models.gpt import GPT, KVCache, MLPS, NORMS
from deepfit.tasks.lm import sample_tokens

VARIANTS = [(n, m) for n in NORMS for m in MLPS]


def tiny(norm="rmsnorm", mlp="relu2", context=16, seed=0):
    torch.manual_seed(seed)
    return GPT(vocab_size=37, context=context, dim=32, layers=2, heads=4, norm=norm, mlp=mlp).eval()


def test_shapes_tied_output_and_config_round_trip():
    model = tiny()
    x = torch.randint(0, 37, (3, 16))
    assert model(x).shape == (3, 16, 37)
    # Weight tying: the embedding is the only (vocab, dim) matrix, and the output uses it.
    assert [k for k, v in model.state_dict().items() if v.shape == (37, 32)] == ["tok_emb.weight"]
    with torch.no_grad():
        model.tok_emb.weight[5] += 1.0
    assert not torch.equal(model(x)[..., 5], tiny()(x)[..., 5])
    again = GPT(**model.config())
    assert {k: v.shape for k, v in again.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


@pytest.mark.parametrize("norm,mlp", VARIANTS)
def test_no_position_sees_the_future(norm, mlp):
    model = tiny(norm, mlp)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 37, (2, 16), generator=g)
    with torch.no_grad():
        base = model(x)
        for t in (0, 5, 14):
            y = x.clone()
            y[:, t + 1 :] = torch.randint(0, 37, (2, 15 - t), generator=g)
            assert not torch.equal(y, x)
            out = model(y)
            torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-5)
            assert (out[:, t + 1 :] - base[:, t + 1 :]).abs().max() > 1e-3  # the future did change


@pytest.mark.parametrize("norm,mlp", VARIANTS[:2])
def test_kv_cache_logits_equal_full_recomputation(norm, mlp):
    model = tiny(norm, mlp)
    x = torch.randint(0, 37, (1, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        full = model(x)  # (1, 16, V)
        cache = KVCache.empty(model)
        parts = [model(x[:, :5], cache)]  # prompt
        parts += [model(x[:, i : i + 1], cache) for i in range(5, 9)]  # one token at a time
        parts.append(model(x[:, 9:], cache))  # several new tokens after a cached prefix
    assert cache.length == 16
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=0, atol=1e-5)


def test_cached_greedy_generation_equals_recomputation():
    model = tiny(context=32)
    with torch.no_grad():  # larger random weights: an untrained GPT at init repeats one token greedily
        for p in model.parameters():
            if p.ndim == 2:
                p.normal_(0, 0.3)
    prompt = [3, 7, 1, 9, 4]
    with_cache, without = [], []
    a = sample_tokens(model, prompt, max_tokens=27, temperature=0, use_cache=True, logits_out=with_cache)
    b = sample_tokens(model, prompt, max_tokens=27, temperature=0, use_cache=False, logits_out=without)
    assert a == b and len(a) == 27
    torch.testing.assert_close(torch.stack(with_cache), torch.stack(without), rtol=0, atol=1e-5)
    assert len(set(a)) > 1  # not a degenerate constant stream


def test_generation_past_the_window_keeps_going():
    model = tiny(context=16)
    new = sample_tokens(model, [1, 2, 3], max_tokens=50, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert len(new) == 50 and all(0 <= t < 37 for t in new)
    assert 0 not in new and 1 not in new  # padding and unknown are never sampled


def test_too_long_input_and_bad_configs_raise():
    model = tiny(context=8)
    with pytest.raises(ConfigError, match="context window is 8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ConfigError, match="multiple of heads"):
        GPT(10, 8, dim=30, heads=4)
    with pytest.raises(ConfigError, match="norm"):
        GPT(10, 8, norm="batchnorm")
    with pytest.raises(ConfigError, match="mlp"):
        GPT(10, 8, mlp="tanh")
    with pytest.raises(ConfigError, match="layers"):
        GPT(10, 8, layers=0)
