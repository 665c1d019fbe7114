import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepfit.errors import ConfigError, DataError
from deepfit.features.tokenizer import Tokenizer

CORPUS = ["Hello World! http://t.co/x", "héllo there, World", "RT @user: GREAT news!!!"] * 20


@pytest.fixture(scope="module")
def bpe():
    return Tokenizer.train(CORPUS, kind="bpe", vocab_size=300)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=40))
def test_bpe_round_trips_any_text(bpe, text):
    import unicodedata

    assert bpe.decode(bpe.encode(text)) == unicodedata.normalize("NFC", text)


def test_bpe_learns_merges_and_keeps_case(bpe):
    assert len(bpe.encode("Hello World")) < len("Hello World")  # merges were learned
    assert bpe.encode("Hello") != bpe.encode("hello")


def test_char_tokenizer_round_trip_and_unknowns():
    tok = Tokenizer.train(["abc ab\nc"], kind="char")
    assert tok.vocab_size == 2 + 5  # pad, unk, a b c space newline
    assert tok.decode(tok.encode("cab\n a")) == "cab\n a"
    assert tok.encode("az")[1] == tok.unk_id
    assert tok.unknown_chars("a zé") == ["z", "é"]


def test_word_tokenizer_lowercases_and_splits_punctuation():
    tok = Tokenizer.train(["Hello world, hello!"] * 3, kind="word", vocab_size=20)
    ids = tok.encode("HELLO, Mars")
    assert ids[0] == tok.encode("hello")[0] and ids[2] == tok.unk_id and len(ids) == 3


def test_state_is_json_and_round_trips(bpe):
    state = json.loads(json.dumps(bpe.state_dict()))
    again = Tokenizer.from_state(state)
    assert again.encode("Hello there") == bpe.encode("Hello there") and again.vocab_size == bpe.vocab_size


def test_bad_state_and_arguments_are_clear_errors():
    with pytest.raises(DataError, match="retrain"):
        Tokenizer.from_state({"kind": "bpe", "tokenizer": {"model": "nonsense"}})
    with pytest.raises(DataError, match="kind"):
        Tokenizer.from_state({"kind": "pickle"})
    with pytest.raises(ConfigError, match="did you mean 'char'"):
        Tokenizer.train(["a"], kind="chars")
    with pytest.raises(DataError, match="empty"):
        Tokenizer.train(["", ""], kind="bpe")
