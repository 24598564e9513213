"""The console's small parts without a browser: form and upload parsing, the session
store's limits and the sign-in throttle."""
import json
import time

import pytest

from directory.web.forms import PageError, parse_body
from directory.web.session import Session, SessionStore, SignInThrottle, anonymous_csrf


def multipart(boundary, parts):
    out = b""
    for headers, body in parts:
        out += f"--{boundary}\r\n".encode() + headers.encode() + b"\r\n\r\n" + body + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def test_multipart_fields_and_files():
    body = multipart("XyZ", [
        ('Content-Disposition: form-data; name="csrf"', b"tok"),
        ('Content-Disposition: form-data; name="note"', "Zoë".encode()),
        ('Content-Disposition: form-data; name="photo"; filename="C:\\\\photos\\\\000001s001.jpg"\r\n'
         'Content-Type: image/jpeg', b"\xff\xd8\xff\x00binary\r\n--not-a-boundary"),
        ('Content-Disposition: form-data; name="photo"; filename=""\r\nContent-Type: application/octet-stream', b""),
    ])
    form, files = parse_body("multipart/form-data; boundary=XyZ", body)
    assert form == {"csrf": ["tok"], "note": ["Zoë"]}
    assert len(files) == 1          # the empty file input is not an upload
    assert files[0].filename == "000001s001.jpg" and files[0].field == "photo"
    assert files[0].data == b"\xff\xd8\xff\x00binary\r\n--not-a-boundary"


def test_urlencoded_and_refusals():
    form, files = parse_body("application/x-www-form-urlencoded", "a=1&b=%C3%A9&b=&csrf=x".encode())
    assert form == {"a": ["1"], "b": ["é", ""], "csrf": ["x"]} and files == []
    with pytest.raises(PageError):
        parse_body("application/x-www-form-urlencoded", b"a=\xff")
    with pytest.raises(PageError) as e:
        parse_body("application/json", b"{}")
    assert e.value.status == 415


def test_sessions_expire_and_anonymous_ones_are_capped():
    store = SessionStore(idle_seconds=0.2, max_anonymous=3)
    signed = store.new()
    signed.dn = "uid=x"
    anon = [store.new() for _ in range(5)]
    assert store.get(signed.id) is signed
    assert [store.get(a.id) is not None for a in anon] == [False, False, True, True, True]
    time.sleep(0.3)
    assert store.get(signed.id) is None
    assert store.expired() != [] or store.all() == []


def test_a_session_record_rebuilds_the_session_without_its_secrets():
    store = SessionStore(idle_seconds=600)
    s = store.new()
    s.dn, s.name, s.uid, s.must_change = "uid=x,ou=staff", "X Y", "x", True
    s.roles.subadmin_sites.append("1234")
    s.site_names = {"1234": "Lincoln"}
    s.pwd_stamp = ("p" * 64, "d" * 64, False)
    s.keep_result({"kind": "reset", "password": "Generated-Secret-1"})
    record = json.loads(json.dumps(s.record()))  # as a store gives it back
    assert s.id not in json.dumps(record) and "Generated-Secret-1" not in json.dumps(record)
    again = Session.from_record(s.id, record)
    assert (again.dn, again.name, again.uid, again.must_change, again.csrf) == (s.dn, s.name, s.uid, True, s.csrf)
    assert again.roles == s.roles and again.site_names == s.site_names and again.pwd_stamp == s.pwd_stamp
    assert again.conn is None and again.results == {}


def test_an_anonymous_sessions_csrf_token_is_its_ids_on_every_host():
    one, other = SessionStore(idle_seconds=600), SessionStore(idle_seconds=600)
    s = one.new()
    assert other.new(s.id).csrf == s.csrf != anonymous_csrf(one.new().id)
    assert s.id not in s.csrf


def test_throttle_counts_per_key_within_the_window():
    t = SignInThrottle(max_failures=2, window=0.3)
    t.failed("10.0.0.1", "user:a")
    assert not t.blocked("10.0.0.1")
    t.failed("10.0.0.1", "user:b")
    assert t.blocked("10.0.0.1") and not t.blocked("user:a") and not t.blocked("10.0.0.2")
    time.sleep(0.35)
    assert not t.blocked("10.0.0.1")


# ---------------------------------------------------------------------- safe_next (open redirect)
OPEN_REDIRECTS = [
    "", "evil", "evil.example/x", "//evil", "///evil", "////evil", "/\\evil", "\\\\evil", "/\\/evil",
    "/%09/evil", "/%09/%09evil", "/%2F/evil", "/%2f/evil", "/%252F/evil", "/%25252F%25252Fevil",
    "/%5C/evil", "/%5cevil", "https://evil", "http://evil/", "HTTPS://evil", "javascript:alert(1)",
    "JaVaScRiPt:alert(1)", "data:text/html,x", "/\t/evil", "/ /evil", "/%20/evil", "/\n/evil",
    "/%0a/evil", "/%0d%0aSet-Cookie:x=1", "/%00/evil", "/\x00", "/%E2%80%8B/evil", "/%C2%A0/evil",
    "/\u3000/evil", "/é", " /x", "\t/x", "/x\r\nLocation: //evil", "/%e2%80%ae/evil",
    "/" + "a" * 3000,
]
SAFE = ["/", "/students", "/requests/12", "/photos/roster?site=1234", "/students?q=ana%20lopez",
        "/a//b", "/track?number=3&token=abc-DEF_1", "/x:y", "/students/000123s045"]


@pytest.mark.parametrize("value", OPEN_REDIRECTS)
def test_safe_next_refuses_other_origins(value):
    from directory.web.pages.account import safe_next

    assert safe_next(value) == "/"


@pytest.mark.parametrize("value", SAFE)
def test_safe_next_keeps_paths_of_this_site(value):
    from directory.web.pages.account import safe_next

    assert safe_next(value) == value
