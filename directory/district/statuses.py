"""Statuses the district's records carry.

rollcallAccountStatus (an account; see directory/core/accounts.py for the transitions):
    ENABLED, DISABLED, PENDING (created, not yet activated by its holder)
rollcallEnrollmentStatus (a person in the SIS/HR feeds): ENROLLMENT_ACTIVE + ENROLLMENT_ENDED
"""
ENABLED = "ENABLED"
DISABLED = "DISABLED"
PENDING = "PENDING"
ACCOUNT_STATUSES = (ENABLED, DISABLED, PENDING)
DEFAULT_ACCOUNT_STATUS = ENABLED  # an account without rollcallAccountStatus

ENROLLMENT_ACTIVE = ("ENROLLED", "PRE_ENROLLED")
ENROLLMENT_ENDED = ("WITHDRAWN", "GRADUATED", "TRANSFERRED", "INACTIVE")
ENROLLMENT_STATUSES = ENROLLMENT_ACTIVE + ENROLLMENT_ENDED
