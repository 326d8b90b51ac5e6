package devmail

import (
	"sort"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// RefuseCreate makes IMAP CREATE fail with NO [NOPERM], as on a server
// where the account may not create folders; false allows it again.
// CreateFolder (the test's own access) is unaffected.
func (s *Server) RefuseCreate(refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noCreate = refuse
}

func (ss saslSession) Create(name string, opts *imap.CreateOptions) error {
	ss.s.mu.Lock()
	refuse := ss.s.noCreate
	ss.s.mu.Unlock()
	if refuse {
		return &imap.Error{Type: imap.StatusResponseTypeNo, Code: imap.ResponseCodeNoPerm, Text: "Permission denied"}
	}
	return ss.idleSession.Create(name, opts)
}

// Folders returns the names of user's folders, sorted, as LIST "" "*"
// shows them to the user.
func (s *Server) Folders(user string) []string {
	var out []string
	s.withSession(user, func(c *imapclient.Client) error {
		list, err := c.List("", "*", nil).Collect()
		for _, d := range list {
			out = append(out, d.Mailbox)
		}
		return err
	})
	sort.Strings(out)
	return out
}
