"""Where the browser goes after signing in: `safe_next` keeps only paths on this site.

Pure tests (the known bypasses, and hypothesis against a model of how browsers read a
`Location` header), then the sign-in page over HTTP with a hostile `next`."""

from __future__ import annotations

import re
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from controller.accounts import Accounts, AuthSettings
from controller.api.app import create_app
from controller.config import ControllerSettings
from controller.pages.return_paths import NEXT_MAX, safe_next
from controller.store.base import Database

SITE = "https://ctl.example"
FAST = AuthSettings(argon2_time_cost=1, argon2_memory_kib=1024, argon2_parallelism=1)
PASSWORD = "correct horse battery staple"
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def where_a_browser_goes(location: str) -> tuple[str, str]:
    """(scheme, host) a browser on a page of SITE goes to for `Location: location`,
    modelled on the WHATWG URL parser: leading and trailing C0 controls and spaces are
    stripped, tab and newline removed anywhere, and a backslash read as a slash."""
    cleaned = "".join(c for c in location if c not in "\t\n\r").strip(_C0_AND_SPACE)
    target = urlsplit(urljoin(SITE + "/login", cleaned.replace("\\", "/")))
    return target.scheme, target.netloc


REFUSED = [
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    "/\\evil.example",
    "/\\/evil.example",
    "//evil.example",
    "///evil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%2F%2Fevil.example",
    "/%2f/evil.example",
    "/%5Cevil.example",
    "/%252F%252Fevil.example",
    "/%25252F%25252Fevil.example",
    "https:evil.example",
    "https://evil.example/",
    "javascript:alert(1)",
    " /fleet",
    "/fleet ",
    "/fleet\r\nSet-Cookie: cctv_session=x",
    "/fleet%0d%0aSet-Cookie:%20x=y",
    "/fleet%00",
    "\uff0f\uff0fevil.example",  # fullwidth solidus
    "/\uff0fevil.example",
    "/%EF%BC%8F%EF%BC%8Fevil.example",  # the same, percent-encoded
    "\u2215\u2215evil.example",  # division slash
    "/\u202e/elpmaxe.live",  # right-to-left override
    "/\u00a0/evil.example",  # no-break space
    "/" + "a" * NEXT_MAX,
    "",
    "fleet",
]
KEPT = [
    "/",
    "/fleet",
    "/units/cam-01?hours=6",
    "/callouts?show=open&unit=cam-01",
    "/fleet?site=Market%20Square",
    "/deployments/3#decision",
    "/locations/7/",
]


@pytest.mark.parametrize("value", REFUSED)
def test_known_bypasses_and_other_junk_are_dropped(value: str) -> None:
    assert safe_next(value) is None


@pytest.mark.parametrize("value", KEPT)
def test_paths_on_this_site_are_kept(value: str) -> None:
    assert safe_next(value) == value


def test_the_browser_model_sees_the_bypasses_leave() -> None:
    """The model is not a rubber stamp: the raw bypasses do leave the site in it."""
    for value in ("/\t/evil.example", "/\\evil.example", "//evil.example", "\n//evil.example"):
        assert where_a_browser_goes(value) == ("https", "evil.example"), value


_PIECES = st.sampled_from(
    ["/", "\\", "\t", "\n", "\r", " ", "\x00", "%2F", "%2f", "%5C", "%09", "%0A", "%00",
     "%25", "%", "evil.example", "@", ":", "https:", "//", "?", "#", ".", "..", "a", "=",
     "\uff0f", "\u2215", "\u202e", "\u3000", "%EF%BC%8F", "&"]
)  # fmt: skip
_TRICKY = st.lists(_PIECES, max_size=10).map("".join)


@given(st.one_of(st.text(), _TRICKY, _TRICKY.map(lambda t: "/" + t)))
@example("/%2F%2Fevil.example")
@example("/.%2F%2Fevil.example")
def test_whatever_is_kept_stays_on_the_site(value: str) -> None:
    kept = safe_next(value)
    if kept is None:
        return
    assert kept == value
    assert kept.startswith("/") and not kept.startswith("//")
    assert kept.isascii() and kept.isprintable() and " " not in kept and "\\" not in kept
    assert len(kept) <= NEXT_MAX
    decoded = unquote(unquote(kept))
    assert not re.search(r"[\x00-\x1f\x7f]", decoded)
    for form in (kept, decoded, decoded.split("?", 1)[0]):
        assert where_a_browser_goes(form) == ("https", "ctl.example"), form


_SEGMENT = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.~", min_size=1, max_size=12)


@given(
    st.lists(_SEGMENT, min_size=1, max_size=5),
    st.dictionaries(_SEGMENT, _SEGMENT, max_size=3),
)
def test_ordinary_paths_and_queries_are_kept(segments: list[str], query: dict[str, str]) -> None:
    path = "/" + "/".join(segments)
    if query:
        path += "?" + "&".join(f"{k}={quote(v)}" for k, v in query.items())
    assert safe_next(path) == path


# ----------------------------------------------------------------- over HTTP


@pytest.fixture
async def client(db: Database) -> httpx.AsyncClient:
    await Accounts(db, FAST).add_user("mia", "manager", PASSWORD, contractor=None, actor="test")
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _hidden(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, f"no hidden field {name}"
    return found.group(1)


async def test_a_hostile_next_is_dropped_by_the_form_and_the_redirect(
    client: httpx.AsyncClient,
) -> None:
    async with client:
        form = await client.get("/login", params={"next": "/%09/evil.example"})
        assert form.status_code == 200 and _hidden(form.text, "next") == ""
        token = _hidden(form.text, "csrf_token")
        for hostile in ("/\t/evil.example", "/\\evil.example", "//evil.example"):
            client.cookies.delete("cctv_session")
            signed_in = await client.post(
                "/login",
                data={"username": "mia", "password": PASSWORD, "next": hostile,
                      "csrf_token": token},
            )  # fmt: skip
            assert signed_in.status_code == 303, signed_in.text
            assert signed_in.headers["location"] == "/fleet", hostile
        kept = await client.post(
            "/login",
            data={"username": "mia", "password": PASSWORD, "next": "/units/cam-01?hours=6",
                  "csrf_token": token},
        )  # fmt: skip
        assert kept.headers["location"] == "/units/cam-01?hours=6"
