"""The CDS Hooks face (`/cds-services`): discovery, calls and feedback over the same
decision support the order workflow runs (app/services/decision_support.py)."""
