"""The FHIR R4 face (`/fhir/R4`) and the resource store it sits on."""
