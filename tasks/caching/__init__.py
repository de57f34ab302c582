"""The cache manager: Redis (standalone or Redis Cluster) kept sized, balanced and warm.

Rooms: ``client`` (one client for both kinds), ``cluster`` (``redis-cli --cluster`` operations done
with redis-py, recorded as actions), ``hotkeys`` (which keys will be hot next), ``warm`` (warming
as an action, rate-limited), ``stats`` and ``advice`` (what the cluster looks like and what to do
about it). Flows and the CLI compose them; nothing here imports another domain package.
"""
