"""The legacy JSON API (`/api/v1`, also `/v1`): a mapping layer over the FHIR store.

Nothing here stores a second copy of an order: requests are mapped to FHIR resources and
handed to the same domain services the FHIR face uses; responses are computed from the
stored resources (app/legacy_api/mapping/).
"""
