"""django-auth-ldap settings for a district web application (add to settings.py).
Search the person with a read-only service account, then bind as the person over
STARTTLS to check the password (no service may read password hashes). Tested by
tests/clients/test_django_auth_ldap.py, which replaces only AUTH_LDAP_SERVER_URI,
the CA file and AUTH_LDAP_BIND_PASSWORD."""
import ldap
from django_auth_ldap.config import GroupOfNamesType, LDAPSearch

AUTHENTICATION_BACKENDS = ["django_auth_ldap.backend.LDAPBackend"]

AUTH_LDAP_SERVER_URI = "ldap://ldap.district.example"
AUTH_LDAP_START_TLS = True
AUTH_LDAP_GLOBAL_OPTIONS = {
    ldap.OPT_PROTOCOL_VERSION: 3,
    ldap.OPT_X_TLS_REQUIRE_CERT: ldap.OPT_X_TLS_DEMAND,
    ldap.OPT_X_TLS_CACERTFILE: "/etc/ssl/certs/district-ldap.pem",
}
AUTH_LDAP_BIND_DN = "cn=sso-portal,ou=services,dc=district,dc=example"
AUTH_LDAP_BIND_PASSWORD = "CHANGE-ME"

# people only, not service accounts; DISABLED and PENDING accounts cannot bind
AUTH_LDAP_USER_SEARCH = LDAPSearch("ou=people,dc=district,dc=example", ldap.SCOPE_SUBTREE,
                                   "(&(objectClass=inetOrgPerson)(uid=%(user)s))")
AUTH_LDAP_USER_ATTR_MAP = {"first_name": "givenName", "last_name": "sn", "email": "mail"}

# site role groups: groupOfNames with member DNs below ou=sites
AUTH_LDAP_GROUP_SEARCH = LDAPSearch("ou=sites,dc=district,dc=example", ldap.SCOPE_SUBTREE,
                                    "(objectClass=groupOfNames)")
AUTH_LDAP_GROUP_TYPE = GroupOfNamesType(name_attr="cn")
AUTH_LDAP_USER_FLAGS_BY_GROUP = {"is_staff": "cn=principals,ou=1111,ou=sites,dc=district,dc=example"}
# every login reads the person afresh (a DISABLED account is refused at once)
AUTH_LDAP_CACHE_TIMEOUT = 0
