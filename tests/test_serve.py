"""`deepfit serve` for tables, where users meet it: a real server process on a loopback port,
real HTTP (httpx): the token, the schema, concurrent requests equal to `deepfit predict`'s CSV,
CSV bodies, every bad request (4xx naming the field, the server goes on), the 413 limits, a
corrupt artifact at start-up, SIGTERM draining an in-flight request."""

import asyncio
import io
import json
import shutil
import signal
import subprocess
import sys
import threading
import time

import httpx
import pandas as pd
import pytest
from serve_support import ROOT, TOKEN, Server, serve_env


def deepfit_predict(run, csv):
    proc = subprocess.run([sys.executable, "-m", "deepfit", "predict", str(run), str(csv)], cwd=ROOT, env=serve_env(),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return pd.read_csv(io.StringIO(proc.stdout), dtype=str, keep_default_na=False)


def rows_of(frame, columns):
    return [{c: (v.item() if hasattr(v, "item") else v) for c, v in row.items()} for row in frame[columns].to_dict("records")]


def same_as_csv(predictions, expected, classes):
    """Each prediction equals deepfit predict's CSV row: the label, and each probability to the
    text (float32 shortest decimals) — checked as numbers within 1e-6 for batching's rounding."""
    assert len(predictions) == len(expected)
    worst = 0.0
    for got, want in zip(predictions, expected.to_dict("records")):
        assert str(got["prediction"]) == want["prediction"]
        for c in classes:
            worst = max(worst, abs(got["probabilities"][c] - float(want[f"proba_{c}"])))
    assert worst <= 1e-6, worst
    return worst


def test_health_is_open_and_v1_needs_the_token(table_server, auth):
    assert httpx.get(table_server.url + "/health").json()["status"] == "ok"
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}, {"Authorization": "Basic " + TOKEN}):
        r = httpx.get(table_server.url + "/v1/model", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["field"] == "Authorization" and "Bearer" in r.json()["error"]
    r = httpx.post(table_server.url + "/v1/predict", json={"rows": [{"x": 1, "amount": 9, "color": "red"}]})
    assert r.status_code == 401
    r = httpx.get(table_server.url + "/v1/model", headers=auth)
    assert r.status_code == 200


def test_model_describes_inputs_classes_metrics_version(table_server, auth):
    import deepfit

    info = httpx.get(table_server.url + "/v1/model", headers=auth).json()
    assert info["kind"] == "table" and info["task"] == "classify" and info["deepfit_version"] == deepfit.__version__
    columns = {c["name"]: c for c in info["input"]["columns"]}
    assert {n: c["type"] for n, c in columns.items()} == {"x": "number", "amount": "number", "color": "category"}
    assert sorted(columns["color"]["levels"]) == ["blue", "green", "red"]
    assert columns["amount"]["min"] >= 100 and columns["amount"]["max"] <= 5000
    assert info["classes"] == ["no", "yes"] and 0.5 < info["metrics"]["test_accuracy"] <= 1
    assert info["batching"] == {"max_batch": 256, "max_wait_ms": 0.0, "torch_threads": 1}
    assert info["limits"]["max_rows"] == 500 and info["token_required"] is True
    spec = httpx.get(table_server.url + "/openapi.json").json()
    assert {"/health", "/v1/model", "/v1/predict", "/v1/generate"} <= set(spec["paths"])
    assert {"application/json", "text/csv", "multipart/form-data"} <= set(
        spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"])


def test_64_concurrent_requests_equal_deepfit_predict_and_share_batches(table_server, auth, serve_runs, tmp_path):
    frame = serve_runs["frame"].head(64)
    csv = tmp_path / "rows.csv"
    frame[["x", "amount", "color"]].to_csv(csv, index=False)
    expected = deepfit_predict(serve_runs["cls"], csv)
    rows = rows_of(frame, ["x", "amount", "color"])
    before = httpx.get(table_server.url + "/health").json()

    async def all_at_once():
        async with httpx.AsyncClient(base_url=table_server.url, headers=auth, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json={"rows": [r]}) for r in rows))

    answers = asyncio.run(all_at_once())
    assert [a.status_code for a in answers] == [200] * 64
    same_as_csv([a.json()["predictions"][0] for a in answers], expected, ["no", "yes"])
    after = httpx.get(table_server.url + "/health").json()
    assert after["requests"] - before["requests"] == 64
    assert after["batches"] - before["batches"] < 64  # requests shared forward passes

    # One request of 64 rows, JSON and CSV: the same values, in request order.
    r = httpx.post(table_server.url + "/v1/predict", json={"rows": rows}, headers=auth)
    same_as_csv(r.json()["predictions"], expected, ["no", "yes"])
    r = httpx.post(table_server.url + "/v1/predict", content=csv.read_bytes(),
                   headers={**auth, "Content-Type": "text/csv"})
    assert r.status_code == 200
    same_as_csv(r.json()["predictions"], expected, ["no", "yes"])


BAD = [
    ("malformed JSON", b'{"rows": [{"x": 1,', 400, "body", "not valid JSON"),
    ("not an object", b"[1, 2]", 422, "rows", "'rows' list"),
    ("empty rows", b'{"rows": []}', 422, "rows", "empty"),
    ("missing column", b'{"rows": [{"x": 1, "amount": 5}]}', 422, "rows[0].color", "lacks column"),
    ("extra column", b'{"rows": [{"x": 1, "amount": 5, "color": "red", "zip": 3}]}', 422, "rows[0].zip", "unknown column"),
    ("wrong type", b'{"rows": [{"x": "abc", "amount": 5, "color": "red"}]}', 422, "rows[0].x", "not a number"),
    ("a list", b'{"rows": [{"x": 1, "amount": [5], "color": "red"}]}', 422, "rows[0].amount", "not a number"),
    ("a boolean", b'{"rows": [{"x": true, "amount": 5, "color": "red"}]}', 422, "rows[0].x", "boolean"),
    ("NaN", b'{"rows": [{"x": NaN, "amount": 5, "color": "red"}]}', 422, "rows[0].x", "NaN"),
    ("Infinity", b'{"rows": [{"x": 1, "amount": Infinity, "color": "red"}]}', 422, "rows[0].amount", "infinities"),
    ("inf as text", b'{"rows": [{"x": "-inf", "amount": 5, "color": "red"}]}', 422, "rows[0].x", "infinities"),
    ("row not an object", b'{"rows": [[1, 5, "red"]]}', 422, "rows[0]", "must be an object"),
    ("unknown body field", b'{"rows": [{"x": 1, "amount": 5, "color": "red"}], "mode": 1}', 422, "mode", "unknown field"),
]


@pytest.mark.parametrize("name,body,status,field,words", BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_4xx_naming_the_field(table_server, auth, name, body, status, field, words):
    r = httpx.post(table_server.url + "/v1/predict", content=body, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()
    assert error["field"] == field and words in error["error"], error
    assert error["expected"]
    ok = httpx.post(table_server.url + "/v1/predict", json={"rows": [{"x": 0.1, "amount": 50, "color": "red"}]},
                    headers=auth)
    assert ok.status_code == 200  # the server goes on


def test_bad_csv_body_and_content_type(table_server, auth):
    r = httpx.post(table_server.url + "/v1/predict", content=b"x,amount,color\n1,2\n",
                   headers={**auth, "Content-Type": "text/csv"})
    assert r.status_code == 400 and "ragged" in r.json()["error"]
    r = httpx.post(table_server.url + "/v1/predict", content=b"x,amount,color\nzz,2,red\n",
                   headers={**auth, "Content-Type": "text/csv"})
    assert r.status_code == 422 and r.json()["field"] == "rows[0].x"
    r = httpx.post(table_server.url + "/v1/predict", content=b"<x/>", headers={**auth, "Content-Type": "text/xml"})
    assert r.status_code == 415 and r.json()["field"] == "Content-Type"
    r = httpx.post(table_server.url + "/v1/generate", json={"prompt": "hi"}, headers=auth)
    assert r.status_code == 400 and "/v1/predict" in r.json()["error"]


def test_unseen_categories_and_out_of_range_numbers_are_served_and_flagged(table_server, auth):
    rows = [{"x": 0.2, "amount": 300, "color": "purple"}, {"x": 0.2, "amount": 300, "color": "red"},
            {"x": 80, "amount": None, "color": None}]
    preds = httpx.post(table_server.url + "/v1/predict", json={"rows": rows}, headers=auth).json()["predictions"]
    assert "'color': 'purple' was not seen in training; served as unknown" in preds[0]["warnings"]
    assert preds[1]["warnings"] == []
    assert any("'x': 80 is outside the training range" in w for w in preds[2]["warnings"])
    for p in preds:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-5


def test_a_bad_request_among_concurrent_good_ones_fails_alone(table_server, auth):
    good = {"rows": [{"x": 0.5, "amount": 1000, "color": "blue"}]}
    bad = {"rows": [{"x": "oops", "amount": 1000, "color": "blue"}]}

    async def mixed():
        async with httpx.AsyncClient(base_url=table_server.url, headers=auth, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/predict", json=bad if i % 4 == 0 else good)
                                          for i in range(24)))

    codes = [r.status_code for r in asyncio.run(mixed())]
    assert codes == [422 if i % 4 == 0 else 200 for i in range(24)]


def test_limits_answer_413_naming_the_limit(table_server, auth):
    row = {"x": 0.1, "amount": 50, "color": "red"}
    r = httpx.post(table_server.url + "/v1/predict", json={"rows": [row] * 501}, headers=auth)
    assert r.status_code == 413 and "the limit is 500" in r.json()["error"] and "--max-rows" in r.json()["error"]
    r = httpx.post(table_server.url + "/v1/predict", json={"rows": [row] * 500}, headers=auth)
    assert r.status_code == 200 and len(r.json()["predictions"]) == 500
    big = b'{"rows": [' + b",".join([json.dumps(row).encode()] * 6000) + b"]}"
    r = httpx.post(table_server.url + "/v1/predict", content=big, headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 413 and "200000 bytes" in r.json()["error"]

    def chunks():  # no Content-Length: counted as it streams in
        for i in range(0, len(big), 50_000):
            yield big[i:i + 50_000]

    r = httpx.post(table_server.url + "/v1/predict", content=chunks(), headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 413
    assert httpx.get(table_server.url + "/health").status_code == 200


def test_regression_predictions_equal_deepfit_predict(request, serve_runs, tmp_path):
    server = Server(serve_runs["reg"])
    request.addfinalizer(server.stop)
    frame = serve_runs["frame"].head(40)
    csv = tmp_path / "rows.csv"
    frame[["x", "amount", "color"]].to_csv(csv, index=False)
    expected = deepfit_predict(serve_runs["reg"], csv)
    info = httpx.get(server.url + "/v1/model").json()
    assert info["task"] == "regress" and info["classes"] is None and info["token_required"] is False
    preds = httpx.post(server.url + "/v1/predict", content=csv.read_bytes(),
                       headers={"Content-Type": "text/csv"}).json()["predictions"]
    assert [p["prediction"] for p in preds] == pytest.approx([float(v) for v in expected["prediction"]], rel=1e-6)
    assert all("probabilities" not in p for p in preds)


def test_env_token_is_read(serve_runs):
    server = Server(serve_runs["reg"], env=serve_env(DEEPFIT_TOKEN="from-env"))
    try:
        assert httpx.get(server.url + "/v1/model").status_code == 401
        assert httpx.get(server.url + "/v1/model", headers={"Authorization": "Bearer from-env"}).status_code == 200
    finally:
        server.stop()


@pytest.mark.parametrize("damage", ["truncated weights", "no deepfit.json", "not a run"])
def test_a_corrupt_or_incomplete_artifact_is_refused_at_start_up(serve_runs, tmp_path, damage):
    run = tmp_path / "run"
    shutil.copytree(serve_runs["cls"], run)
    if damage == "truncated weights":
        data = (run / "model.safetensors").read_bytes()
        (run / "model.safetensors").write_bytes(data[: len(data) // 2])
    elif damage == "no deepfit.json":
        (run / "deepfit.json").unlink()
    else:
        run = tmp_path / "nothing-here"
    server = Server(run, wait=False)
    try:
        code = server.proc.wait(60)
        out = server.output()
        assert code != 0 and "deepfit serve: error:" in out, out
        assert str(run) in out
        assert "Uvicorn running" not in out
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url + "/health", timeout=2)
    finally:
        server.stop()


def test_sigterm_drains_the_in_flight_request_then_exits_0(serve_runs):
    server = Server(serve_runs["cls"], "--max-wait-ms", 1500)  # a batch that waits 1.5 s for company
    answer = {}

    def send():
        answer["r"] = httpx.post(server.url + "/v1/predict", json={"rows": [{"x": 0.5, "amount": 100, "color": "red"}]},
                                 timeout=30)

    thread = threading.Thread(target=send)
    start = time.monotonic()
    thread.start()
    time.sleep(0.5)
    server.proc.send_signal(signal.SIGTERM)
    thread.join(30)
    code = server.proc.wait(30)
    assert answer["r"].status_code == 200 and answer["r"].json()["predictions"][0]["prediction"] in ("yes", "no")
    assert time.monotonic() - start >= 1.4  # it waited in its batch, and was answered
    assert code == 0, server.output()
    server.stop()
