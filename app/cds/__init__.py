"""Clinical decision support: CDS Hooks-style checks over a shipped, source-cited knowledge base."""
