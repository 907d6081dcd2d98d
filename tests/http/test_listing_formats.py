"""Listings for scripts and mirrors: ?format=json|ndjson|text|html, Accept negotiation, 401 for anonymous callers."""

from __future__ import annotations

import base64
import json
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from urllib.parse import unquote, urljoin, urlsplit

import pytest

from s3gate import keys
from s3gate import settings as settings_mod
from s3gate.app import create_app
from tests.conftest import make_settings

PASSWORD = "correct horse battery"
AWKWARD = ["docs/a b.txt", "docs/ünï cödé.txt", "docs/50%#?.txt", "docs/<script>.txt", "docs/x:y.txt"]


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.hrefs.append(dict(attrs)["href"])

    def handle_data(self, data):
        self.text.append(data)


def links(page: str) -> list[str]:
    parser = Links()
    parser.feed(page)
    return parser.hrefs


def put_many(s3, bucket: str, names: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=b"x"), names))


async def test_json_stays_the_default_and_says_it_varies(client, bucket, s3):
    s3.put_object(Bucket=bucket, Key="docs/a.txt", Body=b"1")
    resp = await client.get(f"/files/{bucket}/")
    assert resp.content_type == "application/json" and resp.headers["Vary"] == "Accept"
    assert (await resp.json())["folders"] == ["docs/"]
    # curl's and wget's Accept (*/*) and an API client's get JSON; a browser's gets HTML.
    for accept, kind in [
        ("*/*", "application/json"),
        ("application/json", "application/json"),
        ("application/json, text/html;q=0.5", "application/json"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "text/html"),
    ]:
        resp = await client.get(f"/files/{bucket}/docs/", headers={"Accept": accept})
        assert resp.content_type == kind, accept
    resp = await client.get(f"/files/{bucket}/docs/?format=json", headers={"Accept": "text/html"})
    assert resp.content_type == "application/json" and "Vary" not in resp.headers
    assert (await client.get(f"/files/{bucket}/?format=xml")).status == 400


async def test_html_links_are_relative_encoded_and_escaped(client, bucket, s3):
    put_many(s3, bucket, [*AWKWARD, "docs/sub/deep.txt", "docs-private/no.txt"])
    resp = await client.get(f"/files/{bucket}/docs/?format=html")
    assert resp.status == 200 and resp.content_type == "text/html"
    page = await resp.text()
    assert "<script>" not in page and "&lt;script&gt;.txt" in page
    hrefs = links(page)
    assert hrefs[0] == "../?format=html" and "./sub/?format=html" in hrefs
    base = f"http://h/files/{bucket}/docs/"
    targets = {unquote(urlsplit(urljoin(base, h)).path) for h in hrefs[1:] if "?" not in h}
    assert targets == {f"/files/{bucket}/{k}" for k in AWKWARD}
    # Every object link downloads the object it names.
    for href in hrefs[1:]:
        if "?" in href:
            continue
        got = await client.get(urlsplit(urljoin(base, href)).path)
        assert got.status == 200 and await got.read() == b"x", href


async def test_html_lists_the_whole_folder_or_pages_with_a_next_link(client, bucket, s3):
    names = [f"big/k{i:04d}" for i in range(1203)]
    put_many(s3, bucket, names)
    page = await (await client.get(f"/files/{bucket}/big/?format=html")).text()
    assert sorted(h for h in links(page) if h.startswith("./")) == [f"./k{i:04d}" for i in range(1203)]
    assert 'rel="next"' not in page
    # With limit: one page, and a link to the next that a browser or wget follows.
    seen, url, pages = [], f"/files/{bucket}/big/?format=html&limit=500", 0
    while url:
        page = await (await client.get(url)).text()
        pages += 1
        hrefs = links(page)
        seen += [h for h in hrefs if h.startswith("./")]
        nxt = [h for h in hrefs if h.startswith("?")]
        url = urljoin(f"/files/{bucket}/big/", nxt[0]) if nxt else None
    assert pages == 3 and seen == [f"./k{i:04d}" for i in range(1203)]


async def test_ndjson_streams_every_page(client, bucket, s3):
    put_many(s3, bucket, [f"n/k{i:04d}" for i in range(1203)] + ["n/sub/x", "top"])
    resp = await client.get(f"/files/{bucket}/n/?format=ndjson&recursive=1")
    assert resp.content_type == "application/x-ndjson"
    assert resp.headers.get("Transfer-Encoding") == "chunked"  # written as it goes, no length known up front
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [o["key"] for o in lines] == [f"n/k{i:04d}" for i in range(1203)] + ["n/sub/x"]
    assert set(lines[0]) == {"key", "size", "etag", "last_modified"}
    lines = [
        json.loads(line) for line in (await (await client.get(f"/files/{bucket}/?format=ndjson")).text()).splitlines()
    ]
    assert lines == [{"folder": "n/"}, lines[1]] and lines[1]["key"] == "top"


async def test_text_prints_one_absolute_download_url_per_line(aiohttp_client, settings, bucket, s3):
    put_many(s3, bucket, ["t/a b.txt", "t/sub/ü#.txt", "t/sub/deeper/c"])
    client = await aiohttp_client(create_app(settings))
    resp = await client.get(f"/files/{bucket}/t/?format=text&recursive=1")
    assert resp.content_type == "text/plain"
    base = f"http://127.0.0.1:{client.port}"
    urls = (await resp.text()).splitlines()
    assert urls == [
        f"{base}/files/{bucket}/t/a%20b.txt",
        f"{base}/files/{bucket}/t/sub/deeper/c",
        f"{base}/files/{bucket}/t/sub/%C3%BC%23.txt",
    ]
    for url in urls:
        assert await (await client.get(urlsplit(url).path)).read() == b"x"
    # Not recursive: the folder's own objects; sub-folders have no download URL.
    assert (await (await client.get(f"/files/{bucket}/t/?format=text")).text()).splitlines() == urls[:1]
    # public_url names the address clients use.
    other = await aiohttp_client(create_app(settings_mod.replace(settings, public_url="https://files.example.org/")))
    text = await (await other.get(f"/files/{bucket}/t/?format=text")).text()
    assert text == f"https://files.example.org/files/{bucket}/t/a%20b.txt\n"


async def test_bucket_list_formats(client, bucket, s3):
    page = await (await client.get("/files/?format=html")).text()
    assert f"./{bucket}/?format=html" in links(page)
    text = await (await client.get("/files/?format=text")).text()
    assert any(line.endswith(f"/files/{bucket}/") for line in text.splitlines())
    lines = [json.loads(x) for x in (await (await client.get("/files/?format=ndjson")).text()).splitlines()]
    assert {"bucket": bucket} in lines
    resp = await client.head(f"/files/{bucket}/?format=html")
    assert resp.status == 200 and resp.content_type == "text/html"


async def test_a_missing_bucket_keeps_its_status_in_every_format(client):
    for fmt in ("json", "ndjson", "text", "html"):
        resp = await client.get(f"/files/no-such-bucket-1/?format={fmt}")
        assert resp.status == 404, fmt


# -- anonymous callers ---------------------------------------------------------------------------------
@pytest.fixture
async def auth_app(aiohttp_client, tmp_path, moto_endpoint, bucket):
    async def make(public: str = ""):
        settings = make_settings(
            auth=True, login_delay=0, s3_endpoint=moto_endpoint, s3_access_key="testing", s3_secret_key="testing",
            data_dir=str(tmp_path / f"data{public.count(':')}"), public=public,
        )  # fmt: skip
        app = create_app(settings)
        client = await aiohttp_client(app)
        if not await app[keys.AUTH].store.count_users():
            await app[keys.AUTH].add_user("nobody", PASSWORD)
        return client

    return make


async def test_anonymous_callers_with_nothing_open_are_asked_for_credentials(auth_app, bucket, s3):
    s3.put_object(Bucket=bucket, Key="pub/a.txt", Body=b"x")
    client = await auth_app()
    for path in ("/files/", "/files", f"/files/{bucket}/", f"/files/{bucket}/pub/?format=text"):
        resp = await client.get(path)
        assert resp.status == 401, path
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="s3gate"', path
    # A browser goes to the login page instead.
    resp = await client.get("/files/", headers={"Sec-Fetch-Mode": "navigate"}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"].startswith("/login?next=")
    # A signed-in user with no rights sees an empty list, as before.
    resp = await client.get(
        "/files/", headers={"Authorization": "Basic " + base64.b64encode(f"nobody:{PASSWORD}".encode()).decode()}
    )
    assert resp.status == 200 and (await resp.json()) == {"buckets": []}


async def test_anonymous_callers_see_what_is_open_to_them(auth_app, bucket, s3):
    s3.put_object(Bucket=bucket, Key="pub/a.txt", Body=b"x")
    client = await auth_app(public=f"{bucket}/pub:read,list")
    resp = await client.get("/files/")
    assert resp.status == 200 and [b["name"] for b in (await resp.json())["buckets"]] == [bucket]
    resp = await client.get(f"/files/{bucket}/pub/?format=text")
    assert resp.status == 200 and (await resp.text()).endswith(f"/files/{bucket}/pub/a.txt\n")
