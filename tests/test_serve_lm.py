"""`deepfit serve` for a language model over real HTTP: /v1/generate as JSON and as server-sent
events (the streamed pieces are the JSON answer, seed for seed), and its bad requests."""

import json

import httpx
import pytest
from serve_support import Server


@pytest.fixture(scope="module")
def lm_server(request, serve_runs):
    server = Server(serve_runs["lm"], "--max-tokens", 300)
    request.addfinalizer(server.stop)
    return server


def sse(text):
    events = []
    for block in text.strip().split("\n\n"):
        kind = "message"
        data = None
        for line in block.split("\n"):
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
        events.append((kind, data))
    return events


def test_generate_json_and_stream_give_the_same_text(lm_server):
    import deepfit

    info = httpx.get(lm_server.url + "/v1/model").json()
    assert info["kind"] == "lm" and info["input"]["prompt"]["tokenizer"] == "char"
    body = {"prompt": "The ", "max_tokens": 60, "temperature": 0.9, "top_k": 20, "seed": 7}
    first = httpx.post(lm_server.url + "/v1/generate", json=body, timeout=60)
    assert first.status_code == 200, first.text
    text = first.json()["text"]
    assert len(text) >= 30
    assert httpx.post(lm_server.url + "/v1/generate", json=body, timeout=60).json()["text"] == text
    assert deepfit.load(lm_server_run(lm_server)).generate("The ", max_tokens=60, temperature=0.9, top_k=20,
                                                            seed=7) == text  # the library's answer
    with httpx.stream("POST", lm_server.url + "/v1/generate", json={**body, "stream": True}, timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = sse(r.read().decode())
    pieces = [d["text"] for k, d in events if k == "message"]
    assert len(pieces) >= 10  # streamed piece by piece
    assert events[-1][0] == "done" and events[-1][1]["text"] == text == "".join(pieces)
    r = httpx.post(lm_server.url + "/v1/generate", json={**body, "max_tokens": 5},
                   headers={"Accept": "text/event-stream"}, timeout=60)
    assert sse(r.text)[-1][0] == "done"


def lm_server_run(server):
    return server.proc.args[4]


@pytest.mark.parametrize("body,status,field,words", [
    ({"prompt": "snow ☃ man"}, 422, "prompt", "never saw"),
    ({"prompt": "a", "max_tokens": 301}, 413, "max_tokens", "limit is 300"),
    ({"prompt": "a", "temperature": -1}, 422, "temperature", "greater than or equal"),
    ({"prompt": "a", "top_p": 1.5}, 422, "top_p", "less than or equal"),
    ({"prompt": 5}, 422, "prompt", "string"),
    ({"prompt": "a", "beam": 4}, 422, "beam", "Extra inputs"),
])
def test_bad_generate_requests(lm_server, body, status, field, words):
    r = httpx.post(lm_server.url + "/v1/generate", json=body, timeout=30)
    assert r.status_code == status, r.text
    assert r.json()["field"] == field and words in r.json()["error"], r.json()
    r = httpx.post(lm_server.url + "/v1/generate", content=b'{"prompt": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "JSON" in r.json()["error"]
    r = httpx.post(lm_server.url + "/v1/predict", json={"rows": [{"text": "hi"}]})
    assert r.status_code == 400 and "/v1/generate" in r.json()["error"]
    assert httpx.post(lm_server.url + "/v1/generate", json={"prompt": "a", "max_tokens": 3}).status_code == 200
