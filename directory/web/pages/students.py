"""A school's student email sub-administrator: find students, see one, reset a
password, deactivate, re-activate, create a new enrollee's account, download the roster.

Each action is the directory/admin.py function the `rollcall account` commands use,
over the person's own LDAP connection: the directory decides (their cost centers
only, ENABLED accounts only for resets and deactivations) and the audit log records
them by name."""
from __future__ import annotations

import re

from ... import admin
from ...district import display
from ..forms import PageError, download, redirect
from ..routes import route

SUBADMIN = (lambda r: bool(r.subadmin_sites or r.district_admin),
            "This page is for the student email administrators of a school.")
DEACTIVATION_REASONS = display.DEACTIVATION_REASONS


def _my_sites(ctx) -> list:
    r = ctx.session.roles
    return r.subadmin_sites


@route("GET", "/students", allow=SUBADMIN)
def search(ctx):
    q = ctx.arg("q").strip()
    found, error = admin.StudentSearch(), ""
    if q:
        try:
            found = admin.find_students(ctx.conn, q)
        except admin.AdminError as exc:
            error = exc.message
    return ctx.console.render_page(ctx, "students.html", q=q, found=found.students, enrollees=found.enrollees,
                                   note=found.note, searched=bool(q), error=error, sites=_my_sites(ctx))


@route("GET", "/students/(?P<uid>[^/]+)", allow=SUBADMIN)
def detail(ctx):
    s = admin.resolve_student(ctx.conn, ctx.params["uid"])
    return ctx.console.render_page(ctx, "student.html", s=s, reasons=DEACTIVATION_REASONS,
                                   deactivated_by=admin.person_name(ctx.conn, s["deactivated_by"]))


def _only_enabled(s, what):
    if s["status"] != "ENABLED":
        raise admin.AdminError(f"{s['uid']} is {s['status']}: only an ENABLED account can {what}", 53)


@route("GET", "/students/(?P<uid>[^/]+)/reset", allow=SUBADMIN)
def reset_form(ctx):
    s = admin.resolve_student(ctx.conn, ctx.params["uid"])
    _only_enabled(s, "have its password reset")
    return ctx.console.render_page(ctx, "reset_confirm.html", s=s)


@route("POST", "/students/(?P<uid>[^/]+)/reset", allow=SUBADMIN)
def reset(ctx):
    s = admin.resolve_student(ctx.conn, ctx.params["uid"])
    _only_enabled(s, "have its password reset")
    if ctx.arg("confirmed") != "yes":
        return ctx.console.render_page(ctx, "reset_confirm.html", s=s)
    out = admin.reset_password(ctx.conn, s["dn"])
    # POST-redirect-GET: the result is kept in the session for one GET only (the page is
    # not cached: Cache-Control: no-store); a reload shows "shown already", never resets again
    token = ctx.session.keep_result({"kind": "reset", **out})
    return redirect(f"/students/{out['username']}/reset/{token}")


@route("GET", "/students/(?P<uid>[^/]+)/reset/(?P<token>[A-Za-z0-9_-]+)", allow=SUBADMIN)
def reset_done(ctx):
    out = ctx.session.take_result(ctx.params["token"])
    if out is None or out.get("kind") != "reset" or out["username"] != ctx.params["uid"]:
        return ctx.console.render_page(ctx, "shown_already.html", uid=ctx.params["uid"])
    return ctx.console.render_page(ctx, "reset_done.html", out=out)


@route("GET", "/students/(?P<uid>[^/]+)/reactivate", allow=SUBADMIN)
def reactivate_form(ctx):
    s = admin.resolve_student(ctx.conn, ctx.params["uid"])
    return ctx.console.render_page(ctx, "reactivate.html", s=s,
                                   deactivated_by=admin.person_name(ctx.conn, s["deactivated_by"]))


@route("POST", "/students/(?P<uid>[^/]+)/reactivate", allow=SUBADMIN)
def reactivate(ctx):
    s = admin.resolve_student(ctx.conn, ctx.params["uid"])
    if ctx.arg("confirmed") != "yes":
        return ctx.console.render_page(ctx, "reactivate.html", s=s,
                                       deactivated_by=admin.person_name(ctx.conn, s["deactivated_by"]))
    # the directory decides (the same rules as `rollcall account reactivate`)
    out = admin.reactivate(ctx.conn, s["dn"])
    ctx.session.flash.append(f"{out['name']} ({out['username']}) is {out['status']} again"
                             + (": the account was never activated; the student activates it with an activation "
                                "code (download the roster for a new one)." if out["status"] == "PENDING" else "."))
    return redirect(f"/students/{out['username']}")


@route("GET", "/students/(?P<uid>[^/]+)/deactivate", allow=SUBADMIN)
def deactivate_form(ctx):
    s = admin.resolve_student(ctx.conn, ctx.params["uid"])
    return ctx.console.render_page(ctx, "deactivate.html", s=s, reasons=DEACTIVATION_REASONS, reason="",
                                   reference="", error="", confirm=False)


@route("POST", "/students/(?P<uid>[^/]+)/deactivate", allow=SUBADMIN)
def deactivate(ctx):
    s = admin.resolve_student(ctx.conn, ctx.params["uid"])
    reason, reference = ctx.arg("reason").strip(), ctx.arg("reference").strip()

    def form(error="", confirm=False, status=200):
        return ctx.console.render_page(ctx, "deactivate.html", status=status, s=s, reasons=DEACTIVATION_REASONS,
                                       reason=reason, reference=reference, error=error, confirm=confirm)

    if reason not in DEACTIVATION_REASONS:
        return form("Choose the reason for the deactivation.", status=400)
    if not reference:
        return form("Enter the reference of the signed form (or the case number).", status=400)
    if ctx.arg("confirmed") != "yes":
        return form(confirm=True)
    out = admin.deactivate(ctx.conn, s["dn"], reason, reference)
    ctx.session.flash.append(f"{out['name']} ({out['username']}) is now deactivated.")
    return redirect(f"/students/{out['username']}")


@route("GET", "/accounts/new", allow=SUBADMIN)
def create_form(ctx):
    return ctx.console.render_page(ctx, "create.html", district_id=ctx.arg("district_id"), error="", out=None)


@route("POST", "/accounts/new", allow=SUBADMIN)
def create(ctx):
    did = ctx.arg("district_id").strip()
    if not admin.DISTRICT_ID.match(did):
        return ctx.console.render_page(ctx, "create.html", status=400, district_id=did, out=None,
                                       error="A district ID has 10 characters, e.g. 000123s456.")
    try:
        out = admin.create_account(ctx.conn, did)
    except admin.AdminError as exc:
        return ctx.console.render_page(ctx, "create.html", status=400, district_id=did, out=None,
                                       error=exc.message[0].upper() + exc.message[1:])
    return ctx.console.render_page(ctx, "create.html", district_id="", error="", out=out)


@route("GET", "/roster", allow=SUBADMIN)
def roster_form(ctx):
    return ctx.console.render_page(ctx, "roster.html", sites=_my_sites(ctx), error="", code=ctx.arg("site"),
                                   ids="")


@route("POST", "/roster", allow=SUBADMIN)
def roster(ctx):
    code = ctx.arg("site").strip()
    text = ctx.arg("ids")
    ids = [t for t in re.split(r"[\s,;]+", text) if t] or None
    if not code:
        raise PageError("Choose a cost center.")
    r = admin.roster(ctx.conn, code, ids=ids, reissue_codes=ctx.arg("reissue") == "yes")
    return download(f"roster-{r.code}-{r.stamp}.zip", "application/zip", r.zip_bytes())

