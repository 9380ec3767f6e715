"""The front door at `/`: what an integrator opening the service in a browser needs (issue 15)."""
