"""The school district's rules, written once.

Imported by the core (the server's business rules), by the sync jobs, by the
command line and by the web console; it imports nothing from any of them (only the
standard library, and Pillow in `photos` when a photo is checked):

    ids        the district ID syntax (employeeNumber: 6 digits, a letter or digit, 3 digits)
    usernames  the username policy: pattern check, base name, candidates (jsmith, jsmith2 …)
    statuses   account statuses (rollcallAccountStatus) and enrollment statuses
    gentime    generalized time (RFC 4517), as the directory writes and reads it
    grades     grade levels the sync accepts, and those provisioned by default
    photos     the ID-card photo rules (JPEG, 15-30 KB, 175x233 or larger at 3:4)
    display    how records read for people: "Lincoln Elementary (1234)", names instead
               of DNs, local dates, reason and role labels, plain reasons
"""
