"""The GPU manager: which GPUs exist and how healthy they are, and where GPU work runs.

Rooms: the device model and its readers (NVML, a DCGM exporter, the lake's history), health and
recommendations; a durable priority queue in the state DB; placement strategies behind one
interface (best-fit, first-fit, spread, fragmentation-aware); launching placed work with its
``CUDA_VISIBLE_DEVICES``; rebalancing recorded as actions. Flows and the CLI compose them; nothing
here imports another domain package.
"""
