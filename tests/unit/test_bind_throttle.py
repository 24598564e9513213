"""The password policy's decisions about failed binds (core/ppolicy.py): per account,
per (address, account), per unknown address; trusted front ends and service accounts
exempt from the address limit; a service account's correct password from a trusted
front end never refused, nor locked by failures."""
import copy

import pytest
import yaml

from directory.config import ConfigError, load_config
from directory.core.errors import LDAPError, ResultCode
from directory.core.ppolicy import PAIR_BLOCKED, SOURCE_BLOCKED, PasswordPolicy, PolicyConfig, source_key
from directory.store.sqlite import SQLiteStore
from tests.conftest import ROOT

SUFFIX = "dc=district,dc=example"
SERVICES = f"ou=services,{SUFFIX}"
SSO = "10.0.0.5"  # the SSO front end (trusted)
SSO_ACCOUNT = f"cn=sso-portal,{SERVICES}"
ROOT_NDN = f"cn=admin,{SUFFIX}"


def student(n):
    return f"uid=s{n},ou=students,ou=people,{SUFFIX}"


def policy(store=None, **cfg):
    cfg = {"source_max_failures": 50, "source_window": 60, "source_account_max_failures": 5,
           "source_account_window": 300, "trusted_sources": ["10.0.0.5", "192.0.2.0/28", "2001:db8:5::/48"], **cfg}
    return PasswordPolicy(PolicyConfig(**cfg), store, services_ndn=SERVICES, root_ndn=ROOT_NDN)


def attempt(p, host, ndn, now=None):
    """bind_attempt as the listener calls it: the refusal message or the attempt."""
    try:
        return p.bind_attempt(host, ndn, p.is_service(ndn), now)
    except LDAPError as exc:
        assert exc.code == ResultCode.UNWILLING_TO_PERFORM
        return exc.message


def fail(p, host, ndn, now=None):
    a = attempt(p, host, ndn, now)
    assert not isinstance(a, str), a
    p.bind_failed(a, now)
    return a


def admitted(p, host, ndn, now=None) -> bool:
    return not isinstance(attempt(p, host, ndn, now), str)


def test_fifty_students_through_the_trusted_front_end_block_nobody():
    p = policy()
    for n in range(50):
        fail(p, SSO, student(n))
    # the service account, and every other student, still bind through the SSO
    assert admitted(p, SSO, SSO_ACCOUNT)
    assert admitted(p, SSO, student(99)) and admitted(p, SSO, student(0))
    for _ in range(200):
        fail(p, SSO, student(1000 + _))
    assert admitted(p, SSO, SSO_ACCOUNT) and admitted(p, SSO, student(99))


def test_an_unknown_address_is_still_limited_but_not_for_service_accounts():
    p = policy()
    for n in range(49):
        fail(p, "10.9.9.9", student(n))
    assert admitted(p, "10.9.9.9", student(99))
    fail(p, "10.9.9.9", student(49))
    assert attempt(p, "10.9.9.9", student(99)) == SOURCE_BLOCKED
    assert attempt(p, "10.9.9.9", student(0)) == SOURCE_BLOCKED
    # a service account's correct password is not refused by the address limit
    assert admitted(p, "10.9.9.9", SSO_ACCOUNT)
    # and neither the front end nor another address is affected
    assert admitted(p, SSO, student(99)) and admitted(p, "10.9.9.8", student(99))


def test_the_address_window_passes():
    p = policy(source_max_failures=3, source_window=60)
    for n in range(3):
        fail(p, "10.9.9.9", student(n), now=1000.0 + n)
    assert attempt(p, "10.9.9.9", student(7), now=1010.0) == SOURCE_BLOCKED
    assert admitted(p, "10.9.9.9", student(7), now=1063.0)


def test_the_pair_counter_trips_for_that_account_from_that_address_only():
    p = policy(max_failures=0)  # no lockout: the pair limit guards every account
    for _ in range(4):
        fail(p, "10.9.9.9", student(1))
    assert admitted(p, "10.9.9.9", student(1))
    fail(p, "10.9.9.9", student(1))
    assert attempt(p, "10.9.9.9", student(1)) == PAIR_BLOCKED
    assert admitted(p, "10.9.9.9", student(2))  # another account from there
    assert admitted(p, "10.9.9.8", student(1))  # that account from elsewhere
    assert admitted(p, SSO, student(1))


def test_the_pair_counter_holds_behind_the_front_end_for_ordinary_accounts():
    # (with the ppolicy lockout off, it is the only limit on guessing one account)
    p = policy(max_failures=0)
    for _ in range(5):
        fail(p, SSO, student(1))
    assert attempt(p, SSO, student(1)) == PAIR_BLOCKED
    assert admitted(p, SSO, student(2)) and admitted(p, SSO, SSO_ACCOUNT)


def test_service_accounts_from_a_trusted_front_end_are_never_refused_nor_locked():
    p = policy()
    for _ in range(100):
        a = fail(p, SSO, SSO_ACCOUNT)
        assert not p.records_failures(a)  # no pwdFailureTime, no lockout in the entry
    assert admitted(p, SSO, SSO_ACCOUNT)
    assert not p.records_failures(attempt(p, "10.9.9.9", SSO_ACCOUNT))
    assert p.records_failures(attempt(p, SSO, student(1)))


def test_guesses_at_a_service_account_from_an_unknown_address_are_limited_per_address():
    p = policy()
    for _ in range(5):
        fail(p, "10.9.9.9", SSO_ACCOUNT)
    assert attempt(p, "10.9.9.9", SSO_ACCOUNT) == PAIR_BLOCKED
    # the attacker's address only: the front end and other addresses still bind
    assert admitted(p, SSO, SSO_ACCOUNT) and admitted(p, "10.9.9.8", SSO_ACCOUNT)
    # the failures against the service account count toward the address too
    for n in range(45):
        fail(p, "10.9.9.9", student(n))
    assert attempt(p, "10.9.9.9", student(99)) == SOURCE_BLOCKED


def test_the_root_dn_and_unknown_service_names_have_the_pair_limit():
    p = policy()
    for _ in range(5):
        fail(p, SSO, ROOT_NDN)  # the root DN: also from a trusted front end
    assert attempt(p, SSO, ROOT_NDN) == PAIR_BLOCKED
    # by name, not by entry: a name below ou=services that does not exist answers alike
    ghost = f"cn=ghost,{SERVICES}"
    assert p.is_service(ghost) and p.is_service(SSO_ACCOUNT) and not p.is_service(SERVICES)
    for _ in range(5):
        fail(p, "10.9.9.9", ghost)
    assert attempt(p, "10.9.9.9", ghost) == PAIR_BLOCKED


def test_accounts_a_lockout_guards_have_no_pair_limit():
    # the lockout limits guesses already; an administrator's unlock takes effect at once,
    # and a name that does not exist answers the same as one that does
    p = policy(max_failures=3)
    for _ in range(20):
        fail(p, SSO, student(1))
        fail(p, "10.9.9.9", student(1))
        fail(p, "10.9.9.9", f"uid=nobody,ou=students,ou=people,{SUFFIX}")
    assert admitted(p, SSO, student(1)) and admitted(p, "10.9.9.9", student(1))
    assert admitted(p, "10.9.9.9", f"uid=nobody,ou=students,ou=people,{SUFFIX}")


def test_a_success_clears_the_pair_counter():
    p = policy(max_failures=0)
    for _ in range(4):
        fail(p, SSO, student(1))
    p.bind_succeeded(attempt(p, SSO, student(1)))
    for _ in range(4):
        fail(p, SSO, student(1))
    assert admitted(p, SSO, student(1))


def test_trusted_sources_match_addresses_and_networks():
    p = policy()
    assert p.trusted("10.0.0.5") and p.trusted("192.0.2.15") and not p.trusted("192.0.2.16")
    assert p.trusted("::ffff:10.0.0.5")  # IPv4-mapped
    assert p.trusted("2001:db8:5:1::7") and not p.trusted("2001:db8:6::7")
    assert not p.trusted("") and not p.trusted("not-an-address")
    assert not policy(trusted_sources=[]).trusted("10.0.0.5")


def test_ipv6_sources_are_counted_per_64():
    assert source_key("2001:db8:1:2:aaaa::1") == source_key("2001:db8:1:2:bbbb::9") == "2001:db8:1:2::/64"
    assert source_key("::ffff:10.1.2.3") == "10.1.2.3"
    p = policy(source_max_failures=3)
    for n in range(3):
        fail(p, f"2001:db8:1:2::{n + 1}", student(n))
    assert attempt(p, "2001:db8:1:2:ffff::1", student(9)) == SOURCE_BLOCKED
    assert admitted(p, "2001:db8:1:3::1", student(9))


def test_zero_turns_a_limit_off():
    p = policy(source_max_failures=0, source_account_max_failures=0)
    for _ in range(100):
        fail(p, "10.9.9.9", student(1))
    assert admitted(p, "10.9.9.9", student(1))


def test_workers_over_one_store_share_the_pair_and_address_counts(tmp_path):
    one = policy(SQLiteStore(tmp_path / "s.db"))
    two = policy(SQLiteStore(tmp_path / "s.db"))  # another worker process's policy
    for _ in range(3):
        fail(one, "10.9.9.9", SSO_ACCOUNT)
        fail(two, "10.9.9.9", student(1))
    for _ in range(2):
        fail(two, "10.9.9.9", SSO_ACCOUNT)
    assert attempt(one, "10.9.9.9", SSO_ACCOUNT) == PAIR_BLOCKED
    assert admitted(one, SSO, SSO_ACCOUNT)


def _doc(**policy_keys):
    doc = yaml.safe_load((ROOT / "config.yaml").read_text())
    doc["schema"] = [str(ROOT / p) for p in doc["schema"]]
    doc["password_policy"] = {**copy.deepcopy(doc.get("password_policy") or {}), **policy_keys}
    return doc


def test_config_keys_defaults_and_errors(tmp_path):
    path = tmp_path / "config.yaml"
    doc = _doc()
    for key in ("trusted_sources", "source_account_max_failures", "source_account_window"):
        doc["password_policy"].pop(key, None)
    path.write_text(yaml.safe_dump(doc))
    pp = load_config(path).sections["password_policy"]
    assert pp["trusted_sources"] == [] and pp["source_account_max_failures"] == 5
    assert pp["source_account_window"] == 300 and pp["source_max_failures"] == 50
    path.write_text(yaml.safe_dump(_doc(trusted_sources=["10.0.0.5", "2001:db8::/32"])))
    assert load_config(path).sections["password_policy"]["trusted_sources"] == ["10.0.0.5", "2001:db8::/32"]
    path.write_text(yaml.safe_dump(_doc(trusted_sources=["10.0.0.5", "sso.district.example"])))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.key == "password_policy.trusted_sources[1]" and "CIDR" in exc.value.reason
    path.write_text(yaml.safe_dump(_doc(trusted_sources="10.0.0.5")))
    with pytest.raises(ConfigError, match="password_policy.trusted_sources"):
        load_config(path)


def test_a_long_name_is_counted_under_its_digest():
    p = policy(max_failures=0)
    long_dn = "cn=" + "x" * 5000 + f",{SUFFIX}"
    for _ in range(5):
        a = fail(p, "10.9.9.9", long_dn)
        assert all(len(key) < 400 for key, _ in a.keys)
    assert attempt(p, "10.9.9.9", long_dn) == PAIR_BLOCKED
    assert admitted(p, "10.9.9.9", "cn=" + "y" * 5000 + f",{SUFFIX}")
