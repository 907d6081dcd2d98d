"""Permission rules: deny by default, strict folder boundaries, listing walk-down, token subsets."""

import pytest

from s3gate.auth.rules import Rule, RuleError, grants, normalize_prefix, parse_actions, parse_target, subset
from s3gate.errors import NotFound


def R(text: str) -> Rule:
    return Rule.parse(text)


def test_prefix_without_slash_is_a_folder():
    assert normalize_prefix("docs") == "docs/"
    assert normalize_prefix("/docs/") == "docs/"
    assert normalize_prefix("") == ""
    assert normalize_prefix("//Xrays") == "Xrays/"  # only slashes are stripped
    assert parse_target("files/docs") == ("files", "docs/")
    assert parse_target("files") == ("files", "")
    assert R("files/docs:read") == R("files/docs/:read")


@pytest.mark.parametrize("bad", ["files/../x", "files/a//b", "Files", "a", "files/./x"])
def test_bad_targets_are_refused(bad):
    with pytest.raises(RuleError):
        parse_target(bad)


def test_rules_parse():
    assert R("files/a:b:read") == Rule("files", "a:b/", frozenset({"read"}))  # the last ':' ends the target
    assert str(R("files/docs:rwld")) == "files/docs/:all" and str(R("files:list,read")) == "files:read,list"
    with pytest.raises(RuleError, match="expected BUCKET"):
        R("files-read")


def test_actions_parse():
    assert parse_actions("all") == {"read", "list", "write", "delete"}
    assert parse_actions("read,list") == {"read", "list"}
    assert parse_actions("rl") == {"read", "list"}
    assert parse_actions("read+list") == {"read", "list"}
    assert parse_actions("*") == parse_actions("rwld") == parse_actions("all")
    with pytest.raises(RuleError):
        parse_actions("read,fly")
    with pytest.raises(RuleError):
        parse_actions("")


def test_deny_by_default():
    assert not grants([], "read", "files", "a.txt")
    assert not grants([R("files:read")], "write", "files", "a.txt")
    assert not grants([R("files:read")], "read", "other", "a.txt")


@pytest.mark.parametrize(
    "key, ok",
    [
        ("docs/a.txt", True),
        ("docs/sub/b.txt", True),
        ("docs-private/a.txt", False),
        ("docsx", False),
        ("docs", False),  # an object literally named "docs" is not inside the folder
        ("other/docs/a.txt", False),
        ("docs/../secret.txt", False),  # stores that resolve '..' would escape the folder
        ("/docs/a.txt", False),
    ],
)
def test_strict_prefix_boundary(key, ok):
    for rule in (R("files/docs:read"), R("files/docs/:read")):
        assert grants([rule], "read", "files", key) is ok


def test_whole_bucket_and_every_bucket():
    assert grants([R("files:read")], "read", "files", "any/thing")
    assert grants([R("files:read")], "read", "files", "weird/../x")  # whole bucket: nothing to escape
    assert grants([R("*:read")], "read", "photos", "x.jpg")
    assert grants([R("*/pub:read")], "read", "photos", "pub/x.jpg")
    assert not grants([R("*/pub:read")], "read", "photos", "private/x.jpg")


def test_listing_walks_down_to_a_granted_folder():
    rules = [R("files/docs/a:list")]
    assert grants(rules, "list", "files", "")  # the bucket root may be opened...
    assert grants(rules, "list", "files", "docs/")
    assert grants(rules, "list", "files", "docs/a/")
    assert grants(rules, "list", "files", "docs/a/deeper/")
    assert not grants(rules, "list", "files", "docs/b/")  # ...but not a sibling
    assert not grants(rules, "list", "files", "docs-private/")
    assert not grants(rules, "list", "files", "docs/readme.txt")  # objects outside the grant stay hidden
    assert grants(rules, "list", "files", "docs/a/x.txt")
    assert not grants(rules, "list", "other", "")
    assert not grants(rules, "read", "files", "docs/")  # walk-down is for listing only
    # a folder with '..' in it may resolve anywhere on some stores: only a whole-bucket rule lists it
    assert not grants(rules, "list", "files", "docs/a/../../secret/")
    assert grants([R("files:list")], "list", "files", "docs/a/../../secret/")
    # the walk-down is for listing only: every other action on a parent folder's key stays refused
    everything_in_a = [R("files/docs/a:all")]
    for action in ("read", "write", "delete"):
        assert not grants(everything_in_a, action, "files", "docs/")
        assert not grants(everything_in_a, action, "files", "")
        assert grants(everything_in_a, action, "files", "docs/a/")


async def test_revoking_a_right_the_user_lacks_names_the_rights_they_have(service):
    await service.add_user("alice", "correct horse battery")
    with pytest.raises(NotFound, match=r"\(rules: none\)"):
        await service.revoke("alice", R("files/docs:read"))
    await service.grant("alice", R("files/docs:read"))
    await service.grant("alice", R("photos:list"))
    with pytest.raises(NotFound, match=r"no such right on files/docs/ \(rules: files/docs/:read, photos:list\)"):
        await service.revoke("alice", R("files/docs:write"))
    with pytest.raises(NotFound, match="no such right on files/other/"):
        await service.revoke("alice", R("files/other:read"))
    assert await service.revoke("alice", R("files/docs:read")) is None  # its only action: the rule is gone
    await service.grant("alice", R("files/docs:read,list"))
    assert await service.revoke("alice", R("files/docs:read")) == R("files/docs:list")  # what is left


async def test_the_public_pseudo_user_is_no_admin(service):
    await service.grant("*", R("files/pub:read"))  # creates the '*' user that holds public rules
    assert (await service.store.get_user("*")).admin is False


async def test_a_public_grant_racing_another_worker(service, monkeypatch):
    """Another worker created '*' between our lookup and our insert: ours fails, the lookup again finds it."""
    await service.grant("*", R("files/pub:read"))
    looked_up, real = [], service.store.get_user

    async def missed_once(name):
        looked_up.append(name)
        return None if len(looked_up) == 1 else await real(name)

    monkeypatch.setattr(service.store, "get_user", missed_once)
    await service.grant("*", R("files/more:read"))
    assert looked_up == ["*", "*"]
    assert R("files/more:read") in await service.public_rules()


def test_subset_for_token_scopes():
    owner = [R("files/docs:read,list,write"), R("photos:read")]
    assert subset([R("files/docs/2024:read")], owner) == []
    assert subset([R("files/docs:read,write")], owner) == []
    assert subset([R("photos/x:read")], owner) == []
    assert subset([R("files/docs:delete")], owner) == ["files/docs/:delete"]
    assert subset([R("files:read")], owner) == ["files:read"]  # wider than the folder
    assert subset([R("files/docs-private:read")], owner) == ["files/docs-private/:read"]
    assert subset([R("*:read")], owner) == ["*:read"]
    assert subset([R("anything:read")], [R("*:all")]) == []
