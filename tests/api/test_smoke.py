"""The spec's example session, end to end over HTTP."""

from __future__ import annotations

import httpx


def test_post_claim_delete_cycle(api: httpx.Client) -> None:
    posted = api.post("/queues/mq/messages", json={"messages": [
        {"ttl": 300, "body": {"event": "BackupStarted"}},
        {"body": "second", "ttl": 60},
        {"body": [1, 2, 3]},
    ]})
    assert posted.status_code == 201
    ids = [href.rsplit("/", 1)[1] for href in posted.json()["resources"]]
    assert posted.headers["location"] == f"/v2/queues/mq/messages?ids={','.join(ids)}"

    claim = api.post("/queues/mq/claims", params={"limit": 2}, json={"ttl": 120, "grace": 60})
    assert claim.status_code == 201
    claim_id = claim.headers["location"].rsplit("/", 1)[1]
    claimed = claim.json()["messages"]
    assert [m["id"] for m in claimed] == ids[:2]
    assert claimed[1]["ttl"] == 180  # extended to claim ttl + grace

    refused = api.delete(f"/queues/mq/messages/{ids[0]}")
    assert refused.status_code == 403
    assert refused.json()["title"] == "Unable to delete"

    deleted = api.delete(f"/queues/mq/messages/{ids[0]}", params={"claim_id": claim_id})
    assert deleted.status_code == 204
    assert api.delete(f"/queues/mq/claims/{claim_id}").status_code == 204
    assert api.get(f"/queues/mq/claims/{claim_id}").status_code == 404
    listed = api.get("/queues/mq/messages", params={"echo": "true"}).json()["messages"]
    assert [m["id"] for m in listed] == ids[1:]
