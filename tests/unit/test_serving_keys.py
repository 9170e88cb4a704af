"""API keys in a SQLite workspace: hashed, verified once, revocable, scoped, rate-limited."""

from __future__ import annotations

from pathlib import Path

import pytest

from conveyor import Workspace
from conveyor.core.errors import AuthError, ServerBusyError, ServingError
from conveyor.serving.keys import KeyChecker, Keys, token_of


@pytest.fixture
def keys(tmp_path: Path) -> Keys:
    return Keys(Workspace.init(tmp_path / "ws").meta)


def test_a_new_key_verifies_and_is_then_cached(keys: Keys) -> None:
    new = keys.create("app", "predict")
    checker = KeyChecker(keys)
    assert checker.cached(new.secret) is None
    key = checker.verify(new.secret)
    assert key.id == new.key.id and key.allows("predict") and not key.allows("admin")
    assert checker.cached(new.secret) == key


def test_wrong_secrets_and_unknown_keys_are_refused(keys: Keys) -> None:
    new = keys.create("app")
    checker = KeyChecker(keys)
    prefix = new.secret.rsplit("_", 1)[0]
    for token in (
        new.secret[:-1] + ("A" if new.secret[-1] != "A" else "B"),
        prefix + "_" + "x" * 43,
        "cvk_000000000000_" + "y" * 43,
        "nonsense",
    ):
        with pytest.raises(AuthError, match="unknown API key"):
            checker.verify(token)


def test_revocation_reaches_a_running_checker_on_refresh(keys: Keys) -> None:
    new = keys.create("app")
    checker = KeyChecker(keys)
    checker.verify(new.secret)
    keys.revoke(new.key.id)
    assert checker.cached(new.secret) is not None  # until the next reload
    checker.refresh()
    with pytest.raises(AuthError, match="revoked"):
        checker.cached(new.secret)
    assert [k.revoked_at is not None for k in keys.list()] == [True]
    assert not keys.any_active()


def test_admin_keys_allow_everything_and_scopes_are_checked(keys: Keys) -> None:
    admin = keys.create("ops", "admin")
    assert admin.key.allows("predict") and admin.key.allows("admin")
    with pytest.raises(ServingError, match="scope"):
        keys.create("x", "root")
    with pytest.raises(ServingError, match="no API key"):
        keys.revoke("missing")


def test_a_rate_limit_refuses_the_burst_with_a_retry_time(keys: Keys) -> None:
    new = keys.create("job", rate_limit=2)
    checker = KeyChecker(keys)
    key = checker.verify(new.secret)
    checker.spend(key)
    checker.spend(key)
    with pytest.raises(ServerBusyError) as refused:
        checker.spend(key)
    assert refused.value.status == 429 and 0 < refused.value.retry_after <= 1


def test_tokens_come_from_either_header() -> None:
    assert token_of("Bearer abc", None) == "abc"
    assert token_of("bearer  abc ", None) == "abc"
    assert token_of(None, "xyz") == "xyz"
    assert token_of("Basic abc", None) is None
