package store

import (
	"slices"
	"strings"
)

// OutgoingOfCase returns the notification of case caseID whose
// Message-ID is id (with or without angle brackets), or nil. It reads that
// case's notifications only: the caller knows the case from the
// Message-ID, which caseintake mints with the case in it.
func (t *Tx) OutgoingOfCase(caseID uint64, id string) (*Outgoing, error) {
	id = strings.Trim(id, "<> ")
	if id == "" {
		return nil, nil
	}
	rows, err := t.CaseOutbox(caseID)
	if err != nil {
		return nil, err
	}
	for _, o := range rows {
		if strings.EqualFold(strings.Trim(o.MessageID, "<> "), id) {
			return o, nil
		}
	}
	return nil, nil
}

// MarkUndeliverable records that rcpts will not receive notification o
// (a delivery failure report said so after the relay accepted it): they
// join o.Failed and reason becomes o.LastError. The state stays as it is:
// the relay did accept the message.
func (t *Tx) MarkUndeliverable(o *Outgoing, rcpts []string, reason string) error {
	for _, r := range rcpts {
		if !slices.Contains(o.Failed, r) {
			o.Failed = append(o.Failed, r)
		}
	}
	o.LastError = reason
	return t.putOutgoing(o)
}
