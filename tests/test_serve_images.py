"""`deepfit serve` for image models over real HTTP: uploads (one, several, concurrent) equal to
`deepfit predict` on the same files; non-images, oversized and decompression-bomb uploads
refused; an image model with table columns takes uploaded bytes only, never a server path."""

import asyncio
import io
import struct
import zlib

import httpx
import pytest
from serve_support import Server
from test_serve import deepfit_predict


def png_header_bomb(width=60_000, height=60_000):
    """A valid PNG header announcing width x height pixels, with a few bytes of data (a bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")


def upload(paths):
    return [("image", (p.name, p.read_bytes(), "image/png")) for p in paths]


def test_uploads_equal_deepfit_predict_on_the_folder(image_server, serve_runs):
    paths = sorted(serve_runs["image_paths"])
    expected = deepfit_predict(serve_runs["img"], serve_runs["images"])
    expected.index = ["/".join(p.replace("\\", "/").split("/")[-2:]) for p in expected["path"]]  # label/file
    info = httpx.get(image_server.url + "/v1/model").json()
    assert info["kind"] == "image" and info["classes"] == ["bright", "dark"]
    assert info["input"]["image"]["field"] == "image" and info["input"]["image"]["max_pixels"] == 1_000_000

    def check(pred, path):
        want = expected.loc[f"{path.parent.name}/{path.name}"]
        assert pred["prediction"] == want["prediction"]
        for c in ("bright", "dark"):
            assert abs(pred["probabilities"][c] - float(want[f"proba_{c}"])) <= 1e-6

    r = httpx.post(image_server.url + "/v1/predict", files=upload(paths[:5]))
    assert r.status_code == 200, r.text
    for pred, path in zip(r.json()["predictions"], paths[:5]):
        check(pred, path)

    async def concurrent():
        async with httpx.AsyncClient(base_url=image_server.url, timeout=60) as client:
            return await asyncio.gather(*(client.post("/v1/predict", files=upload([p])) for p in paths))

    for answer, path in zip(asyncio.run(concurrent()), paths):
        assert answer.status_code == 200
        check(answer.json()["predictions"][0], path)


def test_bad_uploads_are_refused_and_the_server_goes_on(image_server, serve_runs):
    good = serve_runs["image_paths"][0]
    r = httpx.post(image_server.url + "/v1/predict", files=[("image", ("notes.png", b"just some text", "image/png"))])
    assert r.status_code == 422 and r.json()["field"] == "image[0]" and "not an image" in r.json()["error"]
    r = httpx.post(image_server.url + "/v1/predict", files=[("image", ("bomb.png", png_header_bomb(), "image/png"))])
    assert r.status_code == 413 and "pixels" in r.json()["error"], r.text
    r = httpx.post(image_server.url + "/v1/predict",
                   files=[("image", ("big.png", png_header_bomb(2000, 1000), "image/png"))])  # 2 MP > the 1 MP limit
    assert r.status_code == 413 and "2000x1000" in r.json()["error"] and "1000000" in r.json()["error"]
    from PIL import Image

    tiny = io.BytesIO()
    Image.new("RGB", (4, 4)).save(tiny, format="PNG")
    r = httpx.post(image_server.url + "/v1/predict", files=[("image", ("t.png", tiny.getvalue(), "image/png"))])
    assert r.status_code == 422 and "too small" in r.json()["error"]
    r = httpx.post(image_server.url + "/v1/predict", files=upload([good]), data={"colour": "red"})
    assert r.status_code == 422 and r.json()["field"] == "colour"
    r = httpx.post(image_server.url + "/v1/predict", json={"rows": [{"path": "/etc/passwd"}]})
    assert r.status_code == 400 and "never opens a file" in r.json()["error"]
    r = httpx.post(image_server.url + "/v1/predict", json={"rows": [{"pixels": [1, 2]}]})
    assert r.status_code == 415 and "uploads" in r.json()["error"]
    r = httpx.post(image_server.url + "/v1/predict", data={"rows": "[]"})
    assert r.status_code == 422 and r.json()["field"] == "image"
    assert httpx.post(image_server.url + "/v1/predict", files=upload([good])).status_code == 200


@pytest.fixture(scope="module")
def image_table_server(request, serve_runs):
    server = Server(serve_runs["imgtab"])
    request.addfinalizer(server.stop)
    return server


def test_an_image_column_takes_uploaded_bytes_never_a_path(image_table_server, serve_runs):
    url = image_table_server.url + "/v1/predict"
    info = httpx.get(image_table_server.url + "/v1/model").json()
    assert info["input"]["image"]["column"] == "photo" and [c["name"] for c in info["input"]["columns"]] == ["x"]
    for body in ({"rows": [{"photo": "../../etc/passwd", "x": 1.0}]}, {"rows": [{"photo": "/etc/passwd", "x": 1.0}]}):
        r = httpx.post(url, json=body)
        assert r.status_code == 400 and r.json()["field"] == "rows[0].photo"
        assert "never opens a file named by a client" in r.json()["error"]
    r = httpx.post(url, data={"photo": "../../etc/passwd", "x": "1.0"})  # a path as a form field, no upload
    assert r.status_code == 422 and r.json()["field"] == "image"
    png = serve_runs["photos"]["photo"][0]
    data = open(png, "rb").read()
    r = httpx.post(url, files=[("image", ("x.png", data, "image/png"))],
                   data={"rows": '[{"photo": "../../etc/passwd", "x": 1.0}]'})
    assert r.status_code == 400 and "never opens" in r.json()["error"]
    # The upload's file name is never used as a path either: these bytes are what is predicted.
    r = httpx.post(url, files=[("image", ("../../etc/passwd", data, "image/png"))], data={"x": "1.5"})
    assert r.status_code == 200, r.text
    rows = serve_runs["photos"].head(6)
    r = httpx.post(url, files=[("image", (f"{i}.png", open(p, "rb").read(), "image/png")) for i, p in enumerate(rows["photo"])],
                   data={"rows": rows[["x"]].to_json(orient="records")})
    assert r.status_code == 200, r.text
    import deepfit

    expected = deepfit.load(serve_runs["imgtab"]).predict_frame(rows.drop(columns=["y"]))
    got = r.json()["predictions"]
    assert [p["prediction"] for p in got] == list(expected["prediction"])
    for p, (_, want) in zip(got, expected.iterrows()):
        assert abs(p["probabilities"]["hi"] - float(want["proba_hi"])) <= 1e-6
