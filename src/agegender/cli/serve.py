"""`agegender serve`: the web page and HTTP API on uvicorn; the model and detector load once at start."""

from __future__ import annotations

import argparse

from .args import positive_int


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="web page and HTTP API (POST /v1/predict) on http://127.0.0.1:8000")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", default="default", help="built-in name, weights file or run folder")
    p.add_argument("--detector", default="retinaface", help="retinaface (default) or dlib-hog")
    p.add_argument("--threshold", type=float, default=0.6, help="detector threshold when a request names none")
    p.add_argument("--min-threshold", type=float, default=0.3, help="lowest threshold a request may ask for")
    p.add_argument("--flip-tta", action="store_true", help="average each face with its mirror image")
    p.add_argument("--max-side", type=positive_int, metavar="PIXELS",
                   help="the detector's first look at each image is scaled to at most this on its longer side "
                   "(default 640); finer passes follow where a big photo shows small faces or none")
    p.add_argument("--single-pass", action="store_true", help="one detection pass per image: no finer passes")
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload in MiB (413 above)")
    p.add_argument("--max-pixels", type=positive_int, default=50_000_000,
                   help="largest decoded image in pixels (413 above)")
    p.add_argument("--workers", type=positive_int, help="requests run at once (default min(4, CPUs))")
    p.add_argument("--device", default="cpu",
                   help="cpu (default), or cuda / cuda:N: onnxruntime's CUDA provider (needs onnxruntime-gpu)")
    p.add_argument("--threads", type=positive_int, default=1,
                   help="onnxruntime threads per request (default 1: requests run in parallel on the cores instead)")
    p.add_argument("--max-connections", type=positive_int, default=64,
                   help="open connections and requests at most; more get 503 (bounds memory)")
    p.add_argument("--cors-origin", action="append", default=[], metavar="ORIGIN",
                   help="allow browser pages from this origin to call the API (repeatable; default: CORS off)")
    p.add_argument("--ssl-certfile", help="serve HTTPS (browsers allow the camera on other hosts only over HTTPS)")
    p.add_argument("--ssl-keyfile")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.set_defaults(func=cmd_serve)


def cmd_serve(a: argparse.Namespace) -> int:
    import uvicorn  # the 'serve' extra; when missing, agegender.cli says so in one line

    from ..inference.predictor import Predictor
    from ..server.app import create_app

    if not 0 <= a.min_threshold <= 1 or not 0 <= a.threshold <= 1:
        raise ValueError("thresholds must be between 0 and 1")
    predictor = Predictor(a.model, a.detector, score_threshold=min(a.min_threshold, a.threshold), flip_tta=a.flip_tta,
                          detector_max_side=a.max_side, refine_small_faces=not a.single_pass, threads=a.threads,
                          device=a.device)
    app = create_app(predictor=predictor, max_upload_bytes=int(a.max_upload_mb * 1024 * 1024),
                     max_pixels=a.max_pixels, cors_origins=a.cors_origin, default_threshold=a.threshold,
                     workers=a.workers)
    scheme = "https" if a.ssl_certfile else "http"
    print(f"agegender serve: model {predictor.estimator.name}, page {scheme}://{a.host}:{a.port}/, "
          f"docs {scheme}://{a.host}:{a.port}/docs", flush=True)
    uvicorn.run(app, host=a.host, port=a.port, log_level=a.log_level, ssl_certfile=a.ssl_certfile,
                ssl_keyfile=a.ssl_keyfile, server_header=False,
                # uvicorn refuses a request once `limit_concurrency` connections are open, its own included:
                # + 1 lets --max-connections connections be served and refuses the next
                limit_concurrency=a.max_connections + 1)
    return 0
