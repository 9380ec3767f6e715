"""HTTP plumbing every face shares and none owns: error handling set up once by the app
factory (each face registers its renderer), the `{"error": {...}}` JSON body, and the
conversion of framework (werkzeug) errors into the typed errors every face renders."""
