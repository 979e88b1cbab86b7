"""DataRobot routes that genai-jobs does not serve, answered `501 Not Implemented`.

A DataRobot script that reaches for a feature this service lacks (playgrounds,
LLM blueprints, deployments, connected vector databases, other dataset sources)
gets a clear answer naming the feature, in the error shape of every route,
instead of a bare 404 or 405 that reads like a typo. The SDK raises it as a
ServerError with that message. docs/reference/datarobot.md lists the same.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from genai_jobs.api.deps import CallerDep

ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE"]
GUIDE = "docs/reference/datarobot.md"

# (path under /api/v2, methods, what the route is for). `{rest:path}` takes a whole area.
NOT_SERVED: list[tuple[str, list[str], str]] = [
    *[(f"/genai/{area}/{{rest:path}}", ANY_METHOD, feature) for area, feature in [
        ("playgrounds", "playgrounds"),
        ("llmBlueprints", "LLM blueprints"),
        ("llms", "LLMs"),
        ("chats", "chats"),
        ("chatPrompts", "chat prompts"),
        ("comparisonChats", "comparison chats"),
        ("comparisonPrompts", "comparison prompts"),
        ("customModelLLMValidations", "custom model LLM validations"),
        ("customModelVectorDatabaseValidations", "custom model vector database validations"),
        ("customModelEmbeddingValidations", "custom embedding models"),
        ("evaluationDatasetConfigurations", "evaluation datasets"),
        ("userLimits/llmApiCalls", "LLM API call limits"),
    ]],
    ("/useCases/{rest:path}", ANY_METHOD,
     "use cases (a vector database's useCaseId is kept as a label)"),
    ("/genai/vectorDatabases/fromCustomModelDeployment/", ["POST"],
     "vector databases from custom model deployments"),
    ("/genai/vectorDatabases/{vectorDatabaseId}/externalVectorDatabaseDocuments/", ["PATCH"],
     "connected (external) vector databases"),
    ("/genai/vectorDatabases/{vectorDatabaseId}/datasetExportJobs/", ["POST"],
     "exporting a vector database to the AI Catalog (download textAndEmbeddings/ instead)"),
    ("/genai/vectorDatabases/{vectorDatabaseId}/customModelVersions/", ["POST"],
     "sending a vector database to the custom model workshop"),
    ("/genai/vectorDatabases/{vectorDatabaseId}/deployments/", ["POST"],
     "deploying a vector database"),
    *[(f"/datasets/{source}/", ["POST"], f"datasets {source}") for source in [
        "fromURL", "fromDataSource", "fromDataEngineWorkspaceState", "fromProject",
        "fromStage", "fromRecipe"]],
    # `{area}` makes the part after the id non-empty: `/datasets/{id}/` itself (and
    # `/datasets/fromFile/`) is served, and other methods there are a 405, not this 501.
    ("/datasets/{datasetId}/{area}{rest:path}", ANY_METHOD,
     "dataset versions, files, features and sharing"),
]

router = APIRouter(tags=["Not served"], include_in_schema=False)


async def _not_served(request: Request, caller: CallerDep) -> JSONResponse:
    feature = request.scope["route"].description
    return JSONResponse(
        {"detail": f"{feature} is not served by genai-jobs (DataRobot's {request.method} "
                   f"{request.url.path}); see {GUIDE}"}, status_code=501)


for _path, _methods, _feature in NOT_SERVED:
    router.add_api_route(_path, _not_served, methods=_methods, description=_feature)
