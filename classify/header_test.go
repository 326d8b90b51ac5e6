package classify

import (
	"bufio"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readHeader reads lines in the buffered reader's buffer, without copying
// them: a line it hands back as the start of the body (a part header not
// ended by a blank line) must still be intact once the rest is read
// through that buffer.
func TestReadHeaderKeepsTheBodyLineAfterTheBufferMoves(t *testing.T) {
	const head = "Content-Type: text/plain;\r\n charset=utf-8\r\n"
	const bodyLine = "the body starts\r\n"
	rest := strings.Repeat("later text that refills the buffer\r\n", 20)
	br := bufio.NewReaderSize(strings.NewReader(head+bodyLine+rest), 64)
	res, err := readHeader(br, 1<<10, false)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(iotest.OneByteReader(br)) // small reads refill br's buffer
	if string(res.body) != bodyLine || string(got) != rest {
		t.Fatalf("body line %q, then %d bytes; want %q, then the %d bytes after it", res.body, len(got), bodyLine, len(rest))
	}
	if v := res.h.get("content-type"); v != "text/plain; charset=utf-8" || !strings.Contains(strings.Join(res.warnings, "|"), "not ended by a blank line") {
		t.Fatalf("Content-Type %q, warnings %q", v, res.warnings)
	}
}
