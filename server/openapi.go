package server

import _ "embed"

// openAPISpec is the machine-readable description of the API, served at /openapi.json. A test
// keeps it in step with the routes.
//
//go:embed openapi.json
var openAPISpec []byte
