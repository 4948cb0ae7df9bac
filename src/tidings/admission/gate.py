"""``admit``: what a transport calls once per request, before the operation runs."""

from __future__ import annotations

from tidings.admission import identity, policy
from tidings.admission.actions import Action
from tidings.admission.params import Params, check_parameters
from tidings.config import Settings
from tidings.ops.context import Caller
from tidings.storage.fairness import current_tenant


def admit(settings: Settings, action: Action, headers: identity.Headers, params: Params) -> Caller:
    """The caller of ``action``, once its identity, parameters and policy pass.

    A transport with signed URLs calls ``identity.check_signature`` first (for HTTP,
    before it answers 405 to an unknown method, as Zaqar does).
    """
    caller = identity.caller(headers, settings.transport)
    check_parameters(params)
    policy.authorize(action, caller, settings)
    # Store work for this request queues behind this project's, not everyone's.
    current_tenant.set(caller.project)
    return caller
