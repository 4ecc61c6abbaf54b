// The vSwarm "aes" function (benchmarks/aes/go) as a plain net/http
// handler: AES-128-CTR of the request body with vSwarm's fixed key and a
// zero IV, answered in vSwarm's exact output format.
//
// The handler of the golang-shunt template (golang-middleware's contract).
package function

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
)

// vSwarm's defaults: -key (ASCII "change this pass") and -default-plaintext.
const (
	keyHex           = "6368616e676520746869732070617373"
	defaultPlaintext = "defaultplaintext"
)

// maxBody bounds what one request may make us encrypt (vSwarm's inputs
// are at most a few hundred bytes).
const maxBody = 1 << 20

var block = mustBlock()

func mustBlock() cipher.Block {
	key, err := hex.DecodeString(keyHex)
	if err != nil {
		panic(err) // a constant: cannot happen
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	return b
}

// Encrypt returns vSwarm's answer for plaintext. As in vSwarm, an empty
// plaintext or "world" (the old HelloRequest default) means defaultplaintext.
func Encrypt(plaintext string) string {
	if plaintext == "" || plaintext == "world" {
		plaintext = defaultPlaintext
	}
	iv := make([]byte, aes.BlockSize) // zero IV, as vSwarm
	ciphertext := make([]byte, len(plaintext))
	cipher.NewCTR(block, iv).XORKeyStream(ciphertext, []byte(plaintext))
	return fmt.Sprintf("fn: AES | plaintext: %s | ciphertext: %x | runtime: golang", plaintext, ciphertext)
}

// Handle answers any method: the request body (exact bytes, no trimming)
// is the plaintext.
func Handle(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil {
		defer r.Body.Close()
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			http.Error(w, "cannot read the request body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		body = b
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, Encrypt(string(body)))
}
