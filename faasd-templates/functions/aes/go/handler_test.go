package function

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// Reference outputs of vSwarm's Go aes function (cross-checked with
// `openssl enc -aes-128-ctr -K 6368616e676520746869732070617373 -iv 0`).
var vectors = []struct{ in, want string }{
	{"", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: golang"},
	{"world", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: golang"},
	{"defaultplaintext", "fn: AES | plaintext: defaultplaintext | ciphertext: d80e9ec83a6acbef3d909876e79904a9 | runtime: golang"},
	{"A unique message", "fn: AES | plaintext: A unique message | ciphertext: fd4b8dc72677cafa719c946be09d1bb8 | runtime: golang"},
	{"hello", "fn: AES | plaintext: hello | ciphertext: d40e94c520 | runtime: golang"},
}

func TestEncrypt(t *testing.T) {
	for _, v := range vectors {
		if got := Encrypt(v.in); got != v.want {
			t.Errorf("Encrypt(%q) = %q, want %q", v.in, got, v.want)
		}
	}
}

func TestHandle(t *testing.T) {
	for _, v := range vectors {
		rec := httptest.NewRecorder()
		Handle(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader(v.in)))
		body, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != http.StatusOK || string(body) != v.want {
			t.Errorf("POST %q: %d %q, want 200 %q", v.in, rec.Code, body, v.want)
		}
	}
	// A GET without a body encrypts the default plaintext.
	rec := httptest.NewRecorder()
	Handle(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if got := rec.Body.String(); got != vectors[0].want {
		t.Errorf("GET: %q", got)
	}
}
