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
		inputs = append(inputs, randomInput(rng, alphabet, 300))
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

// The quoted-printable decoder appends runs of literal bytes at once; it
// must give exactly what stepping through the input a byte at a time
// gives, whatever the input and however it is split into reads.
func TestQPRunsDecodeAsByteSteps(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const alphabet = "abcXYZ019=  \t\r\n=3D=C3=A9=\r\n=\n=4=ZZ\xc3\xa9"
	for range 2000 {
		in := randomInput(rng, alphabet, 400)
		var stepped qpReader
		for _, c := range in {
			stepped.step(c)
		}
		stepped.finish()
		r := newQPReader(iotest.HalfReader(bytes.NewReader(in)))
		var got bytes.Buffer
		if _, err := got.ReadFrom(r); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got.Bytes(), stepped.buf) || r.bad != stepped.bad {
			t.Fatalf("decoding %q: runs give %q (bad %v), byte steps %q (bad %v)", in, got.Bytes(), r.bad, stepped.buf, stepped.bad)
		}
	}
}

// randomInput is fewer than n bytes drawn from alphabet.
func randomInput(rng *rand.Rand, alphabet string, n int) []byte {
	b := make([]byte, rng.IntN(n))
	for i := range b {
		b[i] = alphabet[rng.IntN(len(alphabet))]
	}
	return b
}
