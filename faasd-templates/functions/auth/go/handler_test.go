package function

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// vSwarm's outputs (benchmarks/auth/go): the policy is printed with %+v.
const policyTail = " Resource:arn:aws:execute-api:{regionId}:{accountId}:{apiId}/{stage}/{httpVerb}/[{resource}/[{child-resources}]]}]} context:{stringKey:stringval numberKey:123 booleanKey:true}} | runtime: golang"

var vectors = map[string]string{
	"allow":        "fn: Auth | token: allow | resp: {principalId:user policyDocument:{Version:2012-10-17 Statement:[{Action:execute-api:Invoke Effect:Allow" + policyTail,
	"deny":         "fn: Auth | token: deny | resp: {principalId:user policyDocument:{Version:2012-10-17 Statement:[{Action:execute-api:Invoke Effect:Deny" + policyTail,
	"unauthorized": "fn: Auth | token: unauthorized | resp: Unauthorized | runtime: golang",
	"bla bla":      "fn: Auth | token: bla bla | resp: Error: Invalid token | runtime: golang",
	"":             "fn: Auth | token:  | resp: Error: Invalid token | runtime: golang",
	"Allow":        "fn: Auth | token: Allow | resp: Error: Invalid token | runtime: golang",
}

func TestAuthorize(t *testing.T) {
	for in, want := range vectors {
		if got := Authorize(in); got != want {
			t.Errorf("Authorize(%q) =\n%q, want\n%q", in, got, want)
		}
	}
}

func TestHandle(t *testing.T) {
	for in, want := range vectors {
		rec := httptest.NewRecorder()
		Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(in)))
		if rec.Code != http.StatusOK || rec.Body.String() != want {
			t.Errorf("POST %q: %d %q, want 200 %q", in, rec.Code, rec.Body.String(), want)
		}
	}
	// One trailing newline (echo's) is not part of the token; other space is.
	for in, token := range map[string]string{"allow\n": "allow", "deny\r\n": "deny", " allow": " allow", "allow\n\n": "allow\n", "allow\r": "allow\r"} {
		rec := httptest.NewRecorder()
		Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(in)))
		if want := Authorize(token); rec.Body.String() != want {
			t.Errorf("POST %q: %q, want %q", in, rec.Body.String(), want)
		}
	}
	rec := httptest.NewRecorder()
	Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(strings.Repeat("x", maxToken+1))))
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Errorf("an oversized token gave %d", rec.Code)
	}
}
