"""The library's pages: an image with the steps its lifecycle allows this principal (publish, approve,
withdraw, check again, release notes, discard), the upload form with the manufacturer's drafts, and a
commercial declaration made from a device model's page. Forms post with the session's CSRF token (the
upload form carries it in its action's query string, as its body is multipart). A refusal shows the
page again with the reason and no form the principal may not use."""

from __future__ import annotations

from starlette.requests import ClientDisconnect, Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from cfl_graph.access.policy import AccessDenied, Action, allowed
from cfl_graph.access.principal import Principal
from cfl_graph.blobs import BlobStoreFailed
from cfl_graph.catalogue.search import model_names
from cfl_graph.catalogue.snapshots import current_snapshot_id
from cfl_graph.doors.web.images import take_upload
from cfl_graph.doors.web.middleware import principal_of
from cfl_graph.doors.web.pages.render import done_message, not_found, refused, render
from cfl_graph.doors.web.refusals import http_status
from cfl_graph.doors.web.services import services
from cfl_graph.errors import Refusal
from cfl_graph.identifiers import InvalidValue
from cfl_graph.images import lifecycle
from cfl_graph.images.errors import ImageNotFound
from cfl_graph.images.library import ImageLibrary, download_name
from cfl_graph.images.listing import own_drafts
from cfl_graph.keys import ModelKey, VersionKey
from cfl_graph.row_ids import row_id
from cfl_graph.tables import LibraryImage

IMAGE_ID_REFUSAL = "Image ids are whole numbers (0-9) that name an image."
DRAFTS_SHOWN = 50


async def _image_page(
    request: Request,
    image: LibraryImage,
    status: int = 200,
    *,
    done: str | None = None,
    error: Exception | None = None,
) -> Response:
    """An image's page: what the lifecycle lets this principal see and do (no form it may not use)."""
    principal = principal_of(request.scope)
    async with services(request).sessions() as session:
        names = await model_names(session, await current_snapshot_id(session), [ModelKey.of(image)])
    return render(
        request,
        "image.html",
        status,
        image=image,
        model=names.get(ModelKey.of(image)),
        file_name=download_name(image),
        steps=lifecycle.steps_for(principal, image),
        may_download=allowed(principal, Action.DOWNLOAD_IMAGE)
        and lifecycle.download_refusal(principal, image) is None,
        done=done,
        error=error,
    )


def _image_id(request: Request) -> int | None:
    try:
        return row_id(request.path_params["image_id"], "an image id")
    except InvalidValue:
        return None


async def image(request: Request) -> Response:
    image_id = _image_id(request)
    if image_id is None:
        return not_found(request, IMAGE_ID_REFUSAL)
    try:
        found = await services(request).library.get(principal_of(request.scope), image_id)
    except (AccessDenied, Refusal) as exc:
        return refused(request, exc)
    return await _image_page(request, found, done=done_message(request))


# The image page's forms, each a step of the lifecycle, and the `?done=` message each returns with.
STEPS = {
    "publish": "published",
    "approve": "approved",
    "withdraw": "withdrawn",
    "recheck": "rechecked",
    "notes": "notes",
    "discard": "discarded",
}


async def _take_step(
    library: ImageLibrary, principal: Principal | None, image_id: int, request: Request
) -> None:
    step = request.path_params["step"]
    if step == "publish":
        await library.publish(principal, image_id)
    elif step == "approve":
        await library.approve(principal, image_id)
    elif step == "withdraw":
        await library.withdraw(principal, image_id, str((await request.form()).get("reason", "")))
    elif step == "recheck":
        await library.recheck(principal, image_id)
    elif step == "notes":
        markdown = str((await request.form()).get("markdown", ""))
        await library.update_release_notes(principal, image_id, markdown)
    elif step == "discard":
        await library.discard(principal, image_id)


async def step(request: Request) -> Response:
    """A form on the image page: the step is taken and the page shown again with what was done, or
    with the refusal and no form the principal may not use."""
    image_id = _image_id(request)
    done = STEPS.get(request.path_params["step"])
    if image_id is None or done is None:
        return not_found(request, IMAGE_ID_REFUSAL if image_id is None else "No such step for an image.")
    principal = principal_of(request.scope)
    library = services(request).library
    try:
        await _take_step(library, principal, image_id, request)
    except ImageNotFound as exc:
        return refused(request, exc)
    except (AccessDenied, Refusal) as exc:
        try:
            found = await library.get(principal, image_id)
        except (AccessDenied, Refusal):
            return refused(request, exc)
        return await _image_page(request, found, http_status(exc, 409), error=exc)
    if done == "discarded":
        return RedirectResponse("/upload?done=discarded", status_code=303)
    return RedirectResponse(f"/images/{image_id}?done={done}", status_code=303)


async def declare(request: Request) -> Response:
    path = request.path_params
    form = await request.form()
    key = VersionKey(
        path["manufacturer_id"],
        path["model_id"],
        path["hardware_version"],
        str(form.get("firmwareVersion", "")),
    )
    try:
        await services(request).library.declare_commercial(
            principal_of(request.scope), key, str(form.get("reason", ""))
        )
    except (AccessDenied, Refusal) as exc:
        return refused(request, exc)
    where = f"/models/{path['manufacturer_id']}/{path['model_id']}/{path['hardware_version']}"
    return RedirectResponse(f"{where}?done=declared", status_code=303)


async def upload_form(request: Request) -> Response:
    principal = principal_of(request.scope)
    if principal is None or not allowed(principal, Action.UPLOAD_IMAGE, manufacturer_id="*"):
        return render(request, "refused.html", 403, reason="Uploads are for manufacturer parties.")
    async with services(request).sessions() as session:
        drafts = await own_drafts(session, principal, DRAFTS_SHOWN)
    return render(request, "upload.html", drafts=drafts, refusal=None, done=done_message(request))


async def upload(request: Request) -> Response:
    try:
        found = await take_upload(services(request).library, request)
    except (AccessDenied, Refusal, BlobStoreFailed) as exc:
        return render(request, "upload.html", http_status(exc, 503), drafts=[], refusal=exc, done=None)
    except ClientDisconnect:
        return Response(status_code=400)
    return RedirectResponse(f"/images/{found.id}", status_code=303)


routes = [
    Route("/images/{image_id}", image, methods=["GET"]),
    Route("/images/{image_id}/{step}", step, methods=["POST"]),
    Route("/models/{manufacturer_id}/{model_id}/{hardware_version}/declare", declare, methods=["POST"]),
    Route("/upload", upload_form, methods=["GET"]),
    Route("/upload", upload, methods=["POST"]),
]
