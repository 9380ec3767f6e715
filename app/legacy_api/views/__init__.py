"""Legacy views, one module per area; each view parses, calls one service, renders."""
