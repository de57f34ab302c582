"""The query router: pools of backends, selection strategies, resilience and the learned model.

Pure logic lives here (importable without a server); the request path is the small async proxy in
``tasks.routing.proxy`` started by ``cortex-perf router serve``, and the ``router`` flow retrains
the learned strategy from the outcomes the proxy records (``router_outcomes`` in the lake).
"""
