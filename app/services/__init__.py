"""Use cases shared by every face. No Flask here; the caller passes a Principal."""
