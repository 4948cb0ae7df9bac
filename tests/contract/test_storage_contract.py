"""Behaviour every storage driver must show (see ``tidings.storage.base``)."""

from __future__ import annotations

import asyncio

import pytest

from tidings.config import StorageSettings
from tidings.errors import ClaimedMessage, UnableToDelete
from tidings.model import ClaimRequest, DeadLetterPolicy, NewMessage
from tidings.storage.base import PreparePost, Storage

pytestmark = pytest.mark.anyio

P = "project-a"
Q = "queue-1"
T0 = 1_700_000_000.0
CLIENT = "11111111-1111-1111-1111-111111111111"
OTHER_CLIENT = "22222222-2222-2222-2222-222222222222"
NO_SUCH_CLAIM = "00000000-0000-0000-0000-000000000000"
# The drivers here run with the default ``[storage] scan_budget``.
BUDGET = StorageSettings().scan_budget


def batch(*bodies: int, ttl: int = 300, delay: int = 0) -> PreparePost:
    """A post whose messages do not depend on the queue's metadata."""
    messages = [NewMessage(body=str(b).encode(), ttl=ttl, delay=delay) for b in bodies]
    return lambda _metadata: messages


async def listing(storage: Storage, now: float = T0, **options: object) -> list[str]:
    params: dict[str, object] = {
        "marker": None, "limit": 20, "exclude_client": None,
        "include_claimed": False, "include_delayed": False, "now": now,
    }
    params.update(options)
    found = await storage.messages.page(P, Q, **params)  # type: ignore[arg-type]
    assert found.resume_after is None  # small queues never exhaust the scan budget
    return [m.body.decode() for m in found.messages]


def claim(limit: int = 10, ttl: int = 60, grace: int = 60, **kw: object) -> ClaimRequest:
    return ClaimRequest(ttl=ttl, grace=grace, limit=limit, **kw)  # type: ignore[arg-type]


# --- queues -----------------------------------------------------------------------


async def test_create_reports_whether_new_and_keeps_metadata(storage: Storage) -> None:
    assert await storage.queues.create(P, Q, {"a": 1}, T0) is True
    assert await storage.queues.create(P, Q, {"a": 2}, T0) is False
    assert await storage.queues.get_metadata(P, Q) == {"a": 1}
    assert await storage.queues.get_metadata(P, "missing") is None


async def test_set_metadata_only_on_existing_queue(storage: Storage) -> None:
    assert await storage.queues.set_metadata(P, Q, {"x": 1}) is False
    await storage.queues.create(P, Q, {}, T0)
    assert await storage.queues.set_metadata(P, Q, {"x": [1, {"y": None}]}) is True
    assert await storage.queues.get_metadata(P, Q) == {"x": [1, {"y": None}]}


async def test_list_sorted_paged_and_filtered(storage: Storage) -> None:
    for name, meta in [("b", {"k": 1}), ("a", {"k": 2}), ("c-x", {"k": 1}), ("d-x", {})]:
        await storage.queues.create(P, name, meta, T0)
    await storage.queues.create("other", "zz", {}, T0)

    async def names(**kw: object) -> list[str]:
        page = await storage.queues.page(P, **{"marker": None, "limit": 10, **kw})  # type: ignore[arg-type]
        assert page.resume_after is None  # a small catalog never exhausts the budget
        return [q.name for q in page.queues]

    assert await names() == ["a", "b", "c-x", "d-x"]
    assert await names(limit=2) == ["a", "b"]
    assert await names(marker="b", limit=2) == ["c-x", "d-x"]
    assert await names(name_contains="-x") == ["c-x", "d-x"]
    assert await names(metadata_equals={"k": 1}) == ["b", "c-x"]
    assert await names(metadata_equals={"k": 1}, limit=1, marker="b") == ["c-x"]
    assert await storage.queues.count(P) == 4
    assert await storage.queues.count("nobody") == 0


async def test_projects_never_see_each_other(storage: Storage) -> None:
    # Zaqar keys "<project>.<queue>" collide for project "a.b"/queue "c" and "a"/"b.c".
    await storage.messages.post("a.b", "c", batch(1), CLIENT, T0)
    await storage.messages.post("a", "b.c", batch(2), CLIENT, T0)
    first = (await storage.messages.page(
        "a.b", "c", marker=None, limit=10, exclude_client=None,
        include_claimed=True, include_delayed=True, now=T0,
    )).messages
    assert [m.body for m in first] == [b"1"]
    assert await storage.messages.get("a", "b.c", [first[0].id], T0) == []
    assert await storage.messages.get("a.b", "other", [first[0].id], T0) == []
    await storage.messages.delete("a", "b.c", first[0].id, None, T0)
    assert len(await storage.messages.get("a.b", "c", [first[0].id], T0)) == 1
    assert [q.name for q in (await storage.queues.page("a", marker=None, limit=10)).queues] == [
        "b.c"
    ]


async def test_delete_queue_removes_messages_and_claims(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0)
    result = await storage.claims.create(P, Q, claim(limit=1), T0)
    assert result is not None
    await storage.queues.delete(P, Q)
    assert await storage.queues.get_metadata(P, Q) is None
    assert await listing(storage, include_claimed=True) == []
    assert await storage.claims.get(P, Q, result.id, T0) is None
    await storage.queues.create(P, Q, {}, T0)
    assert (await storage.queues.stats(P, Q, T0)).total == 0


async def test_purge_keeps_queue_and_metadata(storage: Storage) -> None:
    await storage.queues.create(P, Q, {"m": 1}, T0)
    await storage.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0)
    await storage.claims.create(P, Q, claim(limit=1), T0)
    await storage.queues.purge_messages(P, Q)
    assert await storage.queues.get_metadata(P, Q) == {"m": 1}
    assert (await storage.queues.stats(P, Q, T0)).total == 0


async def test_stats_count_claimed_free_and_ends(storage: Storage) -> None:
    empty = await storage.queues.stats(P, Q, T0)
    assert (empty.total, empty.claimed, empty.oldest, empty.newest) == (0, 0, None, None)
    ids = await storage.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0)
    await storage.claims.create(P, Q, claim(limit=2), T0 + 1)
    stats = await storage.queues.stats(P, Q, T0 + 2)
    assert (stats.total, stats.claimed) == (3, 2)
    assert stats.oldest is not None and stats.oldest.id == ids[0]
    assert stats.newest is not None and stats.newest.id == ids[2]
    assert stats.oldest.created == pytest.approx(T0)
    assert stats.delayed == 0


async def test_stats_count_delayed_until_their_delay_ends(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    await storage.messages.post(P, Q, batch(2, 3, delay=30), CLIENT, T0)
    stats = await storage.queues.stats(P, Q, T0 + 1)
    assert (stats.total, stats.claimed, stats.delayed) == (3, 0, 2)
    assert (await storage.queues.stats(P, Q, T0 + 31)).delayed == 0


# --- messages ---------------------------------------------------------------------


async def test_post_creates_queue_and_keeps_fifo_order(storage: Storage) -> None:
    ids = await storage.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0)
    ids += await storage.messages.post(P, Q, batch(4), CLIENT, T0)
    assert len(set(ids)) == 4
    assert await storage.queues.get_metadata(P, Q) == {}
    assert await listing(storage) == ["1", "2", "3", "4"]


async def test_post_prepares_the_batch_from_current_metadata(storage: Storage) -> None:
    seen: list[dict[str, object]] = []

    def prepare(metadata: dict[str, object]) -> list[NewMessage]:
        seen.append(metadata)
        return [NewMessage(body=b"1", ttl=int(str(metadata.get("ttl", 100))))]

    await storage.messages.post(P, Q, prepare, CLIENT, T0)
    await storage.queues.set_metadata(P, Q, {"ttl": 200})
    await storage.messages.post(P, Q, prepare, CLIENT, T0)
    assert seen == [{}, {"ttl": 200}]
    found = (await storage.messages.page(
        P, Q, marker=None, limit=10, exclude_client=None,
        include_claimed=False, include_delayed=False, now=T0,
    )).messages
    assert [m.ttl for m in found] == [100, 200]


async def test_failed_prepare_stores_nothing(storage: Storage) -> None:
    def refuse(metadata: dict[str, object]) -> list[NewMessage]:
        raise UnableToDelete("refused")

    with pytest.raises(UnableToDelete):
        await storage.messages.post(P, "new-queue", refuse, CLIENT, T0)
    assert await storage.queues.get_metadata(P, "new-queue") is None
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    with pytest.raises(UnableToDelete):
        await storage.messages.post(P, Q, refuse, CLIENT, T0)
    assert (await storage.queues.stats(P, Q, T0)).total == 1


async def test_list_pages_with_exclusive_marker(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(5)), CLIENT, T0)
    page = (await storage.messages.page(
        P, Q, marker=None, limit=2, exclude_client=None,
        include_claimed=False, include_delayed=False, now=T0,
    )).messages
    assert [m.body for m in page] == [b"0", b"1"]
    rest = await listing(storage, marker=page[-1].marker)
    assert rest == ["2", "3", "4"]
    assert await listing(storage, marker="not-one-of-ours") == []


async def test_list_filters_echo_claimed_delayed_and_expired(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    await storage.messages.post(P, Q, batch(2), OTHER_CLIENT, T0)
    await storage.messages.post(P, Q, batch(3, delay=30), OTHER_CLIENT, T0)
    await storage.messages.post(P, Q, batch(4, ttl=60), OTHER_CLIENT, T0)
    assert await listing(storage, exclude_client=CLIENT) == ["2", "4"]
    assert await listing(storage, include_delayed=True) == ["1", "2", "3", "4"]
    await storage.claims.create(P, Q, claim(limit=1), T0)
    assert await listing(storage) == ["2", "4"]
    assert await listing(storage, include_claimed=True) == ["1", "2", "4"]
    # Past ttl: gone without any garbage collection; delay and claim over: visible.
    assert await listing(storage, now=T0 + 61) == ["1", "2", "3"]


async def follow(storage: Storage, now: float = T0, **options: object) -> list[list[str]]:
    """Every page of a listing, each continued where the last one said (bounded)."""
    marker: str | None = None
    pages: list[list[str]] = []
    for _ in range(20):
        params: dict[str, object] = {
            "marker": marker, "limit": 20, "exclude_client": None,
            "include_claimed": False, "include_delayed": False, "now": now,
        }
        params.update(options)
        page = await storage.messages.page(P, Q, **params)  # type: ignore[arg-type]
        pages.append([m.body.decode() for m in page.messages])
        marker = page.resume_after or (page.messages[-1].marker if page.messages else None)
        if marker is None:
            return pages
    raise AssertionError(f"the listing did not end: {pages}")


@pytest.mark.parametrize("include_claimed", [False, True])
async def test_list_resumes_past_a_head_longer_than_the_budget(
    storage: Storage, include_claimed: bool
) -> None:
    await storage.messages.post(P, Q, batch(*range(BUDGET + 50), delay=30), CLIENT, T0)
    await storage.messages.post(P, Q, batch(-1, -2, -3), CLIENT, T0)
    pages = await follow(storage, include_claimed=include_claimed)
    # Without claimed messages the listing reads the index of free, due messages, so the
    # delayed head is never walked. With them it walks post order: the first call
    # examines the budget and finds nothing, but says where to go on. As in Zaqar, a
    # page with messages links on too, so the last page is an empty one.
    if include_claimed:
        assert pages == [[], ["-1", "-2", "-3"], []]
    else:
        assert pages == [["-1", "-2", "-3"], []]
    first = await storage.messages.page(
        P, Q, marker=None, limit=20, exclude_client=None,
        include_claimed=include_claimed, include_delayed=True, now=T0,
    )
    assert first.resume_after is None and len(first.messages) == 20  # a full page


async def test_list_resumes_past_own_and_expired_messages(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(BUDGET + 10)), CLIENT, T0)
    await storage.messages.post(P, Q, batch(*range(BUDGET + 10), ttl=60), OTHER_CLIENT, T0)
    await storage.messages.post(P, Q, batch(-1, -2), OTHER_CLIENT, T0)
    # Skipped: the caller's own (echo off), then the expired ones not yet swept.
    pages = await follow(storage, now=T0 + 61, exclude_client=CLIENT)
    assert [body for page in pages for body in page] == ["-1", "-2"]
    assert pages[0] == [] and len(pages) <= 4


async def test_list_resumes_past_claimed_messages(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(BUDGET + 50)), CLIENT, T0)
    await storage.messages.post(P, Q, batch(-1, -2), CLIENT, T0)
    held = await storage.claims.create(P, Q, claim(limit=BUDGET + 50), T0)
    assert held is not None and len(held.messages) == BUDGET + 50
    # The free index never holds claimed messages, so the first page has both.
    pages = await follow(storage)
    assert [body for page in pages for body in page] == ["-1", "-2"]


async def test_list_resumes_without_repeating_lapsed_claims_past_the_window(
    storage: Storage,
) -> None:
    own = await storage.messages.post(P, Q, batch(*range(BUDGET + 50)), CLIENT, T0)
    await storage.messages.post(P, Q, batch(-1, -2), OTHER_CLIENT, T0)
    first = await storage.claims.create(P, Q, claim(limit=BUDGET + 50), T0)
    # A limit past the budget lets a store that walks claimed messages reach the last two.
    second = await storage.claims.create(P, Q, claim(limit=BUDGET + 52, ttl=30), T0)
    assert first is not None and len(first.messages) == len(own)
    assert second is not None and [m.body for m in second.messages] == [b"-1", b"-2"]
    await storage.claims.release(P, Q, first.id, T0)
    # The caller's own messages fill the first window; the lapsed claims lie beyond it.
    pages = await follow(storage, now=T0 + 31, exclude_client=CLIENT)
    assert [body for page in pages for body in page] == ["-1", "-2"]
    assert pages[0] == []


async def test_get_ignores_claims_and_delay_but_not_expiry(storage: Storage) -> None:
    ids = await storage.messages.post(P, Q, batch(1, 2, ttl=60, delay=30), CLIENT, T0)
    await storage.claims.create(P, Q, claim(limit=1), T0 + 40)
    found = await storage.messages.get(P, Q, [*ids, "nope", ids[0]], T0 + 41)
    assert sorted(m.id for m in found) == sorted(ids)
    assert await storage.messages.get(P, Q, [ids[1]], T0 + 61) == []


async def test_delete_follows_claim_rules(storage: Storage) -> None:
    ids = await storage.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0)
    held = await storage.claims.create(P, Q, claim(limit=1), T0)
    other = await storage.claims.create(P, Q, claim(limit=1), T0)
    assert held is not None and other is not None
    claimed_id, free_id = ids[0], ids[2]
    with pytest.raises(ClaimedMessage):
        await storage.messages.delete(P, Q, claimed_id, None, T0)
    with pytest.raises(ClaimedMessage):
        await storage.messages.delete(P, Q, claimed_id, other.id, T0)
    with pytest.raises(UnableToDelete, match="does not exist or has expired"):
        await storage.messages.delete(P, Q, claimed_id, "not-a-claim", T0)
    with pytest.raises(UnableToDelete, match="does not exist or has expired"):
        await storage.messages.delete(P, Q, claimed_id, NO_SUCH_CLAIM, T0)
    with pytest.raises(UnableToDelete, match="not currently claimed"):
        await storage.messages.delete(P, Q, free_id, held.id, T0)
    with pytest.raises(UnableToDelete, match="not currently claimed"):
        await storage.messages.delete(P, Q, free_id, NO_SUCH_CLAIM, T0)
    with pytest.raises(UnableToDelete, match="does not exist or has expired"):
        await storage.messages.delete(P, Q, free_id, "malformed", T0)
    await storage.messages.delete(P, Q, claimed_id, held.id, T0)
    await storage.messages.delete(P, Q, free_id, None, T0)
    await storage.messages.delete(P, Q, "missing", "whatever", T0)  # no error
    assert await listing(storage, include_claimed=True) == ["2"]
    remaining = await storage.claims.get(P, Q, held.id, T0)
    assert remaining is not None and remaining.messages == []


async def test_delete_with_expired_claim_acts_unclaimed(storage: Storage) -> None:
    ids = await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    held = await storage.claims.create(P, Q, claim(ttl=60), T0)
    assert held is not None
    with pytest.raises(UnableToDelete, match="not currently claimed"):
        await storage.messages.delete(P, Q, ids[0], held.id, T0 + 61)
    await storage.messages.delete(P, Q, ids[0], None, T0 + 61)


async def test_delete_many_ignores_claims_unless_asked(storage: Storage) -> None:
    ids = await storage.messages.post(P, Q, batch(1, 2, 3), CLIENT, T0)
    held = await storage.claims.create(P, Q, claim(limit=1), T0)
    assert held is not None
    with pytest.raises(UnableToDelete):
        await storage.messages.delete_many(P, Q, ids[:2], [held.id], T0)
    assert len(await storage.messages.get(P, Q, ids, T0)) == 3  # all or nothing
    await storage.messages.delete_many(P, Q, ids[:1], [held.id], T0)
    await storage.messages.delete_many(P, Q, [ids[1], "missing"], None, T0)
    assert [m.id for m in await storage.messages.get(P, Q, ids, T0)] == [ids[2]]


async def test_pop_takes_oldest_unclaimed_undelayed(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0)
    await storage.messages.post(P, Q, batch(3, delay=30), CLIENT, T0)
    await storage.messages.post(P, Q, batch(4), CLIENT, T0)
    await storage.claims.create(P, Q, claim(limit=1), T0)
    popped = await storage.messages.pop(P, Q, 5, T0)
    assert [m.body for m in popped] == [b"2", b"4"]
    assert await listing(storage, include_claimed=True, include_delayed=True) == ["1", "3"]
    assert await storage.messages.pop(P, "empty", 5, T0) == []


# --- claims -----------------------------------------------------------------------


async def test_claims_are_disjoint_and_oldest_first(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(5)), CLIENT, T0)
    first = await storage.claims.create(P, Q, claim(limit=3), T0)
    second = await storage.claims.create(P, Q, claim(limit=3), T0)
    assert first is not None and second is not None
    assert [m.body for m in first.messages] == [b"0", b"1", b"2"]
    assert [m.body for m in second.messages] == [b"3", b"4"]
    assert await storage.claims.create(P, Q, claim(), T0) is None
    assert await storage.claims.create(P, "missing", claim(), T0) is None


async def test_concurrent_claims_never_share_a_message(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(*range(100)), CLIENT, T0)
    results = await asyncio.gather(
        *(storage.claims.create(P, Q, claim(limit=7), T0) for _ in range(20))
    )
    seen = [m.id for r in results if r is not None for m in r.messages]
    assert len(seen) == len(set(seen)) == 100


async def test_claim_expiry_frees_messages(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    first = await storage.claims.create(P, Q, claim(ttl=60, grace=60), T0)
    assert first is not None
    assert await storage.claims.create(P, Q, claim(), T0 + 59) is None
    assert await storage.claims.get(P, Q, first.id, T0 + 59) is not None
    assert await storage.claims.get(P, Q, first.id, T0 + 60) is None
    again = await storage.claims.create(P, Q, claim(), T0 + 60)
    assert again is not None and again.messages[0].claim_count == 2


async def test_claim_extends_short_lived_messages(storage: Storage) -> None:
    ids = await storage.messages.post(P, Q, batch(1, ttl=60), CLIENT, T0)
    await storage.messages.post(P, Q, batch(2, ttl=1000), CLIENT, T0)
    result = await storage.claims.create(P, Q, claim(ttl=120, grace=60), T0 + 10)
    assert result is not None
    short, long = result.messages
    assert (short.ttl, short.expires) == (180, T0 + 10 + 180)
    assert (long.ttl, long.expires) == (1000, T0 + 1000)
    # Survives past its original ttl while claimed, and grace seconds after.
    assert len(await storage.messages.get(P, Q, ids, T0 + 189)) == 1
    assert await storage.messages.get(P, Q, ids, T0 + 190) == []


async def test_renew_restarts_claim_and_extends_messages(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, ttl=60), CLIENT, T0)
    result = await storage.claims.create(P, Q, claim(ttl=60, grace=60), T0)
    assert result is not None
    assert await storage.claims.renew(P, Q, result.id, 300, 100, T0 + 50) is True
    renewed = await storage.claims.get(P, Q, result.id, T0 + 200)
    assert renewed is not None
    assert (renewed.ttl, renewed.updated, renewed.expires) == (300, T0 + 50, T0 + 350)
    assert renewed.messages[0].ttl == 400
    assert await storage.claims.renew(P, Q, result.id, 300, 60, T0 + 351) is False
    assert await storage.claims.renew(P, Q, "missing", 300, 60, T0) is False


async def test_release_frees_messages_immediately(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, 2), CLIENT, T0)
    result = await storage.claims.create(P, Q, claim(), T0)
    assert result is not None
    await storage.claims.release(P, Q, result.id, T0)
    await storage.claims.release(P, Q, result.id, T0)  # idempotent
    assert await storage.claims.get(P, Q, result.id, T0) is None
    assert await listing(storage) == ["1", "2"]


async def test_claim_in_other_project_or_queue_is_not_found(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    result = await storage.claims.create(P, Q, claim(), T0)
    assert result is not None
    assert await storage.claims.get("other", Q, result.id, T0) is None
    assert await storage.claims.get(P, "other", result.id, T0) is None
    assert await storage.claims.renew("other", Q, result.id, 60, 60, T0) is False
    await storage.claims.release("other", Q, result.id, T0)
    assert await storage.claims.get(P, Q, result.id, T0) is not None


async def test_delayed_messages_are_never_claimed(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, delay=30), CLIENT, T0)
    await storage.messages.post(P, Q, batch(2), CLIENT, T0)
    await storage.messages.post(P, Q, batch(3, delay=5), CLIENT, T0)
    first = await storage.claims.create(P, Q, claim(), T0)
    assert first is not None and [m.body for m in first.messages] == [b"2"]
    assert await storage.claims.create(P, Q, claim(), T0 + 4) is None
    later = await storage.claims.create(P, Q, claim(), T0 + 30)
    assert later is not None and [m.body for m in later.messages] == [b"1", b"3"]


async def test_dead_letter_move_is_complete(storage: Storage) -> None:
    policy = DeadLetterPolicy(max_claim_count=2, queue="dlq", message_ttl=120)
    await storage.messages.post(P, "dlq", batch(0), CLIENT, T0)
    await storage.messages.post(P, Q, batch(1), CLIENT, T0)
    for attempt in range(2):
        result = await storage.claims.create(P, Q, claim(dead_letter=policy), T0 + attempt)
        assert result is not None
        await storage.claims.release(P, Q, result.id, T0 + attempt)
    assert await storage.claims.create(P, Q, claim(dead_letter=policy), T0 + 5) is None
    assert (await storage.queues.stats(P, Q, T0 + 5)).total == 0
    # Immediately listable (at the tail) and claimable in the dead-letter queue.
    moved = (await storage.messages.page(
        P, "dlq", marker=None, limit=10, exclude_client=None,
        include_claimed=False, include_delayed=False, now=T0 + 5,
    )).messages
    assert [m.body for m in moved] == [b"0", b"1"]
    assert (moved[1].ttl, moved[1].expires, moved[1].claim_count) == (120, T0 + 125, 2)
    assert await storage.queues.get_metadata(P, "dlq") == {}
    taken = await storage.claims.create(P, "dlq", claim(), T0 + 5)
    assert taken is not None and [m.body for m in taken.messages] == [b"0", b"1"]


# --- housekeeping -----------------------------------------------------------------


async def test_garbage_collection_removes_only_expired(storage: Storage) -> None:
    await storage.messages.post(P, Q, batch(1, ttl=60), CLIENT, T0)
    await storage.messages.post(P, Q, batch(2, ttl=600), CLIENT, T0)
    await storage.claims.create(P, Q, claim(limit=1, ttl=60, grace=60), T0 + 30)
    assert await storage.collect_garbage(T0 + 10) == 0
    assert await storage.collect_garbage(T0 + 200) == 2  # the message and its claim
    assert await listing(storage, now=T0 + 200) == ["2"]


async def test_ping(storage: Storage) -> None:
    assert await storage.ping() is True
