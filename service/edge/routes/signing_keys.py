"""`GET /v1/signing-keys`: the public keys answers are signed with (service.edge.signing), as a
JSON Web Key Set. Open: public keys are public, and an application checks answers without a key."""

from __future__ import annotations

from flask import Blueprint

from service.core.responses import ClientResponse
from service.edge.signing import AnswerSigner

PATH = "/v1/signing-keys"


def blueprint(signer: AnswerSigner) -> Blueprint:
    routes = Blueprint("signing_keys", __name__)

    @routes.get(PATH)
    def signing_keys() -> ClientResponse:
        return ClientResponse.json(signer.public_keys(), headers={"Cache-Control": "max-age=300"})

    return routes
