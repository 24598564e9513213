"""The web console: school office staff, principals, vendors, requesters and students.

Served by the same Twisted process as the LDAP listeners (`web:` in config.yaml).
Sign-in goes through the server's own bind path (`LDAPServerFactory.authenticate`:
lockout, per-address throttling, audit) with the browser's address; every page then
acts through an LDAP connection to this same server bound as the signed-in person, so
the directory's access rules, overlays and audit log apply exactly as they do to
`ldapmodify` and the `rollcall` commands (the page code reuses directory/admin.py,
directory/photos_client.py and the request workflow). The LDAP calls run in a thread pool,
never on the reactor.

    server.py     twisted.web resource: routing, sessions, CSRF, security headers
    session.py    sessions (idle timeout) and the sign-in throttle
    forms.py      request parsing (url-encoded and multipart), responses
    pages/        the pages, one module per area
    templates/    Jinja2 templates (autoescaped)
"""
