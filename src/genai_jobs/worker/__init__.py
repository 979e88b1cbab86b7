"""Workers: claim jobs, run their handlers under leases, record outcomes."""

from genai_jobs.worker.maintenance import Maintenance
from genai_jobs.worker.worker import Worker

__all__ = ["Maintenance", "Worker"]
