package function

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestHandleEchoesTheBody(t *testing.T) {
	rec := httptest.NewRecorder()
	Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("hello")))
	if rec.Code != http.StatusOK || rec.Body.String() != "Body: hello" {
		t.Fatalf("got %d %q, want 200 %q", rec.Code, rec.Body.String(), "Body: hello")
	}
}
