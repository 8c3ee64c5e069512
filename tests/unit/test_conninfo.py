"""Connection parameter helpers: defaults, redaction, descriptions."""

from __future__ import annotations

import re
from typing import Any

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgharbor._conninfo import (
    describe,
    mask_conninfo,
    parse_conninfo,
    redact,
    secrets_in,
    validate_params,
    with_defaults,
)
from pgharbor.errors import ConfigError


def test_tcp_keepalives_and_user_timeout_are_on_by_default() -> None:
    """Unless set, connections get TCP keepalives, tcp_user_timeout and a connect timeout."""
    params = with_defaults({"host": "h"}, connect_timeout=10)
    assert params["keepalives"] == "1" and params["keepalives_idle"] == "30"
    assert params["tcp_user_timeout"] == "30000" and params["connect_timeout"] == "10"


def test_explicit_values_win_over_defaults() -> None:
    """The caller's own values are kept."""
    params = with_defaults(
        {"host": "h", "keepalives_idle": "5", "connect_timeout": "3"}, connect_timeout=10
    )
    assert params["keepalives_idle"] == "5" and params["connect_timeout"] == "3"
    assert with_defaults({}, connect_timeout=0.5)["connect_timeout"] == "2"  # libpq's floor


def test_redact_and_describe_never_show_secrets() -> None:
    """Passwords are removed from URLs, keyword strings and known values."""
    assert "pw" not in redact("postgresql://u:pw@h/db failed")
    assert "s3" not in redact("host=h password='s3 x' dbname=d")
    assert redact("error near hunter2", ["hunter2"]) == "error near ***"
    assert describe({"host": "h", "port": "6", "dbname": "d", "user": "u", "password": "x"}) == (
        "h:6/d as u"
    )


def test_parse_errors_carry_no_context() -> None:
    """A malformed string raises ConfigError with no chained libpq text."""
    with pytest.raises(ConfigError) as info:
        parse_conninfo("postgresql://u:SECRET@[::1/db")
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert "SECRET" not in str(info.value)


# -- passwords written without percent-encoding (issue 11, item 18) -----------------

# Each password holds pieces that must never show anywhere but where it is used.
RAW_PASSWORDS = [
    "Pa@ss W0rdQx",  # '@' and a space: libpq quoted the rest of it in its error
    "Pa@ssW0rd-SecretQx",  # '@': libpq took the rest for the host
    "Ab:Cd@Ef/Gh#Ij Kl%25Mn?Op",  # every special character ('%' written %25)
    "Zy/XwVu@Ts",  # a '/' before the '@'
]


def pieces(password: str) -> list[str]:
    """The runs of ordinary characters in ``password`` (3+ long): none may leak."""
    return [p for p in re.split(r"[^A-Za-z0-9-]", password) if len(p) >= 3]


@pytest.mark.parametrize("password", RAW_PASSWORDS)
def test_the_user_information_ends_at_the_last_at_before_the_host(password: str) -> None:
    """``u:<raw password>@127.0.0.1/db``: the password is everything up to the
    last '@' before the host list; the host, user and dbname are the real ones."""
    url = f"postgresql://alice:{password}@127.0.0.1:5433/orders"
    params = parse_conninfo(url)
    assert params == {
        "user": "alice",
        "password": password.replace("%25", "%"),
        "host": "127.0.0.1",
        "port": "5433",
        "dbname": "orders",
    }
    assert describe(params) == "127.0.0.1:5433/orders as alice"
    for piece in pieces(password):
        assert piece not in describe(params) and piece not in mask_conninfo(url)
    assert mask_conninfo(url) == "postgresql://alice:***@127.0.0.1:5433/orders"
    assert password in secrets_in(url) and password.replace("%25", "%") in secrets_in(url)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # An '@' in the parameters or the user name is not the separator.
        ("postgresql://h/db?application_name=a@b", {"host": "h", "dbname": "db"}),
        ("postgresql://h?application_name=a@b", {"host": "h"}),
        ("postgresql://me@corp:pw@h/db", {"user": "me@corp", "password": "pw", "host": "h"}),
        ("postgresql://u:pw@h/db?options=-c%20x%3Da@b", {"password": "pw", "host": "h"}),
        # Percent-encoded passwords mean what they always meant.
        ("postgresql://u:p%40ss%20w@h/db", {"password": "p@ss w", "host": "h"}),
        ("postgresql://u:pw@[::1]:5/db", {"password": "pw", "host": "::1", "port": "5"}),
        ("postgresql://u:pw@h1:1,h2:2/db", {"host": "h1,h2", "port": "1,2"}),
        ("postgresql://u:@h/db", {"user": "u", "host": "h"}),
        ("postgresql://u:x@h/db?password=y", {"password": "y"}),  # as libpq: the query wins
        ("postgresql:///db", {"dbname": "db"}),
    ],
)
def test_well_formed_urls_parse_as_before(url: str, expected: dict[str, str]) -> None:
    """Other '@'s, encoded passwords, IPv6, host lists and libpq's precedence hold."""
    params = parse_conninfo(url)
    assert {k: params.get(k) for k in expected} == expected
    assert "password" in params or "password" not in expected


@pytest.mark.parametrize(
    ("conninfo", "rule"),
    [
        ("postgresql://u:Pa%zzSecretQx@h/db", "does not start a %XX escape"),
        ("postgresql://u:SecretQx%00@h/db", "holds %00"),
        ("postgresql://u:Pa@ss W0rdQx@[::1/db", 'matching "]"'),
        ("POSTGRESQL://u:Pa@ss W0rdQx@h/db", "starts with postgresql://"),
        ("postgresql://u@h/db?password=Pa&ss W0rdQx", "bad URL parameters"),
        ("host=h password=Pa@ss W0rdQx user=x", "password='...'"),
        ("host=h password='Pa@ss W0rdQx", "unterminated quoted string"),
        ("host=h password=SecretQx sslmode=bogus passwrd=x", 'invalid connection option "passwrd"'),
    ],
)
def test_parse_errors_name_the_rule_and_show_no_piece_of_the_password(
    conninfo: str, rule: str
) -> None:
    """A malformed string's error says what is wrong and quotes no part of the
    password (libpq's own message quoted the rest of an unencoded one)."""
    with pytest.raises(ConfigError) as info:
        parse_conninfo(conninfo, "url")
    text = str(info.value)
    assert info.value.field == "url" and rule in text, text
    for piece in ("SecretQx", "W0rdQx", "ss W0rd"):
        assert piece not in text
    assert "***" not in text or "p" in text.replace("***", "")  # no starred guesses
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_redaction_uses_the_parsed_secret_not_a_guess() -> None:
    """The secret of ``u:p@ss w0rd@h`` is the whole 'p@ss w0rd', not 'p' (a guess
    that starred every 'p' of a message and left the rest of the password)."""
    url = "postgresql://u:p@ss w0rd@h/db"
    assert secrets_in(url) == ["p@ss w0rd"]
    message = "password authentication failed for p@ss w0rd (postgresql is unhappy)"
    assert redact(message, secrets_in(url)) == (
        "password authentication failed for *** (postgresql is unhappy)"
    )
    # The last line of defence in free text takes the userinfo to the last '@'.
    assert redact("connect postgresql://u:Pa@ssW0rdQx@h/db failed") == (
        "connect postgresql://u:***@h/db failed"
    )
    assert secrets_in("host=h password='a b' sslpassword=c\\ d") == ["'a b'", "c\\ d", "a b", "c d"]


def test_masked_urls_hide_query_secrets_too() -> None:
    """mask_conninfo shows everything but the secrets, in the URL's own order."""
    url = "postgresql://u@h/db?sslpassword=Key%20Pass&sslmode=require&password=Pw"
    assert mask_conninfo(url) == "postgresql://u@h/db?sslpassword=***&sslmode=require&password=***"
    assert mask_conninfo("host=h password='a b' user=u") == "host=h password=*** user=u"


# -- validate_params: what Database checks at once, for Pool/AsyncPool too --------------


@pytest.mark.parametrize(
    ("params", "field", "rule"),
    [
        ({"sslmode": "bogus"}, "sslmode", "must be one of disable, allow"),
        ({"target_session_attrs": "any-old"}, "target_session_attrs", "must be one of"),
        ({"port": "99999"}, "port", r"must be an integer in 1\.\.65535, got '99999'"),
        ({"port": 0}, "port", r"must be an integer in 1\.\.65535"),
        ({"host": "a,b", "port": "1,2,3"}, "port", "could not match 3 port numbers to 2 hosts"),
        (
            {"sslmod": "require"},
            "sslmod",
            "not a libpq connection parameter .did you mean 'sslmode'",
        ),
        ({"passwrd": "x"}, "passwrd", "did you mean 'password'"),
        ({"connect_timeout": "1.5"}, "connect_timeout", "must be a whole number"),
        ({"keepalives_idle": 2.5}, "keepalives_idle", "must be a whole number"),
        ({"hostaddr": "db.example"}, "hostaddr", "must be IP addresses"),
        ({"keepalives": True}, "keepalives", "must be text or a number, got bool"),
        ({"user": None}, "user", "must be text or a number, got NoneType"),
        ({"dbname": "a\x00b"}, "dbname", "must not contain NUL"),
        ({1: "x"}, "kwargs", "parameter names must be strings"),
        (["sslmode=require"], "kwargs", "must be a mapping of libpq parameter names"),
        ("sslmode=require", "kwargs", "must be a mapping .*, got str"),
    ],
)
def test_validate_params_names_the_keyword_and_rule(params: Any, field: str, rule: str) -> None:
    """Bad parameters fail at once, naming the keyword (or the argument)."""
    with pytest.raises(ConfigError, match=rule) as info:
        validate_params(params, "kwargs")
    assert info.value.field == field


def test_validate_params_accepts_what_libpq_accepts() -> None:
    """Valid parameters, numbers included, pass; secrets are never quoted."""
    validate_params(
        {
            "host": "h1,h2",
            "port": "5432,",
            "hostaddr": "127.0.0.1,::1",
            "sslmode": "verify-full",
            "connect_timeout": 5,
            "keepalives_idle": " 30 ",
            "password": "p@ss w0rd",
            "application_name": "x",
        }
    )
    validate_params({})
    with pytest.raises(ConfigError) as info:
        validate_params({"password": "Secret-Qx", "sslmode": "Secret-Qx"})
    assert info.value.field == "sslmode"  # the value of a non-secret key is quoted


def test_settings_show_urls_without_any_piece_of_the_password() -> None:
    """DatabaseSettings' repr, masked() and the pool's conninfo show the real host."""
    from pgharbor.config import DatabaseSettings

    db = DatabaseSettings(url="postgresql://alice:Pa@ssW0rd-SecretQx@127.0.0.1/orders")
    kwargs = db.pool_kwargs()
    shown = [repr(db), str(db), str(db.masked()), kwargs["conninfo"], db.model_dump_json()]
    for text in shown:
        assert "SecretQx" not in text and "ssW0rd" not in text, text
    assert "postgresql://alice:***@127.0.0.1/orders" in repr(db)
    assert kwargs["password"] == "Pa@ssW0rd-SecretQx"
    assert conninfo_to_dict(kwargs["conninfo"])["host"] == "127.0.0.1"
