"""The Redis key builder: names never collide, and a queue's keys share one hash slot."""

from __future__ import annotations

import itertools
import re

import pytest

from tidings.storage.redis.keys import QUEUE_KINDS, SOURCE_KINDS, KeySpace, slot_id, split_slot_id

# Pairs that Zaqar's "<project>.<queue>" naming (or a naive ":" join) would merge.
LOOK_ALIKES = [
    ("a.b", "c"),
    ("a", "b.c"),
    ("a:b", "c"),
    ("a", "b:c"),
    ("1:a", "b"),
    ("1", "a:b"),
    ("", "a"),
    ("p", "q"),
    ("p{x}", "q"),
    ("é", "q"),  # 2 bytes, 1 character
    ("ee", "q"),
    ("a" * 256, "q"),
]


def hash_tag(key: str) -> str:
    """The part Redis Cluster hashes: between the first "{" and the next "}", if not empty."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


def test_slot_ids_are_injective() -> None:
    ids = [slot_id(project, name) for project, name in LOOK_ALIKES]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize(("project", "name"), LOOK_ALIKES)
def test_split_slot_id_round_trips(project: str, name: str) -> None:
    assert split_slot_id(slot_id(project, name)) == (project, name)


@pytest.mark.parametrize(
    "text",
    ["", "abc", ":a:b", "x:a:b", "-1:a:b", "3:ab", "3:abcd", "1:é:q", "9:short:q", "1:a"],
)
def test_split_slot_id_refuses_what_is_not_one(text: str) -> None:
    with pytest.raises(ValueError, match="not a slot id"):
        split_slot_id(text)


def test_length_prefix_counts_bytes_not_characters() -> None:
    assert slot_id("é", "q") == "2:é:q"
    assert split_slot_id("2:é:q") == ("é", "q")


def test_every_key_of_distinct_queues_differs() -> None:
    space = KeySpace("t")
    keys = [
        key
        for project, name in LOOK_ALIKES
        for key in space.queue(project, name) + space.source(project, name)
    ]
    assert len(set(keys)) == len(keys)


@pytest.mark.parametrize(("project", "name"), LOOK_ALIKES)
def test_a_queue_and_its_source_share_one_hash_tag(project: str, name: str) -> None:
    space = KeySpace("t")
    tags = {hash_tag(k) for k in space.queue(project, name) + space.source(project, name)}
    assert len(tags) == 1
    (tag,) = tags
    assert re.fullmatch(r"[0-9a-f]+", tag)  # braces in a project cannot end it early


def test_distinct_queues_get_distinct_tags() -> None:
    space = KeySpace("t")
    tags = {hash_tag(space.queue(p, n)[0]) for p, n in LOOK_ALIKES}
    assert len(tags) == len(LOOK_ALIKES)


def test_keys_follow_the_kind_order() -> None:
    space = KeySpace("t")
    queue, source = space.queue("p", "q"), space.source("p", "q")
    assert len(queue) == len(QUEUE_KINDS) and len(source) == len(SOURCE_KINDS)
    assert [k.rsplit(":", 1)[1] for k in queue] == list(QUEUE_KINDS)
    assert [k.rsplit(":", 1)[1] for k in source] == list(SOURCE_KINDS)
    assert QUEUE_KINDS[-1] == "quarantine"  # the Lua prelude finds it last
    assert space.source_of(slot_id("p", "q")) == source
    assert not set(QUEUE_KINDS) & set(SOURCE_KINDS)


def test_catalog_keys_share_a_tag_per_project_and_differ_across_projects() -> None:
    space = KeySpace("t")
    for a, b in itertools.combinations(["a", "a.b", "a:b", "1:a", "é", "ee"], 2):
        assert len({hash_tag(k) for k in space.catalog(a)}) == 1
        assert set(space.catalog(a)).isdisjoint(space.catalog(b))
        assert hash_tag(space.catalog(a)[0]) != hash_tag(space.catalog(b)[0])


def test_outbox_index_keys_share_one_tag() -> None:
    space = KeySpace("t")
    tags = {hash_tag(space.outbox_projects), hash_tag(space.outbox_sources("a")),
            hash_tag(space.outbox_sources("a:b"))}
    assert tags == {"outbox"}
    assert space.outbox_sources("1:a") != space.outbox_sources("1")


@pytest.mark.parametrize("prefix", ["tidings", "t", "a:b", "x.y-z"])
def test_every_key_lives_under_the_prefix(prefix: str) -> None:
    space = KeySpace(prefix)
    keys = [*space.queue("p", "q"), *space.source("p", "q"), *space.catalog("p"),
            space.projects, space.sources, space.outbox_projects,
            space.outbox_sources("p"), space.marker]
    assert all(k.startswith(prefix + ":") for k in keys)
    assert len(set(keys)) == len(keys)


def test_prefixes_keep_deployments_apart() -> None:
    one, two = KeySpace("one"), KeySpace("two")
    assert set(one.queue("p", "q")).isdisjoint(two.queue("p", "q"))


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b", "{x}"])
def test_prefix_without_braces_and_not_empty(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid Redis key prefix"):
        KeySpace(prefix)
