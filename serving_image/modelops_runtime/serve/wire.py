"""Names on the wire shared by the serving process and its shadow sender process (:mod:`.shadow`).

Kept in a module without imports, so the sender process loads neither pandas nor MLflow.
"""

#: The request id header (assigned by the server when the client sent none; returned, logged).
REQUEST_ID_HEADER = "x-request-id"
#: Length of the JSON part of a V2 body carrying binary tensor data (binary tensor data extension).
BINARY_HEADER_LENGTH = "inference-header-content-length"
JSON = "application/json"
#: The V2 output holding the predicted classes or values.
OUTPUT_PREDICT = "predict"
