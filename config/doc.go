// Package config loads and validates caseintake.yaml.
//
// Invariants: Load either returns a complete, validated Config (defaults
// applied, *_file secrets read, durations with units) or a *Error listing
// every problem, each naming its key, so that an operator can fix the file in
// one pass. Secrets never appear in error text. The package imports no other
// caseintake package.
package config
