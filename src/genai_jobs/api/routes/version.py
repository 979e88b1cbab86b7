"""`GET /api/v2/version/`: DataRobot's client asks for it before anything else."""

from __future__ import annotations

from fastapi import APIRouter

from genai_jobs import __version__
from genai_jobs.api.deps import CallerDep
from genai_jobs.api.openapi import errors
from genai_jobs.api.schemas import VersionResponse

# The API level that the `datarobot` 3.20 package expects.
DATAROBOT_API_MAJOR = 2
DATAROBOT_API_MINOR = 49

router = APIRouter(tags=["Version"], responses=errors(401, 503))


@router.get("/version/", response_model=VersionResponse, summary="The API version.")
async def get_version(caller: CallerDep) -> VersionResponse:
    return VersionResponse(
        major=DATAROBOT_API_MAJOR,
        minor=DATAROBOT_API_MINOR,
        version_string=f"{DATAROBOT_API_MAJOR}.{DATAROBOT_API_MINOR}.0",
        released_version=__version__,
    )
