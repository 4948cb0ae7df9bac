"""Pushing new messages to subscribers: payloads, retry policy, senders, dispatcher."""
