// Package devmail runs a complete, in-process mail system for the demo and
// for fast integration tests: an IMAP server (go-imap's imapserver with the
// in-memory imapmemserver backend) and an SMTP server (go-smtp) whose
// accepted mail is recorded and delivered into the INBOX of the matching
// IMAP user.
//
// It is a normal package, not a _test one, because `caseintake demo` uses
// it as well as the tests of several packages. It is not a production mail
// server: nothing is persisted, and it listens on loopback only.
//
// Invariants:
//
//   - Both listeners bind 127.0.0.1 on a kernel-chosen port; the addresses
//     are fixed for the life of the Server, including across RestartIMAP
//     and SetIMAPDown.
//   - Every SMTP transaction the server answered with 250 after DATA is in
//     Sent, in the order the transactions completed, and every such message
//     has already been appended (byte for byte) to the INBOX of each
//     recipient that is an IMAP user before it appears in Sent, so a caller
//     woken by WaitSent or OnSent sees it over IMAP. Recipients without an
//     IMAP user are recorded only, never delivered anywhere else.
//   - A recipient made to fail with FailRcpt, and every transaction while
//     SetSMTPDown(true) is in force, is neither recorded nor delivered.
//   - Deliver and Messages work on the server's state directly (Deliver
//     appends like an MTA; Messages reads through a private in-memory IMAP
//     session), so they are unaffected by SetIMAPDown and by the TLS
//     settings of the public listener.
//   - Unless Options.Caps says otherwise the IMAP server offers IMAP4rev1,
//     UIDPLUS and MOVE (imapserver adds IDLE, UNSELECT and ENABLE after
//     login). With Options.TLSConfig set, LOGIN is refused until STARTTLS;
//     SMTP AUTH PLAIN is always allowed without TLS, and unauthenticated
//     submission is accepted because the listener is loopback-only.
//   - IMAP AUTHENTICATE and SMTP AUTH also take XOAUTH2 and OAUTHBEARER
//     (oauth.go): a bearer token is accepted exactly while AddToken has
//     made it valid for that user and RevokeToken has not withdrawn it; a
//     refused token gets the JSON challenge real servers send, then NO
//     [AUTHENTICATIONFAILED] (IMAP) or 535 5.7.8 (SMTP). TokenEndpoint
//     (tokenendpoint.go) is an OAuth 2.0 token endpoint, to be served
//     with httptest, whose access tokens the servers accept.
//
// FaultProxy (faults.go) sits in front of the plaintext IMAP listener and
// injects server faults on request: BYE at the greeting, after LOGIN or
// during IDLE, a connection cut halfway through a BODY[] literal, and a
// silent freeze (no byte passes, nothing is closed). Each armed fault is
// injected exactly as often as armed; Injected and WaitInjected tell a
// test that it happened.
//
// IDLE is served by looking at the mailbox every 20 ms instead of by
// imapmemserver's own IDLE, which misses changes queued just before IDLE
// started (real servers such as Dovecot report those at once).
//
// Quirk inherited from imapmemserver (go-imap v2.0.0-beta.8): the untagged
// EXPUNGE responses that follow a MOVE carry wrong sequence numbers. The
// stored state is right; clients that work with UIDs only are unaffected.
package devmail
