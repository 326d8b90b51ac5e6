package api

import (
	"context"
	"fmt"
	"io"
	"net/http"
)

// BackupPath is where the daemon serves a consistent copy of its database.
const BackupPath = "/api/v1/backup"

// Backup streams a consistent copy of the running daemon's database to w.
func (c *Client) Backup(ctx context.Context, w io.Writer) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+BackupPath, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cannot reach caseintake at %s: is the service running? (%v)", c.listen, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, &Error{Status: resp.StatusCode, Message: fmt.Sprintf("backup refused: %s %s", resp.Status, b)}
	}
	n, err := io.Copy(w, resp.Body)
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("backup truncated: got %d of %d bytes", n, resp.ContentLength)
	}
	return n, err
}
