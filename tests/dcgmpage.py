"""A recorded dcgm-exporter ``/metrics`` page for the GPU tests, and a handler serving it."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler

# Recorded from dcgm-exporter 3.3 (default counters + a few extra) on two nodes; node-b's GPU 1 is
# MIG-enabled (per-instance series carry GPU_I_ID). Sentinels as some exporter versions print them:
# int64 "not supported" (2^63 − 14), int32 blank (0x7ffffff0), fp64 blank (2^47).
L0 = 'gpu="0",UUID="GPU-aaaa",device="nvidia0",modelName="NVIDIA H100 80GB HBM3",Hostname="node-a"'
L1 = 'gpu="1",UUID="GPU-bbbb",device="nvidia1",modelName="NVIDIA A100-SXM4-40GB",Hostname="node-b"'
MIG1 = L1 + ',GPU_I_PROFILE="3g.20gb",GPU_I_ID="1"'
MIG2 = L1 + ',GPU_I_PROFILE="2g.10gb",GPU_I_ID="5"'
PAGE = f"""# HELP DCGM_FI_DEV_SM_CLOCK SM clock frequency (in MHz).
# TYPE DCGM_FI_DEV_SM_CLOCK gauge
DCGM_FI_DEV_SM_CLOCK{{{L0}}} 1980
DCGM_FI_DEV_SM_CLOCK{{{L1}}} 1095
# HELP DCGM_FI_DEV_MEM_CLOCK Memory clock frequency (in MHz).
# TYPE DCGM_FI_DEV_MEM_CLOCK gauge
DCGM_FI_DEV_MEM_CLOCK{{{L0}}} 2619
# HELP DCGM_FI_DEV_GPU_TEMP GPU temperature (in C).
# TYPE DCGM_FI_DEV_GPU_TEMP gauge
DCGM_FI_DEV_GPU_TEMP{{{L0}}} 41
DCGM_FI_DEV_GPU_TEMP{{{L1}}} 86
# HELP DCGM_FI_DEV_POWER_USAGE Power draw (in W).
# TYPE DCGM_FI_DEV_POWER_USAGE gauge
DCGM_FI_DEV_POWER_USAGE{{{L0}}} 213.467
DCGM_FI_DEV_POWER_USAGE{{{L1}}} 140737488355328
# HELP DCGM_FI_DEV_ENFORCED_POWER_LIMIT Current power limit (in W).
# TYPE DCGM_FI_DEV_ENFORCED_POWER_LIMIT gauge
DCGM_FI_DEV_ENFORCED_POWER_LIMIT{{{L0}}} 700
DCGM_FI_DEV_ENFORCED_POWER_LIMIT{{{L1}}} 400
# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{{{L0}}} 37
DCGM_FI_DEV_GPU_UTIL{{{L1}}} 9223372036854775794
# HELP DCGM_FI_DEV_FB_FREE Framebuffer memory free (in MiB).
# TYPE DCGM_FI_DEV_FB_FREE gauge
DCGM_FI_DEV_FB_FREE{{{L0}}} 79377
DCGM_FI_DEV_FB_FREE{{{MIG1}}} 9728
DCGM_FI_DEV_FB_FREE{{{MIG2}}} 9984
# HELP DCGM_FI_DEV_FB_USED Framebuffer memory used (in MiB).
# TYPE DCGM_FI_DEV_FB_USED gauge
DCGM_FI_DEV_FB_USED{{{L0}}} 2180
DCGM_FI_DEV_FB_USED{{{MIG1}}} 10240
DCGM_FI_DEV_FB_USED{{{MIG2}}} 0
# HELP DCGM_FI_DEV_FB_RESERVED Framebuffer memory reserved (in MiB).
# TYPE DCGM_FI_DEV_FB_RESERVED gauge
DCGM_FI_DEV_FB_RESERVED{{{L0}}} 2
# HELP DCGM_FI_DEV_CLOCK_THROTTLE_REASONS Current clock throttle reasons.
# TYPE DCGM_FI_DEV_CLOCK_THROTTLE_REASONS gauge
DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{{{L0}}} 0
DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{{{L1}}} 96
# HELP DCGM_FI_DEV_ECC_DBE_VOL_TOTAL Total number of double-bit volatile ECC errors.
# TYPE DCGM_FI_DEV_ECC_DBE_VOL_TOTAL counter
DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{{L0}}} 0
DCGM_FI_DEV_ECC_DBE_VOL_TOTAL{{{L1}}} 1
# HELP DCGM_FI_DEV_RETIRED_SBE Total number of retired pages due to single-bit errors.
# TYPE DCGM_FI_DEV_RETIRED_SBE counter
DCGM_FI_DEV_RETIRED_SBE{{{L0}}} 2147483632
# HELP DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS Number of remapped rows for uncorrectable errors
# TYPE DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS counter
DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS{{{L0}}} 0
# HELP DCGM_FI_DEV_ROW_REMAP_FAILURE Whether remapping of rows has failed
# TYPE DCGM_FI_DEV_ROW_REMAP_FAILURE gauge
DCGM_FI_DEV_ROW_REMAP_FAILURE{{{L0}}} 0
# HELP DCGM_FI_PROF_GR_ENGINE_ACTIVE Ratio of time the graphics engine is active.
# TYPE DCGM_FI_PROF_GR_ENGINE_ACTIVE gauge
DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{MIG1}}} 0.42
DCGM_FI_PROF_GR_ENGINE_ACTIVE{{{MIG2}}} 0
# HELP DCGM_FI_DEV_XID_ERRORS Value of the last XID error encountered.
# TYPE DCGM_FI_DEV_XID_ERRORS gauge
DCGM_FI_DEV_XID_ERRORS{{{L0}}} 0
"""


class DcgmHandler(BaseHTTPRequestHandler):
    """Serves ``body`` with status ``code`` (tests change them on a subclass)."""

    body = PAGE.encode()
    code = 200

    def do_GET(self) -> None:
        self.send_response(self.code)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass
