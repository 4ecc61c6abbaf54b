// Package function is your function: Handle serves every request the
// front receives, except its own /_/health and /_/ready.
package function

import (
	"fmt"
	"io"
	"net/http"
)

// Handle answers with the request body. r.Context() ends at exec_timeout
// or when the client goes away: long work should watch it.
func Handle(w http.ResponseWriter, r *http.Request) {
	var input []byte
	if r.Body != nil {
		defer r.Body.Close()
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "cannot read the request body", http.StatusBadRequest)
			return
		}
		input = body
	}
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, "Body: %s", input)
}
