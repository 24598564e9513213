"""A small demo directory for `scripts/serve`'s first start, with printed credentials."""

DEMO_USERS = [
    # uid, given name, surname, district id, school code, password
    ("jsmith", "John", "Smith", "000001s001", "1234", "demo-student-pw"),
    ("mgarcia", "María", "García", "000002s002", "1234", "demo-student-pw"),
    ("akim", "Anna", "Kim", "000003s003", "5678", "demo-student-pw"),
]
DEMO_STAFF = [("pprincipal", "Pat", "Principal", "100001e001", "1234", "demo-staff-pw")]


def demo_ldif(suffix: str) -> str:
    top = suffix.split(",")[0].split("=", 1)[1]
    out = [f"dn: {suffix}\nobjectClass: top\nobjectClass: dcObject\nobjectClass: organization\n"
           f"dc: {top}\no: Demo School District\n"]
    for ou in ("people", "sites", "groups", "services", "sis", "requests"):
        out.append(f"dn: ou={ou},{suffix}\nobjectClass: organizationalUnit\nou: {ou}\n")
    for ou in ("students", "staff", "nonemployees"):
        out.append(f"dn: ou={ou},ou=people,{suffix}\nobjectClass: organizationalUnit\nou: {ou}\n")
    for branch, people, affiliation in (("students", DEMO_USERS, "student"), ("staff", DEMO_STAFF, "staff")):
        for uid, given, sn, district_id, school, pw in people:
            out.append(
                f"dn: uid={uid},ou={branch},ou=people,{suffix}\n"
                "objectClass: inetOrgPerson\nobjectClass: eduPerson\n"
                f"uid: {uid}\ncn: {given} {sn}\ngivenName: {given}\nsn: {sn}\n"
                f"mail: {uid}@district.example\nemployeeNumber: {district_id}\ndepartmentNumber: {school}\n"
                f"eduPersonAffiliation: {affiliation}\nuserPassword: {pw}\n"
            )
    return "\n".join(out)


def credentials(suffix: str) -> list:
    rows = [(f"uid={u},ou=students,ou=people,{suffix}", p) for u, *_, p in DEMO_USERS]
    rows += [(f"uid={u},ou=staff,ou=people,{suffix}", p) for u, *_, p in DEMO_STAFF]
    return rows
