// Package casemodel is the domain model of a support case: statuses and the
// one table of allowed transitions, priorities, events, and the rules for
// what a customer's reply does to a case.
//
// It is pure: no I/O, no clock (callers pass the time), no other caseintake
// package. The invariant it keeps is design.md's fourth: mail can open,
// reopen and raise priority; only agents resolve, close, lower or assign.
package casemodel
