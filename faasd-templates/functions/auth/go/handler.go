// The vSwarm "auth" function (benchmarks/auth/go) as a handler of the
// golang-shunt template: the request body is a token, the answer an
// IAM-style policy (printed as vSwarm's Go version prints it, with %+v), or
// Unauthorized, or an invalid-token error.
package function

import (
	"fmt"
	"io"
	"net/http"
	"strings"
)

// The resource vSwarm writes into every policy: a literal template string.
const methodArn = "arn:aws:execute-api:{regionId}:{accountId}:{apiId}/{stage}/{httpVerb}/[{resource}/[{child-resources}]]"

type statement struct {
	Action   string
	Effect   string
	Resource string
}

type policyDocument struct {
	Version   string
	Statement []statement
}

type authContext struct {
	stringKey  string
	numberKey  int
	booleanKey bool
}

type authResponse struct {
	principalId    string
	policyDocument policyDocument
	context        authContext
}

func policy(principal, effect, resource string) authResponse {
	return authResponse{
		principalId: principal,
		policyDocument: policyDocument{
			Version:   "2012-10-17",
			Statement: []statement{{Action: "execute-api:Invoke", Effect: effect, Resource: resource}},
		},
		context: authContext{stringKey: "stringval", numberKey: 123, booleanKey: true},
	}
}

// Authorize returns vSwarm's answer for a token.
func Authorize(token string) string {
	var resp any
	switch token {
	case "allow":
		resp = policy("user", "Allow", methodArn)
	case "deny":
		resp = policy("user", "Deny", methodArn)
	case "unauthorized":
		resp = "Unauthorized"
	default:
		resp = "Error: Invalid token"
	}
	return fmt.Sprintf("fn: Auth | token: %s | resp: %+v | runtime: golang", token, resp)
}

// maxToken bounds the body read as a token (vSwarm's are a few bytes).
const maxToken = 4096

// Handle answers any method: the request body is the token. One trailing
// newline is dropped (a departure from vSwarm, whose gRPC strings have
// none) so that `echo allow | faas-cli invoke` sends the token "allow".
func Handle(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		defer r.Body.Close()
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxToken))
		if err != nil {
			http.Error(w, "cannot read the token: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		body = b
	}
	token := string(body)
	if t, ok := strings.CutSuffix(token, "\r\n"); ok {
		token = t
	} else {
		token = strings.TrimSuffix(token, "\n")
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, Authorize(token))
}
