"""Everything that touches torch and transformers lives in this package.

Importing the package itself stays light (no torch): the bot imports the types,
the errors and the Protocol from here; ``model_service.service`` pulls in torch.
"""

from __future__ import annotations

from model_service.api import ModelServiceAPI, TextStream
from model_service.errors import (
    ErrorKind,
    InternalError,
    ModelUnavailableError,
    OverloadedError,
    RequestTimeoutError,
    ServiceError,
    ValidationError,
)
from model_service.types import (
    MASK,
    ChatTurn,
    FillMaskRequest,
    FillMaskResult,
    FillPrediction,
    GenerationParams,
    GenerationRequest,
    GenerationResult,
    ModelInfo,
    ServiceStatus,
)

__all__ = [
    "MASK",
    "ChatTurn",
    "ErrorKind",
    "FillMaskRequest",
    "FillMaskResult",
    "FillPrediction",
    "GenerationParams",
    "GenerationRequest",
    "GenerationResult",
    "InternalError",
    "ModelInfo",
    "ModelServiceAPI",
    "ModelUnavailableError",
    "OverloadedError",
    "RequestTimeoutError",
    "ServiceError",
    "ServiceStatus",
    "TextStream",
    "ValidationError",
]
