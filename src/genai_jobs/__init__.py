"""genai-jobs: durable GenAI jobs behind DataRobot's GenAI job status API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("genai-jobs")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
