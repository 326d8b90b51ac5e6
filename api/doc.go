// Package api is the agents' HTTP JSON API served by the daemon, and the
// typed client the command line uses (the daemon holds the database lock,
// so the CLI never opens the database itself).
//
// Invariants: every endpoint but /healthz needs the bearer token, compared
// in constant time; a request without it learns nothing but 401. Agent
// actions go through casemodel's transition table and queue their
// notifications in the same transaction as the change.
package api
