package intake

import (
	"github.com/caseintake/caseintake/mailbox"
	"github.com/caseintake/caseintake/store"
)

// Cursors keeps the mailbox workers' UIDVALIDITY cursors in the store.
func Cursors(st *store.Store) mailbox.CursorStore { return cursors{st} }

type cursors struct{ st *store.Store }

func (c cursors) LoadCursor(name string) (mailbox.Cursor, error) {
	cur, err := c.st.LoadCursor(name)
	return mailbox.Cursor{UIDValidity: cur.UIDValidity, LastUID: cur.LastUID}, err
}

func (c cursors) SaveCursor(name string, cur mailbox.Cursor) error {
	return c.st.SaveCursor(name, store.Cursor{UIDValidity: cur.UIDValidity, LastUID: cur.LastUID})
}
