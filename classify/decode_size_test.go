package classify

import (
	"bytes"
	"encoding/base64"
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

// Attachments as mail clients write them: base64 in 76-character lines,
// some of them carrying stray bytes a lenient decoder skips, or several
// encoded blocks one after the other.
func TestBase64SizeOfAttachmentsAgreesWithTheDecoder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 300 {
		raw := make([]byte, rng.IntN(100<<10))
		for j := range raw {
			raw[j] = byte(rng.Uint32())
		}
		enc := wrapBase64(raw, 76)
		switch i % 4 {
		case 1: // a stray byte somewhere
			if len(enc) > 0 {
				enc[rng.IntN(len(enc))] = '*'
			}
		case 2: // two encoded blocks
			enc = append(enc, wrapBase64(raw[:len(raw)/3], 64)...)
		case 3: // LF line endings, spaces at line ends
			enc = bytes.ReplaceAll(enc, []byte("\r\n"), []byte(" \n"))
		}
		var st b64State
		want := int64(len(st.flush(st.feed(enc, nil))))
		got, bad := base64Size(iotest.HalfReader(bytes.NewReader(enc)))
		if got != want || bad != st.bad {
			t.Fatalf("case %d (%d bytes): base64Size = %d, bad %v; the decoder gives %d bytes, bad %v", i, len(enc), got, bad, want, st.bad)
		}
	}
}

// wrapBase64 is raw in standard base64, in lines of n characters ending
// in CRLF.
func wrapBase64(raw []byte, n int) []byte {
	enc := base64.StdEncoding.EncodeToString(raw)
	var b bytes.Buffer
	for len(enc) > n {
		b.WriteString(enc[:n] + "\r\n")
		enc = enc[n:]
	}
	b.WriteString(enc + "\r\n")
	return b.Bytes()
}

// BenchmarkBase64Size measures a 200 KB attachment, the biggest the
// backlog generator writes.
func BenchmarkBase64Size(b *testing.B) {
	raw := make([]byte, 150<<10+1) // padded: the encoding ends in "=="
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range raw {
		raw[i] = byte(rng.Uint32())
	}
	enc := wrapBase64(raw, 76)
	b.SetBytes(int64(len(enc)))
	for b.Loop() {
		if n, _ := base64Size(bytes.NewReader(enc)); n != int64(len(raw)) {
			b.Fatalf("%d bytes, want %d", n, len(raw))
		}
	}
}
