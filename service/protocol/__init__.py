"""The Open Inference Protocol (KServe v2), REST: its bodies and its tensors, free of torch.

:mod:`service.protocol.schemas` holds the JSON bodies as pydantic models (for validation and
``/docs``); :mod:`service.protocol.tensors` turns a request body (JSON, or JSON followed by
Triton's binary tensor data) into named numpy arrays and named arrays back into a response.
What the tensors of a task kind mean is the task's business (:mod:`service.tasks`); the routes
are in :mod:`service.routes.v2`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXTENSIONS", "PLATFORM", "PREFIX", "SERVER_NAME", "ProtocolError", "error_body"]

# Where the protocol's routes live; their errors are {"error": ...}, everyone else's
# {"detail": ...}.
PREFIX: Final = "/v2"

SERVER_NAME: Final = "bayes-serve"
# The spec's "<project>_<format>": PyTorch networks in safetensors checkpoints.
PLATFORM: Final = "pytorch_safetensors"
# Triton's extensions that apply here: binary tensor data after the JSON header, and custom
# request parameters (``samples``, ``level``).
EXTENSIONS: Final = ("binary_tensor_data", "parameters")


def error_body(path: str, message: str) -> dict[str, str]:
    """An error answer in the shape of the route family ``path`` belongs to.

    For answers given before routing (a body over the size limit), where the route's own
    error rendering never runs.
    """
    if path == PREFIX or path.startswith(f"{PREFIX}/"):
        return {"error": message}
    return {"detail": message}


class ProtocolError(ValueError):
    """A request the protocol's rules (or the model's tensors) refuse: answered 400.

    The message is the whole answer the client gets, so it names the tensor, the dimension or
    the parameter, what was expected and what was sent.
    """
