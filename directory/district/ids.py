"""The district ID (employeeNumber): six digits, a letter or digit, three digits
(e.g. 000123s045). The one definition of its syntax."""
import re

DISTRICT_ID_PATTERN = r"[0-9]{6}[0-9A-Za-z][0-9]{3}"
DISTRICT_ID = re.compile(rf"^{DISTRICT_ID_PATTERN}$")


def is_district_id(text: str) -> bool:
    return DISTRICT_ID.match(text) is not None
