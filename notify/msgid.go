package notify

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strconv"
	"strings"
)

// Our Message-IDs look like
//
//	caseintake.<case>.<event>.<kind>.<token>@<domain>   (one notification)
//	caseintake.<case>.<token>@<domain>                  (a case's thread root)
//
// where token is a truncated HMAC-SHA256, under a key kept in the database,
// of everything before it. Threading trusts a Message-ID of this shape only
// when its token verifies, so a stranger who guesses the scheme cannot attach
// mail to somebody else's case by writing In-Reply-To: <caseintake.42.3.ack@…>.

const (
	msgIDPrefix = "caseintake."
	// tokenLen characters of base32 carry 80 bits of the HMAC: more than
	// anyone can guess, short enough to keep headers readable.
	tokenLen = 16
)

var tokenEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// MessageIDKeySize is the size of a Message-ID signing key.
const MessageIDKeySize = 32

// NewMessageIDKey returns a fresh random signing key.
func NewMessageIDKey() []byte {
	key := make([]byte, MessageIDKeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails on Linux
	return key
}

// Verdict says what a Message-ID is to us.
type Verdict int

const (
	// NotOurs: the Message-ID was not minted by caseintake for this domain.
	NotOurs Verdict = iota
	// Genuine: minted by us, token verified.
	Genuine
	// Forged: shaped like ours, but the token does not verify.
	Forged
)

func (r *Renderer) token(body string) string {
	mac := hmac.New(sha256.New, r.idKey)
	mac.Write([]byte(body))
	return strings.ToLower(tokenEncoding.EncodeToString(mac.Sum(nil))[:tokenLen])
}

// notificationID mints the Message-ID of the event-th notification of kind
// on case id.
func (r *Renderer) notificationID(id uint64, event int, kind string) string {
	body := fmt.Sprintf("%s%d.%d.%s", msgIDPrefix, id, event, kind)
	return body + "." + r.token(body) + "@" + r.domain
}

// ThreadRoot is the Message-ID every staff notification about case id
// refers to, so that they thread together. It is never sent itself.
func (r *Renderer) ThreadRoot(id uint64) string {
	body := msgIDPrefix + strconv.FormatUint(id, 10)
	return body + "." + r.token(body) + "@" + r.domain
}

// CheckMessageID tells whether id (without angle brackets) was minted by
// this caseintake: not ours, genuine, or forged.
func (r *Renderer) CheckMessageID(id string) Verdict {
	local, domain, ok := strings.Cut(id, "@")
	if !ok || !strings.EqualFold(domain, r.domain) || !strings.HasPrefix(strings.ToLower(local), msgIDPrefix) {
		return NotOurs
	}
	dot := strings.LastIndexByte(local, '.')
	body, tok := local[:dot], local[dot+1:]
	if len(tok) != tokenLen || !hmac.Equal([]byte(strings.ToLower(tok)), []byte(r.token(body))) {
		return Forged
	}
	return Genuine
}

// CaseOfMessageID returns the case a Message-ID minted by this caseintake
// belongs to (a notification's or a thread root's; angle brackets
// allowed). It reports false for any other Message-ID, forged ones
// included.
func (r *Renderer) CaseOfMessageID(id string) (uint64, bool) {
	id = strings.Trim(id, "<> ")
	if r.CheckMessageID(id) != Genuine {
		return 0, false
	}
	local, _, _ := strings.Cut(id, "@")
	num, _, _ := strings.Cut(local[len(msgIDPrefix):], ".")
	caseID, err := strconv.ParseUint(num, 10, 64)
	return caseID, err == nil
}
