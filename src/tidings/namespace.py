"""How a project's topics are kept apart from its queues in storage.

Shared by the operations and the notifier, so neither imports the other for it.
"""

from __future__ import annotations

# Topics live in a namespace of their own beside the project's queues. Admission refuses
# control characters in project ids, so no client project can look like this.
TOPIC_NAMESPACE = "\x1ftopics"


def split_namespace(project: str) -> tuple[str, str]:
    """(the client's project, ``queues`` or ``topics``) for a project as stored."""
    if project.endswith(TOPIC_NAMESPACE):
        return project[: -len(TOPIC_NAMESPACE)], "topics"
    return project, "queues"
