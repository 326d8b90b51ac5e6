package classify

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"testing/iotest"
)

// base64Size must agree with the lenient decoder on every input: it
// stands in for decoding when only an attachment's size is kept.
func TestBase64SizeAgreesWithTheDecoder(t *testing.T) {
	inputs := [][]byte{
		nil, []byte("="), []byte("QQ=="), []byte("QUI="), []byte("QUJD"), []byte("Q"),
		[]byte("QUJD\r\nREVG\r\n"), []byte("QQ==QUI="), []byte("QU*JD"), []byte("QUJ-_D"),
	}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=\r\n \t-_*!"
	for range 500 {
		b := make([]byte, rng.IntN(300))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		inputs = append(inputs, b)
	}
	for _, in := range inputs {
		var st b64State
		want := int64(len(st.flush(st.feed(in, nil))))
		got, bad := base64Size(iotest.OneByteReader(bytes.NewReader(in)))
		if got != want || bad != st.bad {
			t.Fatalf("base64Size(%q) = %d, bad %v; the decoder gives %d bytes, bad %v", in, got, bad, want, st.bad)
		}
	}
}
