"""Helpers for the protocol tests: run OpenLDAP's command-line clients against a
ServerProcess and read their LDIF output."""
import base64
import subprocess

from tests.conftest import ROOT_DN, ROOT_PW, SUFFIX

PEOPLE = f"ou=people,{SUFFIX}"
STUDENTS = f"ou=students,{PEOPLE}"
STAFF = f"ou=staff,{PEOPLE}"
JSMITH = f"uid=jsmith,{STUDENTS}"
MGARCIA = f"uid=mgarcia,{STUDENTS}"
TEACHER1 = f"uid=teacher1,{STAFF}"

ADMIN = ("-D", ROOT_DN, "-w", ROOT_PW)
AS_JSMITH = ("-D", JSMITH, "-w", "student-pw-1")
ANON = ()


def tool(srv, name, *args, url=None, input=None, timeout=30, simple=True):
    """Run an OpenLDAP client tool against the server; returns CompletedProcess."""
    cmd = [name] + (["-x"] if simple else []) + ["-H", url or srv.url, *args]
    return subprocess.run(cmd, capture_output=True, text=True, input=input, env=srv.env(), timeout=timeout)


def search(srv, *args, bind=ADMIN, url=None):
    """ldapsearch -LLL with unwrapped LDIF output."""
    return tool(srv, "ldapsearch", "-LLL", "-o", "ldif-wrap=no", *bind, *args, url=url)


def modify(srv, ldif, *args, bind=ADMIN):
    return tool(srv, "ldapmodify", *bind, *args, input=ldif)


def add(srv, ldif, *args, bind=ADMIN):
    return tool(srv, "ldapadd", *bind, *args, input=ldif)


def ok(r):
    """Assert a tool run succeeded; returns its stdout."""
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout


def dns(out: str) -> list:
    res = []
    for line in out.splitlines():
        if line.startswith("dn:: "):
            res.append(base64.b64decode(line[5:]).decode())
        elif line.startswith("dn: "):
            res.append(line[4:])
    return res


def entries(out: str) -> dict:
    """LDIF (unwrapped, -LLL) -> {dn: {attr: [values]}}; attribute names as printed."""
    result, current = {}, None
    for line in out.splitlines():
        if not line or line.startswith("#"):
            current = None if not line else current
            continue
        if line.startswith(" "):
            continue  # continuation (we ask for ldif-wrap=no)
        name, _, rest = line.partition(":")
        if rest.startswith(":"):
            value = base64.b64decode(rest[1:].strip()).decode("utf-8", "replace")
        else:
            value = rest[1:] if rest.startswith(" ") else rest
        if name == "dn":
            current = result.setdefault(value, {})
            continue
        if current is not None:
            current.setdefault(name, []).append(value)
    return result


def lower_keys(attrs: dict) -> dict:
    return {k.lower(): v for k, v in attrs.items()}
