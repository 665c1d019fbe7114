"""`deepfit serve` for a bundled-dataset (arrays) model: JSON arrays and CSV bodies over real
HTTP, equal to `deepfit predict` on the same inputs; wrong shapes and non-numbers refused."""

import httpx
import numpy as np
import pytest
from serve_support import Server
from test_serve import deepfit_predict


@pytest.fixture(scope="module")
def digits_server(request, serve_runs):
    server = Server(serve_runs["digits"])
    request.addfinalizer(server.stop)
    return server


def test_arrays_equal_deepfit_predict(digits_server, serve_runs, tmp_path):
    from deepfit import datasets

    x = datasets.load("digits").x_test[:24]
    np.save(tmp_path / "x.npy", x)
    expected = deepfit_predict(serve_runs["digits"], tmp_path / "x.npy")
    info = httpx.get(digits_server.url + "/v1/model").json()
    assert info["kind"] == "arrays" and info["input"]["numbers"] == int(np.prod(x.shape[1:]))
    for rows in (x.reshape(len(x), -1).tolist(), x.tolist()):  # flat, or in the input shape
        preds = httpx.post(digits_server.url + "/v1/predict", json={"rows": rows}).json()["predictions"]
        assert [p["prediction"] for p in preds] == list(expected["prediction"])
        for p, (_, want) in zip(preds, expected.iterrows()):
            assert max(abs(p["probabilities"][c] - float(want[f"proba_{c}"])) for c in info["classes"]) <= 1e-6
    csv = "\n".join([",".join(f"p{i}" for i in range(x[0].size))] + [",".join(map(str, r)) for r in x.reshape(len(x), -1)])
    preds = httpx.post(digits_server.url + "/v1/predict", content=csv, headers={"Content-Type": "text/csv"}).json()
    assert [p["prediction"] for p in preds["predictions"]] == list(expected["prediction"])


def test_bad_arrays(digits_server):
    width = httpx.get(digits_server.url + "/v1/model").json()["input"]["numbers"]
    for rows, field, words in (([[1, 2, 3]], "rows[0]", f"the model takes {width}"),
                               ([["a"] * width], "rows[0]", "not an array of numbers"),
                               ([[0] * (width - 1) + [None]], f"rows[0][{width - 1}]", "not a finite number"),
                               ([], "rows", "empty")):
        r = httpx.post(digits_server.url + "/v1/predict", json={"rows": rows})
        assert r.status_code == 422 and r.json()["field"] == field and words in r.json()["error"], r.text
    r = httpx.post(digits_server.url + "/v1/predict", content='{"rows": [[' + ",".join(["0"] * (width - 1) + ["NaN"]) + "]]}",
                   headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["field"] == f"rows[0][{width - 1}]"
