"""A generated district of about 5,000 people (OneRoster 1.2 bulk: orgs, users, roles,
demographics) synced once, then a checker compares every site, SIS record, account and
site group in the directory with the file; a re-run changes nothing (issue 16)."""
import random
import time
import zipfile

from tests.conftest import SUFFIX

from tests.sync.test_issue16 import ROLES, U12, day

N_SITES, N_STUDENTS, N_STAFF = 40, 4600, 400
GRADES = ["KG"] + [f"{g:02d}" for g in range(1, 13)]
GIVEN = ["Ann", "Bo", "Cy", "Dee", "Eli", "Fay", "Gus", "Hal", "Ivy", "Jo", "Иван", "José", "Zoë", "明"]
FAMILY = ["Lee", "Ng", "Oz", "Petrov", "Петров", "O'Brien", "García-López", "Smith", "Díaz", "王", "Østergaard"]


def generate(tmp):
    rnd = random.Random(16)
    sites = {f"org-{i}": (f"S{i:03d}", f"School {i}") for i in range(N_SITES)}
    people = {}
    for n in range(N_STUDENTS + N_STAFF):
        student = n < N_STUDENTS
        sid = f"u-{n}"
        did = f"{700000 + n:06d}{'s' if student else 'e'}{n % 1000:03d}"
        orgs = rnd.sample(sorted(sites), 2 if rnd.random() < 0.05 else 1)
        people[sid] = {"did": did, "given": rnd.choice(GIVEN), "family": rnd.choice(FAMILY),
                       "kind": "student" if student else "staff", "orgs": orgs,
                       "grade": rnd.choice(GRADES) if student else "",
                       "birth": f"{2008 + n % 10}-{1 + n % 12:02d}-{1 + n % 28:02d}" if student else "",
                       "role": "student" if student else rnd.choice(["teacher", "aide", "principal"])}
    orgs = ["sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId", "org-d,,,District,district,D01,"]
    orgs += [f"{k},,,{name},school,{code},org-d" for k, (code, name) in sites.items()]
    users, roles, demo = [U12], [ROLES], ["sourcedId,status,dateLastModified,birthDate"]
    for sid, p in people.items():
        users.append(f"{sid},,,true,,,{p['given']},\"{p['family']}\",,{p['did']},,,,,{p['grade']},,")
        for i, o in enumerate(p["orgs"]):
            roles.append(f"r-{sid}-{i},,,{sid},{'primary' if i == 0 else 'secondary'},{p['role']},,,{o},")
        if p["birth"]:
            demo.append(f"{sid},,,{p['birth']}")
    man = ["propertyName,value", "manifest.version,1.0", "oneroster.version,1.2", "file.orgs,bulk",
           "file.users,bulk", "file.roles,bulk", "file.demographics,bulk", "file.enrollments,absent"]
    z = tmp / "district.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for name, lines in (("manifest", man), ("orgs", orgs), ("users", users), ("roles", roles),
                            ("demographics", demo)):
            zf.writestr(f"{name}.csv", "\n".join(lines) + "\n")
    return sites, people, z


def check(sync, sites, people):
    """Every site, record, account and group against the file; returns the problems."""
    problems = []
    c = sync.admin()
    c.search(f"ou=sites,{SUFFIX}", "(objectClass=rollcallSite)", attributes=["ou", "rollcallSiteName"],
             paged_size=1000)
    have_sites = {e.ou.value: e.rollcallSiteName.value for e in c.entries}
    for code, name in sites.values():
        if have_sites.get(code) != name:
            problems.append(f"site {code}: {have_sites.get(code)!r} != {name!r}")
    def lists(a):
        return {k: (v if isinstance(v, list) else [v]) for k, v in a.items()}

    recs = {}
    for e in c.extend.standard.paged_search(f"ou=sis,{SUFFIX}", "(objectClass=rollcallSisRecord)",
                                            attributes=["*"], paged_size=1000, generator=True):
        a = lists(e["attributes"])
        recs[a["rollcallSisSourceId"][0]] = a
    accs = {}
    for e in c.extend.standard.paged_search(f"ou=people,{SUFFIX}", "(employeeNumber=7*)", attributes=["*"],
                                            paged_size=1000, generator=True):
        a = lists(e["attributes"])
        accs[a["employeeNumber"][0]] = (e["dn"], a)
    members = {}
    for e in c.extend.standard.paged_search(f"ou=sites,{SUFFIX}", "(objectClass=groupOfNames)",
                                            attributes=["cn", "member"], paged_size=1000, generator=True):
        site = e["dn"].split(",")[1][3:]
        a = lists(e["attributes"])
        members[(site, a["cn"][0])] = {m.lower() for m in a["member"]}
    want_members = {}
    for sid, p in people.items():
        codes = sorted(sites[o][0] for o in p["orgs"])
        r = recs.get(sid)
        if r is None:
            problems.append(f"{sid}: no SIS record")
            continue
        given = " ".join(p["given"].split())
        if r["employeeNumber"][0] != p["did"] or r["givenName"][0] != given or r["sn"][0] != p["family"]:
            problems.append(f"{sid}: record names/ID differ")
        if sorted(r["departmentNumber"]) != codes or r["rollcallEnrollmentStatus"][0] != "ENROLLED":
            problems.append(f"{sid}: record schools/status {r['departmentNumber']} != {codes}")
        if p["kind"] == "student" and (day(r["rollcallBirthDate"]) != p["birth"].replace("-", "")
                                       or r["rollcallGrade"][0] != p["grade"]):
            problems.append(f"{sid}: record birth/grade differ")
        acc = accs.get(p["did"])
        if acc is None:
            problems.append(f"{sid}: no account")
            continue
        dn, a = acc
        if sorted(a["departmentNumber"]) != codes or a["givenName"][0] != given or a["sn"][0] != p["family"]:
            problems.append(f"{sid}: account differs")
        if (p["kind"] == "student") != ("rollcallStudent" in a["objectClass"]):
            problems.append(f"{sid}: account kind")
        if r["rollcallLinkedAccount"][0].lower() != dn.lower():
            problems.append(f"{sid}: record not linked to its account")
        for code in codes:
            want_members.setdefault((code, "students" if p["kind"] == "student" else "staff"), set()).add(dn.lower())
    for key, want in want_members.items():
        if members.get(key, set()) != want:
            problems.append(f"group {key}: {len(members.get(key, set()))} members, want {len(want)}")
    uids = [a["uid"][0] for _dn, a in accs.values()]
    if len(set(uids)) != len(uids):
        problems.append("duplicate usernames")
    c.unbind()
    return problems


def test_generated_district_of_5000(sync, tmp_path):
    sites, people, z = generate(tmp_path)
    sync.sync_cfg["thresholds"] = {"max_deactivations": 10, "max_deactivation_percent": 1}
    sync.write_config()
    t = time.monotonic()
    assert sync("oneroster", z) == 0, sync.last_output
    first = time.monotonic() - t
    problems = check(sync, sites, people)
    print(f"\nfirst run {first:.1f}s")
    assert not problems, problems[:20]
    t = time.monotonic()
    assert sync("oneroster", z) == 0 and sync.report()["counts"] == {}, sync.report()["counts"]
    again = time.monotonic() - t
    print(f"\n5,000-person district: first run {first:.1f}s, re-run {again:.1f}s")
    # ~60 s on an idle 2-core machine; the bound leaves room for a loaded one
    assert first < 150 and again < 10
