"""LDAP result codes (RFC 4511 appendix A) and the one exception the core raises.

Every refusal in the core is an LDAPError carrying the result code, the diagnostic
message and, for noSuchObject, the matched DN, so each front end (LDAP, CLI, web)
reports the same thing.
"""


class ResultCode:
    SUCCESS = 0
    OPERATIONS_ERROR = 1
    PROTOCOL_ERROR = 2
    TIME_LIMIT_EXCEEDED = 3
    SIZE_LIMIT_EXCEEDED = 4
    COMPARE_FALSE = 5
    COMPARE_TRUE = 6
    AUTH_METHOD_NOT_SUPPORTED = 7
    STRONGER_AUTH_REQUIRED = 8
    ADMIN_LIMIT_EXCEEDED = 11
    UNAVAILABLE_CRITICAL_EXTENSION = 12
    CONFIDENTIALITY_REQUIRED = 13
    NO_SUCH_ATTRIBUTE = 16
    UNDEFINED_ATTRIBUTE_TYPE = 17
    INAPPROPRIATE_MATCHING = 18
    CONSTRAINT_VIOLATION = 19
    ATTRIBUTE_OR_VALUE_EXISTS = 20
    INVALID_ATTRIBUTE_SYNTAX = 21
    NO_SUCH_OBJECT = 32
    INVALID_DN_SYNTAX = 34
    INAPPROPRIATE_AUTHENTICATION = 48
    INVALID_CREDENTIALS = 49
    INSUFFICIENT_ACCESS_RIGHTS = 50
    BUSY = 51
    UNAVAILABLE = 52
    UNWILLING_TO_PERFORM = 53
    NAMING_VIOLATION = 64
    OBJECT_CLASS_VIOLATION = 65
    NOT_ALLOWED_ON_NON_LEAF = 66
    NOT_ALLOWED_ON_RDN = 67
    ENTRY_ALREADY_EXISTS = 68
    OBJECT_CLASS_MODS_PROHIBITED = 69
    AFFECTS_MULTIPLE_DSAS = 71
    OTHER = 80
    # RFC 4528 assertion control
    ASSERTION_FAILED = 122
    # RFC 3909 cancel (not implemented, listed for completeness)
    CANCELED = 118


_NAMES = {v: k.lower() for k, v in vars(ResultCode).items() if isinstance(v, int)}


def result_name(code: int) -> str:
    """camelCase-ish name for messages and logs, e.g. 32 -> 'no_such_object'."""
    return _NAMES.get(code, str(code))


class LDAPError(Exception):
    """A refusal with an LDAP result code; safe to show to the client."""

    def __init__(self, code: int, message: str = "", matched_dn: str = ""):
        super().__init__(message or result_name(code))
        self.code = code
        self.message = message
        self.matched_dn = matched_dn

    def __repr__(self):
        return f"LDAPError({result_name(self.code)}, {self.message!r})"
