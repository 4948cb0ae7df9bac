"""``admit``: what a transport calls once per request, before the operation runs."""

from __future__ import annotations

from tidings.admission import identity, policy
from tidings.admission.actions import Action
from tidings.admission.auth import Authenticator
from tidings.admission.params import Params, check_parameters
from tidings.config import Settings
from tidings.ops.context import Caller, in_collection
from tidings.storage.fairness import current_tenant


async def admit(
    settings: Settings,
    authenticator: Authenticator,
    action: Action,
    headers: identity.Headers,
    params: Params,
    *,
    signed_project: str | None = None,
    collection: str = "queues",
) -> Caller:
    """The caller of ``action``, once its identity, parameters and policy pass.

    A transport with signed URLs calls ``identity.check_signature`` first (for HTTP,
    before it answers 405 to an unknown method, as Zaqar does) and passes the project
    it returns as ``signed_project``: such a request skips authentication, as in Zaqar,
    and acts in the signed project only, with no roles. Any other request is
    authenticated (401 before any other check, as Keystone's middleware does), then its
    Client-ID and project are checked, then policy, which judges ``collection``
    ("queues" or "topics") by its own rules.
    """
    if signed_project is not None:
        caller = identity.signed_caller(signed_project, headers, settings.transport)
    else:
        who = await authenticator.authenticate(headers)
        caller = identity.caller(who, headers, settings.transport)
    check_parameters(params)
    policy.authorize(action, in_collection(caller, collection), settings)
    # Store work for this request queues behind this project's, not everyone's.
    current_tenant.set(caller.project)
    return caller
