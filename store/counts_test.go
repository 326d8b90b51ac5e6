package store

import (
	"testing"
	"time"

	"github.com/caseintake/caseintake/casemodel"
)

func TestCountActiveByPriorityLeavesOutClosedAndArchived(t *testing.T) {
	st, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	now := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		prio   casemodel.Priority
		status casemodel.Status
	}{
		{casemodel.Urgent, casemodel.Open}, {casemodel.Urgent, casemodel.InProgress}, {casemodel.Normal, casemodel.OnHold},
		{casemodel.Low, casemodel.Closed}, {casemodel.Urgent, casemodel.Archived},
	} {
		err := st.Update(func(tx *Tx) error {
			id, err := tx.NewCaseID()
			if err != nil {
				return err
			}
			cs := casemodel.New(id, "x", "a@customer.example", "", "support", c.prio, now)
			if c.status != casemodel.Open {
				cs.SetStatus(c.status, "test", "", now)
			}
			return tx.PutCase(cs)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.CountActiveByPriority()
	if err != nil {
		t.Fatal(err)
	}
	if got[casemodel.Urgent] != 2 || got[casemodel.Normal] != 1 || got[casemodel.Low] != 0 || len(got) != 2 {
		t.Errorf("counts %v, want urgent 2, normal 1", got)
	}
}
