package classify

import (
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
)

// readParts reads body's parts a byte at a time from the input, so that
// partReader goes a line at a time; readPartsBuffered gives it the whole
// body at once, so that it takes runs of lines.
func readParts(t *testing.T, body, boundary string) (parts []string, closed, found bool) {
	t.Helper()
	return readPartsFrom(t, iotest.OneByteReader(strings.NewReader(body)), boundary)
}

func readPartsBuffered(t *testing.T, body, boundary string) (parts []string, closed, found bool) {
	t.Helper()
	return readPartsFrom(t, strings.NewReader(body), boundary)
}

func readPartsFrom(t *testing.T, r io.Reader, boundary string) (parts []string, closed, found bool) {
	t.Helper()
	mr := newMultipartReader(r, boundary)
	pre, _ := io.ReadAll(mr.preamble())
	parts = append(parts, "pre:"+string(pre))
	for {
		pr, err := mr.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(pr)
		if err != nil {
			t.Fatal(err)
		}
		parts = append(parts, string(b))
	}
	return parts, mr.closed, mr.found
}

func TestMultipartReaderBytes(t *testing.T) {
	tests := []struct {
		body   string
		want   []string
		closed bool
	}{
		{"pre\r\n--b\r\nH: 1\r\n\r\na\nb\r\nc\r\n--b\nx\n--b--\r\nepilogue", []string{"pre:pre", "H: 1\r\n\r\na\nb\r\nc", "x"}, true},
		{"--b\r\n\r\n\r\n--b--", []string{"pre:", "\r\n"}, true},
		{"--b\r\nunterminated\r\n", []string{"pre:", "unterminated\r\n"}, false},
		{"--b\r\nno newline at end", []string{"pre:", "no newline at end"}, false},
		{"--b\r\n--bb\r\n--b-\r\n-- b\r\n--b--", []string{"pre:", "--bb\r\n--b-\r\n-- b"}, true},
		{"--b--", []string{"pre:"}, true},
		{"no delimiter at all\r\n", []string{"pre:no delimiter at all\r\n"}, false},
	}
	for _, tt := range tests {
		for _, read := range []func(*testing.T, string, string) ([]string, bool, bool){readParts, readPartsBuffered} {
			got, closed, _ := read(t, tt.body, "b")
			if strings.Join(got, "|") != strings.Join(tt.want, "|") || closed != tt.closed {
				t.Errorf("%q:\n got  %q closed %v\n want %q closed %v", tt.body, got, closed, tt.want, tt.closed)
			}
		}
	}
}

// Taking runs of lines at once must split a body exactly as going a line
// at a time does, for bodies full of near-delimiters, bare CRs and LFs,
// dashes and long lines.
func TestMultipartRunsSplitAsLines(t *testing.T) {
	pieces := []string{"--b", "--b--", "--bb", "-- b", "--b ", "-", "--", "text", "QUJD", "\r\n", "\n", "\r", " ", strings.Repeat("x", 5000)}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 3000 {
		var body strings.Builder
		for range rng.IntN(40) {
			body.WriteString(pieces[rng.IntN(len(pieces))])
		}
		lines, lclosed, lfound := readParts(t, body.String(), "b")
		runs, rclosed, rfound := readPartsBuffered(t, body.String(), "b")
		if strings.Join(lines, "|") != strings.Join(runs, "|") || lclosed != rclosed || lfound != rfound {
			t.Fatalf("%q:\n runs of lines %q closed %v found %v\n line by line  %q closed %v found %v", body.String(), runs, rclosed, rfound, lines, lclosed, lfound)
		}
	}
}

func TestIndexDashLineIsIndexOfNewlineDash(t *testing.T) {
	pieces := []string{"-", "--", "\n", "\r\n", "a", "QUJD", "\n-", "x-y"}
	rng := rand.New(rand.NewPCG(7, 8))
	for range 5000 {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		in := []byte(b.String())
		if got, want := indexDashLine(in), bytes.Index(in, []byte("\n-")); got != want {
			t.Fatalf("indexDashLine(%q) = %d, bytes.Index gives %d", in, got, want)
		}
	}
}

func TestDecoders(t *testing.T) {
	qp := []struct{ in, want string }{
		{"a=3Db", "a=b"},
		{"soft=\r\nbreak", "softbreak"},
		{"soft= \t\r\nbreak", "softbreak"},
		{"soft=\nbreak", "softbreak"},
		{"trailing  \r\nx\t\nend  ", "trailing\r\nx\nend"},
		{"bad=ZZ=4", "bad=ZZ=4"},
		{"=e4=E4", "\xe4\xe4"},
		{"cr\ronly", "cr\ronly"},
		{"=", ""},
		{"a \t b", "a \t b"},
	}
	for _, tt := range qp {
		got, err := io.ReadAll(newQPReader(iotest.OneByteReader(strings.NewReader(tt.in))))
		if err != nil || string(got) != tt.want {
			t.Errorf("qp %q = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	b64 := []struct{ in, want string }{
		{"SGVsbG8gV29ybGQh", "Hello World!"},
		{"SGVs\r\nbG8=", "Hello"},
		{"SGVsbG8", "Hello"},
		{"SGk=IHRoZXJl", "Hi there"},
		{"SG*Vs bG8=", "Hello"},
		{"S", ""},
		{"_-__", "\xff\xef\xff"},
	}
	for _, tt := range b64 {
		got, err := io.ReadAll(newBase64Reader(iotest.OneByteReader(strings.NewReader(tt.in))))
		if err != nil || string(got) != tt.want {
			t.Errorf("base64 %q = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
	long := bytes.Repeat([]byte("QUJD"), 100000)
	got, _ := io.ReadAll(newBase64Reader(bytes.NewReader(long)))
	if !bytes.Equal(got, bytes.Repeat([]byte("ABC"), 100000)) {
		t.Error("long base64 mismatch")
	}
}

func TestNormEncoding(t *testing.T) {
	for in, want := range map[string]string{
		"": "identity", "7bit": "identity", "7-bit": "identity", "8Bit": "identity", " binary ": "identity",
		"plain": "identity", "7bit;": "identity", "Quoted-Printable": "quoted-printable", "quoted printable": "quoted-printable",
		"BASE64": "base64", "base64 (x)": "base64", "x-uuencode": "x-uuencode",
	} {
		if got := normEncoding(in); got != want {
			t.Errorf("normEncoding(%q) = %q, want %q", in, got, want)
		}
	}
}
