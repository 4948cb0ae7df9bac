"""Pooled mode: one Tidings over many stores.

``router.PooledStorage`` implements the ``Storage`` Protocols over a management store
(the catalog of pools, flavors and placements, and the queue registry) and the pools
the catalog names; operations do not know whether they run pooled.
"""
