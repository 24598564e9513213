"""Run by tests/clients/test_django_auth_ldap.py in its own process (Django's settings
are per process): contrib's settings with the test server's URI, CA and password, then
authenticate() each "uid:password" argument; prints one JSON line per login."""
import json
import runpy
import sys

import django
import ldap
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.management import call_command


def main(snippet, uri, cacert, bind_pw, *logins):
    ns = runpy.run_path(snippet)
    conf = {k: v for k, v in ns.items() if k.isupper()}
    conf["AUTH_LDAP_SERVER_URI"], conf["AUTH_LDAP_BIND_PASSWORD"] = uri, bind_pw
    conf["AUTH_LDAP_GLOBAL_OPTIONS"][ldap.OPT_X_TLS_CACERTFILE] = cacert
    settings.configure(INSTALLED_APPS=["django.contrib.auth", "django.contrib.contenttypes"],
                       DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
                       USE_TZ=True, **conf)
    django.setup()
    call_command("migrate", verbosity=0)
    for item in logins:
        uid, pw = item.split(":", 1)
        user = authenticate(username=uid, password=pw)
        print(json.dumps(None if user is None else {"username": user.username, "email": user.email,
                                                     "last_name": user.last_name, "is_staff": user.is_staff}))


if __name__ == "__main__":
    main(*sys.argv[1:])
