"""The FastAPI app: the HTTP API under /v1, the web page at /, offline API docs at /docs.

    >>> app = create_app()                   # loads the default Predictor once
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..inference.predictor import Predictor
from .body import read_upload
from .errors import ApiError
from .schema import HealthOut, ModelsOut, PredictOut, error_responses, predict_body
from .service import DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD_BYTES, PredictService

STATIC_DIR = Path(__file__).resolve().parent / "static"
log = logging.getLogger("agegender.server")

#: the page may load only what this server serves; camera frames and result images are blob: URLs
PAGE_CSP = ("default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
            "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(
    predictor: Predictor | None = None,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    cors_origins: list[str] | None = None,
    default_threshold: float | None = None,
    workers: int | None = None,
) -> FastAPI:
    """Build the app around one Predictor (loaded here if not given).

    max_upload_bytes: largest request body (413 above). max_pixels: largest decoded image (413 above).
    cors_origins: origins allowed to call the API from other pages (none: CORS off).
    default_threshold: detector threshold when a request names none (default: the detector's own).
    workers: threads running inference concurrently (default min(4, CPUs)).
    """
    from fastapi_offline import FastAPIOffline

    service = PredictService(predictor or Predictor(), max_pixels, default_threshold, workers)
    service.warm_up()

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        service.close()

    app = FastAPIOffline(
        title="agegender", version=__version__, lifespan=lifespan,
        redoc_url=None,  # ReDoc's page fetches its logo from a CDN; Swagger UI at /docs is fully served here
        description="Age and gender of every face in an image. The web page is at /.",
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from the public validator
    )
    app.state.service = service
    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type"])

    _install_error_handlers(app)
    _add_api_routes(app, service, max_upload_bytes, max_pixels)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Content-Security-Policy": PAGE_CSP,
                                                                "Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _document_400_not_422(app)
    return app


def _install_error_handlers(app: FastAPI) -> None:
    """Every error as {"error": message} with its status; a nosniff header on every response."""

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "query")
        return _error(400, f"invalid parameter {where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # keep the exception's headers: a 405 carries the Allow header RFC 9110 requires
        return JSONResponse({"error": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def _internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error")
        return _error(500, f"internal error ({type(exc).__name__})")

    @app.middleware("http")
    async def _headers(request: Request, call_next: Any) -> Any:
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        return response


def _add_api_routes(app: FastAPI, service: PredictService, max_upload_bytes: int, max_pixels: int) -> None:
    """POST /v1/predict, GET /v1/health and GET /v1/models around `service`."""
    floor = service.min_threshold
    ok = {"model": PredictOut, "description": "the faces found, largest first",
          "headers": {"Server-Timing": {"description": "predict;dur=MILLISECONDS", "schema": {"type": "string"}}}}

    @app.post("/v1/predict", response_model=None,
              openapi_extra={"requestBody": predict_body(max_upload_bytes, max_pixels)},
              responses={200: ok, **error_responses(400, 413, 415, 500)})
    async def predict(
        request: Request,
        threshold: float | None = Query(
            None, ge=floor, le=1, description=f"detector score threshold, from this server's floor {floor} "
            f"(its --min-threshold) to 1; default {service.default_threshold}"),
        max_faces: int | None = Query(None, ge=1, description="keep the N largest faces"),
        annotate: bool = Query(False, description="also return the annotated image as base64 JPEG"),
    ) -> JSONResponse:
        """Faces, ages and genders of one image sent as multipart/form-data (field `file`) or as a raw
        image body. The JSON is one line of `agegender predict --format jsonl`; `image` is the uploaded
        filename or "upload"."""
        service.check_threshold(threshold)
        upload = await read_upload(request, max_upload_bytes)
        start = time.perf_counter()
        run = functools.partial(service.predict, upload.data, upload.name, threshold, max_faces, annotate)
        out = await asyncio.get_running_loop().run_in_executor(service.executor, run)
        ms = (time.perf_counter() - start) * 1000
        return JSONResponse(out, headers={"Server-Timing": f"predict;dur={ms:.1f}"})

    @app.get("/v1/health", response_model=HealthOut, responses=error_responses(500))
    async def health() -> dict[str, Any]:
        """Liveness: the model is loaded and the server answers."""
        return {"status": "ok", "version": __version__, "workers": service.workers}

    @app.get("/v1/models", response_model=ModelsOut, responses=error_responses(500))
    async def models() -> dict[str, Any]:
        """The model and detector in use, their preprocessing and the upload limits."""
        est = service.predictor.estimator
        cfg = est.config
        return {
            "model": {"name": est.name, "arch": cfg.arch, "preprocessing": cfg.preprocessing.to_dict(),
                      "age_range": cfg.age_range, "summary": cfg.card.get("summary"),
                      "metrics": cfg.card.get("test_metrics") or cfg.card.get("val_metrics") or {}},
            "detector": {"name": service.predictor.detector.name, "min_threshold": service.min_threshold,
                         "default_threshold": service.default_threshold},
            "limits": {"max_upload_bytes": max_upload_bytes, "max_pixels": max_pixels},
        }


def _document_400_not_422(app: FastAPI) -> None:
    """Invalid parameters get a 400 with {"error": ...} here, so drop FastAPI's default 422 from the schema."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            for ops in spec.get("paths", {}).values():
                for op in ops.values():
                    op.get("responses", {}).pop("422", None)
            schemas = spec.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                schemas.pop(name, None)
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
