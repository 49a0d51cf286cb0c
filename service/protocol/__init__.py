"""The Open Inference Protocol (KServe v2), REST: its bodies and its tensors, free of torch.

:mod:`service.protocol.schemas` holds the JSON bodies as pydantic models (for validation and
``/docs``); :mod:`service.protocol.tensors` turns a request body (JSON, or JSON followed by
Triton's binary tensor data) into named numpy arrays and named arrays back into a response.
What the tensors of a task kind mean is the task's business (:mod:`service.tasks`); the routes
are in :mod:`service.routes.v2`.
"""

from __future__ import annotations

from typing import Final

__all__ = ["EXTENSIONS", "PLATFORM", "SERVER_NAME", "ProtocolError"]

SERVER_NAME: Final = "bayes-serve"
# The spec's "<project>_<format>": PyTorch networks in safetensors checkpoints.
PLATFORM: Final = "pytorch_safetensors"
# Triton's extensions that apply here: binary tensor data after the JSON header, and custom
# request parameters (``samples``, ``level``).
EXTENSIONS: Final = ("binary_tensor_data", "parameters")


class ProtocolError(ValueError):
    """A request the protocol's rules (or the model's tensors) refuse: answered 400.

    The message is the whole answer the client gets, so it names the tensor, the dimension or
    the parameter, what was expected and what was sent.
    """
