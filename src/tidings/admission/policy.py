"""Which actions this server offers, and who may run them: oslo.policy with Zaqar's rules.

The rule names and default check strings are Zaqar's, so an operator's Zaqar
``policy.yaml`` (``[oslo_policy] policy_file``) works unchanged. The enforcer has a
configuration object of its own (never oslo.config's global one) and is built once per
policy file; oslo.policy re-reads the file when its modification time changes (one
``stat`` per request). Rules run on the event loop: oslo.policy's ``http:`` checks,
which call out to a server, would block it and have no place in Tidings' policy files.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from oslo_config import cfg
from oslo_policy import policy as oslo

from tidings.admission.actions import Action
from tidings.config import ConfigError, Settings
from tidings.errors import Forbidden, NotFound, ServiceUnavailable
from tidings.namespace import split_namespace
from tidings.ops.context import Caller

log = logging.getLogger("tidings.policy")

ADMIN_ROLE = "admin"
# Offered only with ``admin_mode`` (transports leave them unrouted otherwise).
ADMIN_ACTIONS = frozenset({Action.HEALTH})

ADMIN_ONLY = "role:admin"
ANYONE = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """A default rule: Zaqar's name and check string, and what it guards."""

    name: str
    check: str
    description: str


DEFAULT_RULES: tuple[Rule, ...] = (
    Rule("context_is_admin", ADMIN_ONLY, "Whom the other rules may call an administrator."),
    Rule(
        "admin_or_owner",
        "is_admin:True or project_id:%(project_id)s",
        "An administrator, or a member of the project the request acts in.",
    ),
    Rule("queues:get_all", ANYONE, "List queues."),
    Rule("queues:create", ANYONE, "Create a queue."),
    Rule("queues:get", ANYONE, "Show a queue's metadata, or tell whether it exists."),
    Rule("queues:delete", ANYONE, "Delete a queue."),
    Rule("queues:update", ANYONE, "Change a queue's metadata."),
    Rule("queues:stats", ANYONE, "Show a queue's statistics."),
    Rule("queues:share", ANYONE, "Create a pre-signed URL for a queue."),
    Rule("queues:purge", ANYONE, "Purge a queue's messages or subscriptions."),
    Rule("messages:get_all", ANYONE, "List messages, or get several by id."),
    Rule("messages:create", ANYONE, "Post messages."),
    Rule("messages:get", ANYONE, "Get one message."),
    Rule("messages:delete", ANYONE, "Delete one message."),
    Rule("messages:delete_all", ANYONE, "Delete several messages by id, or pop messages."),
    Rule("claims:create", ANYONE, "Claim messages."),
    Rule("claims:get", ANYONE, "Show a claim."),
    Rule("claims:delete", ANYONE, "Release a claim."),
    Rule("claims:update", ANYONE, "Renew a claim."),
    Rule("subscription:get_all", ANYONE, "List subscriptions."),
    Rule("subscription:create", ANYONE, "Create a subscription."),
    Rule("subscription:get", ANYONE, "Show a subscription, or its delivery failures."),
    Rule("subscription:delete", ANYONE, "Delete a subscription."),
    Rule("subscription:update", ANYONE, "Change a subscription."),
    Rule("subscription:confirm", ANYONE, "Confirm or cancel a subscription."),
    Rule("topics:get_all", ANYONE, "List topics."),
    Rule("topics:create", ANYONE, "Create a topic."),
    Rule("topics:get", ANYONE, "Show a topic's metadata, or tell whether it exists."),
    Rule("topics:delete", ANYONE, "Delete a topic."),
    Rule("topics:update", ANYONE, "Change a topic's metadata."),
    Rule("topics:stats", ANYONE, "Show a topic's statistics."),
    Rule("topics:purge", ANYONE, "Purge a topic's messages or subscriptions."),
    Rule("pools:get_all", ADMIN_ONLY, "List pools."),
    Rule("pools:create", ADMIN_ONLY, "Create a pool."),
    Rule("pools:get", ADMIN_ONLY, "Show a pool."),
    Rule("pools:delete", ADMIN_ONLY, "Delete a pool."),
    Rule("pools:update", ADMIN_ONLY, "Change a pool."),
    Rule("flavors:get_all", ANYONE, "List flavors."),
    Rule("flavors:create", ADMIN_ONLY, "Create a flavor."),
    Rule("flavors:get", ANYONE, "Show a flavor."),
    Rule("flavors:delete", ADMIN_ONLY, "Delete a flavor."),
    Rule("flavors:update", ADMIN_ONLY, "Change a flavor."),
    Rule("ping:get", ANYONE, "Ping the server."),
    Rule("health:get", ADMIN_ONLY, "Check the server's health (also needs admin_mode)."),
    # Tidings' own: Zaqar has no metrics.
    Rule("metrics:get", ADMIN_ONLY, "Read the Prometheus metrics (GET /metrics)."),
)

OPEN_BY_DEFAULT = frozenset(rule.name for rule in DEFAULT_RULES if rule.check == ANYONE)

# The rule guarding each action; None for the version list and home document, which
# Zaqar does not guard either.
ACTION_RULES: Mapping[Action, str | None] = MappingProxyType(
    {
        Action.VERSIONS: None,
        Action.HOME: None,
        Action.PING: "ping:get",
        Action.HEALTH: "health:get",
        Action.METRICS: "metrics:get",
        Action.QUEUE_LIST: "queues:get_all",
        Action.QUEUE_CREATE: "queues:create",
        Action.QUEUE_GET: "queues:get",
        Action.QUEUE_EXISTS: "queues:get",
        Action.QUEUE_UPDATE: "queues:update",
        Action.QUEUE_DELETE: "queues:delete",
        Action.QUEUE_STATS: "queues:stats",
        Action.QUEUE_PURGE: "queues:purge",
        Action.QUEUE_SHARE: "queues:share",
        Action.MESSAGE_LIST: "messages:get_all",
        Action.MESSAGE_GET_MANY: "messages:get_all",
        Action.MESSAGE_POST: "messages:create",
        Action.MESSAGE_GET: "messages:get",
        Action.MESSAGE_DELETE: "messages:delete",
        Action.MESSAGE_DELETE_MANY: "messages:delete_all",
        Action.CLAIM_CREATE: "claims:create",
        Action.CLAIM_GET: "claims:get",
        Action.CLAIM_UPDATE: "claims:update",
        Action.CLAIM_DELETE: "claims:delete",
        Action.SUBSCRIPTION_LIST: "subscription:get_all",
        Action.SUBSCRIPTION_CREATE: "subscription:create",
        Action.SUBSCRIPTION_GET: "subscription:get",
        Action.SUBSCRIPTION_UPDATE: "subscription:update",
        Action.SUBSCRIPTION_DELETE: "subscription:delete",
        Action.SUBSCRIPTION_CONFIRM: "subscription:confirm",
        Action.SUBSCRIPTION_FAILURES: "subscription:get",
        Action.POOL_LIST: "pools:get_all",
        Action.POOL_CREATE: "pools:create",
        Action.POOL_GET: "pools:get",
        Action.POOL_UPDATE: "pools:update",
        Action.POOL_DELETE: "pools:delete",
        Action.FLAVOR_LIST: "flavors:get_all",
        Action.FLAVOR_CREATE: "flavors:create",
        Action.FLAVOR_GET: "flavors:get",
        Action.FLAVOR_UPDATE: "flavors:update",
        Action.FLAVOR_DELETE: "flavors:delete",
    }
)

# On a topic, the topic itself is guarded by Zaqar's topics:* rules; its messages and
# subscriptions by the same rules as a queue's.
TOPIC_RULES: Mapping[Action, str] = MappingProxyType(
    {
        Action.QUEUE_LIST: "topics:get_all",
        Action.QUEUE_CREATE: "topics:create",
        Action.QUEUE_GET: "topics:get",
        Action.QUEUE_EXISTS: "topics:get",
        Action.QUEUE_UPDATE: "topics:update",
        Action.QUEUE_DELETE: "topics:delete",
        Action.QUEUE_STATS: "topics:stats",
        Action.QUEUE_PURGE: "topics:purge",
    }
)


def rule_for(action: Action, collection: str = "queues") -> str | None:
    """The name of the rule guarding ``action`` on ``queues`` or ``topics``."""
    if collection == "topics" and action in TOPIC_RULES:
        return TOPIC_RULES[action]
    return ACTION_RULES[action]


def offered(action: Action, settings: Settings) -> bool:
    """Whether the action exists at all here (transports leave the others unrouted)."""
    return action not in ADMIN_ACTIONS or settings.admin_mode


def authorize(action: Action, caller: Caller, settings: Settings) -> None:
    """Refuse an action the caller may not run (403), or one not offered here (404).

    A caller in the topics' namespace (``ops.context.in_collection``) is judged by the
    topics:* rules for the topic itself.
    """
    if not offered(action, settings):
        raise NotFound()
    project, collection = split_namespace(caller.project)
    rule = rule_for(action, collection)
    policy_file = settings.oslo_policy.policy_file
    # Without a file the rules never change; oslo.policy would spend ~15 µs on "".
    if rule is None or (policy_file is None and rule in OPEN_BY_DEFAULT):
        return
    decisions = _decisions(policy_file)
    key = (rule, project, caller.roles, caller.user_id)
    allowed = decisions.get(key)
    if allowed is None:
        # The target and the credentials below are functions of the key alone.
        target = {"project_id": project}
        credentials: dict[str, Any] = {
            "roles": sorted(caller.roles),
            "project_id": project,
            "user_id": caller.user_id,
            "is_admin": ADMIN_ROLE in caller.roles,
        }
        allowed = _decide(enforcer(policy_file), rule, target, credentials)
        decisions.put(key, allowed)
    if not allowed:
        raise Forbidden()


class Decisions:
    """Recent decisions of one enforcer, kept while its policy file is unchanged.

    oslo.policy spends tens of microseconds per call; a decision is a function of the
    rule, the project, the roles and the user (what ``authorize`` hands it) and of the
    rules, which change only when the file does. So the file is looked at (one
    ``stat``, as oslo.policy does per call) and any change to it forgets every
    decision; the next call lets oslo.policy reload it. Bounded: cleared when full.
    """

    MAX_ENTRIES = 4096
    # Longer keys (long project ids, many roles) are decided afresh each time.
    MAX_KEY_CHARS = 1024

    def __init__(self, policy_file: str | None) -> None:
        self._path = os.path.abspath(policy_file) if policy_file else None
        self._stamp: tuple[int, int, int] | None = None
        self._known: dict[tuple[str, str, frozenset[str], str | None], bool] = {}

    def _file_stamp(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None  # the defaults never change
        try:
            found = os.stat(self._path)
        except OSError:
            return None
        return (found.st_mtime_ns, found.st_size, found.st_ino)

    def get(self, key: tuple[str, str, frozenset[str], str | None]) -> bool | None:
        stamp = self._file_stamp()
        if stamp != self._stamp:
            self._known.clear()
            self._stamp = stamp
            return None
        return self._known.get(key)

    def put(self, key: tuple[str, str, frozenset[str], str | None], allowed: bool) -> None:
        size = len(key[1]) + sum(len(role) for role in key[2]) + len(key[3] or "")
        if size > self.MAX_KEY_CHARS:
            return
        if len(self._known) >= self.MAX_ENTRIES:
            self._known.clear()
        self._known[key] = allowed


@functools.cache
def _decisions(policy_file: str | None) -> Decisions:
    return Decisions(policy_file)


def _decide(
    found: oslo.Enforcer, rule: str, target: dict[str, str], credentials: dict[str, Any]
) -> bool:
    # oslo.policy stats the file on each call (cheap) and re-reads it when it changed.
    try:
        return bool(found.enforce(rule, target, credentials))
    except Exception as exc:
        # A file changed into something unreadable: oslo.policy has noted its new mtime
        # and keeps the rules it had, so the next attempt judges by those.
        log.error("policy file could not be reloaded, keeping the previous rules: %s", exc)
    try:
        return bool(found.enforce(rule, target, credentials))
    except Exception as exc:
        raise ServiceUnavailable("The policy could not be evaluated.") from exc


@functools.cache
def enforcer(policy_file: str | None) -> oslo.Enforcer:
    """The enforcer for a policy file (None: the defaults), built and checked once.

    Raises ``ConfigError`` for a file that is missing, unreadable or that refers to
    rules nobody defines, so that the server refuses to start with it.
    """
    conf = cfg.ConfigOpts()
    conf(args=[], project="tidings", default_config_files=[], default_config_dirs=[])
    path = os.path.abspath(policy_file) if policy_file else None
    found = oslo.Enforcer(conf, policy_file=path, use_conf=path is not None)
    # Only the file named in the settings: no policy.d directories searched per request.
    conf.set_override("policy_dirs", [], group="oslo_policy")
    found.register_defaults(
        [oslo.RuleDefault(r.name, r.check, r.description) for r in DEFAULT_RULES]
    )
    if path is None:
        rules = oslo.Rules.from_dict({r.name: r.check for r in DEFAULT_RULES})
        found.set_rules(rules, use_conf=False)
        return found
    if not os.path.isfile(path):
        raise ConfigError(f"oslo_policy.policy_file: {path} does not exist")
    try:
        found.load_rules()
    except Exception as exc:  # yaml errors, permissions: whatever the file's fault
        raise ConfigError(f"oslo_policy.policy_file: cannot load {path}: {exc}") from exc
    if not found.check_rules():
        raise ConfigError(
            f"oslo_policy.policy_file: {path} refers to rules that are not defined, or "
            "defines rules that refer to each other in a cycle"
        )
    return found


def defaults_yaml() -> str:
    """The default rules as a policy file (YAML), each with what it guards."""
    lines = [
        "# Tidings' default policy: Zaqar's rule names and defaults. Copy what you change",
        "# into the file named by [oslo_policy] policy_file; rules it leaves out keep",
        '# these defaults. "" lets anyone with access to the project run the action.',
        "",
    ]
    for rule in DEFAULT_RULES:
        actions = [
            action.value
            for action in Action
            if ACTION_RULES[action] == rule.name or TOPIC_RULES.get(action) == rule.name
        ]
        lines.append(f"# {rule.description}")
        if actions:
            lines.append(f"# Actions: {', '.join(actions)}")
        # JSON strings are YAML double-quoted scalars.
        lines.append(f"{json.dumps(rule.name)}: {json.dumps(rule.check)}")
        lines.append("")
    unguarded = [a.value for a in Action if ACTION_RULES[a] is None]
    lines.append(f"# Not guarded by any rule: {', '.join(unguarded)}")
    return "\n".join(lines) + "\n"
