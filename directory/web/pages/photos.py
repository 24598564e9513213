"""Student ID photos: upload (single JPEGs and zip batches, a verdict per file), the
photo roster of a school with its CSV, and the principal's page that grants and
revokes photo designees and photo vendors.

Uploads go through directory/photos_client.py (stage_one, the code `rollcall photos upload`
uses) over the person's own connection: the server's photo overlay decides what is a
valid photo and whose photo this person may stage. Grants are plain modifies of the
site's role groups, which config.yaml lets a site's principals write; the memberOf
overlay keeps the grantee's memberOf."""
from __future__ import annotations

import time

from ldap3 import BASE, LEVEL, MODIFY_ADD, MODIFY_DELETE, SUBTREE
from ldap3.utils.conv import escape_filter_chars

from ... import admin, client
from ... import photos_client as photos
from ...district import display
from ..forms import PageError, download, redirect
from ..routes import route

PHOTO = (lambda r: bool(r.photo_sites or r.district_admin),
         "This page is for the principals, photo designees and photo vendors of a school.")
PRINCIPAL = (lambda r: bool(r.principal_sites),
             "Only a school's principal grants and revokes photo access.")

# role key -> (group cn, people OU the grantee must be in, singular name, kind of person)
ACCESS_ROLES = {
    "designees": ("photo-designees", "staff", "photo designee", "staff member"),
    "vendors": ("photo-vendors", "nonemployees", "photo vendor", "non-employee (contractor)"),
}
CSV_COLUMNS = ["district_id", "username", "name", "grade", "photo_status", "photo_date",
               "staged_at", "staged_by", "source"]


def _norm(dn: str) -> str:
    return (dn or "").lower().replace(" ", "")


def _all_sites(ctx) -> list:
    return sorted(admin._raw(attrs, "ou") for _dn, attrs in
                  client.paged_search(ctx.conn, f"ou=sites,{ctx.console.suffix}", "(objectClass=rollcallSite)",
                                      ["ou"], LEVEL, absent_ok=True))


def _photo_sites(ctx) -> list:
    """The schools this person works on photos for (any school for a district administrator)."""
    r = ctx.session.roles
    return r.photo_sites or (_all_sites(ctx) if r.district_admin else [])


# ---------------------------------------------------------------------- upload
@route("GET", "/photos", allow=PHOTO)
def upload_form(ctx):
    return ctx.console.render_page(ctx, "photos_upload.html", sites=_photo_sites(ctx), verdicts=None,
                                   counts=None, error="", normalise=False)


@route("POST", "/photos", allow=PHOTO)
def upload(ctx):
    sites = _photo_sites(ctx)
    normalise = ctx.arg("normalise") == "yes"
    files = [f for f in ctx.files if f.field == "photos"]
    if not files:
        return ctx.console.render_page(ctx, "photos_upload.html", status=400, sites=sites, verdicts=None,
                                       counts=None, normalise=normalise,
                                       error="Choose one or more photos (JPEG) or zip files of photos.")
    # the overlay replaces departmentNumber with the student's schools and judges by those
    up = photos.make_uploader(ctx.conn, ctx.session.dn, normalise=normalise, sites=sites)
    verdicts = []
    for f in files:
        for name, data in photos.expand(f.filename or "unnamed", f.data, ctx.console.web.photo_zip_max_files,
                                        ctx.console.web.photo_zip_max_mb):
            verdicts.append(photos.stage_one(up, name, data))
    counts = {"files": len(verdicts),
              "accepted": sum(v.verdict in ("accepted", "replaced") for v in verdicts),
              "rejected": sum(v.verdict == "rejected" for v in verdicts)}
    return ctx.console.render_page(ctx, "photos_upload.html", sites=sites, verdicts=verdicts, counts=counts,
                                   error="", normalise=normalise)


# ---------------------------------------------------------------------- roster
def _roster_site(ctx, sites) -> str:
    code = ctx.arg("site").strip()
    if not code:
        if not sites:
            raise PageError("You hold no photo role at any school.", 403)
        return sites[0]
    if code not in sites:
        raise PageError(f"You hold no photo role at {ctx.site(code)}.", 403)
    return code


def _vendor_only(ctx, code) -> bool:
    """A photo vendor (and nothing else) at this school: the access rules let vendors
    stage photos but do not show them the student list."""
    r = ctx.session.roles
    return code in r.vendor_sites and code not in r.principal_sites and code not in r.designee_sites


@route("GET", "/photos/roster", allow=PHOTO)
def roster(ctx):
    sites = _photo_sites(ctx)
    code = _roster_site(ctx, sites)
    vendor_only = _vendor_only(ctx, code)
    rows = [] if vendor_only else photos.roster(ctx.conn, code)
    counts = {s: sum(r.status == s for r in rows) for s in ("NONE", "STAGED", "PUBLISHED")}
    return ctx.console.render_page(ctx, "photos_roster.html", sites=sites, code=code, rows=rows, counts=counts,
                                   vendor_only=vendor_only)


@route("GET", "/photos/roster.csv", allow=PHOTO)
def roster_csv(ctx):
    code = _roster_site(ctx, _photo_sites(ctx))
    if _vendor_only(ctx, code):
        raise PageError(f"As a photo vendor you may upload the photos of {ctx.site(code)}, but the directory "
                        "does not show you its students: ask the school office for the roster.", 403)
    rows = [{"district_id": r.district_id, "username": r.uid, "name": r.name, "grade": r.grade,
             "photo_status": r.status, "photo_date": r.photo_date, "staged_at": r.staged_at,
             "staged_by": r.staged_by, "source": r.source} for r in photos.roster(ctx.conn, code)]
    stamp = time.strftime("%Y%m%d", time.gmtime())
    return download(f"photo-roster-{code}-{stamp}.csv", "text/csv; charset=utf-8",
                    admin.csv_bytes(CSV_COLUMNS, rows))


# ---------------------------------------------------------------------- access
def _group_dn(ctx, code, role) -> str:
    return f"cn={ACCESS_ROLES[role][0]},ou={code},ou=sites,{ctx.console.suffix}"


def _person(ctx, dn) -> dict | None:
    ctx.conn.search(dn, "(objectClass=*)", BASE,
                    attributes=["uid", "cn", "title", "rollcallOrganization", "rollcallAccountStatus",
                                "rollcallExpiry"])
    found = [e for e in ctx.conn.response or [] if e.get("type") == "searchResEntry"]
    if not found:
        return None
    a = found[0]["raw_attributes"]
    expiry = admin._raw(a, "rollcallExpiry")
    return {"dn": found[0]["dn"], "uid": admin._raw(a, "uid"), "name": admin._raw(a, "cn"),
            "title": admin._raw(a, "title"), "organization": admin._raw(a, "rollcallOrganization"),
            "status": admin._raw(a, "rollcallAccountStatus") or "ENABLED",
            "expiry": display.local_date(expiry)}


def _members(ctx, code, role, missing_ok=False) -> list | None:
    """The role group's member DNs, as stored (None for a missing group when missing_ok)."""
    ctx.conn.search(_group_dn(ctx, code, role), "(objectClass=groupOfNames)", BASE, attributes=["member"])
    found = [e for e in ctx.conn.response or [] if e.get("type") == "searchResEntry"]
    if not found:
        if missing_ok:
            return None
        raise PageError(f"{ctx.site(code)} has no {ACCESS_ROLES[role][0]} group: "
                        "ask the district's identity administrators to create it.", 404)
    return admin._raw_all(found[0]["raw_attributes"], "member")


def _placeholders(ctx, code, members) -> list:
    """Stand-ins that keep an empty groupOfNames valid: the site itself (as the grant
    expiry job writes) or the root DN (as referential integrity writes)."""
    stand_ins = {_norm(f"ou={code},ou=sites,{ctx.console.suffix}"), _norm(ctx.console.config.root_dn)}
    return [m for m in members if _norm(m) in stand_ins]


def _access_view(ctx) -> list:
    people = _norm(f"ou=people,{ctx.console.suffix}")
    out = []
    for code in ctx.session.roles.principal_sites:
        groups = []
        for role, (cn, _ou, label, kind) in ACCESS_ROLES.items():
            listed, members = [], _members(ctx, code, role, missing_ok=True)
            for m in members or []:
                if not _norm(m).endswith("," + people):
                    continue  # the placeholder of an empty group, or a nested group
                p = _person(ctx, m) or {"dn": m, "uid": m.split(",")[0].split("=", 1)[-1], "name": "",
                                        "title": "", "organization": "", "status": "UNKNOWN", "expiry": ""}
                listed.append(p)
            listed.sort(key=lambda p: (p["name"].lower(), p["uid"]))
            groups.append({"role": role, "cn": cn, "label": label, "kind": kind, "members": listed,
                           "missing": members is None})
        out.append({"code": code, "groups": groups})
    return out


def _access_page(ctx, error="", status=200, form=None):
    return ctx.console.render_page(ctx, "photos_access.html", status=status, sites=_access_view(ctx),
                                   error=error, form=form or {})


@route("GET", "/photos/access", allow=PRINCIPAL)
def access(ctx):
    return _access_page(ctx)


def _refusal(result, what) -> str:
    code = result.get("result")
    if code == 50:
        return f"The directory did not let you {what}."
    msg = (result.get("message") or result.get("description") or "refused").strip().rstrip(".")
    return f"The directory refused to {what}: {msg}."


def _revoke_target(ctx, code, role, members):
    """(member DN as stored, person) of the member to revoke, or PageError."""
    _cn, _ou, label, _kind = ACCESS_ROLES[role]
    people = _norm(f"ou=people,{ctx.console.suffix}")
    dn = ctx.arg("member")
    match = [m for m in members if _norm(m).endswith("," + people) and _norm(m) == _norm(dn)]
    if not match:
        raise PageError(f"That person is not a {label} of {ctx.site(code)} (any more).", 404)
    return match[0], _person(ctx, match[0]) or {"name": "", "uid": match[0], "title": "", "organization": ""}


def _check_access_form(ctx):
    code, role = ctx.arg("site").strip(), ctx.arg("role")
    if code not in ctx.session.roles.principal_sites:
        raise PageError(f"You are not a principal of school {code or '(none given)'}.", 403)
    if role not in ACCESS_ROLES:
        raise PageError("Choose which role.")
    return code, role


@route("GET", "/photos/access/revoke", allow=PRINCIPAL)
def revoke_confirm(ctx):
    """What a revocation will do; nothing changes until it is confirmed (POST)."""
    code, role = _check_access_form(ctx)
    dn, p = _revoke_target(ctx, code, role, _members(ctx, code, role))
    return ctx.console.render_page(ctx, "photos_revoke.html", p=p, dn=dn, code=code, role=role,
                                   label=ACCESS_ROLES[role][2])


@route("POST", "/photos/access", allow=PRINCIPAL)
def access_change(ctx):
    code, role = _check_access_form(ctx)
    action = ctx.arg("action")
    if action not in ("grant", "revoke"):
        raise PageError("Choose whether to grant or revoke.")
    _cn, ou, label, kind = ACCESS_ROLES[role]
    group = _group_dn(ctx, code, role)
    site_dn = f"ou={code},ou=sites,{ctx.console.suffix}"
    members = _members(ctx, code, role)
    people = _norm(f"ou=people,{ctx.console.suffix}")
    real = [m for m in members if _norm(m).endswith("," + people)]
    if action == "grant":
        username = ctx.arg("username").strip()
        form = {"site": code, "role": role, "username": username}

        def again(message):
            return _access_page(ctx, error=message, status=400, form=form)

        if not username:
            return again(f"Enter the username of the {kind} to make a {label} of {ctx.site(code)}.")
        ctx.conn.search(f"ou=people,{ctx.console.suffix}", f"(uid={escape_filter_chars(username)})", SUBTREE,
                        attributes=["uid"])
        found = [e["dn"] for e in ctx.conn.response or [] if e.get("type") == "searchResEntry"]
        if not found:
            return again(f"There is no one with the username {username}.")
        if len(found) > 1:
            return again(f"The username {username} names {len(found)} people: ask the district to fix it.")
        if f",ou={ou},ou=people," not in _norm(found[0]):
            return again(f"A {label} must be a {kind}; {username} is not.")
        p = _person(ctx, found[0])
        if p is None:
            return again(f"There is no one with the username {username}.")
        if p["status"] != "ENABLED":
            return again(f"The account of {p['name']} ({p['uid']}) is {p['status']}: only an active "
                         f"account can be made a {label}.")
        if _norm(p["dn"]) in {_norm(m) for m in real}:
            return again(f"{p['name']} ({p['uid']}) is already a {label} of {ctx.site(code)}.")
        changes = [(MODIFY_ADD, [p["dn"]])]
        stand_ins = _placeholders(ctx, code, members)
        if stand_ins:
            changes.append((MODIFY_DELETE, stand_ins))
        ctx.conn.modify(group, {"member": changes})
        if ctx.conn.result.get("result") != 0:
            return again(_refusal(ctx.conn.result, f"make {p['uid']} a {label} of {ctx.site(code)}"))
        ctx.session.flash.append(f"{p['name']} ({p['uid']}) is now a {label} of {ctx.site(code)}.")
    else:
        dn, p = _revoke_target(ctx, code, role, members)
        if ctx.arg("confirmed") != "yes":
            # as for a deactivation: say what happens, change nothing until confirmed
            return ctx.console.render_page(ctx, "photos_revoke.html", p=p, dn=dn, code=code, role=role,
                                           label=label)
        changes = [(MODIFY_DELETE, [dn])]
        if len(real) == 1 and len(members) == 1:
            # groupOfNames must keep a member: the site stands in, as the grant expiry job does
            changes.append((MODIFY_ADD, [site_dn]))
        ctx.conn.modify(group, {"member": changes})
        if ctx.conn.result.get("result") != 0:
            raise PageError(_refusal(ctx.conn.result, f"remove {p['uid']} from the {label}s of {ctx.site(code)}"),
                            403 if ctx.conn.result.get("result") == 50 else 400)
        who = f"{p['name']} ({p['uid']})" if p["name"] else p["uid"]
        ctx.session.flash.append(f"{who} is no longer a {label} of {ctx.site(code)}.")
    return redirect(f"/photos/access#site-{code}")
