package store

import (
	"encoding/json"
	"slices"
	"strings"
)

// OutgoingByMessageID returns the notification whose Message-ID is id
// (with or without angle brackets), or nil. It walks the outbox: meant for
// the rare delivery failure report, not for every message.
func (t *Tx) OutgoingByMessageID(id string) (*Outgoing, error) {
	id = strings.Trim(id, "<> ")
	if id == "" {
		return nil, nil
	}
	var found *Outgoing
	err := t.tx.Bucket(bucketOutbox).ForEach(func(_, v []byte) error {
		if found != nil {
			return nil
		}
		var o Outgoing
		if err := json.Unmarshal(v, &o); err != nil {
			return err
		}
		if strings.Trim(o.MessageID, "<> ") == id {
			found = t.withData(&o)
		}
		return nil
	})
	return found, err
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
